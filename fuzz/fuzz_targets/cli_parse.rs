//! `cargo fuzz run cli_parse`: see `umacvlan_fuzz::cli_parse` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umacvlan_fuzz::cli_parse::check(data));
