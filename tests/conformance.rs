//! RFC 6455 conformance, organised by the Autobahn testsuite case groups 1-7 and 9-10, plus
//! masking direction (section 5.1), the 64-bit length's top bit (section 5.2), failing the
//! connection (section 7.1.7) and the message timeout.
//!
//! Every case drives an engine with exact bytes (masked client frames into a server engine,
//! unmasked server frames into a client engine) and checks the exact frames that come out,
//! parsed by the independent codec in `conformance/wire.rs`, the events, and the close code.
//!
//! Naming: `case_<autobahn group>_<case>_<what>`; the RFC section is named in each comment.

mod conformance {
    pub mod harness;
    pub mod wire;
}

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use wsframe::frame::HeaderError;
use wsframe::{
    CloseFrame, Config, Connection, EndReason, Event, Instant, ReceiveError, Role, SendError, Text,
    Violation,
};

use conformance::harness::*;
use conformance::wire::{
    self, cat, client_frame, close_body, header, raw_frame, server_frame, Frame, LenForm, BINARY,
    CLOSE, CONT, KEY, PING, PONG, RSV1, RSV2, RSV3, TEXT,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Payload sizes around every boundary of the length encoding (section 5.2): 7-bit up to 125,
/// 16-bit from 126 to 65535, 64-bit from 65536.
const SIZES: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];

/// ASCII text of `n` bytes.
fn ascii(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `n` bytes covering every byte value.
fn bin(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(7).wrapping_add(3)) as u8)
        .collect()
}

fn text_ev(s: &[u8]) -> Event {
    Event::Text(Text::from(
        String::from_utf8(s.to_vec()).expect("test text is UTF-8"),
    ))
}

fn bin_ev(b: &[u8]) -> Event {
    Event::Binary(Bytes::copy_from_slice(b))
}

fn ping_ev(b: &[u8]) -> Event {
    Event::Ping(Bytes::copy_from_slice(b))
}

fn pong_ev(b: &[u8]) -> Event {
    Event::Pong(Bytes::copy_from_slice(b))
}

fn close_ev(code: u16, reason: &str) -> Event {
    Event::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The frame a server engine should write.
fn srv(fin: bool, opcode: u8, payload: &[u8]) -> Frame {
    Frame::new(fin, opcode, None, payload)
}

/// The frame a client engine with the `5a5a5a5a` source should write.
fn cli(fin: bool, opcode: u8, payload: &[u8]) -> Frame {
    Frame::new(fin, opcode, Some([CLIENT_KEY_BYTE; 4]), payload)
}

/// The frame an engine of `role` should write.
fn out_frame(role: Role, fin: bool, opcode: u8, payload: &[u8]) -> Frame {
    match role {
        Role::Server => srv(fin, opcode, payload),
        Role::Client => cli(fin, opcode, payload),
    }
}

const ROLES: [Role; 2] = [Role::Server, Role::Client];

/// Ways of cutting a stream of `len` bytes into `receive` calls: whole, one byte per call,
/// at every single position (short streams) or near both ends (long ones), at every pair of
/// positions (very short streams), and in fixed chop sizes (Autobahn's "chopped" variants).
fn split_plans(len: usize) -> Vec<Vec<usize>> {
    let mut plans: Vec<Vec<usize>> = vec![vec![], (1..len).collect()];
    if len <= 600 {
        plans.extend((1..len).map(|a| vec![a]));
    } else {
        plans.extend((1..=20).chain(len - 20..len).map(|a| vec![a]));
    }
    if len <= 140 {
        for a in 1..len {
            for b in a + 1..len {
                plans.push(vec![a, b]);
            }
        }
    }
    for size in [2, 3, 5, 7, 13, 64, 997, 4096] {
        if size < len {
            plans.push((size..len).step_by(size).collect());
        }
    }
    plans
}

/// What one engine produced from one stream: the events (drained before writing), the
/// frames written, and the events that came after writing.
type Outcome = (Vec<Event>, Vec<Frame>, Vec<Event>);

fn run_cut(
    role: Role,
    config: &dyn Fn(&mut Config),
    stream: &[u8],
    cuts: &[usize],
) -> Result<Outcome, ReceiveError> {
    let mut conn = match role {
        Role::Server => server_with(config),
        Role::Client => client_with(config),
    };
    feed_cut(&mut conn, stream, cuts)?;
    let events = take_events(&mut conn);
    let frames = take_frames(&mut conn);
    check_mask_direction(role, &frames);
    let after = take_events(&mut conn);
    Ok((events, frames, after))
}

/// Autobahn 1.x/5.x/6.x "split in every way": every plan of [`split_plans`] gives `events`
/// and `frames`, the same as feeding the stream whole.
fn check_splits(role: Role, stream: &[u8], events: &[Event], frames: &[Frame]) {
    check_splits_with(role, &|_| {}, stream, events, frames)
}

fn check_splits_with(
    role: Role,
    config: &dyn Fn(&mut Config),
    stream: &[u8],
    events: &[Event],
    frames: &[Frame],
) {
    let whole = run_cut(role, config, stream, &[]).expect("whole stream accepted");
    assert_eq!(whole.0, events, "{role:?}: events, stream fed whole");
    assert_eq!(
        whole.1, frames,
        "{role:?}: frames written, stream fed whole"
    );
    for cuts in split_plans(stream.len()) {
        let label = if cuts.len() > 8 {
            format!("{} cuts ({:?}..)", cuts.len(), &cuts[..4])
        } else {
            format!("{cuts:?}")
        };
        match run_cut(role, config, stream, &cuts) {
            Ok(got) => assert!(
                got == whole,
                "{role:?}: stream cut at {label} differs from the whole stream"
            ),
            Err(e) => panic!("{role:?}: stream cut at {label} failed: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Autobahn 1.x: framing (RFC 6455 section 5.2 base framing, section 5.6 data frames)
// ---------------------------------------------------------------------------------------------

/// The exact header of an unmasked FIN frame of `len` bytes in the minimal form (section 5.2).
fn expected_header(opcode: u8, len: usize) -> Vec<u8> {
    let mut h = vec![0x80 | opcode];
    if len <= 125 {
        h.push(len as u8);
    } else if len <= 0xFFFF {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

/// Autobahn 1.1.1-1.1.6 (section 5.2, 5.6): text messages of 0, 125, 126, 127, 128, 65535 and
/// 65536 bytes are received whole and echoed as one frame whose header uses the minimal
/// length form: 7-bit, 16-bit (126) and 64-bit (127).
#[test]
fn case_1_1_text_payload_lengths() {
    for n in SIZES {
        let payload = ascii(n);
        let mut s = server_with(|c| c.max_send_fragment = 1 << 20);
        ok(&mut s, &client_frame(true, TEXT, &payload));
        let events = take_events(&mut s);
        assert_eq!(events, [text_ev(&payload)], "size {n}");
        let Event::Text(text) = &events[0] else {
            unreachable!()
        };
        s.send_text(text.clone()).unwrap();
        let bytes = take_wire(&mut s);
        let h = expected_header(TEXT, n);
        assert_eq!(&bytes[..h.len()], &h[..], "header of a {n}-byte echo");
        assert_eq!(
            &bytes[h.len()..],
            &payload[..],
            "payload of a {n}-byte echo"
        );
        assert_eq!(wire::parse_all(&bytes), [srv(true, TEXT, &payload)]);
    }
}

/// Autobahn 1.1.1-1.1.8 chopped (section 5.2: a frame may arrive in any number of reads):
/// every text size split in every way, one byte per call included, for both roles.
#[test]
fn case_1_1_text_split_every_way() {
    for n in SIZES {
        let payload = ascii(n);
        for role in ROLES {
            let stream = peer_frame(role, true, TEXT, &payload);
            check_splits(role, &stream, &[text_ev(&payload)], &[]);
        }
    }
}

/// Autobahn 1.2.1-1.2.6 (section 5.2, 5.6): binary messages of every length boundary are
/// received whole and echoed with the minimal length form.
#[test]
fn case_1_2_binary_payload_lengths() {
    for n in SIZES {
        let payload = bin(n);
        let mut s = server_with(|c| c.max_send_fragment = 1 << 20);
        ok(&mut s, &client_frame(true, BINARY, &payload));
        let events = take_events(&mut s);
        assert_eq!(events, [bin_ev(&payload)], "size {n}");
        s.send_binary(payload.clone()).unwrap();
        let bytes = take_wire(&mut s);
        let h = expected_header(BINARY, n);
        assert_eq!(&bytes[..h.len()], &h[..], "header of a {n}-byte echo");
        assert_eq!(wire::parse_all(&bytes), [srv(true, BINARY, &payload)]);
    }
}

/// Autobahn 1.2.x chopped: every binary size split in every way, both roles.
#[test]
fn case_1_2_binary_split_every_way() {
    for n in SIZES {
        let payload = bin(n);
        for role in ROLES {
            let stream = peer_frame(role, true, BINARY, &payload);
            check_splits(role, &stream, &[bin_ev(&payload)], &[]);
        }
    }
}

/// Section 5.2: several frames in one read, and a stream of back-to-back messages of every
/// size split in every way, give the messages in order.
#[test]
fn case_1_3_back_to_back_messages_split_every_way() {
    let mut stream = Vec::new();
    let mut events = Vec::new();
    for n in [0, 1, 125, 126, 127, 128] {
        stream.extend(client_frame(true, TEXT, &ascii(n)));
        events.push(text_ev(&ascii(n)));
        stream.extend(client_frame(true, BINARY, &bin(n)));
        events.push(bin_ev(&bin(n)));
    }
    check_splits(Role::Server, &stream, &events, &[]);
}

/// Section 5.2: the length may be written in a longer form than needed by a careless sender;
/// the engine reads the value (the minimal-form rule binds the sender, and the engine's own
/// frames always use it, which every other case checks with `wire::check_sender_rules`).
#[test]
fn case_1_4_non_minimal_length_forms_are_read() {
    for form in [LenForm::Ext16, LenForm::Ext64] {
        let payload = b"Hello";
        let mut stream = header(0x81, Some(KEY), payload.len() as u64, form);
        let mut masked = payload.to_vec();
        wire::xor_mask(&mut masked, KEY);
        stream.extend(masked);
        let mut s = server();
        ok(&mut s, &stream);
        assert_eq!(take_events(&mut s), [text_ev(payload)], "{form:?}");
    }
}

/// Section 5.3: the masking key applies per frame, from the payload's first byte; frames
/// with different keys (all zero, all ones, the RFC's) and lengths that end mid-key unmask
/// correctly whatever the split.
#[test]
fn case_1_5_mask_keys_and_phases() {
    let keys = [[0, 0, 0, 0], [0xff; 4], KEY, [1, 2, 3, 4]];
    let mut stream = Vec::new();
    let mut events = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for n in [1, 2, 3, 4, 5, 31, 32, 33, 63, 64, 65, 200] {
            let p = bin(n + i);
            stream.extend(raw_frame(true, 0, BINARY, Some(*key), &p));
            events.push(bin_ev(&p));
        }
    }
    let whole = run_cut(Role::Server, &|_| {}, &stream, &[]).unwrap();
    assert_eq!(whole.0, events);
    for size in [1, 2, 3, 5, 7, 17, 33, 100] {
        let cuts: Vec<usize> = (size..stream.len()).step_by(size).collect();
        assert!(run_cut(Role::Server, &|_| {}, &stream, &cuts).unwrap() == whole);
    }
}

// ---------------------------------------------------------------------------------------------
// Autobahn 2.x: pings and pongs (sections 5.5.2, 5.5.3)
// ---------------------------------------------------------------------------------------------

/// Feeds `ping` (a whole client frame) to a server and returns the events and the wire.
fn server_answers(stream: &[u8]) -> (Vec<Event>, Vec<u8>) {
    let mut s = server();
    ok(&mut s, stream);
    (take_events(&mut s), take_wire(&mut s))
}

/// Autobahn 2.1 (section 5.5.2): a ping without payload is answered by an empty PONG.
#[test]
fn case_2_1_ping_without_payload() {
    let (events, bytes) = server_answers(&client_frame(true, PING, b""));
    assert_eq!(events, [ping_ev(b"")]);
    assert_eq!(bytes, [0x8A, 0x00]);
}

/// Autobahn 2.2 (section 5.5.3: "the Pong frame ... MUST have identical Application data"):
/// a ping with a small text payload.
#[test]
fn case_2_2_ping_with_small_text_payload() {
    let payload = b"Hello, world!";
    let (events, bytes) = server_answers(&client_frame(true, PING, payload));
    assert_eq!(events, [ping_ev(payload)]);
    assert_eq!(bytes, cat(&[&[0x8A, 13], payload]));
}

/// Autobahn 2.3 (section 5.5.3): a ping with a small binary payload.
#[test]
fn case_2_3_ping_with_small_binary_payload() {
    let payload = [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    let (events, bytes) = server_answers(&client_frame(true, PING, &payload));
    assert_eq!(events, [ping_ev(&payload)]);
    assert_eq!(bytes, cat(&[&[0x8A, 8], &payload]));
}

/// Autobahn 2.4 (section 5.5: control payloads up to 125 bytes): a 125-byte ping.
#[test]
fn case_2_4_ping_with_125_byte_payload() {
    let payload = [0xfe; 125];
    let (events, bytes) = server_answers(&client_frame(true, PING, &payload));
    assert_eq!(events, [ping_ev(&payload)]);
    assert_eq!(bytes, cat(&[&[0x8A, 125], &payload]));
}

/// Autobahn 2.5 (section 5.5: "All control frames MUST have a payload length of 125 bytes or
/// less"): a 126-byte ping fails the connection with 1002, decided from the header alone.
#[test]
fn case_2_5_ping_with_126_byte_payload_fails_1002() {
    let stream = client_frame(true, PING, &[0xfe; 126]);
    let err = server_fails(&stream, 1002);
    assert_eq!(err.violation, Violation::ControlTooLong(126));
    // The header alone (16-bit length form, mask key) is enough.
    let mut s = server();
    let result = feed(&mut s, &stream[..8]);
    let (_, events) = expect_failed(&mut s, result, 1002);
    assert_eq!(events, []);
    // And the bytewise failure happens at the header's last byte.
    assert_eq!(fails_bytewise(Role::Server, &stream, 1002), 7);
}

/// Autobahn 2.6 (section 5.5.2, 5.2): a 125-byte ping arriving one byte per read.
#[test]
fn case_2_6_ping_125_bytes_one_byte_per_read() {
    let payload = bin(125);
    let stream = client_frame(true, PING, &payload);
    check_splits(
        Role::Server,
        &stream,
        &[ping_ev(&payload)],
        &[srv(true, PONG, &payload)],
    );
    check_splits(
        Role::Client,
        &server_frame(true, PING, &payload),
        &[ping_ev(&payload)],
        &[cli(true, PONG, &payload)],
    );
}

/// Autobahn 2.7 (section 5.5.3: "A Pong frame MAY be sent unsolicited ... A response to an
/// unsolicited Pong frame is not expected"): accepted, surfaced, not answered.
#[test]
fn case_2_7_unsolicited_pong_without_payload() {
    let (events, bytes) = server_answers(&client_frame(true, PONG, b""));
    assert_eq!(events, [pong_ev(b"")]);
    assert_eq!(bytes, []);
}

/// Autobahn 2.8 (section 5.5.3): an unsolicited pong with payload.
#[test]
fn case_2_8_unsolicited_pong_with_payload() {
    let payload = b"unsolicited pong payload";
    let (events, bytes) = server_answers(&client_frame(true, PONG, payload));
    assert_eq!(events, [pong_ev(payload)]);
    assert_eq!(bytes, []);
}

/// Autobahn 2.9 (section 5.5.3): an unsolicited pong, then a ping: only the ping is answered.
#[test]
fn case_2_9_unsolicited_pong_then_ping() {
    let stream = cat(&[
        &client_frame(true, PONG, b"unsolicited pong payload"),
        &client_frame(true, PING, b"ping payload"),
    ]);
    let (events, bytes) = server_answers(&stream);
    assert_eq!(
        events,
        [
            pong_ev(b"unsolicited pong payload"),
            ping_ev(b"ping payload")
        ]
    );
    assert_eq!(wire::parse_all(&bytes), [srv(true, PONG, b"ping payload")]);
}

/// Autobahn 2.10 (section 5.5.3: "If an endpoint receives a Ping frame and has not yet sent
/// Pong frame(s) in response to previous Ping frame(s), the endpoint MAY elect to send a Pong
/// frame for only the most recently processed Ping frame"): 10 pings in one read before any
/// write give 10 Ping events and one PONG, with the latest payload.
#[test]
fn case_2_10_ten_pings_coalesced_into_one_pong() {
    let stream: Vec<u8> = (0..10)
        .flat_map(|i| client_frame(true, PING, format!("payload-{i}").as_bytes()))
        .collect();
    let (events, bytes) = server_answers(&stream);
    let expected: Vec<Event> = (0..10)
        .map(|i| ping_ev(format!("payload-{i}").as_bytes()))
        .collect();
    assert_eq!(events, expected);
    assert_eq!(wire::parse_all(&bytes), [srv(true, PONG, b"payload-9")]);
}

/// Autobahn 2.11 (section 5.5.3): 10 pings, each in its own read (and one byte per read),
/// still before any write: one PONG with the latest payload.
#[test]
fn case_2_11_ten_pings_in_separate_reads_coalesced() {
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|i| client_frame(true, PING, format!("payload-{i}").as_bytes()))
        .collect();
    let mut s = server();
    for f in &frames {
        ok(&mut s, f);
    }
    assert_eq!(take_events(&mut s).len(), 10);
    assert_eq!(take_frames(&mut s), [srv(true, PONG, b"payload-9")]);
    let stream = frames.concat();
    let expected: Vec<Event> = (0..10)
        .map(|i| ping_ev(format!("payload-{i}").as_bytes()))
        .collect();
    check_splits(
        Role::Server,
        &stream,
        &expected,
        &[srv(true, PONG, b"payload-9")],
    );
}

/// Section 5.5.3: pings whose PONGs are written in between are each answered.
#[test]
fn case_2_12_pings_with_writes_between_each_answered() {
    let mut s = server();
    for i in 0..5 {
        let p = format!("ping {i}");
        ok(&mut s, &client_frame(true, PING, p.as_bytes()));
        assert_eq!(take_frames(&mut s), [srv(true, PONG, p.as_bytes())]);
    }
    assert_eq!(take_events(&mut s).len(), 5);
}

/// Section 5.5 / 5.4 ("control frames MAY be injected in the middle of a fragmented message")
/// and the outbound ordering rule: a PONG overtakes data queued but not started.
#[test]
fn case_2_13_pong_overtakes_queued_data() {
    let mut s = server();
    s.send_text("queued before the ping").unwrap();
    s.send_binary(bin(10)).unwrap();
    ok(&mut s, &client_frame(true, PING, b"hi"));
    assert_eq!(
        take_frames(&mut s),
        [
            srv(true, PONG, b"hi"),
            srv(true, TEXT, b"queued before the ping"),
            srv(true, BINARY, &bin(10)),
        ]
    );
}

/// Section 5.5.3 / 5.1, client role: the PONG to a server's ping is masked (key from the
/// random source) and carries the ping's payload; exact bytes.
#[test]
fn case_2_14_client_answers_ping_with_masked_pong() {
    let mut c = client();
    ok(&mut c, &server_frame(true, PING, b"Hello"));
    assert_eq!(take_events(&mut c), [ping_ev(b"Hello")]);
    let mut masked = b"Hello".to_vec();
    wire::xor_mask(&mut masked, [0x5a; 4]);
    assert_eq!(
        take_wire(&mut c),
        cat(&[&[0x8A, 0x85, 0x5a, 0x5a, 0x5a, 0x5a], &masked])
    );
}

/// Section 5.5.2/5.5.3: our own PING is written as given, and the peer's PONG with the same
/// payload is surfaced and gives a round-trip time.
#[test]
fn case_2_15_our_ping_and_its_pong() {
    let mut s = server();
    s.ping(&b"rtt-probe"[..]).unwrap();
    assert_eq!(take_frames(&mut s), [srv(true, PING, b"rtt-probe")]);
    s.receive(
        Instant::from_millis(40),
        &client_frame(true, PONG, b"rtt-probe"),
    )
    .unwrap();
    assert_eq!(take_events(&mut s), [pong_ev(b"rtt-probe")]);
    assert_eq!(s.stats().last_rtt, Some(Duration::from_millis(40)));
    assert_eq!(s.ping(vec![0u8; 126]), Err(SendError::ControlTooLong(126)));
}

// ---------------------------------------------------------------------------------------------
// Autobahn 3.x: reserved bits (section 5.2: "MUST be 0 unless an extension is negotiated ...
// the receiving endpoint MUST _Fail the WebSocket Connection_")
// ---------------------------------------------------------------------------------------------

/// All seven RSV combinations (Autobahn numbers them 1-7 as the 3-bit value RSV1 RSV2 RSV3).
fn rsv_value(n: u8) -> u8 {
    (n & 0b100) << 4 | (n & 0b010) << 4 | (n & 0b001) << 4
}

/// Autobahn 3.1-3.7 (section 5.2): every RSV combination on every frame type fails with
/// 1002, decided from the header alone, and reports the bits.
#[test]
fn case_3_reserved_bits_on_every_opcode_fail_1002() {
    for n in 1..=7u8 {
        let rsv = rsv_value(n);
        assert_eq!(rsv >> 4, n);
        for (opcode, payload) in [
            (TEXT, &b"Hello"[..]),
            (BINARY, &[0x00, 0xff, 0xfe, 0xfd][..]),
            (PING, &b"ping"[..]),
            (PONG, &b"pong"[..]),
            (CLOSE, &[0x03, 0xe8][..]),
            (CONT, &b"cont"[..]),
        ] {
            let stream = raw_frame(true, rsv, opcode, Some(KEY), payload);
            let err = server_fails(&stream, 1002);
            assert_eq!(
                err.violation,
                Violation::ReservedBits(n),
                "rsv {n} opcode {opcode}"
            );
            // Header alone: two bytes and the mask key, no payload.
            let mut s = server();
            let result = feed(&mut s, &stream[..6]);
            expect_failed(&mut s, result, 1002);
            // Client role, unmasked server frames.
            let stream = raw_frame(true, rsv, opcode, None, payload);
            let (err, _) = fails_whole(Role::Client, &stream, 1002);
            assert_eq!(err.violation, Violation::ReservedBits(n));
        }
    }
}

/// Autobahn 3.2 (section 5.2): a valid text message, then one with RSV2, then a ping, in one
/// read: the first message is delivered, the connection fails, the ping is never answered.
#[test]
fn case_3_2_valid_message_then_rsv_then_ping_in_one_read() {
    let stream = cat(&[
        &client_frame(true, TEXT, b"Hello"),
        &raw_frame(true, RSV2, TEXT, Some(KEY), b"Hello"),
        &client_frame(true, PING, b""),
    ]);
    let (err, events) = fails_whole(Role::Server, &stream, 1002);
    assert_eq!(err.violation, Violation::ReservedBits(2));
    assert_eq!(events, [text_ev(b"Hello")]);
}

/// Autobahn 3.3 (section 5.2): the same, frame by frame with writes between: the echo of the
/// first message is on the wire before the Close.
#[test]
fn case_3_3_valid_message_echoed_then_rsv_fails() {
    let mut s = server();
    ok(&mut s, &client_frame(true, TEXT, b"Hello"));
    let Some(Event::Text(t)) = s.poll_event() else {
        panic!("text")
    };
    s.send_text(t).unwrap();
    assert_eq!(take_frames(&mut s), [srv(true, TEXT, b"Hello")]);
    let result = feed(
        &mut s,
        &raw_frame(true, RSV1 | RSV3, TEXT, Some(KEY), b"Hello"),
    );
    let (err, events) = expect_failed(&mut s, result, 1002);
    assert_eq!(err.violation, Violation::ReservedBits(5));
    assert_eq!(events, []);
    // Nothing may be sent after a failure (section 7.1.7).
    assert!(matches!(
        s.send_text("late"),
        Err(SendError::Closing { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Autobahn 4.x: opcodes (section 5.2: "If an unknown opcode is received, the receiving
// endpoint MUST _Fail the WebSocket Connection_")
// ---------------------------------------------------------------------------------------------

fn check_reserved_opcode(opcode: u8) {
    for payload in [&b""[..], &b"reserved opcode payload"[..]] {
        let stream = client_frame(true, opcode, payload);
        let err = server_fails(&stream, 1002);
        assert_eq!(
            err.violation,
            Violation::Header(HeaderError::ReservedOpcode(opcode))
        );
        // Decided from the first two bytes.
        assert_eq!(fails_bytewise(Role::Server, &stream, 1002), 1);
        let (err, _) = fails_whole(Role::Client, &server_frame(true, opcode, payload), 1002);
        assert_eq!(
            err.violation,
            Violation::Header(HeaderError::ReservedOpcode(opcode))
        );
        // Also with FIN clear.
        server_fails(&client_frame(false, opcode, payload), 1002);
    }
}

/// Autobahn 4.1.1-4.1.5 (section 5.2): reserved non-control opcodes 3-7 fail with 1002.
#[test]
fn case_4_1_reserved_non_control_opcodes_fail_1002() {
    for opcode in 3..=7 {
        check_reserved_opcode(opcode);
    }
}

/// Autobahn 4.2.1-4.2.5 (section 5.2): reserved control opcodes 11-15 fail with 1002.
#[test]
fn case_4_2_reserved_control_opcodes_fail_1002() {
    for opcode in 11..=15 {
        check_reserved_opcode(opcode);
    }
}

/// Autobahn 4.1.3 / 4.2.3 (section 5.2): text, reserved opcode, ping in one read: the text
/// is delivered, the ping is not answered, only the Close goes out.
#[test]
fn case_4_3_message_then_reserved_opcode_then_ping() {
    for opcode in [5, 13] {
        let stream = cat(&[
            &client_frame(true, TEXT, b"Hello"),
            &client_frame(true, opcode, b""),
            &client_frame(true, PING, b""),
        ]);
        let (_, events) = fails_whole(Role::Server, &stream, 1002);
        assert_eq!(events, [text_ev(b"Hello")]);
    }
}

// ---------------------------------------------------------------------------------------------
// Autobahn 5.x: fragmentation (section 5.4), and control frame rules (section 5.5)
// ---------------------------------------------------------------------------------------------

/// Autobahn 5.1 (section 5.5: "Control frames ... MUST NOT be fragmented"): a ping with FIN
/// clear, followed by its would-be continuation, fails with 1002 at the first frame.
#[test]
fn case_5_1_fragmented_ping_fails_1002() {
    let first = client_frame(false, PING, b"fragment1");
    let stream = cat(&[&first, &client_frame(true, CONT, b"fragment2")]);
    let err = server_fails(&stream, 1002);
    assert_eq!(err.violation, Violation::FragmentedControl);
    assert!(fails_bytewise(Role::Server, &stream, 1002) < first.len());
}

/// Autobahn 5.2 (section 5.5): a fragmented pong fails with 1002.
#[test]
fn case_5_2_fragmented_pong_fails_1002() {
    let stream = cat(&[
        &client_frame(false, PONG, b"fragment1"),
        &client_frame(true, CONT, b"fragment2"),
    ]);
    let err = server_fails(&stream, 1002);
    assert_eq!(err.violation, Violation::FragmentedControl);
}

/// Section 5.5: a fragmented Close fails with 1002 (not taken as the peer's Close).
#[test]
fn case_5_2_fragmented_close_fails_1002() {
    let stream = client_frame(false, CLOSE, &close_body(1000, b""));
    let (err, events) = fails_whole(Role::Server, &stream, 1002);
    assert_eq!(err.violation, Violation::FragmentedControl);
    assert_eq!(events, []);
    let (err, _) = fails_whole(
        Role::Client,
        &server_frame(false, CLOSE, &close_body(1000, b"")),
        1002,
    );
    assert_eq!(err.violation, Violation::FragmentedControl);
}

/// Autobahn 5.3-5.5 (section 5.4): a text message in two fragments is reassembled, whether the
/// fragments come in one read, in separate reads, or split in every way.
#[test]
fn case_5_3_text_in_two_fragments_reassembled() {
    for role in ROLES {
        let stream = cat(&[
            &peer_frame(role, false, TEXT, b"fragment1"),
            &peer_frame(role, true, CONT, b"fragment2"),
        ]);
        check_splits(role, &stream, &[text_ev(b"fragment1fragment2")], &[]);
    }
}

/// Section 5.4: binary messages in many fragments, including empty ones, are reassembled;
/// split in every way.
#[test]
fn case_5_3_binary_in_many_fragments_reassembled() {
    let payload = bin(300);
    for role in ROLES {
        let mut stream = peer_frame(role, false, BINARY, &payload[..0]);
        let mut at = 0;
        for (i, n) in [1, 0, 2, 125, 126, 0, 40].into_iter().enumerate() {
            let fin = i == 6;
            let n = if fin { payload.len() - at } else { n };
            stream.extend(peer_frame(role, fin, CONT, &payload[at..at + n]));
            at += n;
        }
        check_splits(role, &stream, &[bin_ev(&payload)], &[]);
    }
}

/// Section 5.4: 1000 one-byte fragments of a binary message, and a text message whose every
/// byte is its own fragment.
#[test]
fn case_5_3_one_byte_fragments() {
    let payload = bin(1000);
    let mut stream = client_frame(false, BINARY, &payload[..1]);
    for i in 1..payload.len() {
        stream.extend(client_frame(
            i == payload.len() - 1,
            CONT,
            &payload[i..i + 1],
        ));
    }
    let mut s = server();
    ok(&mut s, &stream);
    assert_eq!(take_events(&mut s), [bin_ev(&payload)]);
    let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞".as_bytes();
    let mut stream = client_frame(false, TEXT, &text[..1]);
    for i in 1..text.len() {
        stream.extend(client_frame(i == text.len() - 1, CONT, &text[i..i + 1]));
    }
    check_splits(Role::Server, &stream, &[text_ev(text)], &[]);
}

/// Autobahn 5.6-5.8 (section 5.4: "control frames MAY be injected in the middle of a
/// fragmented message"): a ping between two fragments is answered, the message reassembled,
/// in any split.
#[test]
fn case_5_6_ping_between_fragments_answered() {
    for role in ROLES {
        let stream = cat(&[
            &peer_frame(role, false, TEXT, b"fragment1"),
            &peer_frame(role, true, PING, b"pongme 2!"),
            &peer_frame(role, true, CONT, b"fragment2"),
        ]);
        check_splits(
            role,
            &stream,
            &[ping_ev(b"pongme 2!"), text_ev(b"fragment1fragment2")],
            &[out_frame(role, true, PONG, b"pongme 2!")],
        );
    }
}

/// Autobahn 5.19-5.20 (section 5.4): a text message in 5 fragments with pings interleaved and
/// writes between: every ping answered in order, the PONG written before the message ends.
#[test]
fn case_5_19_pings_interleaved_with_five_fragments() {
    let mut s = server();
    let parts = [
        client_frame(false, TEXT, b"fragment1"),
        client_frame(false, CONT, b"fragment2"),
        client_frame(true, PING, b"pongme 1!"),
        client_frame(false, CONT, b"fragment3"),
        client_frame(false, CONT, b"fragment4"),
        client_frame(true, PING, b"pongme 2!"),
        client_frame(true, CONT, b"fragment5"),
    ];
    let mut frames = Vec::new();
    let mut events = Vec::new();
    for part in &parts {
        ok(&mut s, part);
        events.extend(take_events(&mut s));
        frames.extend(take_frames(&mut s));
    }
    assert_eq!(
        frames,
        [srv(true, PONG, b"pongme 1!"), srv(true, PONG, b"pongme 2!")]
    );
    assert_eq!(
        events,
        [
            ping_ev(b"pongme 1!"),
            ping_ev(b"pongme 2!"),
            text_ev(b"fragment1fragment2fragment3fragment4fragment5"),
        ]
    );
}

/// Section 5.4: a pong and a ping between fragments of a binary message, and an unsolicited
/// pong, do not disturb reassembly.
#[test]
fn case_5_7_pong_and_ping_between_binary_fragments() {
    let stream = cat(&[
        &client_frame(false, BINARY, &[1, 2]),
        &client_frame(true, PONG, b"p"),
        &client_frame(false, CONT, &[3]),
        &client_frame(true, PING, b"q"),
        &client_frame(true, CONT, &[4, 5]),
    ]);
    check_splits(
        Role::Server,
        &stream,
        &[pong_ev(b"p"), ping_ev(b"q"), bin_ev(&[1, 2, 3, 4, 5])],
        &[srv(true, PONG, b"q")],
    );
}

/// Autobahn 5.9-5.11 (section 5.4: a continuation frame only continues a started message):
/// a FIN continuation with nothing to continue fails with 1002 at its header, before the text
/// message after it.
#[test]
fn case_5_9_continuation_without_start_fails_1002() {
    for role in ROLES {
        let first = peer_frame(role, true, CONT, b"non-continuation payload");
        let stream = cat(&[&first, &peer_frame(role, true, TEXT, b"Hello, world!")]);
        let (err, events) = fails_whole(role, &stream, 1002);
        assert_eq!(err.violation, Violation::UnexpectedContinuation);
        assert_eq!(events, []);
        let at = fails_bytewise(role, &stream, 1002);
        assert_eq!(
            at,
            first.len() - 24 - 1,
            "{role:?}: fails at the header's last byte"
        );
    }
}

/// Autobahn 5.12-5.14 (section 5.4): a continuation with FIN clear and nothing to continue.
#[test]
fn case_5_12_non_fin_continuation_without_start_fails_1002() {
    let stream = cat(&[
        &client_frame(false, CONT, b"non-continuation payload"),
        &client_frame(true, TEXT, b"Hello, world!"),
    ]);
    let err = server_fails(&stream, 1002);
    assert_eq!(err.violation, Violation::UnexpectedContinuation);
}

/// Autobahn 5.15 (section 5.4): a text message in two fragments, then a continuation with
/// nothing to continue, then a text message, in one read: the first message is delivered,
/// then the connection fails.
#[test]
fn case_5_15_continuation_after_finished_message_fails_1002() {
    let stream = cat(&[
        &client_frame(false, TEXT, b"fragment1"),
        &client_frame(true, CONT, b"fragment2"),
        &client_frame(false, CONT, b"fragment3"),
        &client_frame(true, TEXT, b"fragment4"),
    ]);
    let (err, events) = fails_whole(Role::Server, &stream, 1002);
    assert_eq!(err.violation, Violation::UnexpectedContinuation);
    assert_eq!(events, [text_ev(b"fragment1fragment2")]);
}

/// Autobahn 5.16-5.17 (section 5.4): the "nothing to continue" pattern repeated after a
/// start fails at the first continuation.
#[test]
fn case_5_16_repeated_orphan_continuations_fail_1002() {
    for fin in [false, true] {
        let stream = cat(&[
            &client_frame(fin, CONT, b"fragment1"),
            &client_frame(false, TEXT, b"fragment2"),
            &client_frame(true, CONT, b"fragment3"),
        ])
        .repeat(2);
        let (err, events) = fails_whole(Role::Server, &stream, 1002);
        assert_eq!(err.violation, Violation::UnexpectedContinuation);
        assert_eq!(events, []);
    }
}

/// Autobahn 5.18 (section 5.4: a new data frame may not start while a message is
/// unfinished): two text frames that both carry the text opcode fail with 1002.
#[test]
fn case_5_18_new_data_frame_during_fragmented_message_fails_1002() {
    for (first, second) in [
        (TEXT, TEXT),
        (TEXT, BINARY),
        (BINARY, TEXT),
        (BINARY, BINARY),
    ] {
        for second_fin in [true, false] {
            let stream = cat(&[
                &client_frame(false, first, b"fragment1"),
                &client_frame(second_fin, second, b"fragment2"),
            ]);
            let err = server_fails(&stream, 1002);
            assert_eq!(err.violation, Violation::MessageUnfinished);
            let (err, _) = fails_whole(
                Role::Client,
                &cat(&[
                    &server_frame(false, first, b"fragment1"),
                    &server_frame(second_fin, second, b"fragment2"),
                ]),
                1002,
            );
            assert_eq!(err.violation, Violation::MessageUnfinished);
        }
    }
}

/// Section 5.4: after a fragmented message ends, a new one may start, of either kind.
#[test]
fn case_5_20_messages_after_fragmented_message() {
    let stream = cat(&[
        &client_frame(false, TEXT, b"a"),
        &client_frame(true, CONT, b"b"),
        &client_frame(false, BINARY, &[1]),
        &client_frame(true, CONT, &[2]),
        &client_frame(true, TEXT, b"c"),
    ]);
    check_splits(
        Role::Server,
        &stream,
        &[text_ev(b"ab"), bin_ev(&[1, 2]), text_ev(b"c")],
        &[],
    );
}

// ---------------------------------------------------------------------------------------------
// Autobahn 6.x: UTF-8 handling (section 8.1: "When an endpoint is to interpret a byte stream
// as UTF-8 but finds that the byte stream is not, in fact, a valid UTF-8 stream, that
// endpoint MUST _Fail the WebSocket Connection_"; section 7.4.1: 1007)
// ---------------------------------------------------------------------------------------------

/// Runs `text` (valid) through a server as one frame, as 1-byte fragments, and split in
/// every way.
fn check_valid_text(text: &[u8]) {
    assert!(std::str::from_utf8(text).is_ok(), "test bug: {text:02x?}");
    check_splits(
        Role::Server,
        &client_frame(true, TEXT, text),
        &[text_ev(text)],
        &[],
    );
    let mut s = server();
    ok(&mut s, &one_byte_fragments(text));
    assert_eq!(
        take_events(&mut s),
        [text_ev(text)],
        "{text:02x?} in 1-byte fragments"
    );
}

/// A text message whose every payload byte is its own frame (an empty one if `text` is).
fn one_byte_fragments(text: &[u8]) -> Vec<u8> {
    if text.is_empty() {
        return client_frame(true, TEXT, b"");
    }
    let mut stream = Vec::new();
    for (i, b) in text.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONT };
        stream.extend(client_frame(i == text.len() - 1, opcode, &[*b]));
    }
    stream
}

/// The length of the shortest prefix of `text` that no continuation can turn into UTF-8
/// (by the standard library's decoder, an independent oracle), if any.
fn first_impossible_prefix(text: &[u8]) -> Option<usize> {
    (1..=text.len()).find(|&p| match std::str::from_utf8(&text[..p]) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some(),
    })
}

/// Runs `text` (invalid) through servers: as one frame whole, as one frame one byte per read,
/// as 1-byte fragments, with the text split across two fragments at every position. Every
/// way fails with 1007 and no text event, and one byte per read fails exactly at the first
/// byte that makes the text impossible (fail fast), or at the frame's last byte when the text
/// only ends inside a code point.
fn check_invalid_text(text: &[u8]) {
    assert!(std::str::from_utf8(text).is_err(), "test bug: {text:02x?}");
    let frame = client_frame(true, TEXT, text);
    let (err, events) = fails_whole(Role::Server, &frame, 1007);
    assert!(
        matches!(err.violation, Violation::InvalidUtf8(_)),
        "{err:?}"
    );
    assert_eq!(events, []);
    let header_len = frame.len() - text.len();
    let expected_at = match first_impossible_prefix(text) {
        Some(p) => header_len + p - 1,
        None => frame.len() - 1,
    };
    assert_eq!(
        fails_bytewise(Role::Server, &frame, 1007),
        expected_at,
        "{text:02x?}: fail fast at the first impossible byte"
    );
    let (_, events) = fails_whole(Role::Server, &one_byte_fragments(text), 1007);
    assert_eq!(events, []);
    for cut in 0..=text.len() {
        let stream = cat(&[
            &client_frame(false, TEXT, &text[..cut]),
            &client_frame(true, CONT, &text[cut..]),
        ]);
        fails_whole(Role::Server, &stream, 1007);
    }
    // Client role, unmasked.
    fails_whole(Role::Client, &server_frame(true, TEXT, text), 1007);
}

/// Autobahn 6.1.1-6.1.3 (section 5.6): empty text frames and empty fragments are valid.
#[test]
fn case_6_1_empty_text_messages_and_fragments() {
    check_valid_text(b"");
    let stream = cat(&[
        &client_frame(false, TEXT, b""),
        &client_frame(false, CONT, b""),
        &client_frame(true, CONT, b""),
    ]);
    check_splits(Role::Server, &stream, &[text_ev(b"")], &[]);
    let stream = cat(&[
        &client_frame(false, TEXT, b""),
        &client_frame(false, CONT, b"middle frame payload"),
        &client_frame(true, CONT, b""),
    ]);
    check_splits(
        Role::Server,
        &stream,
        &[text_ev(b"middle frame payload")],
        &[],
    );
}

/// Autobahn 6.2.1-6.2.4 (section 8.1): valid multi-byte UTF-8 in one frame, split across two
/// fragments at every byte (inside code points too), in 1-byte fragments, and across reads.
#[test]
fn case_6_2_valid_utf8_split_across_fragments_and_reads() {
    let text = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
    check_valid_text(text);
    for cut in 0..=text.len() {
        let stream = cat(&[
            &client_frame(false, TEXT, &text[..cut]),
            &client_frame(true, CONT, &text[cut..]),
        ]);
        check_splits(Role::Server, &stream, &[text_ev(text)], &[]);
    }
    let kosme = "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes();
    check_valid_text(kosme);
}

/// Section 8.1 with section 5.4: a code point split across fragments with a ping between the
/// halves is still valid.
#[test]
fn case_6_2_code_point_split_around_an_interleaved_ping() {
    let text = "€𝄞".as_bytes();
    for cut in 1..text.len() {
        let stream = cat(&[
            &client_frame(false, TEXT, &text[..cut]),
            &client_frame(true, PING, b"!"),
            &client_frame(true, CONT, &text[cut..]),
        ]);
        check_splits(
            Role::Server,
            &stream,
            &[ping_ev(b"!"), text_ev(text)],
            &[srv(true, PONG, b"!")],
        );
    }
}

/// Autobahn 6.3.1-6.3.2 (section 8.1): "κόσμε" with a surrogate inside, whole and in 1-byte
/// fragments, fails with 1007.
#[test]
fn case_6_3_invalid_utf8_text_fails_1007() {
    check_invalid_text(&[
        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65,
        0x64, 0x69, 0x74, 0x65, 0x64,
    ]);
}

/// Autobahn 6.4.1-6.4.2 (section 8.1, fail fast): invalid UTF-8 in the FIRST fragment of a
/// message fails the connection when that fragment arrives, before the later fragments.
#[test]
fn case_6_4_fail_fast_on_invalid_first_fragment() {
    let kosme = "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes();
    for bad in [
        &[0xf4, 0x90, 0x80, 0x80][..],
        &[0xed, 0xa0, 0x80][..],
        &[0xc0, 0xaf][..],
    ] {
        let first = client_frame(false, TEXT, &cat(&[kosme, bad]));
        let mut s = server();
        let result = feed(&mut s, &first);
        let (err, events) = expect_failed(&mut s, result, 1007);
        assert!(matches!(err.violation, Violation::InvalidUtf8(_)));
        assert_eq!(events, []);
    }
    // 6.4.2: the first fragment ends in the middle of an invalid sequence; the second byte
    // of F4 90 arriving in the second fragment fails it.
    let mut s = server();
    ok(&mut s, &client_frame(false, TEXT, &cat(&[kosme, &[0xf4]])));
    let result = feed(&mut s, &client_frame(false, CONT, &[0x90]));
    expect_failed(&mut s, result, 1007);
}

/// Autobahn 6.4.3-6.4.4 (section 8.1, fail fast within a frame): a single text frame whose
/// payload turns invalid in its middle fails as soon as the bad byte arrives, before the rest
/// of the frame.
#[test]
fn case_6_4_fail_fast_within_a_frame() {
    let kosme = "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes();
    let payload = cat(&[kosme, &[0xf4, 0x90, 0x80, 0x80], b"edited"]);
    let frame = client_frame(true, TEXT, &payload);
    let header_len = frame.len() - payload.len();
    let bad_at = header_len + kosme.len() + 1; // the 0x90 after 0xf4
    let mut s = server();
    ok(&mut s, &frame[..bad_at]);
    let result = feed(&mut s, &frame[bad_at..bad_at + 1]);
    expect_failed(&mut s, result, 1007);
    // The same with a 16-bit length and a large rest still to come.
    let payload = cat(&[kosme, &[0xf4, 0x90, 0x80, 0x80], &ascii(60_000)]);
    let frame = client_frame(true, TEXT, &payload);
    let mut s = server();
    let result = feed(&mut s, &frame[..4 + 4 + kosme.len() + 2]);
    expect_failed(&mut s, result, 1007);
}

/// Autobahn 6.5.1-6.5.5 (section 8.1): valid UTF-8 with 1-, 2-, 3- and 4-byte sequences.
#[test]
fn case_6_5_valid_utf8_sequences() {
    for text in [
        "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}",
        "\u{3ba}",
        "\u{1f79}",
        "\u{3c3}\u{3bc}\u{3b5}",
        "\u{10348}\u{1d11e}",
    ] {
        check_valid_text(text.as_bytes());
    }
}

/// Autobahn 6.6.1-6.6.11 (section 8.1): every prefix of "κόσμε" as a whole message: valid
/// exactly when it ends on a code point boundary.
#[test]
fn case_6_6_prefixes_of_kosme() {
    let kosme = "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes();
    for n in 1..=kosme.len() {
        let prefix = &kosme[..n];
        if std::str::from_utf8(prefix).is_ok() {
            check_valid_text(prefix);
        } else {
            check_invalid_text(prefix);
        }
    }
}

/// Autobahn 6.7, 6.9, 6.11 (section 8.1): first, last and other boundary code points of each
/// sequence length are valid.
#[test]
fn case_6_7_boundary_code_points_valid() {
    for seq in [
        &[0x00][..],
        &[0xc2, 0x80],
        &[0xe0, 0xa0, 0x80],
        &[0xf0, 0x90, 0x80, 0x80],
        &[0x7f],
        &[0xdf, 0xbf],
        &[0xef, 0xbf, 0xbf],
        &[0xf4, 0x8f, 0xbf, 0xbf],
        &[0xed, 0x9f, 0xbf],
        &[0xee, 0x80, 0x80],
        &[0xef, 0xbf, 0xbd],
    ] {
        check_valid_text(seq);
    }
}

/// Autobahn 6.8, 6.10, 6.11.5 (section 8.1, RFC 3629): 5- and 6-byte forms and anything above
/// U+10FFFF fail with 1007.
#[test]
fn case_6_8_above_u10ffff_fails_1007() {
    for seq in [
        &[0xf8, 0x88, 0x80, 0x80, 0x80][..],
        &[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80],
        &[0xf7, 0xbf, 0xbf, 0xbf],
        &[0xfb, 0xbf, 0xbf, 0xbf, 0xbf],
        &[0xfd, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf],
        &[0xf4, 0x90, 0x80, 0x80],
        &[0xf5, 0x80, 0x80, 0x80],
    ] {
        check_invalid_text(seq);
    }
}

/// Autobahn 6.12 (section 8.1): unexpected continuation bytes fail with 1007.
#[test]
fn case_6_12_unexpected_continuation_bytes_fail_1007() {
    for seq in [
        &[0x80][..],
        &[0xbf],
        &[0x80, 0xbf],
        &[0x80, 0xbf, 0x80],
        &[0x80, 0xbf, 0x80, 0xbf],
        &[0x80, 0xbf, 0x80, 0xbf, 0x80],
        &[0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf],
        &[0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf, 0x80],
    ] {
        check_invalid_text(seq);
    }
    let all: Vec<u8> = (0x80..=0xbf).collect();
    check_invalid_text(&all);
}

/// Autobahn 6.13 (section 8.1): lonely start bytes, each followed by a space, fail with 1007.
#[test]
fn case_6_13_lonely_start_bytes_fail_1007() {
    for range in [
        0xc0..=0xdf,
        0xe0..=0xef,
        0xf0..=0xf7,
        0xf8..=0xfb,
        0xfc..=0xfd,
    ] {
        let seq: Vec<u8> = range.flat_map(|b| [b, 0x20]).collect();
        check_invalid_text(&seq);
    }
}

/// Autobahn 6.14-6.15 (section 8.1): sequences with the last continuation byte missing, alone
/// and concatenated, fail with 1007 (at the end of the message when nothing before is
/// impossible).
#[test]
fn case_6_14_last_continuation_byte_missing_fails_1007() {
    let seqs: [&[u8]; 10] = [
        &[0xc0],
        &[0xe0, 0x80],
        &[0xf0, 0x80, 0x80],
        &[0xf8, 0x80, 0x80, 0x80],
        &[0xfc, 0x80, 0x80, 0x80, 0x80],
        &[0xdf],
        &[0xef, 0xbf],
        &[0xf7, 0xbf, 0xbf],
        &[0xfb, 0xbf, 0xbf, 0xbf],
        &[0xfd, 0xbf, 0xbf, 0xbf, 0xbf],
    ];
    for seq in seqs {
        check_invalid_text(seq);
    }
    check_invalid_text(&seqs.concat());
    // Valid text ending inside a code point: only the end of the message decides.
    check_invalid_text(&cat(&[b"abc", &[0xe2, 0x82]]));
    check_invalid_text(&cat(&["€".as_bytes(), &[0xf0, 0x9d, 0x84]]));
}

/// Autobahn 6.16 (section 8.1): the impossible bytes FE and FF fail with 1007.
#[test]
fn case_6_16_impossible_bytes_fail_1007() {
    for seq in [&[0xfe][..], &[0xff], &[0xfe, 0xfe, 0xff, 0xff]] {
        check_invalid_text(seq);
    }
}

/// Autobahn 6.17-6.19 (section 8.1, RFC 3629 section 3: overlong forms are invalid):
/// overlong ASCII, maximal overlongs and overlong NUL fail with 1007.
#[test]
fn case_6_17_overlong_encodings_fail_1007() {
    for seq in [
        &[0xc0, 0xaf][..],
        &[0xe0, 0x80, 0xaf],
        &[0xf0, 0x80, 0x80, 0xaf],
        &[0xf8, 0x80, 0x80, 0x80, 0xaf],
        &[0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf],
        &[0xc1, 0xbf],
        &[0xe0, 0x9f, 0xbf],
        &[0xf0, 0x8f, 0xbf, 0xbf],
        &[0xf8, 0x87, 0xbf, 0xbf, 0xbf],
        &[0xfc, 0x83, 0xbf, 0xbf, 0xbf, 0xbf],
        &[0xc0, 0x80],
        &[0xe0, 0x80, 0x80],
        &[0xf0, 0x80, 0x80, 0x80],
        &[0xf8, 0x80, 0x80, 0x80, 0x80],
        &[0xfc, 0x80, 0x80, 0x80, 0x80, 0x80],
    ] {
        check_invalid_text(seq);
        // And after valid text, so the bad bytes are not at the start of the message.
        check_invalid_text(&cat(&[b"overlong: ", seq]));
    }
}

/// Autobahn 6.20-6.21 (section 8.1, RFC 3629: surrogates U+D800-U+DFFF are not characters):
/// single and paired UTF-16 surrogates fail with 1007.
#[test]
fn case_6_20_surrogates_fail_1007() {
    let singles: [&[u8]; 7] = [
        &[0xed, 0xa0, 0x80],
        &[0xed, 0xad, 0xbf],
        &[0xed, 0xae, 0x80],
        &[0xed, 0xaf, 0xbf],
        &[0xed, 0xb0, 0x80],
        &[0xed, 0xbe, 0x80],
        &[0xed, 0xbf, 0xbf],
    ];
    for seq in singles {
        check_invalid_text(seq);
    }
    for high in &singles[..4] {
        for low in [&[0xed, 0xb0, 0x80][..], &[0xed, 0xbf, 0xbf]] {
            check_invalid_text(&cat(&[high, low]));
        }
    }
}

/// Autobahn 6.22-6.23 (section 8.1): noncharacters (U+FFFE, U+FFFF, U+1FFFE ... U+10FFFF,
/// U+FDD0-U+FDEF) and U+FFFD are valid UTF-8.
#[test]
fn case_6_22_noncharacters_and_replacement_character_valid() {
    let mut seqs: Vec<Vec<u8>> = vec![vec![0xef, 0xbf, 0xbe], vec![0xef, 0xbf, 0xbf]];
    for plane in 1..=16u32 {
        for low in [0xfffe, 0xffff] {
            let c = char::from_u32(plane << 16 | low).unwrap();
            seqs.push(c.to_string().into_bytes());
        }
    }
    for c in 0xfdd0..=0xfdef {
        seqs.push(char::from_u32(c).unwrap().to_string().into_bytes());
    }
    seqs.push(vec![0xef, 0xbf, 0xbd]);
    for seq in &seqs {
        check_valid_text(seq);
    }
}

/// Section 8.1: binary messages are never checked for UTF-8.
#[test]
fn case_6_24_binary_is_not_utf8_checked() {
    let payload = [0xed, 0xa0, 0x80, 0xff, 0xfe, 0xc0, 0xaf];
    check_splits(
        Role::Server,
        &client_frame(true, BINARY, &payload),
        &[bin_ev(&payload)],
        &[],
    );
}

// ---------------------------------------------------------------------------------------------
// Autobahn 7.x: close handling (sections 5.5.1, 7.1.2-7.1.5, 7.4)
// ---------------------------------------------------------------------------------------------

/// The peer of an engine of `role` closes with `body`; the application takes every event.
/// Returns the events, the frames written, and the events after writing (the end).
fn peer_closes(role: Role, body: &[u8]) -> Outcome {
    run_cut(role, &|_| {}, &peer_frame(role, true, CLOSE, body), &[]).expect("close accepted")
}

fn assert_closed_by_peer(after: &[Event], body: Option<CloseFrame>) {
    match after {
        [Event::Ended(ended)] => {
            assert_eq!(ended.reason, EndReason::ClosedByPeer(body));
            assert!(ended.is_clean());
            assert_eq!(ended.unsent, Default::default());
        }
        other => panic!("expected one Ended event, got {other:?}"),
    }
}

/// Autobahn 7.1.1 (section 5.5.1, 7.1.2): a text message is echoed, then the peer's Close
/// 1000 is echoed with 1000, after the echoed message.
#[test]
fn case_7_1_1_echo_then_close_normal() {
    let mut s = server();
    ok(
        &mut s,
        &cat(&[
            &client_frame(true, TEXT, b"Hello World!"),
            &client_frame(true, CLOSE, &close_body(1000, b"")),
        ]),
    );
    let Some(Event::Text(t)) = s.poll_event() else {
        panic!("text first")
    };
    s.send_text(t).unwrap();
    assert_eq!(
        s.poll_event(),
        Some(Event::Close(Some(CloseFrame {
            code: 1000,
            reason: String::new()
        })))
    );
    assert_eq!(
        take_frames(&mut s),
        [
            srv(true, TEXT, b"Hello World!"),
            srv(true, CLOSE, &[0x03, 0xe8])
        ]
    );
    assert_closed_by_peer(
        &take_events(&mut s),
        Some(CloseFrame {
            code: 1000,
            reason: String::new(),
        }),
    );
    assert!(s.poll_transmit().is_none());
    // The connection is over: input is refused.
    assert_eq!(
        feed(&mut s, &client_frame(true, TEXT, b"late")),
        Err(ReceiveError::NotAccepting)
    );
}

/// Autobahn 7.1.2 (section 5.5.1: "after sending a Close frame, the endpoint MUST NOT send any
/// more data frames"; data after the peer's Close is discarded): a second Close is ignored.
#[test]
fn case_7_1_2_close_twice() {
    for role in ROLES {
        let close = peer_frame(role, true, CLOSE, &close_body(1000, b""));
        let stream = cat(&[&close, &close]);
        let (events, frames, after) = run_cut(role, &|_| {}, &stream, &[]).unwrap();
        assert_eq!(events, [close_ev(1000, "")]);
        assert_eq!(frames, [out_frame(role, true, CLOSE, &[0x03, 0xe8])]);
        assert_closed_by_peer(
            &after,
            Some(CloseFrame {
                code: 1000,
                reason: String::new(),
            }),
        );
        // And in a later read.
        let mut conn = engine(role);
        ok(&mut conn, &close);
        ok(&mut conn, &close);
        assert_eq!(take_events(&mut conn), [close_ev(1000, "")]);
        assert_eq!(take_frames(&mut conn).len(), 1);
    }
}

/// Autobahn 7.1.3 (section 5.5.1): a ping after the Close is discarded, not answered.
#[test]
fn case_7_1_3_ping_after_close_discarded() {
    let stream = cat(&[
        &client_frame(true, CLOSE, &close_body(1000, b"")),
        &client_frame(true, PING, b"Hello World!"),
    ]);
    check_splits(
        Role::Server,
        &stream,
        &[close_ev(1000, "")],
        &[srv(true, CLOSE, &[0x03, 0xe8])],
    );
}

/// Autobahn 7.1.4 (section 5.5.1): a text message after the Close is discarded, even garbage
/// that would otherwise fail the connection.
#[test]
fn case_7_1_4_data_after_close_discarded() {
    for after in [
        client_frame(true, TEXT, b"Hello World!"),
        client_frame(true, 0x3, b"reserved opcode"),
        client_frame(true, TEXT, &[0xff, 0xfe]),
        vec![0xff; 40],
    ] {
        let stream = cat(&[&client_frame(true, CLOSE, &close_body(1000, b"")), &after]);
        check_splits(
            Role::Server,
            &stream,
            &[close_ev(1000, "")],
            &[srv(true, CLOSE, &[0x03, 0xe8])],
        );
    }
}

/// Autobahn 7.1.5 (section 5.5.1, 5.4): first fragment, Close, second fragment: the Close
/// ends the connection, the unfinished message is never delivered.
#[test]
fn case_7_1_5_close_in_middle_of_fragmented_message() {
    let stream = cat(&[
        &client_frame(false, TEXT, b"fragment1"),
        &client_frame(true, CLOSE, &close_body(1000, b"")),
        &client_frame(true, CONT, b"fragment2"),
    ]);
    check_splits(
        Role::Server,
        &stream,
        &[close_ev(1000, "")],
        &[srv(true, CLOSE, &[0x03, 0xe8])],
    );
    // Even when the unfinished text stopped inside a code point.
    let stream = cat(&[
        &client_frame(false, TEXT, &[0xe2, 0x82]),
        &client_frame(true, CLOSE, &close_body(1000, b"")),
    ]);
    let (events, frames, _) = run_cut(Role::Server, &|_| {}, &stream, &[]).unwrap();
    assert_eq!(events, [close_ev(1000, "")]);
    assert_eq!(frames, [srv(true, CLOSE, &[0x03, 0xe8])]);
}

/// Autobahn 7.1.6 (section 5.5.1, 7.1.2, and the crate's contract): a large message, then a
/// Close, then a ping. The echo of the Close is queued only when the application takes the
/// Close event, after the replies it queued to earlier messages; the ping is discarded.
#[test]
fn case_7_1_6_close_echo_after_application_replies() {
    let big = ascii(256 << 10);
    let mut s = server();
    ok(
        &mut s,
        &cat(&[
            &client_frame(true, TEXT, &big),
            &client_frame(true, BINARY, b"second"),
            &client_frame(true, CLOSE, &close_body(1000, b"bye")),
            &client_frame(true, PING, b"Hello World!"),
        ]),
    );
    // Nothing is written before the application has seen the messages.
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.poll_event(), Some(text_ev(&big)));
    s.send_text(Text::from(String::from_utf8(big.clone()).unwrap()))
        .unwrap();
    // The reply goes out; no Close yet.
    let first = take_frames(&mut s);
    assert!(first.iter().all(|f| f.opcode != CLOSE));
    let echoed: Vec<u8> = first.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(echoed, big);
    assert_eq!(s.poll_event(), Some(bin_ev(b"second")));
    s.send_binary(&b"reply to second"[..]).unwrap();
    s.send_text("another reply").unwrap();
    // Taking the Close queues the echo behind both replies.
    assert_eq!(s.poll_event(), Some(close_ev(1000, "bye")));
    assert!(matches!(
        s.send_text("too late"),
        Err(SendError::Closing { .. })
    ));
    assert_eq!(
        take_frames(&mut s),
        [
            srv(true, BINARY, b"reply to second"),
            srv(true, TEXT, b"another reply"),
            srv(true, CLOSE, &[0x03, 0xe8]),
        ]
    );
    assert_closed_by_peer(
        &take_events(&mut s),
        Some(CloseFrame {
            code: 1000,
            reason: "bye".into(),
        }),
    );
}

/// Section 5.5.1 and the crate's contract: a PING that arrived before the Close is answered at
/// once (the PONG does not wait for the application), and precedes the echo.
#[test]
fn case_7_1_11_pong_before_close_echo() {
    let mut s = server();
    ok(
        &mut s,
        &cat(&[
            &client_frame(true, PING, b"p"),
            &client_frame(true, CLOSE, &close_body(1001, b"")),
        ]),
    );
    assert_eq!(take_frames(&mut s), [srv(true, PONG, b"p")]);
    assert_eq!(take_events(&mut s), [ping_ev(b"p"), close_ev(1001, "")]);
    assert_eq!(take_frames(&mut s), [srv(true, CLOSE, &[0x03, 0xe9])]);
}

/// Section 7.1.2 / config `close_timeout`: if the application never takes the Close event,
/// the echo goes out at `close_timeout` anyway.
#[test]
fn case_7_1_8_close_echo_sent_at_close_timeout() {
    let mut s = server();
    ok(&mut s, &client_frame(true, CLOSE, &close_body(1000, b"")));
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.poll_timeout(), Some(at_secs(5.0)));
    s.handle_timeout(at_secs(4.999));
    assert!(s.poll_transmit().is_none());
    s.handle_timeout(at_secs(5.0));
    assert_eq!(take_frames(&mut s), [srv(true, CLOSE, &[0x03, 0xe8])]);
    let events = take_events(&mut s);
    assert_eq!(events[0], close_ev(1000, ""));
    assert_closed_by_peer(
        &events[1..],
        Some(CloseFrame {
            code: 1000,
            reason: String::new(),
        }),
    );
}

/// Section 7.1.2 (our side starts the close handshake): the Close is written with the code
/// and reason, data from the peer still arrives until its Close, which ends the connection.
#[test]
fn case_7_1_9_close_started_locally() {
    for role in ROLES {
        let mut conn = engine(role);
        conn.close(1000, "bye").unwrap();
        assert!(matches!(
            conn.send_text("x"),
            Err(SendError::Closing { .. })
        ));
        assert_eq!(
            take_frames(&mut conn),
            [out_frame(role, true, CLOSE, &close_body(1000, b"bye"))]
        );
        ok(&mut conn, &peer_frame(role, true, TEXT, b"in flight"));
        ok(
            &mut conn,
            &peer_frame(role, true, CLOSE, &close_body(1000, b"")),
        );
        let events = take_events(&mut conn);
        assert_eq!(events[..2], [text_ev(b"in flight"), close_ev(1000, "")]);
        match &events[2..] {
            [Event::Ended(e)] => assert_eq!(
                e.reason,
                EndReason::ClosedLocally {
                    sent: CloseFrame {
                        code: 1000,
                        reason: "bye".into()
                    },
                    reply: Some(CloseFrame {
                        code: 1000,
                        reason: String::new()
                    }),
                }
            ),
            other => panic!("{other:?}"),
        }
        assert!(take_frames(&mut conn).is_empty());
    }
}

/// Section 7.1.2/5.5.1 (both sides close at once): our Close is queued, not yet written,
/// when the peer's arrives: exactly one Close goes out (ours, no echo on top), and the
/// handshake completes as closed locally with the peer's code as the reply.
#[test]
fn case_7_1_13_simultaneous_close() {
    for role in ROLES {
        let mut conn = engine(role);
        conn.close(1000, "mine").unwrap();
        ok(
            &mut conn,
            &peer_frame(role, true, CLOSE, &close_body(1001, b"theirs")),
        );
        assert_eq!(take_events(&mut conn), [close_ev(1001, "theirs")]);
        assert_eq!(
            take_frames(&mut conn),
            [out_frame(role, true, CLOSE, &close_body(1000, b"mine"))]
        );
        match take_events(&mut conn).as_slice() {
            [Event::Ended(e)] => assert_eq!(
                e.reason,
                EndReason::ClosedLocally {
                    sent: CloseFrame {
                        code: 1000,
                        reason: "mine".into()
                    },
                    reply: Some(CloseFrame {
                        code: 1001,
                        reason: "theirs".into()
                    }),
                }
            ),
            other => panic!("{other:?}"),
        }
    }
}

/// Autobahn 7.3.1 (section 5.5.1: the body is optional; section 7.4.1: no code means 1005 is
/// reported, never sent): a Close without body is echoed with an empty body.
#[test]
fn case_7_3_1_close_without_body_echoed_empty() {
    for role in ROLES {
        let (events, frames, after) = peer_closes(role, b"");
        assert_eq!(events, [Event::Close(None)]);
        assert_eq!(frames, [out_frame(role, true, CLOSE, b"")]);
        assert_closed_by_peer(&after, None);
    }
    let (_, frames, _) = peer_closes(Role::Server, b"");
    assert_eq!(wire::parse_all(&[0x88, 0x00]), frames);
}

/// Autobahn 7.3.2 (section 5.5.1: "If there is a body, the first two bytes of the body MUST
/// be a 2-byte unsigned integer"): a 1-byte body fails with 1002.
#[test]
fn case_7_3_2_close_with_one_byte_body_fails_1002() {
    let err = server_fails(&client_frame(true, CLOSE, &[0x03]), 1002);
    assert_eq!(
        err.violation,
        Violation::CloseBody(wsframe::close::CloseBodyError::OneByte)
    );
    fails_whole(Role::Client, &server_frame(true, CLOSE, &[0x03]), 1002);
}

/// Autobahn 7.3.3-7.3.5 (section 5.5.1): Close 1000 without reason, with a reason, and with
/// the longest reason (123 bytes) are echoed with 1000.
#[test]
fn case_7_3_3_close_1000_with_reasons_echoed() {
    let long = "*".repeat(123);
    let multibyte = "é".repeat(61); // 122 bytes
    for reason in ["", "Hello World!", long.as_str(), multibyte.as_str()] {
        for role in ROLES {
            let (events, frames, after) = peer_closes(role, &close_body(1000, reason.as_bytes()));
            assert_eq!(events, [close_ev(1000, reason)]);
            assert_eq!(frames, [out_frame(role, true, CLOSE, &[0x03, 0xe8])]);
            assert_closed_by_peer(
                &after,
                Some(CloseFrame {
                    code: 1000,
                    reason: reason.into(),
                }),
            );
        }
    }
}

/// Autobahn 7.3.6 (section 5.5): a Close with a 124-byte reason (126-byte payload) fails with
/// 1002 as an over-long control frame.
#[test]
fn case_7_3_6_close_reason_too_long_fails_1002() {
    let body = close_body(1000, "*".repeat(124).as_bytes());
    let err = server_fails(&client_frame(true, CLOSE, &body), 1002);
    assert_eq!(err.violation, Violation::ControlTooLong(126));
}

/// Autobahn 7.5.1 (section 5.5.1: the reason is UTF-8; the brief for this crate: 1002): a
/// Close whose reason is not UTF-8 fails with 1002, not echoed.
#[test]
fn case_7_5_1_close_reason_invalid_utf8_fails_1002() {
    let bad_reason = [
        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65,
        0x64, 0x69, 0x74, 0x65, 0x64,
    ];
    let (err, events) = fails_whole(
        Role::Server,
        &client_frame(true, CLOSE, &close_body(1000, &bad_reason)),
        1002,
    );
    assert_eq!(
        err.violation,
        Violation::CloseBody(wsframe::close::CloseBodyError::ReasonNotUtf8)
    );
    assert_eq!(events, []);
    server_fails(
        &client_frame(true, CLOSE, &close_body(1000, &[0xe2, 0x82])),
        1002,
    );
    fails_whole(
        Role::Client,
        &server_frame(true, CLOSE, &close_body(1000, &[0xff])),
        1002,
    );
}

/// Autobahn 7.7.1-7.7.13 (section 7.4.1, IANA registry): valid close codes are echoed.
#[test]
fn case_7_7_valid_close_codes_echoed() {
    let codes = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ];
    for code in codes {
        for role in ROLES {
            let (events, frames, after) = peer_closes(role, &close_body(code, b"reason"));
            assert_eq!(events, [close_ev(code, "reason")], "code {code}");
            assert_eq!(
                frames,
                [out_frame(role, true, CLOSE, &code.to_be_bytes())],
                "code {code}"
            );
            assert_closed_by_peer(
                &after,
                Some(CloseFrame {
                    code,
                    reason: "reason".into(),
                }),
            );
        }
    }
}

/// Autobahn 7.9.1-7.9.13 and 7.13 (section 7.4.1/7.4.2: 0-999 unused, 1004-1006 and 1015
/// reserved and never on the wire, 1016-2999 unassigned, above 4999 undefined): invalid close
/// codes fail with 1002 and are not echoed.
#[test]
fn case_7_9_invalid_close_codes_fail_1002() {
    let codes = [
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 10000, 65535,
    ];
    for code in codes {
        let err = server_fails(&client_frame(true, CLOSE, &close_body(code, b"")), 1002);
        assert_eq!(
            err.violation,
            Violation::CloseBody(wsframe::close::CloseBodyError::ForbiddenCode(code))
        );
        fails_whole(
            Role::Client,
            &server_frame(true, CLOSE, &close_body(code, b"reason")),
            1002,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Section 5.1: masking direction; section 5.2: the 64-bit length's top bit
// ---------------------------------------------------------------------------------------------

/// Section 5.1 ("a server MUST close the connection upon receiving a frame that is not
/// masked ... status code 1002"): every unmasked frame into a server fails with 1002,
/// decided from the header.
#[test]
fn masking_rfc_5_1_server_rejects_unmasked_frames_1002() {
    for opcode in [TEXT, BINARY, PING, PONG, CLOSE, CONT] {
        let stream = server_frame(true, opcode, b"Hello");
        let err = server_fails(&stream, 1002);
        assert_eq!(err.violation, Violation::UnmaskedFrame, "opcode {opcode}");
        assert_eq!(fails_bytewise(Role::Server, &stream, 1002), 1);
    }
}

/// Section 5.1 ("A client MUST close a connection if it detects a masked frame ... 1002"):
/// a masked frame into a client fails with 1002, and the client's Close is itself masked.
#[test]
fn masking_rfc_5_1_client_rejects_masked_frames_1002() {
    for opcode in [TEXT, BINARY, PING, PONG, CLOSE] {
        let stream = client_frame(true, opcode, b"Hello");
        let mut c = client();
        let result = feed(&mut c, &stream);
        let bytes = take_wire(&mut c);
        let frames = wire::parse_all(&bytes);
        assert_eq!(frames[0].mask, Some([CLIENT_KEY_BYTE; 4]));
        let (err, events) = expect_failed_with_wire(&mut c, result, 1002, frames);
        assert_eq!(err.violation, Violation::MaskedFrame);
        assert_eq!(events, []);
        // Decided once the mask key is in, before the payload.
        assert_eq!(fails_bytewise(Role::Client, &stream, 1002), 5);
    }
}

/// Section 5.1/5.3, client role: every frame the client sends is masked with a key from its
/// random source; exact bytes of the masked "Hello" of section 5.7 with the RFC's key.
#[test]
fn masking_rfc_5_1_client_masks_every_frame() {
    let mut c = Connection::client(
        Config::default(),
        Box::new(|b: &mut [u8]| {
            for k in b.chunks_mut(4) {
                k.copy_from_slice(&KEY[..k.len()]);
            }
        }),
        Instant::ZERO,
    );
    c.send_text("Hello").unwrap();
    assert_eq!(
        take_wire(&mut c),
        [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    // Every later frame is masked too, each with the next key from the source.
    let mut c = counting_client(|_| {});
    c.send_binary(bin(300)).unwrap();
    c.ping(&b"p"[..]).unwrap();
    c.close(1000, "").unwrap();
    let frames = take_frames(&mut c);
    assert_eq!(
        frames,
        [
            Frame::new(true, PING, Some([0, 1, 2, 3]), b"p"),
            Frame::new(true, BINARY, Some([4, 5, 6, 7]), &bin(300)),
            Frame::new(true, CLOSE, Some([8, 9, 10, 11]), &[0x03, 0xe8]),
        ]
    );
}

/// Section 5.2 ("the most significant bit MUST be 0"): a 64-bit length with the top bit set
/// fails with 1002 from the header, for both roles.
#[test]
fn length_rfc_5_2_top_bit_set_fails_1002() {
    for len in [1u64 << 63, u64::MAX, (1 << 63) | 5] {
        let stream = header(0x82, Some(KEY), len, LenForm::Ext64);
        let (err, _) = fails_whole(Role::Server, &stream, 1002);
        assert_eq!(err.violation, Violation::Header(HeaderError::LengthTopBit));
        // The length alone decides, before the mask key.
        assert_eq!(fails_bytewise(Role::Server, &stream, 1002), 9);
        let stream = header(0x82, None, len, LenForm::Ext64);
        let (err, _) = fails_whole(Role::Client, &stream, 1002);
        assert_eq!(err.violation, Violation::Header(HeaderError::LengthTopBit));
    }
}

// ---------------------------------------------------------------------------------------------
// Section 7.1.7: failing the connection
// ---------------------------------------------------------------------------------------------

/// Section 7.1.7 ("_Fail the WebSocket Connection_"): queued data and an owed PONG are
/// dropped and counted, only the Close goes out; sends are refused; `receive` answers
/// `NotAccepting`; the end reports the code and what was unsent.
#[test]
fn fail_rfc_7_1_7_drops_queued_data_and_sends_only_close() {
    let mut s = server();
    s.send_text("one").unwrap();
    s.send_binary(bin(1000)).unwrap();
    ok(&mut s, &client_frame(true, PING, b"owed"));
    let result = feed(&mut s, &client_frame(true, 0x3, b""));
    assert!(matches!(
        s.send_text("after"),
        Err(SendError::Closing { .. })
    ));
    assert!(matches!(s.ping(&b""[..]), Err(SendError::Closing { .. })));
    let bytes = take_wire(&mut s);
    let frames = wire::parse_all(&bytes);
    // Check the end before `expect_failed` drains it.
    let (err, events) = expect_failed_with_wire(&mut s, result, 1002, frames);
    assert_eq!(events, [ping_ev(b"owed")]);
    assert_eq!(err.code, 1002);
    let mut s = server();
    s.send_text("one").unwrap();
    s.send_binary(bin(1000)).unwrap();
    let _ = feed(&mut s, &client_frame(true, 0x3, b""));
    take_wire(&mut s);
    match take_events(&mut s).as_slice() {
        [Event::Ended(e)] => {
            assert_eq!(e.unsent.messages, 2);
            assert_eq!(e.unsent.bytes, 1003);
        }
        other => panic!("{other:?}"),
    }
}

/// Section 7.1.7 and section 5.2 (frames are never interleaved): a frame already partly
/// written when the connection fails is finished, then the Close follows.
#[test]
fn fail_rfc_7_1_7_finishes_frame_in_flight() {
    let mut s = server();
    s.send_binary(bin(500)).unwrap();
    s.send_text("never").unwrap();
    let t = s.poll_transmit().unwrap();
    let mut written = t.header.to_vec();
    written.extend_from_slice(&t.payload[..10]);
    let n = written.len();
    s.advance_transmit(n);
    let result = feed(&mut s, &server_frame(true, TEXT, b"unmasked"));
    written.extend(take_wire(&mut s));
    let mut frames = wire::parse_all(&written);
    assert_eq!(frames.remove(0), srv(true, BINARY, &bin(500)));
    let (err, _) = expect_failed_with_wire(&mut s, result, 1002, frames);
    assert_eq!(err.violation, Violation::UnmaskedFrame);
}

/// Section 7.1.7: a PONG partly written when the connection fails is finished before the
/// Close; partial writes never interleave frames.
#[test]
fn fail_rfc_7_1_7_after_partial_pong() {
    let mut s = server();
    ok(&mut s, &client_frame(true, PING, b"12345"));
    let t = s.poll_transmit().unwrap();
    assert!(t.starts_frame);
    s.advance_transmit(3);
    let result = feed(&mut s, &client_frame(false, PING, b""));
    let rest = take_wire_partial(&mut s, 1);
    let mut bytes = vec![0x8a, 0x05, b'1'];
    bytes.extend(rest);
    let mut frames = wire::parse_all(&bytes);
    assert_eq!(frames.remove(0), srv(true, PONG, b"12345"));
    expect_failed_with_wire(&mut s, result, 1002, frames);
}

// ---------------------------------------------------------------------------------------------
// Autobahn 9.x: limits and performance (section 10.4: implementations should impose limits)
// ---------------------------------------------------------------------------------------------

/// Autobahn 9.1.1-9.1.6 / 9.2.1-9.2.6: text and binary messages of 64 KiB, 256 KiB, 1 MiB,
/// 4 MiB, 8 MiB and 16 MiB in one frame pass with the default limits.
#[test]
fn case_9_1_large_single_frame_messages_pass() {
    for size in [64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20] {
        let text = ascii(size);
        let mut s = server();
        ok(&mut s, &client_frame(true, TEXT, &text));
        assert!(take_events(&mut s) == [text_ev(&text)], "text {size}");
        drop(text);
        let data = bin(size);
        let mut c = client();
        ok(&mut c, &server_frame(true, BINARY, &data));
        assert!(take_events(&mut c) == [bin_ev(&data)], "binary {size}");
    }
}

/// Autobahn 9.3.1-9.3.9 / 9.4.1-9.4.9: a 4 MiB message in fragments of 64 B to 4 MiB passes.
#[test]
fn case_9_3_large_fragmented_messages_pass() {
    let size = 4 << 20;
    let text = ascii(size);
    let data = bin(size);
    for frag in [
        64,
        256,
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
    ] {
        for (opcode, payload) in [(TEXT, &text), (BINARY, &data)] {
            let mut stream = Vec::with_capacity(size + size / frag * 14 + 14);
            let chunks: Vec<&[u8]> = payload.chunks(frag).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let op = if i == 0 { opcode } else { CONT };
                stream.extend(client_frame(i == chunks.len() - 1, op, chunk));
            }
            let mut s = server();
            ok(&mut s, &stream);
            let expected = if opcode == TEXT {
                text_ev(payload)
            } else {
                bin_ev(payload)
            };
            assert!(take_events(&mut s) == [expected], "fragments of {frag}");
        }
    }
}

/// Autobahn 9.5.1-9.5.6 / 9.6.1-9.6.6: a 1 MiB message in one frame arriving in chops of
/// 64 B to 2 KiB.
#[test]
fn case_9_5_large_message_in_small_chops() {
    let text = ascii(1 << 20);
    let data = bin(1 << 20);
    for chop in [64, 128, 256, 512, 1024, 2048] {
        let mut s = server();
        feed_chunked(&mut s, &client_frame(true, TEXT, &text), chop).unwrap();
        assert!(
            take_events(&mut s) == [text_ev(&text)],
            "text in chops of {chop}"
        );
        let mut s = server();
        feed_chunked(&mut s, &client_frame(true, BINARY, &data), chop).unwrap();
        assert!(
            take_events(&mut s) == [bin_ev(&data)],
            "binary in chops of {chop}"
        );
    }
}

/// Limits (section 10.4, crate docs "Limits are checked from the header"): a frame declaring
/// more than `max_frame_size` fails with 1009 as soon as its header is in, with no payload
/// fed; a frame of exactly the limit passes.
#[test]
fn case_9_7_frame_over_max_frame_size_fails_1009_from_header() {
    for (limit, len) in [
        (1000u64, 1001u64),
        (100, 126),
        (65535, 65536),
        (16 << 20, (16 << 20) + 1),
        (16 << 20, 1 << 40),
        (16 << 20, (1 << 63) - 1),
    ] {
        for opcode in [TEXT, BINARY] {
            let mut s = server_with(|c| c.max_frame_size = limit);
            let h = header(0x80 | opcode, Some(KEY), len, LenForm::Minimal);
            let result = feed(&mut s, &h);
            let (err, _) = expect_failed(&mut s, result, 1009);
            assert_eq!(err.violation, Violation::FrameTooBig { len, limit });
            let mut c = client_with(|c| c.max_frame_size = limit);
            let h = header(0x80 | opcode, None, len, LenForm::Minimal);
            let (err, _) = {
                let result = feed(&mut c, &h);
                expect_failed(&mut c, result, 1009)
            };
            assert_eq!(err.violation, Violation::FrameTooBig { len, limit });
        }
    }
    // Exactly the limit passes.
    let mut s = server_with(|c| c.max_frame_size = 1000);
    ok(&mut s, &client_frame(true, BINARY, &bin(1000)));
    assert_eq!(take_events(&mut s), [bin_ev(&bin(1000))]);
    // A continuation over the limit, too.
    let mut s = server_with(|c| c.max_frame_size = 1000);
    ok(&mut s, &client_frame(false, BINARY, &bin(10)));
    let result = feed(&mut s, &header(0x80, Some(KEY), 1001, LenForm::Minimal));
    expect_failed(&mut s, result, 1009);
}

/// Limits: a message whose fragments together exceed `max_message_size` fails with 1009 when
/// the header of the fragment that crosses it arrives; exactly the limit passes.
#[test]
fn case_9_8_message_over_max_message_size_fails_1009() {
    for opcode in [TEXT, BINARY] {
        let mut s = server_with(|c| c.max_message_size = 1000);
        ok(&mut s, &client_frame(false, opcode, &ascii(600)));
        ok(&mut s, &client_frame(false, CONT, &ascii(300)));
        let result = feed(&mut s, &header(0x80, Some(KEY), 101, LenForm::Minimal));
        let (err, events) = expect_failed(&mut s, result, 1009);
        assert_eq!(
            err.violation,
            Violation::MessageTooBig {
                len: 1001,
                limit: 1000
            }
        );
        assert_eq!(events, []);
        // A single frame over the message limit (but under the frame limit).
        let mut s = server_with(|c| c.max_message_size = 1000);
        let result = feed(
            &mut s,
            &header(0x80 | opcode, Some(KEY), 1001, LenForm::Minimal),
        );
        expect_failed(&mut s, result, 1009);
        // Exactly the limit.
        let mut s = server_with(|c| c.max_message_size = 1000);
        ok(&mut s, &client_frame(false, opcode, &ascii(600)));
        ok(&mut s, &client_frame(false, CONT, &ascii(300)));
        ok(&mut s, &client_frame(true, CONT, &ascii(100)));
        assert_eq!(take_events(&mut s).len(), 1);
    }
    // Default limits: 64 MiB across fragments, fails on the header that crosses it.
    let mut s = server();
    for i in 0..4 {
        let b0 = if i == 0 { BINARY } else { CONT };
        ok(&mut s, &header(b0, Some(KEY), 16 << 20, LenForm::Minimal));
        ok(&mut s, &vec![0u8; 16 << 20]);
    }
    let result = feed(&mut s, &header(0x80, Some(KEY), 1, LenForm::Minimal));
    expect_failed(&mut s, result, 1009);
}

/// Limits: control frames stay limited by section 5.5 (125 bytes), and a ping is answered
/// even while a message near the limits is in progress.
#[test]
fn case_9_9_ping_during_large_fragmented_message() {
    let mut s = server();
    ok(&mut s, &client_frame(false, BINARY, &bin(8 << 20)));
    ok(&mut s, &client_frame(true, PING, b"still there?"));
    assert_eq!(take_frames(&mut s), [srv(true, PONG, b"still there?")]);
    ok(&mut s, &client_frame(true, CONT, &bin(8 << 20)));
    let events = take_events(&mut s);
    assert_eq!(events.len(), 2);
    match &events[1] {
        Event::Binary(b) => assert_eq!(b.len(), 16 << 20),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Autobahn 10.x: auto-fragmentation of outgoing messages (section 5.4, config
// `max_send_fragment`)
// ---------------------------------------------------------------------------------------------

/// Checks that `frames` are one message of `opcode` cut into fragments of `size` (the last
/// one shorter or equal), FIN only on the last, and returns the reassembled payload.
fn check_fragments(frames: &[Frame], opcode: u8, size: usize) -> Vec<u8> {
    assert!(!frames.is_empty());
    for (i, f) in frames.iter().enumerate() {
        let last = i == frames.len() - 1;
        assert_eq!(f.fin, last, "FIN only on the last fragment ({i})");
        assert_eq!(
            f.opcode,
            if i == 0 { opcode } else { CONT },
            "opcode of {i}"
        );
        if last {
            assert!(f.payload.len() <= size && (frames.len() == 1 || !f.payload.is_empty()));
        } else {
            assert_eq!(f.payload.len(), size, "fragment {i} has the fragment size");
        }
    }
    frames.iter().flat_map(|f| f.payload.clone()).collect()
}

/// Autobahn 10.1.1 (section 5.4): a 65536-byte text message sent with a 1300-byte fragment
/// size goes out as 51 frames: 50 of 1300 bytes and a last of 536, FIN only on the last.
#[test]
fn case_10_1_1_auto_fragmentation_1300() {
    let text = ascii(65536);
    let mut s = server_with(|c| c.max_send_fragment = 1300);
    s.send_text(String::from_utf8(text.clone()).unwrap())
        .unwrap();
    let frames = take_frames(&mut s);
    assert_eq!(frames.len(), 51);
    assert_eq!(frames[50].payload.len(), 536);
    assert_eq!(check_fragments(&frames, TEXT, 1300), text);
}

/// Section 5.4, default `max_send_fragment` (16 KiB): messages up to it go as one frame, one
/// byte more as two, 64 KiB as four, for both roles (the client masking each fragment with
/// its own key).
#[test]
fn case_10_1_2_auto_fragmentation_default_size() {
    let frag = Config::default().max_send_fragment;
    for (len, count) in [
        (0, 1),
        (1, 1),
        (frag, 1),
        (frag + 1, 2),
        (64 << 10, 4),
        (100_000, 7),
    ] {
        let data = bin(len);
        let mut s = server();
        s.send_binary(data.clone()).unwrap();
        let frames = take_frames(&mut s);
        assert_eq!(frames.len(), count, "{len} bytes");
        assert_eq!(check_fragments(&frames, BINARY, frag), data);
        let mut c = counting_client(|_| {});
        c.send_binary(data.clone()).unwrap();
        let frames = take_frames(&mut c);
        assert_eq!(frames.len(), count);
        for (i, f) in frames.iter().enumerate() {
            let k = (4 * i) as u8;
            assert_eq!(
                f.mask,
                Some([k, k + 1, k + 2, k + 3]),
                "fresh key per frame"
            );
        }
        assert_eq!(check_fragments(&frames, BINARY, frag), data);
    }
}

/// Section 5.4 with the text opcode: fragmentation may cut inside a code point (the message,
/// not each frame, is UTF-8), and the reassembled text is the original.
#[test]
fn case_10_1_3_text_fragments_may_split_code_points() {
    let text = "€".repeat(100); // 300 bytes, 3-byte code points
    let mut s = server_with(|c| c.max_send_fragment = 7);
    s.send_text(text.clone()).unwrap();
    let frames = take_frames(&mut s);
    assert_eq!(frames.len(), 43);
    assert_eq!(check_fragments(&frames, TEXT, 7), text.as_bytes());
    // Our own reassembly of those frames, fed to another engine, is the same text.
    let mut peer = client();
    let bytes: Vec<u8> = frames
        .iter()
        .flat_map(|f| server_frame(f.fin, f.opcode, &f.payload))
        .collect();
    ok(&mut peer, &bytes);
    assert_eq!(take_events(&mut peer), [text_ev(text.as_bytes())]);
}

/// Section 5.4 ("control frames MAY be injected in the middle of a fragmented message") and
/// the ordering rule: a PONG owed while a long message goes out lands between two fragments,
/// never inside one.
#[test]
fn case_10_1_4_pong_between_outgoing_fragments() {
    let data = bin(350);
    let mut s = server_with(|c| c.max_send_fragment = 100);
    s.send_binary(data.clone()).unwrap();
    // Write the first fragment and part of the second.
    let t = s.poll_transmit().unwrap();
    let mut bytes = t.header.to_vec();
    bytes.extend_from_slice(t.payload);
    let n = t.len();
    s.advance_transmit(n);
    let t = s.poll_transmit().unwrap();
    bytes.extend_from_slice(t.header);
    bytes.extend_from_slice(&t.payload[..50]);
    let n = t.header.len() + 50;
    s.advance_transmit(n);
    ok(&mut s, &client_frame(true, PING, b"now"));
    bytes.extend(take_wire_partial(&mut s, 33));
    let frames = wire::parse_all(&bytes);
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[2], srv(true, PONG, b"now"));
    let mut data_frames = frames.clone();
    data_frames.remove(2);
    assert_eq!(check_fragments(&data_frames, BINARY, 100), data);
}

/// Section 5.4 and 5.1 with `PreparedMessage`: a prepared message goes out as the same
/// frames as a plain send (one frame up to the fragment size, fragments above it), and a
/// client masks its copy.
#[test]
fn case_10_1_7_prepared_messages() {
    for len in [5, 100, 101, 250] {
        let data = bin(len);
        let prepared = wsframe::PreparedMessage::binary(data.clone());
        let mut a = server_with(|c| c.max_send_fragment = 100);
        let mut b = server_with(|c| c.max_send_fragment = 100);
        a.send_prepared(&prepared).unwrap();
        b.send_binary(data.clone()).unwrap();
        let frames = take_frames(&mut a);
        assert_eq!(frames, take_frames(&mut b), "{len}");
        assert_eq!(check_fragments(&frames, BINARY, 100), data);
        let mut c = client_with(|c| c.max_send_fragment = 100);
        c.send_prepared(&prepared).unwrap();
        let frames = take_frames(&mut c);
        check_mask_direction(Role::Client, &frames);
        assert_eq!(check_fragments(&frames, BINARY, 100), data);
    }
    let prepared = wsframe::PreparedMessage::text("Hello");
    let mut s = server();
    s.send_prepared(&prepared).unwrap();
    assert_eq!(
        take_wire(&mut s),
        [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
    );
}

/// Section 5.4 with `transmit_chunks` (vectored writes): the same frames as `poll_transmit`.
#[test]
fn case_10_1_5_transmit_chunks_gives_the_same_frames() {
    let mut a = server_with(|c| c.max_send_fragment = 1000);
    let mut b = server_with(|c| c.max_send_fragment = 1000);
    for conn in [&mut a, &mut b] {
        conn.send_binary(bin(4500)).unwrap();
        conn.send_text("tail").unwrap();
        conn.close(1000, "done").unwrap();
    }
    let expected = take_wire(&mut a);
    let mut got = Vec::new();
    loop {
        let mut slices: [&[u8]; 6] = [&[]; 6];
        let n = b.transmit_chunks(&mut slices, 1500);
        if n == 0 {
            break;
        }
        let bytes: Vec<u8> = slices[..n].concat();
        got.extend_from_slice(&bytes);
        b.advance_transmit(bytes.len());
    }
    assert_eq!(got, expected);
    let frames = wire::parse_all(&got);
    assert_eq!(frames.len(), 7);
    assert_eq!(frames[6], srv(true, CLOSE, &close_body(1000, b"done")));
}

// ---------------------------------------------------------------------------------------------
// Message timeout (config `message_timeout`): a fragmented message not finished in time is
// failed with 1008 (section 7.4.1 policy violation)
// ---------------------------------------------------------------------------------------------

/// A fragmented message started at t=0 and not finished at `message_timeout` (5 s) fails
/// with 1008 when `handle_timeout` runs at 5 s, not before; later fragments do not extend it.
#[test]
fn timeout_message_fails_1008() {
    let mut s = server_with(|c| c.message_timeout = Some(Duration::from_secs(5)));
    s.receive(at_secs(0.0), &client_frame(false, TEXT, b"slow"))
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(at_secs(5.0)));
    s.receive(at_secs(4.0), &client_frame(false, CONT, b"loris"))
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(at_secs(5.0)));
    s.handle_timeout(at_secs(4.999));
    assert!(s.poll_transmit().is_none());
    assert!(take_events(&mut s).is_empty());
    s.handle_timeout(at_secs(5.0));
    let frames = take_frames(&mut s);
    let (err, events) = check_failed(&mut s, 1008, frames);
    assert_eq!(
        err.violation,
        Violation::MessageTimeout(Duration::from_secs(5))
    );
    assert_eq!(events, []);
}

/// A message finished in time clears its deadline; the next message gets a fresh one.
#[test]
fn timeout_message_not_hit_when_finished_in_time() {
    let mut s = server_with(|c| c.message_timeout = Some(Duration::from_secs(5)));
    s.receive(at_secs(0.0), &client_frame(false, BINARY, &[1]))
        .unwrap();
    s.receive(at_secs(4.9), &client_frame(true, CONT, &[2]))
        .unwrap();
    assert_eq!(take_events(&mut s), [bin_ev(&[1, 2])]);
    assert_ne!(s.poll_timeout(), Some(at_secs(5.0)));
    s.handle_timeout(at_secs(5.0));
    assert!(s.poll_transmit().is_none());
    // An unfragmented message never starts the timer.
    s.receive(at_secs(6.0), &client_frame(true, TEXT, b"x"))
        .unwrap();
    s.receive(at_secs(7.0), &client_frame(false, TEXT, b"y"))
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(at_secs(12.0)));
    s.handle_timeout(at_secs(12.0));
    let frames = take_frames(&mut s);
    check_failed(&mut s, 1008, frames);
}

// ---------------------------------------------------------------------------------------------
// Section 5.5.2 / 5.5.1 around our own Close
// ---------------------------------------------------------------------------------------------

/// Section 5.5.2 ("Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
/// response, unless it already received a Close frame"): our Close is queued behind data and
/// not yet written, no Close has been received, so a ping is still answered, before the
/// Close (control frames overtake queued data by the ordering rule).
#[test]

fn case_2_16_ping_answered_while_our_close_is_queued() {
    let mut s = server();
    s.send_binary(bin(100)).unwrap();
    s.close(1000, "").unwrap();
    ok(&mut s, &client_frame(true, PING, b"are you there"));
    assert_eq!(take_events(&mut s), [ping_ev(b"are you there")]);
    assert_eq!(
        take_frames(&mut s),
        [
            srv(true, PONG, b"are you there"),
            srv(true, BINARY, &bin(100)),
            srv(true, CLOSE, &[0x03, 0xe8]),
        ]
    );
}

/// Section 5.5.1 ("after sending a Close frame, the endpoint MUST NOT send any more data
/// frames"; an endpoint sends one Close): once our Close is written, a ping gets no PONG and
/// a protocol error from the peer writes no second Close, and ends the connection at once.
#[test]
fn case_7_1_10_nothing_written_after_our_close() {
    for role in ROLES {
        let mut conn = engine(role);
        conn.close(1000, "").unwrap();
        assert_eq!(
            take_frames(&mut conn),
            [out_frame(role, true, CLOSE, &[0x03, 0xe8])]
        );
        ok(&mut conn, &peer_frame(role, true, PING, b"late"));
        assert_eq!(take_events(&mut conn), [ping_ev(b"late")]);
        assert!(conn.poll_transmit().is_none());
        let result = feed(&mut conn, &peer_frame(role, true, 0x4, b""));
        assert!(matches!(result, Err(ReceiveError::Protocol(_))));
        assert!(conn.poll_transmit().is_none(), "no second Close");
        match take_events(&mut conn).as_slice() {
            [Event::Ended(e)] => assert!(matches!(e.reason, EndReason::ProtocolError(_))),
            other => panic!("{other:?}"),
        }
    }
}

/// Section 5.5.1 / 7.1.7: the connection fails while our own Close is partly written: that
/// Close is finished and is the only one (no second Close with the error's code).
#[test]
fn fail_rfc_7_1_7_while_our_close_is_in_flight() {
    let mut s = server();
    s.close(1000, "bye").unwrap();
    s.poll_transmit().unwrap();
    s.advance_transmit(2);
    let result = feed(&mut s, &client_frame(true, 0x6, b""));
    assert!(matches!(result, Err(ReceiveError::Protocol(_))));
    let mut bytes = vec![0x88, 0x05];
    bytes.extend(take_wire(&mut s));
    assert_eq!(
        wire::parse_all(&bytes),
        [srv(true, CLOSE, &close_body(1000, b"bye"))]
    );
    match take_events(&mut s).as_slice() {
        [Event::Ended(e)] => assert!(matches!(e.reason, EndReason::ProtocolError(_))),
        other => panic!("{other:?}"),
    }
}

/// Section 7.1.7 and `close_timeout`: a failed connection whose Close is never written ends
/// at `close_timeout` with the protocol error.
#[test]
fn fail_rfc_7_1_7_close_never_written_ends_at_close_timeout() {
    let mut s = server();
    let _ = feed(&mut s, &client_frame(true, 0xB, b""));
    assert_eq!(s.poll_timeout(), Some(at_secs(5.0)));
    s.handle_timeout(at_secs(5.0));
    match take_events(&mut s).as_slice() {
        [Event::Ended(e)] => match &e.reason {
            EndReason::ProtocolError(err) => assert_eq!(err.code, 1002),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(s.poll_transmit().is_none());
}

/// The peer closes first and the application answers with its own code before taking the
/// Close event (section 5.5.1: the reply usually echoes the code, but may differ): one Close,
/// the application's.
#[test]
fn case_7_1_12_application_close_answers_peer_close() {
    let mut s = server();
    ok(&mut s, &client_frame(true, CLOSE, &close_body(1000, b"")));
    s.close(4000, "app").unwrap();
    assert_eq!(take_events(&mut s), [close_ev(1000, "")]);
    assert_eq!(
        take_frames(&mut s),
        [srv(true, CLOSE, &close_body(4000, b"app"))]
    );
    match take_events(&mut s).as_slice() {
        [Event::Ended(e)] => assert!(e.is_clean()),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Section 5.4 with `Delivery::Streaming`: frames handed out in chunks as they arrive
// ---------------------------------------------------------------------------------------------

fn streaming() -> Connection {
    server_with(|c| c.delivery = wsframe::Delivery::Streaming)
}

fn chunks_of(events: &[Event]) -> Vec<wsframe::Chunk> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Section 5.4 (streaming delivery): every chunk of a fragmented text message, the last one
/// included, is marked as text.
#[test]
fn case_5_21_streaming_chunks_keep_the_message_kind() {
    let mut s = streaming();
    ok(
        &mut s,
        &cat(&[
            &client_frame(false, TEXT, b"fragment1"),
            &client_frame(true, CONT, b"fragment2"),
        ]),
    );
    let chunks = chunks_of(&take_events(&mut s));
    assert_eq!(chunks.len(), 2);
    for c in &chunks {
        assert_eq!(c.kind, wsframe::DataKind::Text, "{c:?}");
    }
}

/// Section 5.4 (streaming delivery): chunks carry the message's bytes in order, with `first`
/// on the first chunk and `last` on the last only, however the bytes arrive.
#[test]
fn case_5_22_streaming_chunks_reassemble() {
    let text = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
    let stream = cat(&[
        &client_frame(false, TEXT, &text[..7]),
        &client_frame(true, PING, b"p"),
        &client_frame(false, CONT, &text[7..8]),
        &client_frame(true, CONT, &text[8..]),
    ]);
    for size in [1, 2, 3, 5, 8, 1000] {
        let mut s = streaming();
        feed_chunked(&mut s, &stream, size).unwrap();
        let events = take_events(&mut s);
        let chunks = chunks_of(&events);
        let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(data, text, "chops of {size}");
        assert!(chunks[0].first && chunks.iter().skip(1).all(|c| !c.first));
        assert!(chunks.last().unwrap().last);
        assert!(chunks[..chunks.len() - 1].iter().all(|c| !c.last));
        assert_eq!(chunks[0].kind, wsframe::DataKind::Text);
        assert!(events.contains(&ping_ev(b"p")));
    }
    // Invalid UTF-8 in a streamed text message still fails with 1007 (fail fast).
    let mut s = streaming();
    let result = feed(&mut s, &client_frame(false, TEXT, &[b'a', 0xff]));
    expect_failed(&mut s, result, 1007);
}

/// Section 5.2/5.4 (frames are never interleaved): writes reported one byte at a time with a
/// ping arriving after every byte: every PONG lands between whole frames, the fragments of the
/// message stay in order, and the stream parses.
#[test]
fn case_10_1_6_pongs_never_land_inside_a_frame() {
    for role in ROLES {
        let data = bin(1000);
        let mut conn = match role {
            Role::Server => server_with(|c| c.max_send_fragment = 300),
            Role::Client => client_with(|c| c.max_send_fragment = 300),
        };
        conn.send_binary(data.clone()).unwrap();
        let mut bytes = Vec::new();
        let mut i = 0u32;
        let mut opcode = 0;
        while let Some(t) = conn.poll_transmit() {
            if t.starts_frame {
                opcode = t.header[0] & 0x0F;
            }
            bytes.push(t.header.first().copied().unwrap_or_else(|| t.payload[0]));
            conn.advance_transmit(1);
            // A ping arrives after every byte of a data frame (not of a PONG: a peer pinging
            // faster than the PONGs can be written would keep the PONG slot busy).
            if opcode != PONG {
                i += 1;
                ok(&mut conn, &peer_frame(role, true, PING, &i.to_be_bytes()));
            }
        }
        let frames = wire::parse_all(&bytes);
        check_mask_direction(role, &frames);
        let (pongs, data_frames): (Vec<Frame>, Vec<Frame>) =
            frames.iter().cloned().partition(|f| f.opcode == PONG);
        assert_eq!(
            pongs.len(),
            4,
            "{role:?}: one PONG after each of the 4 data frames"
        );
        for (k, f) in frames.iter().enumerate() {
            assert_eq!(f.opcode == PONG, k % 2 == 1, "{role:?}: frame {k}");
        }
        assert_eq!(check_fragments(&data_frames, BINARY, 300), data);
    }
}

// ---------------------------------------------------------------------------------------------
// Property: chunking never changes what the engine produces (section 5.2: a frame may arrive
// split across any number of reads)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Ctl {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Item {
    /// A data message cut into fragments at `cuts` (positions into the payload, in any order,
    /// repeats allowed: empty fragments), with a control frame optionally injected after each
    /// fragment but the last (section 5.4).
    Message {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<prop::sample::Index>,
        injected: Vec<Option<Ctl>>,
    },
    Control(Ctl),
}

#[derive(Debug, Clone)]
struct Script {
    role: Role,
    key_seed: u32,
    items: Vec<Item>,
    /// The peer's Close at the end (`Some(None)`: without a body), then bytes to discard.
    close: Option<Option<(u16, String)>>,
    trailing: Vec<u8>,
}

fn ctl_strategy() -> impl Strategy<Value = Ctl> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Ctl::Ping),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Ctl::Pong),
    ]
}

fn item_strategy() -> impl Strategy<Value = Item> {
    let text = prop::collection::vec(any::<char>(), 0..60)
        .prop_map(|cs| cs.into_iter().collect::<String>().into_bytes())
        .prop_map(|p| (true, p));
    let binary = prop::collection::vec(any::<u8>(), 0..400).prop_map(|p| (false, p));
    let message = (
        prop_oneof![text, binary],
        prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        prop::collection::vec(prop::option::weighted(0.4, ctl_strategy()), 5),
    )
        .prop_map(|((text, payload), cuts, injected)| Item::Message {
            text,
            payload,
            cuts,
            injected,
        });
    prop_oneof![4 => message, 1 => ctl_strategy().prop_map(Item::Control)]
}

fn script_strategy() -> impl Strategy<Value = Script> {
    (
        prop_oneof![Just(Role::Server), Just(Role::Client)],
        any::<u32>(),
        prop::collection::vec(item_strategy(), 0..8),
        prop::option::of(prop::option::of((
            prop::sample::select(vec![1000u16, 1001, 1003, 1011, 1014, 3000, 4999]),
            "[a-zé€]{0,20}",
        ))),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(role, key_seed, items, close, trailing)| Script {
            role,
            key_seed,
            items,
            close,
            trailing,
        })
}

/// The byte stream of a script, with the events and frames a correct engine produces when
/// the application drains events before writing: every message and control frame in order,
/// one PONG (for the latest ping, section 5.5.3), the echo of the Close; then `Ended`.
struct Built {
    stream: Vec<u8>,
    events: Vec<Event>,
    frames: Vec<Frame>,
    after: Vec<Event>,
}

/// Encodes one frame of the peer (fin, opcode, payload).
type FrameFn<'a> = dyn FnMut(bool, u8, &[u8]) -> Vec<u8> + 'a;

fn build(script: &Script) -> Built {
    let role = script.role;
    let mut n = 0u32;
    let mut frame = |fin: bool, opcode: u8, payload: &[u8]| -> Vec<u8> {
        n += 1;
        match role {
            Role::Server => {
                let key = script
                    .key_seed
                    .wrapping_add(n.wrapping_mul(0x9e37_79b9))
                    .to_le_bytes();
                raw_frame(fin, 0, opcode, Some(key), payload)
            }
            Role::Client => server_frame(fin, opcode, payload),
        }
    };
    let mut stream = Vec::new();
    let mut events = Vec::new();
    let mut last_ping: Option<Vec<u8>> = None;
    let mut control =
        |ctl: &Ctl, stream: &mut Vec<u8>, events: &mut Vec<Event>, frame: &mut FrameFn| match ctl {
            Ctl::Ping(p) => {
                stream.extend(frame(true, PING, p));
                events.push(ping_ev(p));
                last_ping = Some(p.clone());
            }
            Ctl::Pong(p) => {
                stream.extend(frame(true, PONG, p));
                events.push(pong_ev(p));
            }
        };
    for item in &script.items {
        match item {
            Item::Control(ctl) => control(ctl, &mut stream, &mut events, &mut frame),
            Item::Message {
                text,
                payload,
                cuts,
                injected,
            } => {
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                at.sort();
                at.push(payload.len());
                let mut start = 0;
                for (k, &end) in at.iter().enumerate() {
                    let last = k == at.len() - 1;
                    let opcode = match (k, text) {
                        (0, true) => TEXT,
                        (0, false) => BINARY,
                        _ => CONT,
                    };
                    stream.extend(frame(last, opcode, &payload[start..end]));
                    start = end;
                    if !last {
                        if let Some(ctl) = &injected[k] {
                            control(ctl, &mut stream, &mut events, &mut frame);
                        }
                    }
                }
                events.push(if *text {
                    text_ev(payload)
                } else {
                    bin_ev(payload)
                });
            }
        }
    }
    let mut frames: Vec<Frame> = last_ping
        .iter()
        .map(|p| out_frame(role, true, PONG, p))
        .collect();
    let mut after = Vec::new();
    if let Some(close) = &script.close {
        let body = match close {
            Some((code, reason)) => close_body(*code, reason.as_bytes()),
            None => Vec::new(),
        };
        stream.extend(frame(true, CLOSE, &body));
        stream.extend_from_slice(&script.trailing);
        let peer = close.as_ref().map(|(code, reason)| CloseFrame {
            code: *code,
            reason: reason.clone(),
        });
        events.push(Event::Close(peer.clone()));
        let echo = close
            .as_ref()
            .map(|(code, _)| code.to_be_bytes().to_vec())
            .unwrap_or_default();
        frames.push(out_frame(role, true, CLOSE, &echo));
        after.push(Event::Ended(Box::new(wsframe::Ended {
            reason: EndReason::ClosedByPeer(peer),
            unsent: Default::default(),
        })));
    }
    Built {
        stream,
        events,
        frames,
        after,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any sequence of valid frames (data messages fragmented anywhere, control frames
    /// injected between fragments, an optional Close followed by bytes to discard), for
    /// either role, cut into `receive` calls at any positions, gives the same events and
    /// frames as feeding it whole, which are the ones RFC 6455 prescribes; one byte per call
    /// too.
    #[test]
    fn prop_any_chunking_gives_the_same_events(
        script in script_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let built = build(&script);
        let len = built.stream.len();
        let whole = run_cut(script.role, &|_| {}, &built.stream, &[]).expect("valid stream");
        prop_assert_eq!(&whole.0, &built.events);
        prop_assert_eq!(&whole.1, &built.frames);
        prop_assert_eq!(&whole.2, &built.after);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
        at.sort();
        let chunked = run_cut(script.role, &|_| {}, &built.stream, &at).expect("valid stream");
        prop_assert!(chunked == whole, "cut at {:?}", at);
        let bytewise: Vec<usize> = (1..len).collect();
        let one_by_one = run_cut(script.role, &|_| {}, &built.stream, &bytewise).unwrap();
        prop_assert!(one_by_one == whole, "one byte per call");
    }

    /// The same streams with `Delivery::Streaming`: however the bytes are cut, the chunks of
    /// each message carry its bytes in order, `first` on its first chunk, `last` on its last
    /// one only, every chunk the message's kind, and every other event is the same as with
    /// whole-message delivery.
    #[test]
    fn prop_streaming_chunks_reassemble_to_the_messages(
        script in script_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let built = build(&script);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(built.stream.len() + 1)).collect();
        at.sort();
        let config = |c: &mut Config| c.delivery = wsframe::Delivery::Streaming;
        let (events, frames, after) =
            run_cut(script.role, &config, &built.stream, &at).expect("valid stream");
        prop_assert_eq!(&frames, &built.frames);
        prop_assert_eq!(&after, &built.after);
        let mut rebuilt = Vec::new();
        let mut open: Option<(wsframe::DataKind, Vec<u8>)> = None;
        for event in events {
            match event {
                Event::Chunk(c) => {
                    prop_assert_eq!(c.first, open.is_none(), "first marker: {:?}", c);
                    let (kind, mut data) = open.take().unwrap_or((c.kind, Vec::new()));
                    prop_assert_eq!(c.kind, kind, "every chunk has the message's kind");
                    data.extend_from_slice(&c.data);
                    if c.last {
                        rebuilt.push(match kind {
                            wsframe::DataKind::Text => text_ev(&data),
                            wsframe::DataKind::Binary => bin_ev(&data),
                        });
                    } else {
                        open = Some((kind, data));
                    }
                }
                other => rebuilt.push(other),
            }
        }
        prop_assert!(open.is_none(), "a message without its last chunk");
        // Messages complete at their last chunk, which comes after the control frames
        // injected into them, as with whole-message delivery.
        prop_assert_eq!(rebuilt, built.events);
    }
}
