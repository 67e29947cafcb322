//! `cargo fuzz run frame_views`: see `umacvlan_fuzz::frame_views` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umacvlan_fuzz::frame_views::check(data));
