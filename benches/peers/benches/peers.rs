//! wsframe against tungstenite, tokio-websockets and fastwebsockets, on the same bytes, in one
//! criterion run, plus the physical limits (memcpy, plain XOR, fused walk-and-unmask). The
//! workloads and their configuration are in `inmemory/mod.rs`; `rounds.rs` runs the same ones
//! interleaved.
//!
//!   cargo bench --manifest-path benches/peers/Cargo.toml --bench peers -- --warm-up-time 1 --measurement-time 3

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../../common/mod.rs"]
mod common;
mod inmemory;
mod workload;

fn peers(c: &mut Criterion) {
    let rt = inmemory::runtime();
    // Criterion filters the benchmarks itself (by `group/library/size`).
    inmemory::build(&rt, &[], &mut |workload| workload::register(c, workload));
}

criterion_group!(benches, peers);
criterion_main!(benches);
