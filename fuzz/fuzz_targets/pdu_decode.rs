#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| iscsi_proto::fuzzing::pdu_decode(data));
