//! The receive fast path (`receive_run` and its lazily made events): every length, kind,
//! role and read split, and the lazy events' place among other events, checked against what
//! the frames say (frames encoded by `sim`, independently of the crate).

mod sim;

use bytes::Bytes;
use sim::{counter_random, frame};
use wsframe::{Config, Connection, Event, Instant, ReceiveError, Text};

fn engine(server: bool) -> Connection {
    let config = Config {
        ping_interval: None,
        idle_timeout: None,
        ..Config::default()
    };
    if server {
        Connection::server(config, Instant::ZERO)
    } else {
        Connection::client(config, counter_random(), Instant::ZERO)
    }
}

/// Messages of every length from 0 to 40 and a few longer, text (with multi-byte
/// characters) and binary alternating, so small payloads land both far from and near the
/// end of a read.
fn messages() -> Vec<(bool, Vec<u8>)> {
    let text = "aé€😀bc".repeat(40);
    let mut out = Vec::new();
    for (i, len) in (0..=40).chain([125, 126, 200, 1000]).enumerate() {
        if i % 2 == 0 {
            let cut = (0..=len).rev().find(|&c| text.is_char_boundary(c)).unwrap();
            out.push((true, text.as_bytes()[..cut].to_vec()));
        } else {
            out.push((false, (0..len).map(|b| (b * 31 + len) as u8).collect()));
        }
    }
    out
}

fn wire(messages: &[(bool, Vec<u8>)], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (text, payload)) in messages.iter().enumerate() {
        let key = masked.then_some([i as u8, 0x5a, 0xa5, 0xff]);
        out.extend(frame(true, if *text { 1 } else { 2 }, payload, key));
    }
    out
}

fn take(conn: &mut Connection, into: &mut Vec<(bool, Vec<u8>)>) {
    while let Some(peeked) = conn.peek_event().cloned() {
        let event = conn.poll_event().unwrap();
        assert_eq!(peeked, event);
        match event {
            Event::Text(t) => into.push((true, t.as_bytes().to_vec())),
            Event::Binary(b) => into.push((false, b.to_vec())),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn fast_path_delivers_every_length_in_every_split() {
    let expected = messages();
    for server in [true, false] {
        let bytes = wire(&expected, server);
        for chunk in [1, 7, 8, 9, 23, 64, 500, bytes.len()] {
            for poll_each_read in [true, false] {
                let mut conn = engine(server);
                let mut got = Vec::new();
                for read in bytes.chunks(chunk) {
                    conn.receive(Instant::ZERO, read).unwrap();
                    if poll_each_read {
                        take(&mut conn, &mut got);
                    }
                }
                take(&mut conn, &mut got);
                assert!(got == expected, "server {server} chunk {chunk}");
                assert_eq!(conn.stats().messages_in, expected.len() as u64);
            }
        }
    }
}

#[test]
fn lazy_messages_keep_their_place_among_other_events() {
    let key = Some([1, 2, 3, 4]);
    let mut conn = engine(true);
    let mut bytes = frame(true, 2, b"one", key);
    bytes.extend(frame(true, 9, b"ping", key));
    bytes.extend(frame(true, 1, b"two", key));
    // A frame split across reads is finished through the buffer, its event queued first.
    let split = frame(true, 2, b"three", key);
    conn.receive(Instant::ZERO, &bytes).unwrap();
    conn.receive(Instant::ZERO, &split[..4]).unwrap();
    let mut rest = split[4..].to_vec();
    rest.extend(frame(true, 2, b"four", key));
    rest.extend(frame(true, 1, b"five", key));
    // Peeking makes the next lazy event; taking it must not skip or repeat one.
    assert_eq!(
        conn.peek_event(),
        Some(&Event::Binary(Bytes::from_static(b"one")))
    );
    conn.receive(Instant::ZERO, &rest).unwrap();
    let mut got = Vec::new();
    while let Some(event) = conn.poll_event() {
        got.push(event);
    }
    assert_eq!(
        got,
        [
            Event::Binary(Bytes::from_static(b"one")),
            Event::Ping(Bytes::from_static(b"ping")),
            Event::Text(Text::from("two")),
            Event::Binary(Bytes::from_static(b"three")),
            Event::Binary(Bytes::from_static(b"four")),
            Event::Text(Text::from("five")),
        ]
    );
}

#[test]
fn lazy_messages_follow_the_event_of_a_frame_finished_through_the_buffer() {
    let key = Some([1, 2, 3, 4]);
    let mut conn = engine(true);
    let split = frame(true, 2, b"first", key);
    conn.receive(Instant::ZERO, &split[..3]).unwrap();
    let mut rest = split[3..].to_vec();
    rest.extend(frame(true, 1, b"second", key));
    rest.extend(frame(true, 2, b"third", key));
    conn.receive(Instant::ZERO, &rest).unwrap();
    assert_eq!(
        conn.peek_event(),
        Some(&Event::Binary(Bytes::from_static(b"first")))
    );
    assert_eq!(
        conn.poll_event(),
        Some(Event::Binary(Bytes::from_static(b"first")))
    );
    assert_eq!(conn.peek_event(), Some(&Event::Text(Text::from("second"))));
    conn.receive(Instant::ZERO, &frame(true, 9, b"p", key))
        .unwrap();
    assert_eq!(conn.poll_event(), Some(Event::Text(Text::from("second"))));
    assert_eq!(
        conn.poll_event(),
        Some(Event::Binary(Bytes::from_static(b"third")))
    );
    assert_eq!(
        conn.poll_event(),
        Some(Event::Ping(Bytes::from_static(b"p")))
    );
    assert_eq!(conn.poll_event(), None);
    assert_eq!(conn.peek_event(), None);
}

#[test]
fn invalid_utf8_in_a_short_message_fails_after_the_messages_before_it() {
    let key = Some([9, 8, 7, 6]);
    let mut bytes = frame(true, 1, b"ok", key);
    bytes.extend(frame(true, 1, b"bad \xff", key));
    bytes.extend(vec![0; 32]);
    let mut conn = engine(true);
    let err = conn.receive(Instant::ZERO, &bytes).unwrap_err();
    assert!(matches!(err, ReceiveError::Protocol(e) if e.code == 1007));
    assert_eq!(conn.poll_event(), Some(Event::Text(Text::from("ok"))));
}
