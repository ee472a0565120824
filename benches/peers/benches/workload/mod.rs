//! A workload: one thing every library does (receive 16-byte binary messages, echo 64 KiB over
//! loopback, ...), with one ready-to-run iteration per library. Built once and run by either
//! harness: criterion, one library after another (`peers.rs`, `e2e.rs`), or round after
//! round, every library in turn (`rounds.rs`).

#![allow(dead_code)]

use criterion::{BenchmarkId, Criterion, Throughput};

/// One library's side of a workload: runs the given number of iterations.
pub type Run<'a> = Box<dyn FnMut(u64) + 'a>;

/// A [`Run`] of `iteration`: the loop over iterations is compiled together with the body, as
/// in criterion's own `iter`, so the only call through a pointer is one per batch.
pub fn run<'a>(mut iteration: impl FnMut() + 'a) -> Run<'a> {
    Box::new(move |iterations| {
        for _ in 0..iterations {
            iteration();
        }
    })
}

/// One workload, every library ready on the same input.
pub struct Workload<'a> {
    /// The criterion group, e.g. `receive/binary`.
    pub group: &'static str,
    /// The payload size, criterion's parameter.
    pub size: usize,
    /// What one iteration moves.
    pub throughput: Throughput,
    /// `(library, one iteration)`, in report order.
    pub runs: Vec<(&'static str, Run<'a>)>,
}

impl Workload<'_> {
    /// `group/size`, as criterion names the workload's directory and as filters match it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.size)
    }
}

/// Whether a `group/size` id is selected by `filters`: each is a whole id or a prefix of one
/// that ends at a `/` (`receive` or `receive/binary` or `receive/binary/16`); no filters
/// selects everything.
pub fn selected(filters: &[String], group: &str, size: usize) -> bool {
    let id = format!("{group}/{size}");
    filters.is_empty()
        || filters
            .iter()
            .any(|f| id == *f || id.starts_with(&format!("{}/", f.trim_end_matches('/'))))
}

/// Libraries whose names start with this are wsframe's own rows; rows that are neither
/// wsframe's nor in [`PEERS`] are floors (memcpy, raw TCP, ...).
pub const OURS: &str = "wsframe";

/// The peers, as the report names them.
pub const PEERS: [&str; 4] = [
    "tungstenite",
    "tokio-tungstenite",
    "tokio-websockets",
    "fastwebsockets",
];

/// Each library's iteration as one criterion benchmark, `group/library/size`.
pub fn register(c: &mut Criterion, mut workload: Workload<'_>) {
    let mut g = c.benchmark_group(workload.group);
    g.throughput(workload.throughput.clone());
    for (library, run) in workload.runs.iter_mut() {
        g.bench_function(BenchmarkId::new(*library, workload.size), |b| {
            b.iter_custom(|iterations| {
                let start = std::time::Instant::now();
                run(iterations);
                start.elapsed()
            })
        });
    }
    g.finish();
}
