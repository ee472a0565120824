//! A fixed number of echo round trips over loopback for one library, for instruction counts:
//! `benches/callgrind_e2e.sh` runs it under callgrind at two counts and divides the
//! difference, so the setup (runtime, listener, handshake) cancels out and what is left is
//! the user-space cost of one round trip, client and server together (system calls count as
//! one instruction each; their number is the same for every library here, one write, one
//! read and one epoll wait per side).
//!
//!   e2e_count <library> <round trips> <payload bytes>
//!
//! With `E2E_CLIENT_SPAWNED=1` the client's loop runs in a spawned task instead of in
//! `block_on`. On a current-thread runtime a `block_on` future woken by another task (the
//! `wsframe` row's connection task, through its channel) makes Tokio poll its driver once more
//! (`epoll_wait` with a zero timeout) before polling it: one system call per round trip that a
//! spawned task does not pay.

use bytes::Bytes;

mod loopback;
use loopback::{spawn_server, Client};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, library, count, size] = &args[..] else {
        panic!("usage: e2e_count <library> <round trips> <payload bytes>");
    };
    let library: &'static str = Box::leak(library.clone().into_boxed_str());
    let count: usize = count.parse().expect("round trips");
    let payload = Bytes::from(vec![0xa5u8; size.parse().expect("payload bytes")]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let port = spawn_server(library).await;
        let mut client = Client::connect(library, port).await;
        let round_trips = async move {
            for _ in 0..count {
                client.round_trip(&payload).await;
            }
        };
        if std::env::var_os("E2E_CLIENT_SPAWNED").is_some() {
            tokio::spawn(round_trips).await.expect("the client task");
        } else {
            round_trips.await;
        }
    });
}
