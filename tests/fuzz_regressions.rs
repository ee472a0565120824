//! Crashes found by the fuzz targets in `fuzz/`, kept as regression tests.
//!
//! The harness modules are included by path, so each case replays through exactly the code
//! that found it (minus libFuzzer and the counting allocator). Each finding also has a small
//! hand-written test stating the bug in plain API calls. The seed corpora are replayed too, as
//! a cheap smoke test of the harnesses themselves.

#[path = "../fuzz/src/alloc_count.rs"]
mod alloc_count;
#[path = "../fuzz/src/connection.rs"]
mod connection;
#[path = "../fuzz/src/frame_parse.rs"]
mod frame_parse;
#[path = "../fuzz/src/handshake.rs"]
mod handshake;
#[path = "../fuzz/src/wire.rs"]
mod wire;

use wsframe::{Config, Connection, DataKind, Delivery, Event, Instant};

/// Replays every committed seed of a target through its harness.
fn replay_seeds(target: &str, run: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("seed-") {
            run(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn frame_parse_seeds() {
    replay_seeds("frame_parse", frame_parse::run);
}

/// A text frame masked with `key` (server-bound), `fin` as given, opcode `op`.
fn masked(op: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![(u8::from(fin) << 7) | op, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

// ----- frame_parse finding 1: streamed text labelled Binary in its last chunk ---------------

/// Streaming delivery, a fragmented text message: the last chunk (the final continuation
/// frame) was reported with `kind: Binary`. `dispatch` cleared the open message before
/// `deliver_chunk` looked up the continuation's kind in it.
#[test]
fn streamed_text_keeps_its_kind_to_the_last_chunk() {
    let config = Config {
        delivery: Delivery::Streaming,
        ..Config::default()
    };
    let mut server = Connection::server(config, Instant::ZERO);
    let key = [1, 2, 3, 4];
    let mut input = masked(0x1, false, b"hel", key);
    input.extend(masked(0x0, false, b"lo ", key));
    input.extend(masked(0x0, true, b"world", key));
    server.receive(Instant::ZERO, &input).unwrap();
    let mut chunks = Vec::new();
    while let Some(event) = server.poll_event() {
        match event {
            Event::Chunk(c) => chunks.push((c.kind, c.first, c.last, c.data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(chunks.len(), 3);
    for (kind, ..) in &chunks {
        assert_eq!(*kind, DataKind::Text);
    }
    assert!(chunks[0].1 && !chunks[1].1 && !chunks[2].1);
    assert!(!chunks[0].2 && !chunks[1].2 && chunks[2].2);
}

#[test]
fn frame_parse_crash_streamed_text_kind() {
    frame_parse::run(include_bytes!(
        "../fuzz/regressions/frame_parse/streamed-text-kind"
    ));
}

#[test]
fn connection_seeds() {
    replay_seeds("connection", connection::run);
}

#[test]
fn handshake_seeds() {
    replay_seeds("handshake", handshake::run);
}
