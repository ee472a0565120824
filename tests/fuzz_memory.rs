//! The fuzz findings about memory, replayed with the harness's counting allocator installed, so
//! that its memory bound is checked as it was when they were found (`fuzz_regressions.rs` runs
//! without the allocator and skips that check). One test, so that nothing else in this process
//! allocates while a bound is measured.

#[path = "../fuzz/src/alloc_count.rs"]
mod alloc_count;
#[path = "../fuzz/src/frame_parse.rs"]
mod frame_parse;
#[path = "../fuzz/src/wire.rs"]
mod wire;

#[global_allocator]
static COUNTING: alloc_count::Counting = alloc_count::Counting;

#[test]
fn memory_findings_stay_within_the_harness_bound() {
    // frame_parse finding 2 (see `fuzz_regressions.rs`): room reserved by a declared length.
    frame_parse::run(include_bytes!(
        "../fuzz/regressions/frame_parse/read-ahead-by-declared-length"
    ));
    // frame_parse finding 3: a frame streamed in 1-byte reads, each chunk echoed as a 1-byte
    // message; 2 050 queued messages held 72-byte queue entries. Within the engine's budget, so
    // the harness's bound now counts the outbound queue; the finding also showed that tiny and
    // empty messages escaped the budget (`tiny_and_empty_messages_count_against_the_budget`
    // in engine.rs).
    frame_parse::run(include_bytes!(
        "../fuzz/regressions/frame_parse/tiny-echoes-past-memory-bound"
    ));
    assert!(
        alloc_count::installed(),
        "the counting allocator is not in use"
    );
}
