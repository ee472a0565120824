#![no_main]
//! Structured operations driving a client and a server engine wired to each other.
//! See `fuzz/src/connection.rs` for the invariants.

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: wsframe_fuzz::alloc_count::Counting = wsframe_fuzz::alloc_count::Counting;

fuzz_target!(|data: &[u8]| wsframe_fuzz::connection::run(data));
