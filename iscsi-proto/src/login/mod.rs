//! Login-phase logic: the RFC 7143 section 13 key table, negotiation and CHAP.
