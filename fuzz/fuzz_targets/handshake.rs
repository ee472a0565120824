#![no_main]
//! Arbitrary bytes to the server's request parser and the client's response validator.
//! See `fuzz/src/handshake.rs` for the invariants.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsframe_fuzz::handshake::run(data));
