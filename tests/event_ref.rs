//! `poll_event_ref` lends whole messages' payloads instead of handing out `Bytes`: the same
//! events, in the same order, as `poll_event`, whatever the mix of frames, the read chunking,
//! and `peek_event` calls in between.

mod sim;

use proptest::prelude::*;
use sim::*;
use wsframe::{Config, Connection, Event, EventRef, Instant};

#[derive(Debug, Clone)]
enum Frame {
    Binary(usize),
    Text(usize),
    Ping,
    /// A text message in two fragments.
    Fragmented(usize),
}

fn frames() -> impl Strategy<Value = Vec<Frame>> {
    let size = prop_oneof![0usize..40, 100usize..300, Just(70_000usize)];
    proptest::collection::vec(
        prop_oneof![
            4 => size.clone().prop_map(Frame::Binary),
            3 => size.clone().prop_map(Frame::Text),
            1 => Just(Frame::Ping),
            1 => (0usize..100).prop_map(Frame::Fragmented),
        ],
        0..60,
    )
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let fill = |n: usize| -> Vec<u8> { (0..n).map(|j| b'a' + ((i + j) % 26) as u8).collect() };
        match *f {
            Frame::Binary(n) => out.extend(client_frame(true, 2, &fill(n))),
            Frame::Text(n) => out.extend(client_frame(true, 1, &fill(n))),
            Frame::Ping => out.extend(client_frame(true, 9, b"p")),
            Frame::Fragmented(n) => {
                let text = fill(n);
                out.extend(client_frame(false, 1, &text[..n / 2]));
                out.extend(client_frame(true, 0, &text[n / 2..]));
            }
        }
    }
    out
}

/// Feeds `wire` in `chunk`-sized reads, taking every event after each read with `take`,
/// peeking first whenever `peeks` says so.
fn events(
    wire: &[u8],
    chunk: usize,
    peeks: &[bool],
    mut take: impl FnMut(&mut Connection) -> Option<Event>,
) -> Vec<Event> {
    let config = Config {
        ping_interval: None,
        idle_timeout: None,
        ..Config::default()
    };
    let mut conn = Connection::server(config, Instant::ZERO);
    let mut out = Vec::new();
    let mut peek = peeks.iter().cycle();
    for piece in wire.chunks(chunk) {
        conn.receive(Instant::ZERO, piece).unwrap();
        loop {
            if *peek.next().unwrap() {
                let peeked = conn.peek_event().cloned();
                let taken = take(&mut conn);
                assert_eq!(peeked, taken, "peek then take disagree");
                match taken {
                    Some(e) => out.push(e),
                    None => break,
                }
            } else {
                match take(&mut conn) {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn lent_events_are_the_owned_events(
        frames in frames(),
        chunk in prop_oneof![1usize..64, 64usize..5000, Just(1 << 20)],
        peeks in proptest::collection::vec(prop::bool::weighted(0.2), 1..16),
    ) {
        let wire = wire(&frames);
        let owned = events(&wire, chunk, &peeks, |c| c.poll_event());
        let lent = events(&wire, chunk, &peeks, |c| c.poll_event_ref().map(EventRef::into_owned));
        prop_assert_eq!(owned, lent);
    }
}

#[test]
fn small_messages_are_lent_not_made_into_events() {
    let mut conn = Connection::server(Config::default(), Instant::ZERO);
    let mut wire = client_frame(true, 2, b"one");
    wire.extend(client_frame(true, 1, "twö".as_bytes()));
    conn.receive(Instant::ZERO, &wire).unwrap();
    assert_eq!(conn.poll_event_ref(), Some(EventRef::Binary(&b"one"[..])));
    assert_eq!(conn.poll_event_ref(), Some(EventRef::Text("twö")));
    assert_eq!(conn.poll_event_ref(), None);
}
