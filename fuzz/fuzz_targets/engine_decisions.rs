//! `cargo fuzz run engine_decisions`: see `umacvlan_fuzz::engine_decisions` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umacvlan_fuzz::engine_decisions::check(data));
