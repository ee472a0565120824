#![no_main]
//! The same peer bytes read by wsframe and by tungstenite must give the same events.
//! See `fuzz/src/differential.rs` for the rules and the documented differences.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsframe_fuzz::differential::run(data));
