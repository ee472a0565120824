//! The end-to-end workloads: one echo round trip at a time (one message in flight) over real
//! loopback TCP, client and server on the caller's current-thread Tokio runtime, for every
//! library of [`LIBRARIES`]. Payloads of 16 B and 64 KiB, binary; an iteration is one round
//! trip.

use std::hint::black_box;

use bytes::Bytes;
use criterion::Throughput;
use tokio::runtime::Runtime;

use crate::loopback::{spawn_server, Client, LIBRARIES};
use crate::workload::{run, selected, Run, Workload};

/// The payload sizes echoed.
pub const SIZES: [usize; 2] = [16, 64 << 10];

/// The runtime the echo runs on: current-thread, with the IO and time drivers.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Builds the echo workload of every size `filters` selects and hands each to `each`. Every
/// library gets its own server and a connected client, and makes one round trip before it is
/// handed over (proof that the echo works before anything is timed).
pub fn build<'a>(rt: &'a Runtime, filters: &[String], each: &mut dyn FnMut(Workload<'a>)) {
    for size in SIZES {
        if !selected(filters, "e2e/echo", size) {
            continue;
        }
        let payload = Bytes::from(vec![0xa5u8; size]);
        let mut runs: Vec<(&'static str, Run<'a>)> = Vec::new();
        for library in LIBRARIES {
            let mut client = rt.block_on(async {
                let port = spawn_server(library).await;
                let mut client = Client::connect(library, port).await;
                client.round_trip(&payload).await;
                client
            });
            let payload = payload.clone();
            runs.push((
                library,
                run(move || rt.block_on(client.round_trip(black_box(&payload)))),
            ));
        }
        each(Workload {
            group: "e2e/echo",
            size,
            throughput: Throughput::Bytes(size as u64),
            runs,
        });
    }
}
