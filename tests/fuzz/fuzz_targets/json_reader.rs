#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inferguard_fuzz::json_reader(data));
