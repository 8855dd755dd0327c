#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| iscsi_proto::fuzzing::initiator_stream(data));
