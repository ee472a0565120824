//! wsframe's own benchmarks: receive (binary and text), send (server role without copying,
//! client role with masking, prepared fan-out), and the physical limits (memcpy, plain XOR, a
//! fused header-walk-and-copy-unmask loop) over the same bytes.
//!
//! `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`
//!
//! The comparison with tungstenite, tokio-websockets and fastwebsockets is a separate package
//! (`benches/peers/`), so that `cargo test` never builds them; see `benches/RESULTS.md`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsframe::{Connection, Instant};

mod common;
use common::*;

fn receive(c: &mut Criterion) {
    for kind in [Kind::Binary, Kind::Ascii, Kind::Mixed] {
        let mut g = c.benchmark_group(format!("receive/{}", kind.name()));
        for size in SIZES {
            // Text at the sizes where validation could matter; all sizes for binary.
            if kind == Kind::Mixed && size < 1024 {
                continue;
            }
            let count = count_for(size);
            let input = client_stream(size, count, kind);
            g.throughput(Throughput::Bytes((size * count) as u64));
            let mut server = Connection::server(config(), Instant::ZERO);
            g.bench_with_input(BenchmarkId::new("wsframe", size), &input, |b, input| {
                b.iter(|| {
                    let n = wsframe_receive(&mut server, input);
                    debug_assert_eq!(n, count);
                    n
                })
            });
        }
        g.finish();
    }
}

fn limits(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits");
    for size in SIZES {
        let count = count_for(size);
        let input = client_stream(size, count, Kind::Binary);
        g.throughput(Throughput::Bytes((size * count) as u64));
        let mut dst = vec![0u8; input.len()];
        g.bench_with_input(BenchmarkId::new("memcpy", size), &input, |b, input| {
            b.iter(|| limit_memcpy(&mut dst, input))
        });
        let mut buf = input.clone();
        g.bench_with_input(BenchmarkId::new("xor", size), &size, |b, _| {
            b.iter(|| limit_xor(&mut buf, black_box([1, 2, 3, 4])))
        });
        let mut out = vec![0u8; input.len()];
        g.bench_with_input(BenchmarkId::new("fused", size), &input, |b, input| {
            b.iter(|| limit_fused(input, &mut out))
        });
    }
    g.finish();
}

fn send(c: &mut Criterion) {
    for role in ["server", "client"] {
        let mut g = c.benchmark_group(format!("send/{role}"));
        for size in SIZES {
            let count = count_for(size);
            let payload = static_bytes(payload(size, Kind::Binary, 1));
            let mut conn = match role {
                "server" => Connection::server(config(), Instant::ZERO),
                _ => client_engine(),
            };
            if role == "server" {
                // The server path must hand out the caller's bytes, not a copy.
                conn.send_binary(payload.clone()).unwrap();
                let t = conn.poll_transmit().unwrap();
                assert_eq!(t.payload.as_ptr(), payload.as_ptr(), "server send copied");
                let n = t.len();
                conn.advance_transmit(n);
            }
            g.throughput(Throughput::Bytes((size * count) as u64));
            g.bench_with_input(BenchmarkId::new("wsframe", size), &payload, |b, payload| {
                b.iter(|| wsframe_send(&mut conn, payload, count))
            });
        }
        g.finish();
    }
}

fn fanout(c: &mut Criterion) {
    const ENGINES: usize = 1000;
    let mut g = c.benchmark_group("fanout-1000");
    for size in [125usize, 1024, 16 << 10] {
        let payload = Bytes::from(payload(size, Kind::Binary, 2));
        let mut engines: Vec<Connection> = (0..ENGINES)
            .map(|_| Connection::server(config(), Instant::ZERO))
            .collect();
        g.throughput(Throughput::Elements(ENGINES as u64));
        g.bench_with_input(BenchmarkId::new("wsframe", size), &payload, |b, payload| {
            b.iter(|| wsframe_fan_out(&mut engines, payload))
        });
        g.bench_with_input(
            BenchmarkId::new("wsframe-queued", size),
            &payload,
            |b, payload| b.iter(|| wsframe_fan_out_queued(&mut engines, payload)),
        );
    }
    g.finish();
}

criterion_group!(benches, receive, send, fanout, limits);
criterion_main!(benches);
