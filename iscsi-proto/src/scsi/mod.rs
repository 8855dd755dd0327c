//! SCSI helpers for the initiator: CDB builders and sense-data decoding.
