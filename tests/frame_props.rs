//! Property tests for the frame codec (RFC 6455 section 5.2) and for chunking independence.

mod sim;

use bytes::BufMut;
use proptest::prelude::*;
use wsframe::frame::{encode_header, parse_header, FrameHeader, OpCode, Status};
use wsframe::{Config, Connection, Event, Instant};

fn opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=125,
        126u64..=65535,
        65536u64..=(u64::MAX >> 1),
        Just(u64::MAX >> 1)
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_gives_the_same_header(
        fin in any::<bool>(), op in opcode(), mask in any::<Option<[u8; 4]>>(), len in length()
    ) {
        let encoded = encode_header(fin, op, mask, len);
        let bytes = encoded.as_slice();
        // Minimal length form (section 5.2).
        let expected_len = 2 + match len { 0..=125 => 0, 126..=65535 => 2, _ => 8 } + if mask.is_some() { 4 } else { 0 };
        prop_assert_eq!(bytes.len(), expected_len);
        let parsed = parse_header(bytes).unwrap();
        prop_assert_eq!(parsed, Status::Complete(FrameHeader { fin, rsv: 0, opcode: op, mask, payload_len: len }, expected_len));
        // Every strict prefix is Partial, never an error or a wrong header.
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_header(&bytes[..cut]), Ok(Status::Partial));
        }
    }

    #[test]
    fn random_bytes_never_panic_the_header_parser(bytes in prop::collection::vec(any::<u8>(), 0..20)) {
        let _ = parse_header(&bytes);
    }

    /// Any chunking of a byte stream gives the same events as feeding it whole.
    #[test]
    fn any_chunking_gives_the_same_events(
        messages in prop::collection::vec((0u8..4, prop::collection::vec(any::<u8>(), 0..300), 1usize..4), 1..12),
        cuts in prop::collection::vec(1usize..50, 1..200),
    ) {
        let mut wire = Vec::new();
        for (kind, payload, fragments) in &messages {
            match kind {
                0 => wire.extend(sim::client_frame(true, 9, &payload[..payload.len().min(125)])),
                1 => {
                    let text: String = payload.iter().map(|b| char::from(b'a' + b % 26)).chain("é€𝄞".chars()).collect();
                    let bytes = text.as_bytes();
                    let step = bytes.len().div_ceil(*fragments).max(1);
                    let pieces: Vec<&[u8]> = bytes.chunks(step).collect();
                    for (i, p) in pieces.iter().enumerate() {
                        let op = if i == 0 { 1 } else { 0 };
                        wire.extend(sim::client_frame(i + 1 == pieces.len(), op, p));
                    }
                }
                _ => {
                    let step = payload.len().div_ceil(*fragments).max(1);
                    let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&payload[..]] } else { payload.chunks(step).collect() };
                    for (i, p) in pieces.iter().enumerate() {
                        let op = if i == 0 { 2 } else { 0 };
                        wire.extend(sim::client_frame(i + 1 == pieces.len(), op, p));
                    }
                }
            }
        }
        let config = Config { ping_interval: None, idle_timeout: None, ..Config::default() };
        let whole = {
            let mut c = Connection::server(config.clone(), Instant::ZERO);
            c.receive(Instant::ZERO, &wire).unwrap();
            sim::drain_events(&mut c)
        };
        // The same bytes in the given cuts. `in_place`: every piece the engine offers room for
        // is read into its own buffer (`receive_buffer`, as the IO adapters read the rest of a
        // large frame). Returns the events and how many bytes went in place.
        let feed = |in_place: bool| {
            let mut c = Connection::server(config.clone(), Instant::ZERO);
            let mut rest = &wire[..];
            let mut events = Vec::new();
            let mut filled_in_place = 0;
            for &cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = cut.min(rest.len());
                let room = if in_place { c.receive_buffer(n) } else { None };
                match room {
                    Some(mut room) => {
                        let k = room.remaining_mut().min(n);
                        assert!(k > 0, "receive_buffer offered no room");
                        room.put_slice(&rest[..k]);
                        c.receive_filled(Instant::ZERO, room).unwrap();
                        rest = &rest[k..];
                        filled_in_place += k;
                    }
                    None => {
                        c.receive(Instant::ZERO, &rest[..n]).unwrap();
                        rest = &rest[n..];
                    }
                }
                events.extend(sim::drain_events(&mut c));
            }
            (events, filled_in_place)
        };
        let (chunked, _) = feed(false);
        let (in_place, filled_in_place) = feed(true);
        // A frame with 40 payload bytes or more has a cut inside its payload when every cut
        // is under 20 bytes: the rest of it is offered room.
        let long_frame = messages.iter().any(|(kind, payload, fragments)| match kind {
            0 => payload.len() >= 40,
            1 => false,
            _ => payload.len().div_ceil(*fragments) >= 40,
        });
        if long_frame && cuts.iter().all(|&c| c < 20) {
            prop_assert!(filled_in_place > 0);
        }
        prop_assert_eq!(&whole, &chunked);
        prop_assert_eq!(&whole, &in_place);
        prop_assert_eq!(whole.iter().filter(|e| !matches!(e, Event::Ping(_))).count(), messages.iter().filter(|m| m.0 != 0).count());
    }
}
