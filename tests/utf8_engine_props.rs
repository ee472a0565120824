//! Text messages through the engine (RFC 6455 sections 5.6 and 8.1): whatever the
//! fragmentation, the read chunking and the payload sizes (which pick the receive path: the
//! small-message run, the general path, frames spanning reads; ASCII recognised during
//! unmasking or validated after), a valid message arrives intact and an invalid one fails the
//! connection with 1007, exactly as `core::str::from_utf8` judges the whole message.

mod sim;

use proptest::prelude::*;
use sim::*;
use wsframe::{Config, Connection, Event, Instant, ReceiveError};

/// Text with long ASCII runs (so the unmasking pass sees whole ASCII vectors), some multi-byte
/// characters, and sometimes a corrupted byte.
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((0usize..200, any::<char>(), any::<bool>()), 0..12),
        proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(pieces, corrupt)| {
            let mut bytes = Vec::new();
            for (ascii_run, c, cut_short) in pieces {
                bytes.extend(std::iter::repeat_n(
                    b'a' + (ascii_run % 26) as u8,
                    ascii_run,
                ));
                let mut buf = [0u8; 4];
                let encoded = c.encode_utf8(&mut buf).as_bytes();
                // Sometimes only the lead byte: a code point left unfinished, then ASCII.
                let keep = if cut_short { 1 } else { encoded.len() };
                bytes.extend_from_slice(&encoded[..keep]);
            }
            if let (Some((at, b)), false) = (corrupt, bytes.is_empty()) {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_fragmentation_and_chunking_gives_cores_verdict(
        text in message(),
        mut cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        chunk in 1usize..700,
    ) {
        // Fragments at sorted cut points (possibly empty ones), masked as a client sends them.
        let mut points: Vec<usize> = cuts.drain(..).map(|i| i.index(text.len() + 1)).collect();
        points.sort_unstable();
        points.push(text.len());
        let mut wire = Vec::new();
        let mut at = 0;
        for (n, &end) in points.iter().enumerate() {
            let opcode = if n == 0 { 0x1 } else { 0x0 };
            wire.extend(client_frame(n + 1 == points.len(), opcode, &text[at..end]));
            at = end;
        }
        let mut server = Connection::server(Config::default(), Instant::ZERO);
        let mut failure = None;
        for piece in wire.chunks(chunk) {
            match server.receive(Instant::ZERO, piece) {
                Ok(()) => {}
                Err(ReceiveError::Protocol(e)) => {
                    failure = Some(e.code);
                    break;
                }
                Err(other) => panic!("unexpected: {other}"),
            }
        }
        let events = drain_events(&mut server);
        match core::str::from_utf8(&text) {
            Ok(valid) => {
                prop_assert_eq!(failure, None);
                prop_assert_eq!(events, vec![Event::Text(valid.to_owned().into())]);
            }
            Err(_) => {
                prop_assert_eq!(failure, Some(1007));
                prop_assert!(!events.iter().any(|e| matches!(e, Event::Text(_))));
            }
        }
    }
}

/// A fragment that ends inside a code point, then a fragment of ASCII long enough for the
/// unmasking pass to recognise it as ASCII: invalid at once (the lead byte needed a
/// continuation), before the message ends (fail-fast, section 8.1), in one read or byte by
/// byte. The message is never finished here, so only the fail-fast check can catch it.
#[test]
fn ascii_fragment_after_an_unfinished_code_point_fails_fast_with_1007() {
    for ascii_len in [1, 31, 32, 40, 200, 70_000] {
        let mut wire = client_frame(false, 0x1, &[b'x', 0xE2]);
        wire.extend(client_frame(false, 0x0, &vec![b'a'; ascii_len]));
        for chunk in [wire.len(), 7, 1] {
            let mut server = Connection::server(Config::default(), Instant::ZERO);
            let mut code = None;
            for piece in wire.chunks(chunk) {
                if let Err(ReceiveError::Protocol(e)) = server.receive(Instant::ZERO, piece) {
                    code = Some(e.code);
                    break;
                }
            }
            assert_eq!(code, Some(1007), "ascii_len {ascii_len} chunk {chunk}");
        }
    }
}
