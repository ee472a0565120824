//! End-to-end: one echo round trip at a time (one message in flight) over real loopback TCP,
//! client and server in one process on a current-thread Tokio runtime, for wsframe's two Tokio
//! adapters (a task per connection; in the caller's task), tokio-tungstenite and fastwebsockets, and the raw-TCP floor (the same bytes with
//! no WebSocket). Payloads of 16 B and 64 KiB, binary. Criterion's time is one round trip.
//!
//!   cargo bench --manifest-path benches/peers/Cargo.toml --bench e2e -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

mod loopback;
use loopback::{spawn_server, Client, LIBRARIES};

const SIZES: [usize; 2] = [16, 64 << 10];

fn echo(c: &mut Criterion) {
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("e2e/echo");
    for size in SIZES {
        let payload = Bytes::from(vec![0xa5u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for library in LIBRARIES {
            let mut client = runtime.block_on(async {
                let port = spawn_server(library).await;
                let mut client = Client::connect(library, port).await;
                // Proves the echo works before timing it.
                client.round_trip(&payload).await;
                client
            });
            group.bench_function(BenchmarkId::new(library, size), |b| {
                b.iter(|| runtime.block_on(client.round_trip(black_box(&payload))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, echo);
criterion_main!(benches);
