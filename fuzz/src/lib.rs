//! The checks behind umacvlan's fuzz targets, as plain functions of the input bytes.
//!
//! Each `fuzz_targets/NAME.rs` is a one-line libFuzzer wrapper around `NAME::check`; the same
//! functions replay the committed seeds and crashers under `cargo test` (`tests/replay.rs`), so a
//! finding stays a regression test on the stable toolchain without any fuzzer installed.
//! Every check panics on a violated invariant, which is how libFuzzer sees a failure.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli_parse;
pub mod control_decode;
pub mod engine_decisions;
pub mod frame_views;

/// A cursor over the fuzzer's bytes that yields zeros once they run out, so every input decodes
/// to something and short inputs are cheap.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the fuzzer's bytes.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The next byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    /// The next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }
    /// Two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    /// Up to `n` bytes (fewer when exhausted).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
}
