//! Engine behaviour over simulated links and virtual time: keepalive, dead peers, the close
//! handshake and its timeout, ordering at close, backpressure, fan-out, streaming.

mod sim;

use bytes::Bytes;
use core::time::Duration;
use sim::*;
use wsframe::{
    Config, Connection, Delivery, EndReason, Event, Instant, PreparedMessage, SendError, Unsent,
};

fn quiet() -> Config {
    Config {
        ping_interval: None,
        idle_timeout: None,
        ..Config::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn keepalive_keeps_a_healthy_link_up_and_measures_rtt() {
    let mut pair = Pair::new(quiet(), quiet().with_keepalive(ms(100)));
    pair.run_for(Duration::from_secs(5));
    assert!(
        ended(&pair.server.events).is_none(),
        "{:?}",
        pair.server.events
    );
    let pings = pair
        .client
        .events
        .iter()
        .filter(|e| matches!(e, Event::Ping(_)))
        .count();
    // One PING per interval of silence: 5 s / 100 ms.
    assert_eq!(pings, 50);
    // In-memory links answer at once, in virtual time, so the round trip is zero; what
    // matters is that it was measured from a matching PONG.
    assert_eq!(pair.server.conn.stats().last_rtt, Some(Duration::ZERO));
}

#[test]
fn dead_peer_is_declared_at_the_idle_timeout_not_before() {
    let mut pair = Pair::new(quiet(), quiet().with_keepalive(ms(100)));
    pair.run_for(ms(1000));
    let last_heard = pair.now;
    // Half-open: the client's bytes no longer arrive, though the server's writes "succeed".
    pair.client_to_server = false;
    pair.run_until(last_heard + ms(299));
    assert!(ended(&pair.server.events).is_none(), "declared dead early");
    pair.run_until(last_heard + ms(300));
    let end = ended(&pair.server.events).expect("declared dead at 3 x interval");
    assert_eq!(end.reason, EndReason::IdleTimeout(ms(300)));
    assert_eq!(end.to_string(), "idle timeout (nothing received for 300ms)");
    // Two keepalive PINGs went unanswered before that.
    let frames = parse_stream(&pair.server.wrote).unwrap();
    let pings_after = frames.iter().filter(|f| f.opcode == 9).count();
    assert!(pings_after >= 12, "{pings_after}");
}

#[test]
fn any_inbound_frame_is_proof_of_life() {
    let mut server = Connection::server(quiet().with_keepalive(ms(100)), Instant::ZERO);
    for t in (50..=1000).step_by(50) {
        let now = Instant::from_millis(t);
        server.handle_timeout(now);
        server
            .receive(now, &client_frame(true, 2, b"data"))
            .unwrap();
    }
    server.handle_timeout(Instant::from_millis(1000));
    assert!(!drain_events(&mut server)
        .iter()
        .any(|e| matches!(e, Event::Ended(_))));
    // Data every 50 ms means no keepalive PING was needed.
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    assert!(frames.iter().all(|f| f.opcode != 9), "{frames:?}");
}

#[test]
fn close_that_never_comes_ends_at_the_close_timeout() {
    let config = Config {
        close_timeout: ms(250),
        ..quiet()
    };
    let mut pair = Pair::new(quiet(), config);
    pair.client.alive = false; // never reads, never answers
    pair.server.conn.close(1001, "shutting down").unwrap();
    pair.run_until(Instant::from_millis(249));
    assert!(ended(&pair.server.events).is_none());
    pair.run_until(Instant::from_millis(250));
    let end = ended(&pair.server.events).expect("ended at the close timeout");
    assert_eq!(end.reason, EndReason::CloseTimeout);
    assert_eq!(pair.server.conn.poll_timeout(), None);
    assert!(pair.server.conn.poll_transmit().is_none());
}

#[test]
fn clean_close_initiated_by_either_side() {
    let mut pair = Pair::new(quiet(), quiet());
    pair.client.conn.close(1000, "bye").unwrap();
    pair.pump();
    let server_end = ended(&pair.server.events).unwrap();
    let client_end = ended(&pair.client.events).unwrap();
    assert_eq!(
        server_end.reason,
        EndReason::ClosedByPeer(Some(wsframe::CloseFrame {
            code: 1000,
            reason: "bye".into()
        }))
    );
    assert!(
        matches!(&client_end.reason, EndReason::ClosedLocally { sent, reply: Some(r) }
        if sent.code == 1000 && r.code == 1000)
    );
    assert!(server_end.is_clean() && client_end.is_clean());
    assert!(server_end.to_string().starts_with("closed 1000"));
    // Echo carries the code only (section 5.5.1 permits an empty reason).
    let frames = parse_stream(&pair.server.wrote).unwrap();
    assert_eq!(frames.last().unwrap().payload, vec![0x03, 0xe8]);
}

#[test]
fn data_queued_before_close_goes_out_before_the_close_frame() {
    let mut pair = Pair::new(quiet(), quiet());
    for i in 0..50 {
        pair.server.conn.send_text(format!("m{i}")).unwrap();
    }
    pair.server.conn.close(1000, "done").unwrap();
    assert!(matches!(
        pair.server.conn.send_text("late"),
        Err(SendError::Closing { .. })
    ));
    pair.pump();
    let got = texts(&pair.client.events);
    assert_eq!(got, (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let close_at = pair
        .client
        .events
        .iter()
        .position(|e| matches!(e, Event::Close(_)))
        .unwrap();
    let last_text = pair
        .client
        .events
        .iter()
        .rposition(|e| matches!(e, Event::Text(_)))
        .unwrap();
    assert!(last_text < close_at);
    assert_eq!(
        ended(&pair.server.events).unwrap().unsent,
        Unsent::default()
    );
}

#[test]
fn replies_to_messages_before_the_peers_close_go_out_before_the_echo() {
    // A request/response peer writes 100 requests and its Close in one write.
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let mut wire = Vec::new();
    for i in 0..100 {
        wire.extend(client_frame(true, 1, format!("req {i}").as_bytes()));
    }
    wire.extend(client_frame(true, 8, &[0x03, 0xe8]));
    server.receive(Instant::ZERO, &wire).unwrap();
    while let Some(event) = server.poll_event() {
        if let Event::Text(t) = event {
            server.send_text(format!("answer to {}", &*t)).unwrap();
        }
    }
    let frames = parse_stream(&drain_transmit(&mut server, 7)).unwrap();
    assert_eq!(frames.len(), 101);
    for (i, f) in frames[..100].iter().enumerate() {
        assert_eq!(f.payload, format!("answer to req {i}").into_bytes());
    }
    assert_eq!(frames[100].opcode, 8);
    let end = ended(&drain_events(&mut server)).cloned().unwrap();
    assert!(matches!(end.reason, EndReason::ClosedByPeer(Some(ref c)) if c.code == 1000));
}

#[test]
fn echo_goes_out_at_the_close_timeout_if_the_application_never_takes_the_close() {
    let mut server = Connection::server(
        Config {
            close_timeout: ms(100),
            ..quiet()
        },
        Instant::ZERO,
    );
    server
        .receive(Instant::ZERO, &client_frame(true, 8, &[0x03, 0xe8]))
        .unwrap();
    assert!(
        server.poll_transmit().is_none(),
        "echo waits for the application"
    );
    assert_eq!(server.poll_timeout(), Some(Instant::from_millis(100)));
    server.handle_timeout(Instant::from_millis(100));
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (8, &[0x03, 0xe8][..])
    );
}

#[test]
fn abnormal_end_is_reported_without_an_invented_code() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    server.send_text("pending").unwrap();
    server.transport_closed(Instant::from_millis(5));
    let end = ended(&drain_events(&mut server)).cloned().unwrap();
    assert!(matches!(end.reason, EndReason::Abnormal(_)));
    assert!(!end.is_clean());
    assert_eq!(
        end.unsent,
        Unsent {
            messages: 1,
            bytes: 7
        }
    );
    assert_eq!(
        end.to_string(),
        "abnormal: transport closed without a Close frame; unsent 1 messages (7 bytes)"
    );
}

/// A quiet server engine with outbound budget `max` and low-water mark `low`.
fn server_with_budget(max: usize, low: usize) -> Connection {
    let config = Config {
        max_outbound_bytes: max,
        outbound_low_water: low,
        ..quiet()
    };
    Connection::server(config, Instant::ZERO)
}

#[test]
fn backpressure_refuses_and_hands_back_then_signals_writable() {
    let mut server = server_with_budget(1000, 300);
    // Each message counts its payload and 64 bytes: 664 + 336 fill the budget exactly.
    server.send_binary(vec![1u8; 600]).unwrap();
    server.send_binary(vec![2u8; 272]).unwrap();
    let refused = server.send_binary(Bytes::from(vec![3u8; 10])).unwrap_err();
    match &refused {
        SendError::Backpressure {
            payload,
            queued,
            budget,
        } => {
            assert_eq!((payload.len(), *queued, *budget), (10, 1000, 1000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(refused.into_payload().unwrap(), vec![3u8; 10]);
    assert_eq!(server.queued_bytes(), 872);
    assert_eq!(server.outbound_charge(), 1000);
    // Control replies are never refused by the data budget.
    server
        .receive(Instant::ZERO, &client_frame(true, 9, b"still there?"))
        .unwrap();
    // The PONG overtakes the queued (not yet started) data.
    let t = server.poll_transmit().unwrap();
    assert_eq!(t.header, &[0x8a, 12]);
    let n = t.len();
    server.advance_transmit(n);
    assert!(!drain_events(&mut server).contains(&Event::Writable));
    // Writing the 600-byte message leaves 336 > low water: no signal yet.
    let n = server.poll_transmit().unwrap().len();
    server.advance_transmit(n);
    assert!(!drain_events(&mut server).contains(&Event::Writable));
    let n = server.poll_transmit().unwrap().len();
    server.advance_transmit(n);
    assert!(drain_events(&mut server).contains(&Event::Writable));
    assert_eq!(server.queued_bytes(), 0);
}

/// The budget bounds the memory of tiny and empty messages too: each counts 64 bytes besides
/// its payload. (The frame_parse fuzzer found an echo of 1-byte streamed chunks holding 36
/// bytes of queue per byte received, and empty messages were never refused at all.)
#[test]
fn tiny_and_empty_messages_count_against_the_budget() {
    let mut server = server_with_budget(640, 128);
    for _ in 0..10 {
        server.send_binary(Bytes::new()).unwrap();
    }
    assert!(matches!(
        server.send_binary(Bytes::new()),
        Err(SendError::Backpressure { queued: 640, .. })
    ));
    drain_transmit(&mut server, usize::MAX);
    assert_eq!(server.outbound_charge(), 0);
    assert!(drain_events(&mut server).contains(&Event::Writable));
    for _ in 0..9 {
        server.send_binary(vec![7u8]).unwrap();
    }
    assert_eq!(server.outbound_charge(), 9 * 65);
    assert!(server.send_binary(vec![7u8]).is_err());
    assert_eq!(server.queued_bytes(), 9);
}

#[test]
fn a_ping_flood_costs_one_pong() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let mut wire = Vec::new();
    for i in 0..10_000u32 {
        wire.extend(client_frame(true, 9, &i.to_be_bytes()));
    }
    server.receive(Instant::ZERO, &wire).unwrap();
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    assert_eq!(
        frames.len(),
        1,
        "only the latest PING is answered (section 5.5.3)"
    );
    assert_eq!(frames[0].payload, 9_999u32.to_be_bytes());
}

#[test]
fn large_messages_are_fragmented_so_a_pong_waits_behind_one_fragment() {
    let config = Config {
        max_send_fragment: 1024,
        ..quiet()
    };
    let mut server = Connection::server(config, Instant::ZERO);
    server.send_binary(vec![7u8; 10 * 1024]).unwrap();
    // Start the first fragment, write half of it, then a PING arrives.
    let mut wire = Vec::new();
    let t = server.poll_transmit().unwrap();
    let mut first = t.header.to_vec();
    first.extend_from_slice(t.payload);
    let half = first.len() / 2;
    wire.extend_from_slice(&first[..half]);
    server.advance_transmit(half);
    server
        .receive(Instant::ZERO, &client_frame(true, 9, b"p"))
        .unwrap();
    // The rest of the frame in flight comes next, never the PONG.
    let rest = server.poll_transmit().unwrap();
    assert!(!rest.starts_frame);
    assert_eq!(rest.len(), first.len() - half);
    wire.extend(drain_transmit(&mut server, usize::MAX));
    let frames = parse_stream(&wire).unwrap();
    let kinds: Vec<(u8, bool, usize)> = frames
        .iter()
        .map(|f| (f.opcode, f.fin, f.payload.len()))
        .collect();
    assert_eq!(kinds[0], (2, false, 1024));
    assert_eq!(
        kinds[1],
        (10, true, 1),
        "PONG right after the fragment in flight"
    );
    assert_eq!(kinds[2..].len(), 9);
    assert!(kinds[2..10].iter().all(|k| *k == (0, false, 1024)));
    assert_eq!(kinds[10], (0, true, 1024));
}

#[test]
fn prepared_messages_share_one_payload_across_connections() {
    let message = PreparedMessage::text(String::from("tick"));
    let mut servers: Vec<Connection> = (0..1000)
        .map(|_| Connection::server(quiet(), Instant::ZERO))
        .collect();
    for s in &mut servers {
        s.send_prepared(&message).unwrap();
    }
    for s in &mut servers {
        let t = s.poll_transmit().unwrap();
        assert_eq!((t.header, t.payload), (&[0x81, 4][..], &b"tick"[..]));
    }
    // A client engine masks its own copy, as section 5.3 requires.
    let mut client = Connection::client(quiet(), counter_random(), Instant::ZERO);
    client.send_prepared(&message).unwrap();
    let frames = parse_stream(&drain_transmit(&mut client, usize::MAX)).unwrap();
    assert!(frames[0].masked);
    assert_eq!(frames[0].payload, b"tick");
}

#[test]
fn prepared_messages_written_through_an_idle_connection_skip_the_queue() {
    let payload = Bytes::from(vec![7u8; 300]);
    let message = PreparedMessage::binary(payload.clone());
    let mut queued = Connection::server(quiet(), Instant::ZERO);
    queued.send_prepared(&message).unwrap();
    let expected = drain_transmit(&mut queued, usize::MAX);

    let mut server = Connection::server(quiet(), Instant::ZERO);
    let mut wire = Vec::new();
    let payload_lent = core::cell::Cell::new(false);
    server
        .send_prepared_through(&message, |header, lent| {
            payload_lent.set(core::ptr::eq(lent.as_ptr(), payload.as_ptr()));
            write_at_most(&mut wire, usize::MAX, header, lent)
        })
        .unwrap();
    assert!(payload_lent.get(), "the payload is lent, not copied");
    assert_eq!(wire, expected);
    assert!(server.is_transmit_idle());
    assert_eq!(server.queued_bytes(), 0);
    let stats = server.stats();
    assert_eq!(
        (stats.bytes_out, stats.frames_out, stats.messages_out),
        (expected.len() as u64, 1, 1)
    );
}

#[test]
fn a_pong_waits_behind_the_rest_of_a_partly_written_through_frame() {
    // Section 5.5: control frames may not land inside a frame. Cut the written-through frame
    // anywhere (inside the header, at its end, inside the payload, nothing at all): the rest
    // goes out first, then the PONG.
    let message = PreparedMessage::text(String::from("x").repeat(200));
    let mut queued = Connection::server(quiet(), Instant::ZERO);
    queued.send_prepared(&message).unwrap();
    let whole = drain_transmit(&mut queued, usize::MAX);
    for cut in [0, 1, 3, 4, 5, 150, whole.len() - 1] {
        let mut server = Connection::server(quiet(), Instant::ZERO);
        let mut wire = Vec::new();
        server
            .send_prepared_through(&message, |header, payload| {
                write_at_most(&mut wire, cut, header, payload)
            })
            .unwrap();
        assert_eq!(wire.len(), cut);
        assert!(!server.is_transmit_idle(), "cut {cut}: the rest is queued");
        server
            .receive(Instant::ZERO, &client_frame(true, 9, b"are you there"))
            .unwrap();
        wire.extend(drain_transmit(&mut server, 7));
        let frames = parse_stream(&wire).unwrap();
        let kinds: Vec<(u8, usize)> = frames.iter().map(|f| (f.opcode, f.payload.len())).collect();
        assert_eq!(kinds, [(1, 200), (10, 13)], "cut {cut}");
        assert_eq!(&wire[..whole.len()], &whole[..], "cut {cut}");
        let stats = server.stats();
        assert_eq!((stats.frames_out, stats.messages_out), (2, 1), "cut {cut}");
        assert_eq!(stats.bytes_out, wire.len() as u64, "cut {cut}");
        assert_eq!(server.queued_bytes(), 0, "cut {cut}");
    }
}

#[test]
fn write_through_takes_the_queue_when_anything_waits_or_the_frame_must_be_masked() {
    let first = PreparedMessage::text(String::from("first"));
    let second = PreparedMessage::text(String::from("second"));
    let never = |_: &[u8], _: &[u8]| -> usize { panic!("written through past the queue") };

    // Something queued: the message goes behind it.
    let mut server = Connection::server(quiet(), Instant::ZERO);
    server.send_prepared(&first).unwrap();
    server.send_prepared_through(&second, never).unwrap();
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    let payloads: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
    assert_eq!(payloads, [&b"first"[..], &b"second"[..]]);

    // A PONG owed: it goes first.
    let mut server = Connection::server(quiet(), Instant::ZERO);
    server
        .receive(Instant::ZERO, &client_frame(true, 9, b"p"))
        .unwrap();
    server.send_prepared_through(&first, never).unwrap();
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    assert_eq!(frames.iter().map(|f| f.opcode).collect::<Vec<_>>(), [10, 1]);

    // Longer than a fragment: fragmented by the queue.
    let mut server = Connection::server(
        Config {
            max_send_fragment: 4,
            ..quiet()
        },
        Instant::ZERO,
    );
    server.send_prepared_through(&second, never).unwrap();
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    assert_eq!(frames.len(), 2);

    // A client masks its own copy (section 5.3).
    let mut client = Connection::client(quiet(), counter_random(), Instant::ZERO);
    client.send_prepared_through(&first, never).unwrap();
    let frames = parse_stream(&drain_transmit(&mut client, usize::MAX)).unwrap();
    assert!(frames[0].masked);
    assert_eq!(frames[0].payload, b"first");

    // Closing: refused like `send_prepared`, nothing written.
    let mut server = Connection::server(quiet(), Instant::ZERO);
    server.close(1000, "bye").unwrap();
    drain_transmit(&mut server, usize::MAX);
    assert!(matches!(
        server.send_prepared_through(&first, never),
        Err(SendError::Closing { .. })
    ));
}

#[test]
fn streaming_delivery_hands_out_chunks_as_they_arrive() {
    let config = Config {
        delivery: Delivery::Streaming,
        ..quiet()
    };
    let mut server = Connection::server(config, Instant::ZERO);
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut wire = client_frame(false, 2, &payload[..60_000]);
    wire.extend(client_frame(true, 0, &payload[60_000..]));
    let mut got = Vec::new();
    let mut markers = Vec::new();
    for piece in wire.chunks(7000) {
        server.receive(Instant::ZERO, piece).unwrap();
        for e in drain_events(&mut server) {
            let Event::Chunk(c) = e else { panic!("{e:?}") };
            markers.push((c.first, c.last));
            got.extend_from_slice(&c.data);
        }
    }
    assert_eq!(got, payload);
    assert_eq!(markers.first(), Some(&(true, false)));
    assert_eq!(markers.last(), Some(&(false, true)));
    assert_eq!(markers.iter().filter(|m| m.0).count(), 1);
    assert!(
        markers.len() > 10,
        "delivered progressively: {}",
        markers.len()
    );
}

#[test]
fn message_timeout_fails_a_slow_fragmented_message_with_1008() {
    let config = Config {
        message_timeout: Some(ms(500)),
        ..quiet()
    };
    let mut server = Connection::server(config, Instant::ZERO);
    server
        .receive(Instant::ZERO, &client_frame(false, 1, b"part"))
        .unwrap();
    assert_eq!(server.poll_timeout(), Some(Instant::from_millis(500)));
    server.handle_timeout(Instant::from_millis(500));
    let frames = parse_stream(&drain_transmit(&mut server, usize::MAX)).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0].payload[..2], &1008u16.to_be_bytes());
    let end = ended(&drain_events(&mut server)).cloned().unwrap();
    assert!(end
        .to_string()
        .starts_with("protocol error 1008: fragmented message not finished"));
}

/// A failed connection whose Close cannot be written (the peer stopped reading) and whose peer
/// then stays silent past the idle timeout ends with the protocol error that came first, not
/// as an idle timeout: one honest reason per connection.
#[test]
fn idle_timeout_after_a_protocol_error_keeps_the_protocol_error() {
    let config = Config {
        message_timeout: Some(ms(500)),
        idle_timeout: Some(ms(1000)),
        close_timeout: Duration::from_secs(5),
        ..quiet()
    };
    let mut server = Connection::server(config, Instant::ZERO);
    server
        .receive(Instant::ZERO, &client_frame(false, 1, b"part"))
        .unwrap();
    server.handle_timeout(Instant::from_millis(500));
    // The Close (1008) is queued, never written.
    assert!(ended(&drain_events(&mut server)).is_none());
    assert_eq!(server.poll_timeout(), Some(Instant::from_millis(1000)));
    server.handle_timeout(Instant::from_millis(1000));
    let end = ended(&drain_events(&mut server))
        .cloned()
        .expect("ended at the idle deadline");
    assert!(end.to_string().starts_with("protocol error 1008"), "{end}");
}

#[test]
fn single_frame_messages_are_not_copied() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let mut wire = client_frame(true, 2, &[9u8; 300]);
    wire.extend(client_frame(true, 2, &[9u8; 300]));
    server.receive(Instant::ZERO, &wire).unwrap();
    let a = match server.poll_event() {
        Some(Event::Binary(b)) => b,
        e => panic!("{e:?}"),
    };
    let b = match server.poll_event() {
        Some(Event::Binary(b)) => b,
        e => panic!("{e:?}"),
    };
    // Both messages are views into the one receive buffer, where their payloads were unmasked
    // back to back: the second starts right after the first.
    assert_eq!(a.as_ptr() as usize + 300, b.as_ptr() as usize);
}

#[test]
fn idle_connection_releases_large_receive_buffers() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let big = client_frame(true, 2, &vec![1u8; 1 << 20]);
    let (most, last) = big.split_at(big.len() - 1);
    server.receive(Instant::ZERO, most).unwrap();
    assert!(server.receive_buffer_capacity() >= (1 << 20) - 1);
    server.receive(Instant::ZERO, last).unwrap();
    // The message itself lives on in the event; the engine keeps no large buffer.
    assert!(server.receive_buffer_capacity() < 64 << 10);
    drop(drain_events(&mut server));
}

/// Reads of a busy connection share a block of the receive buffer; its first read, and the
/// first after `release_idle_memory` or `trim_memory` (an adapter about to wait), get only what
/// they need: a connection that goes quiet after a message or two holds no block, and
/// releasing at every wait does not cost a block's allocation per message. `trim_memory` keeps
/// that small buffer (under 1 KiB) and the next read takes it back in place once its message
/// is dropped, so a connection trimmed before every wait, as the Tokio task adapter's is,
/// allocates nothing per message; anything larger goes.
#[test]
fn first_read_after_a_release_reserves_only_what_it_needs() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let message = client_frame(true, 2, &[5; 16]);
    // Receives the 16-byte message, returns where its payload lay.
    let read = |server: &mut Connection| -> usize {
        server.receive(Instant::ZERO, &message).unwrap();
        let events = drain_events(server);
        assert_eq!(events, [Event::Binary(vec![5; 16].into())]);
        let Event::Binary(payload) = &events[0] else {
            unreachable!()
        };
        payload.as_ptr() as usize
    };
    let exact = |server: &mut Connection| -> usize {
        let at = read(server);
        // The 22 bytes read, less the 16 of payload split off with the message.
        assert!(server.receive_buffer_capacity() <= message.len());
        at
    };
    let block = |server: &mut Connection| {
        read(server);
        assert!(
            server.receive_buffer_capacity() >= 2048,
            "a busy connection's reads share a block"
        );
    };
    exact(&mut server);
    block(&mut server);
    block(&mut server);
    for _ in 0..3 {
        server.release_idle_memory();
        assert_eq!(server.receive_buffer_capacity(), 0);
        exact(&mut server);
    }
    // Without a release in between, the next read takes a block again.
    block(&mut server);

    // `trim_memory` lets the block go; the small buffer that follows is kept and reused.
    server.trim_memory();
    assert_eq!(server.receive_buffer_capacity(), 0, "a block is not kept");
    let small = exact(&mut server);
    for _ in 0..3 {
        server.trim_memory();
        let kept = server.receive_buffer_capacity();
        assert!(kept > 0 && kept <= message.len(), "kept {kept} bytes");
        assert_eq!(
            exact(&mut server),
            small,
            "the same bytes: nothing allocated"
        );
    }
    // A message still held keeps its buffer: the read after the trim takes a new one, again
    // only what it needs.
    server.receive(Instant::ZERO, &message).unwrap();
    let held = drain_events(&mut server);
    server.trim_memory();
    assert_ne!(exact(&mut server), small);
    drop(held);
    // Without a trim, reads share a block as before.
    block(&mut server);

    // A buffer that a frame spanning reads grew is not kept.
    server.release_idle_memory();
    exact(&mut server);
    let big = client_frame(true, 2, &[6; 100_000]);
    for read in big.chunks(4096) {
        server.receive(Instant::ZERO, read).unwrap();
    }
    assert_eq!(drain_events(&mut server).len(), 1);
    server.trim_memory();
    assert_eq!(
        server.receive_buffer_capacity(),
        0,
        "a grown buffer is not kept"
    );
}

/// A frame that spans reads reserves room by what arrived: twice the read for the first such
/// frame, as much as the last such frame (which arrived whole) for the next, never the declared
/// length alone. Large messages back to back then need one allocation each, not a doubling per
/// read.
#[test]
fn frames_spanning_reads_reserve_by_what_arrived() {
    const READ: usize = 4096;
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let feed = |server: &mut Connection, wire: &[u8]| {
        for read in wire.chunks(READ) {
            server.receive(Instant::ZERO, read).unwrap();
        }
    };
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let big = client_frame(true, 2, &payload);

    // The first 1 MiB frame: room for two reads, not for the megabyte it declares.
    server.receive(Instant::ZERO, &big[..READ]).unwrap();
    assert!(server.receive_buffer_capacity() <= 2 * READ);
    feed(&mut server, &big[READ..]);
    assert_eq!(
        drain_events(&mut server),
        [Event::Binary(payload.clone().into())]
    );
    assert!(
        server.receive_buffer_capacity() < 64 << 10,
        "nothing large kept"
    );

    // The next one: room for all of it from its first read on.
    server.receive(Instant::ZERO, &big[..READ]).unwrap();
    assert!(server.receive_buffer_capacity() >= 1 << 20);
    feed(&mut server, &big[READ..]);
    assert_eq!(drain_events(&mut server), [Event::Binary(payload.into())]);

    // A smaller frame gets what it declares; a larger one what the last one had, not more.
    let small = client_frame(true, 2, &[7; 100_000]);
    server.receive(Instant::ZERO, &small[..READ]).unwrap();
    assert_eq!(server.receive_buffer_capacity(), 100_000);
    feed(&mut server, &small[READ..]);
    assert_eq!(
        drain_events(&mut server),
        [Event::Binary(vec![7; 100_000].into())]
    );
    let huge = client_frame(true, 2, &vec![8; 3 << 20]);
    server.receive(Instant::ZERO, &huge[..READ]).unwrap();
    assert_eq!(server.receive_buffer_capacity(), 100_000);
    feed(&mut server, &huge[READ..]);
    assert_eq!(
        drain_events(&mut server),
        [Event::Binary(vec![8; 3 << 20].into())]
    );
}

#[test]
fn a_peer_pinging_once_per_pong_cannot_starve_data() {
    let config = Config {
        max_send_fragment: 100,
        ..quiet()
    };
    let mut server = Connection::server(config, Instant::ZERO);
    server.send_binary(vec![5u8; 1000]).unwrap();
    let mut wire = Vec::new();
    // Before every frame the server writes, another PING arrives.
    for i in 0..40u32 {
        server
            .receive(Instant::ZERO, &client_frame(true, 9, &i.to_be_bytes()))
            .unwrap();
        let Some(t) = server.poll_transmit() else {
            break;
        };
        let mut bytes = t.header.to_vec();
        bytes.extend_from_slice(t.payload);
        server.advance_transmit(bytes.len());
        wire.extend(bytes);
    }
    let frames = parse_stream(&wire).unwrap();
    let data: usize = frames
        .iter()
        .filter(|f| f.opcode < 8)
        .map(|f| f.payload.len())
        .sum();
    assert_eq!(data, 1000, "all data went out between the PONGs");
    // And no PONG waited behind more than one data frame.
    let mut since_pong = 0;
    for f in &frames {
        if f.opcode == 10 {
            since_pong = 0;
        } else {
            since_pong += 1;
            assert!(since_pong <= 1 || f.opcode < 8);
        }
    }
    assert_eq!(server.queued_bytes(), 0);
}

#[test]
fn failure_after_our_close_reports_the_code_actually_sent() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    server.close(1000, "bye").unwrap();
    let n = server.poll_transmit().unwrap().len();
    server.advance_transmit(n);
    // A reserved opcode after our Close went out: no second Close may be sent.
    let err = server
        .receive(Instant::ZERO, &client_frame(true, 6, b""))
        .unwrap_err();
    let wsframe::ReceiveError::Protocol(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(err.code, 1000);
    assert!(server.poll_transmit().is_none());
    let end = ended(&drain_events(&mut server)).cloned().unwrap();
    assert!(
        end.to_string()
            .starts_with("protocol error 1000: reserved opcode"),
        "{end}"
    );
}

#[test]
fn close_now_drops_queued_data_and_closes_after_the_frame_in_flight() {
    let mut pair = Pair::new(quiet(), quiet());
    for i in 0..10 {
        pair.server.conn.send_binary(vec![i as u8; 1000]).unwrap();
    }
    // Part of the first message is on the wire when the relay gives up on this subscriber.
    let mut wire = Vec::new();
    let t = pair.server.conn.poll_transmit().unwrap();
    wire.extend_from_slice(t.header);
    wire.extend_from_slice(&t.payload[..100]);
    let n = t.header.len() + 100;
    pair.server.conn.advance_transmit(n);
    pair.server
        .conn
        .close_now(1013, "subscriber too slow")
        .unwrap();
    wire.extend(drain_transmit(&mut pair.server.conn, usize::MAX));
    let frames = parse_stream(&wire).unwrap();
    assert_eq!(frames.len(), 2, "the message in flight, then the Close");
    assert_eq!(frames[0].payload, vec![0u8; 1000]);
    assert_eq!(frames[1].opcode, 8);
    assert_eq!(&frames[1].payload[..2], &1013u16.to_be_bytes());
    // The client answers; the end report counts the nine dropped messages.
    pair.client.conn.receive(pair.now, &wire).unwrap();
    pair.pump();
    let end = ended(&pair.server.events).unwrap();
    assert!(matches!(end.reason, EndReason::ClosedLocally { ref sent, .. } if sent.code == 1013));
    assert_eq!(
        end.unsent,
        Unsent {
            messages: 9,
            bytes: 9000
        }
    );
}
