#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mcgate::fuzz::radius_encode(data));
