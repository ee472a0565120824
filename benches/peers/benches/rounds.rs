//! The peer comparison interleaved: for each workload, every library runs for one time slice
//! in turn, round after round (31 rounds by default, the order rotated each round), and the
//! ratios are taken within each round. Criterion (`peers.rs`, `e2e.rs`) measures one library
//! after another, so a machine that slows down or speeds up between them (this one is shared)
//! moves the ratios by 10-20 %; here drift hits every library of a round alike.
//!
//!   cargo bench --manifest-path benches/peers/Cargo.toml --bench rounds -- [FILTER...] [--rounds N] [--slice-ms MS]
//!
//! FILTER is a workload id or a prefix of one at a `/`: `receive`, `send/client`,
//! `receive/binary/16`, `e2e/echo/16`. The same workloads as criterion's, built by the same
//! code (`inmemory/mod.rs`, `echo/mod.rs`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Throughput;

#[path = "../../common/mod.rs"]
mod common;
mod echo;
mod inmemory;
mod loopback;
mod workload;

use workload::{Workload, OURS, PEERS};

struct Options {
    filters: Vec<String>,
    rounds: usize,
    slice: Duration,
}

fn options() -> Options {
    let mut o = Options {
        filters: Vec::new(),
        rounds: 31,
        slice: Duration::from_millis(10),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a whole number"))
        };
        match arg.as_str() {
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            "--rounds" => o.rounds = value("--rounds").max(1) as usize,
            "--slice-ms" => o.slice = Duration::from_millis(value("--slice-ms").max(1)),
            flag if flag.starts_with("--") => panic!("unknown option {flag}"),
            filter => o.filters.push(filter.to_owned()),
        }
    }
    o
}

fn main() {
    let o = options();
    println!(
        "{} rounds; each library runs for at least {} ms per round; medians; a ratio is the \
         median of the per-round ratios (> 1: wsframe faster), with their range\n",
        o.rounds,
        o.slice.as_millis()
    );
    let mut summary = Vec::new();
    let memory = inmemory::runtime();
    inmemory::build(&memory, &o.filters, &mut |w| summary.extend(run(w, &o)));
    let network = echo::runtime();
    echo::build(&network, &o.filters, &mut |w| summary.extend(run(w, &o)));

    println!("| workload | row | against | ratio (median) | per-round range |");
    println!("|---|---|---|---|---|");
    for line in summary {
        println!("{line}");
    }
}

/// Iterations of `run` and the time they took.
fn time(run: &mut dyn FnMut(u64), iterations: u64) -> Duration {
    let start = Instant::now();
    run(iterations);
    black_box(start.elapsed())
}

/// Runs one workload's rounds, prints its table, returns its summary lines.
fn run(mut w: Workload<'_>, o: &Options) -> Vec<String> {
    let k = w.runs.len();
    // Warm-up, then iterations per slice: doubled until a slice is long enough.
    let iterations: Vec<u64> = w
        .runs
        .iter_mut()
        .map(|(_, run)| {
            run(1);
            let mut n = 1u64;
            loop {
                let t = time(run.as_mut(), n);
                if t >= o.slice {
                    break n;
                }
                n *= 2;
            }
        })
        .collect();
    let mut per_iteration = vec![Vec::with_capacity(o.rounds); k];
    for round in 0..o.rounds {
        for j in 0..k {
            let i = (j + round) % k;
            let t = time(w.runs[i].1.as_mut(), iterations[i]);
            per_iteration[i].push(t.as_secs_f64() / iterations[i] as f64);
        }
    }

    let names: Vec<&str> = w.runs.iter().map(|(name, _)| *name).collect();
    let medians: Vec<f64> = per_iteration.iter().map(|t| median(t.clone())).collect();
    println!("{}", w.id());
    for i in 0..k {
        println!(
            "  {:<24} {:>12} {:>14}",
            names[i],
            duration(medians[i]),
            rate(&w.throughput, medians[i])
        );
    }
    let best_peer = (0..k)
        .filter(|&i| PEERS.contains(&names[i]))
        .min_by(|&a, &b| medians[a].total_cmp(&medians[b]));
    let floors: Vec<usize> = (0..k)
        .filter(|&i| !PEERS.contains(&names[i]) && !names[i].starts_with(OURS))
        .collect();
    let mut lines = Vec::new();
    for ours in (0..k).filter(|&i| names[i].starts_with(OURS)) {
        for other in best_peer.iter().chain(&floors).copied() {
            // Per round: the other's time over ours (> 1: ours is faster).
            let ratios: Vec<f64> = per_iteration[other]
                .iter()
                .zip(&per_iteration[ours])
                .map(|(theirs, mine)| theirs / mine)
                .collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            let mid = median(ratios);
            println!(
                "  {} vs {}: {mid:.2}x ({lo:.2}x to {hi:.2}x)",
                names[ours], names[other]
            );
            lines.push(format!(
                "| {} | {} | {} | {mid:.2}x | {lo:.2}x to {hi:.2}x |",
                w.id(),
                names[ours],
                names[other]
            ));
        }
    }
    println!();
    lines
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn duration(seconds: f64) -> String {
    match seconds {
        s if s >= 1e-3 => format!("{:.3} ms", s * 1e3),
        s if s >= 1e-6 => format!("{:.2} µs", s * 1e6),
        s => format!("{:.1} ns", s * 1e9),
    }
}

fn rate(throughput: &Throughput, seconds: f64) -> String {
    match throughput {
        Throughput::Bytes(b) => {
            let per_second = *b as f64 / seconds;
            match per_second {
                r if r >= (1u64 << 30) as f64 => format!("{:.2} GiB/s", r / (1u64 << 30) as f64),
                r => format!("{:.2} MiB/s", r / (1u64 << 20) as f64),
            }
        }
        Throughput::Elements(e) => format!("{:.2} M/s", *e as f64 / seconds / 1e6),
        other => format!("{other:?}"),
    }
}
