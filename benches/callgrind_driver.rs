//! A fixed-work driver for `benches/callgrind.sh`: instruction counts per received message.
//!
//! `callgrind_driver receive <payload size> <messages> [binary|text]` builds `<messages>` masked
//! client frames, then feeds them to one server engine in 64 KiB reads and takes every event
//! (exactly `common::wsframe_receive`, as the criterion benchmark does). The script runs it at
//! two message counts and divides the difference in instructions by the difference in
//! messages, so setup (building the input, creating the engine) cancels out.
//!
//! `callgrind_driver send <payload size> <messages> [server|client]` does the same for the send
//! path (`common::wsframe_send`).
//!
//! Under `cargo bench` (no arguments of this form) it does nothing.

use wsframe::{Connection, Instant};

mod common;
use common::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, size, messages, rest @ ..] = &args[..] else {
        return;
    };
    let size: usize = size.parse().expect("payload size");
    let messages: usize = messages.parse().expect("message count");
    if what == "send" {
        // `callgrind_driver send <size> <messages> [server|client]`: `common::wsframe_send`.
        let mut conn = match rest.first().map(String::as_str) {
            Some("client") => client_engine(),
            _ => Connection::server(config(), Instant::ZERO),
        };
        let payload = static_bytes(payload(size, Kind::Binary, 1));
        let written = wsframe_send(&mut conn, &payload, messages);
        println!("sent {messages} messages of {size} bytes ({written} bytes)");
        return;
    }
    if what != "receive" {
        return;
    }
    // `binary-lent`: binary messages taken with `poll_event_ref` (`common::wsframe_receive_lent`).
    let (kind, lent) = match rest.first().map(String::as_str) {
        Some("text") => (Kind::Ascii, false),
        Some("binary-lent") => (Kind::Binary, true),
        _ => (Kind::Binary, false),
    };
    // One buffer of about 1 MiB whatever `messages` is (so its cost cancels out between the
    // two runs), fed repeatedly: the same bytes the criterion benchmark uses.
    let per_buffer = ((1 << 20) / (size + 14)).max(1);
    let input = client_stream(size, per_buffer, kind);
    let mut server = Connection::server(config(), Instant::ZERO);
    let mut left = messages;
    let mut seen = 0;
    while left > 0 {
        let n = per_buffer.min(left);
        let bytes = if n == per_buffer {
            &input[..]
        } else {
            // A whole number of frames: every frame of this workload has the same length.
            &input[..n * (input.len() / per_buffer)]
        };
        seen += if lent {
            wsframe_receive_lent(&mut server, bytes)
        } else {
            wsframe_receive(&mut server, bytes)
        };
        left -= n;
    }
    assert_eq!(seen, messages);
    println!("received {seen} messages of {size} bytes");
}
