//! The RFC 7143 section 6 text key=value codec.
