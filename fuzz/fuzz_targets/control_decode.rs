//! `cargo fuzz run control_decode`: see `umacvlan_fuzz::control_decode` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umacvlan_fuzz::control_decode::check(data));
