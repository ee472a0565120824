//! The single outbound queue under stress: 200 text sends interleaved at random with 200
//! inbound PINGs and partial writes. Everything written is parsed by an independent parser.

mod sim;

use proptest::prelude::*;
use sim::*;
use wsframe::{Config, Connection, Instant, PreparedMessage};

#[derive(Debug, Clone)]
enum Step {
    Send,
    /// The same message through `send_prepared_through`, whose write takes at most this many
    /// bytes (the rest is queued).
    SendThrough(usize),
    Ping,
    /// Write at most this many bytes.
    Write(usize),
    /// `release_idle_memory`, as an adapter calls it before it sleeps: it may free only what
    /// is empty, never change what goes out.
    Release,
    /// `trim_memory`, as a busy connection's adapter calls it before it sleeps: the same.
    Trim,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    // 200 sends and 200 pings in a random order, with writes of random sizes sprinkled in.
    let base: Vec<bool> = (0..400).map(|i| i < 200).collect();
    (
        Just(base).prop_shuffle(),
        prop::collection::vec(1usize..300, 400),
    )
        .prop_map(|(order, writes)| {
            let mut out = Vec::new();
            for (is_send, w) in order.into_iter().zip(writes) {
                out.push(match (is_send, w % 2) {
                    (false, _) => Step::Ping,
                    (true, 0) => Step::SendThrough(w / 2),
                    (true, _) => Step::Send,
                });
                if w % 3 == 0 {
                    out.push(Step::Write(w));
                }
                if w % 4 == 0 {
                    out.push(Step::Release);
                }
                if w % 5 == 0 {
                    out.push(Step::Trim);
                }
            }
            out
        })
}

fn message_text(i: u32) -> String {
    format!("message {i:03} {}", "x".repeat(i as usize % 90))
}

fn write_some(conn: &mut Connection, budget: usize, wire: &mut Vec<u8>) {
    let mut left = budget;
    while left > 0 {
        let Some(t) = conn.poll_transmit() else {
            return;
        };
        let n = write_at_most(wire, left, t.header, t.payload);
        conn.advance_transmit(n);
        left -= n;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn interleaved_sends_and_pings_stay_well_framed(steps in steps(), fragment in 8usize..64) {
        let config = Config {
            max_send_fragment: fragment,
            ping_interval: None,
            idle_timeout: None,
            ..Config::default()
        };
        let mut server = Connection::server(config, Instant::ZERO);
        let mut wire = Vec::new();
        let mut sent = 0u32;
        let mut pinged = 0u32;
        // Each PING's payload is its sequence number; a PONG must answer the latest PING
        // received before it was started.
        let mut pings_before_write: Vec<u32> = Vec::new();
        for step in steps {
            match step {
                Step::Send => {
                    server.send_text(message_text(sent)).unwrap();
                    sent += 1;
                }
                Step::SendThrough(limit) => {
                    let message = PreparedMessage::text(message_text(sent));
                    server.send_prepared_through(&message, |header, payload| {
                        write_at_most(&mut wire, limit, header, payload)
                    }).unwrap();
                    sent += 1;
                }
                Step::Ping => {
                    server.receive(Instant::ZERO, &client_frame(true, 9, &pinged.to_be_bytes())).unwrap();
                    pings_before_write.push(pinged);
                    pinged += 1;
                }
                Step::Write(n) => write_some(&mut server, n, &mut wire),
                Step::Release => server.release_idle_memory(),
                Step::Trim => server.trim_memory(),
            }
        }
        write_some(&mut server, usize::MAX, &mut wire);
        let frames = parse_stream(&wire).map_err(TestCaseError::fail)?;

        // Texts arrive whole and in order; fragments carry no foreign bytes.
        let mut messages = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        let mut pongs = Vec::new();
        for f in &frames {
            prop_assert!(!f.masked, "server frames are never masked");
            match f.opcode {
                1 => {
                    prop_assert!(current.is_none(), "text frame inside an open message");
                    current = Some(f.payload.clone());
                }
                0 => current.as_mut().expect("continuation without start").extend_from_slice(&f.payload),
                10 => pongs.push(u32::from_be_bytes(f.payload[..].try_into().unwrap())),
                other => prop_assert!(false, "unexpected opcode {}", other),
            }
            if f.fin && f.opcode != 10 {
                messages.push(String::from_utf8(current.take().unwrap()).unwrap());
            }
        }
        let expected: Vec<String> = (0..sent).map(message_text).collect();
        prop_assert_eq!(messages, expected);
        // PONGs answer PINGs in order, coalesced: strictly increasing, the last answers the
        // last PING, and none answers a PING that was never sent.
        prop_assert!(pongs.windows(2).all(|w| w[0] < w[1]), "{:?}", pongs);
        prop_assert_eq!(pongs.last().copied(), pings_before_write.last().copied());
        prop_assert_eq!(server.queued_bytes(), 0);
    }
}
