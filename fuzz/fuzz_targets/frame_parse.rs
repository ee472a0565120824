#![no_main]
//! Arbitrary bytes to a server engine and a client engine, in arbitrary chunk sizes.
//! See `fuzz/src/frame_parse.rs` for the invariants.

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: wsframe_fuzz::alloc_count::Counting = wsframe_fuzz::alloc_count::Counting;

fuzz_target!(|data: &[u8]| wsframe_fuzz::frame_parse::run(data));
