//! End-to-end: one echo round trip at a time (one message in flight) over real loopback TCP,
//! client and server in one process on a current-thread Tokio runtime, for wsframe's two Tokio
//! adapters (a task per connection; in the caller's task), tokio-tungstenite and
//! fastwebsockets, and the raw-TCP floor (the same bytes with no WebSocket). Payloads of 16 B
//! and 64 KiB, binary. Criterion's time is one round trip. The workloads are in
//! `echo/mod.rs`; `rounds.rs` runs the same ones interleaved.
//!
//!   cargo bench --manifest-path benches/peers/Cargo.toml --bench e2e -- --warm-up-time 1 --measurement-time 3

use criterion::{criterion_group, criterion_main, Criterion};

mod echo;
mod loopback;
mod workload;

fn e2e(c: &mut Criterion) {
    let rt = echo::runtime();
    echo::build(&rt, &[], &mut |workload| workload::register(c, workload));
}

criterion_group!(benches, e2e);
criterion_main!(benches);
