//! `connection`: a client engine and a server engine wired to each other, driven by a structured
//! sequence of operations (decoded with `arbitrary`): sends (text, binary, prepared), pings,
//! closes, partial and vectored writes in either direction, event draining (then
//! `release_idle_memory`), clock steps, write timeouts and end-of-file.
//!
//! Both engines are correct peers of each other, so on top of the per-stream checks:
//!
//! * every transmitted byte stream parses with the independent checker (`wire.rs`), and
//!   `starts_frame`/`advance_transmit` agree with it: so a PONG never sits inside another frame;
//! * no protocol error ever happens between the two;
//! * text and binary messages arrive intact, in order, none skipped (streamed chunks are
//!   reassembled), and every message queued before a Close is on the wire before that Close;
//! * a PONG answers a PING its receiver sent, in order;
//! * queued-byte accounting matches a model exactly (never negative, never past the budget
//!   except the one message an empty queue always takes), refusals happen exactly when the
//!   budget says so, and `Ended::unsent` matches what was left;
//! * stats agree with the wire (bytes out, messages in and out);
//! * `Ended` comes once and last; after it, and once a side's Close is on the wire, nothing more
//!   is emitted; once both sides have ended, neither transmits anything.

#![allow(dead_code)]

use core::time::Duration;
use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use wsframe::{
    Config, Connection, DataKind, Delivery, Ended, Event, Instant, PreparedMessage, ReceiveError,
    SendError, Text, TransportError,
};

use super::alloc_count;
use super::wire::{Rng, WireChecker};

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Which send call queues a message.
#[derive(Debug, Clone, Copy)]
pub enum SendHow {
    Plain,
    Prepared,
    /// `send_prepared_through`, its write taking at most `max` bytes.
    PreparedThrough {
        max: u16,
    },
}

/// Decoded from one byte, as the `bool` it replaced (`prepared`: odd), so that committed
/// inputs keep their meaning except that some prepared sends now write through: even, plain;
/// odd below 0x80, prepared; odd from 0x80, written through with a write of at most
/// `(byte & 0x7e) * 8` bytes (0 to 1008: nothing, part of the header, part of the payload, or
/// all of a small frame).
impl<'a> Arbitrary<'a> for SendHow {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let byte = u8::arbitrary(u)?;
        Ok(match (byte & 1, byte & 0x80) {
            (0, _) => SendHow::Plain,
            (_, 0) => SendHow::Prepared,
            _ => SendHow::PreparedThrough {
                max: u16::from(byte & 0x7e) * 8,
            },
        })
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (1, Some(1))
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// Queue a data message of about `len` bytes.
    Send {
        side: Side,
        text: bool,
        how: SendHow,
        len: u16,
        fill: u8,
    },
    Ping {
        side: Side,
        len: u8,
    },
    Close {
        side: Side,
        code: u16,
        reason_len: u8,
    },
    /// One write of at most `max` bytes from `side` to its peer.
    Write {
        side: Side,
        max: u16,
        vectored: bool,
    },
    /// Write until `side` has nothing left (bounded).
    Flush {
        side: Side,
    },
    Events {
        side: Side,
    },
    Tick {
        ms: u16,
    },
    WriteTimeout {
        side: Side,
    },
    Eof {
        side: Side,
    },
}

#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    pub fragment: u8,
    pub budget: u8,
    pub client_streaming: bool,
    pub server_streaming: bool,
    pub keepalive: bool,
    pub seed: u64,
    pub ops: Vec<Op>,
}

/// The fuzz target's entry point: decodes an [`Input`] and runs it.
pub fn run(data: &[u8]) {
    let u = Unstructured::new(data);
    if let Ok(input) = Input::arbitrary_take_rest(u) {
        run_input(&input);
    }
}

const FRAGMENT: [usize; 6] = [16 << 10, 7, 125, 126, 1000, 4096];
const BUDGET: [usize; 5] = [4 << 20, 0, 100, 5000, 20_000];
/// Longest message generated: with the smallest fragment that is ~1200 frames.
const MAX_LEN: usize = 8192;

struct Peer {
    conn: Connection,
    /// What this side transmitted, as its peer's parser sees it.
    wire: WireChecker,
    budget: usize,
    /// Messages this side queued (accepted by send), in order: the peer must receive exactly
    /// these, in this order.
    sent: VecDeque<(bool, Vec<u8>)>,
    sent_total: usize,
    sent_bytes: usize,
    /// Messages this side received (from the peer's `sent`).
    received: usize,
    /// Streaming reassembly.
    streaming: Option<(DataKind, Vec<u8>)>,
    /// Data payload bytes queued and not yet completely written, by the model.
    queued: usize,
    /// Frames of `wire` already accounted for.
    frames_seen: usize,
    /// PINGs this side put on the wire (from `wire`), and how many PONGs matched so far.
    pongs_matched: usize,
    ended: Option<Ended>,
    /// Our Close was accepted by `close()`.
    close_called: bool,
    /// The next drain trims instead of releasing (they alternate; see `Op::Events`).
    trim_next: bool,
}

/// What each queued message counts against the budget besides its payload
/// (`Config::max_outbound_bytes`).
const MESSAGE_CHARGE: usize = 64;

impl Peer {
    /// Messages accepted and not yet wholly on the wire.
    fn queued_messages(&self) -> usize {
        self.sent_total - self.wire.messages.len()
    }

    /// The queue as the budget counts it, by the model.
    fn charged(&self) -> usize {
        self.queued + MESSAGE_CHARGE * self.queued_messages()
    }

    fn new(client: bool, config: Config, seed: u64) -> Peer {
        let budget = config.max_outbound_bytes;
        let conn = if client {
            let mut rng = Rng::new(seed);
            let random = move |buf: &mut [u8]| {
                for b in buf {
                    *b = rng.next_u64() as u8;
                }
            };
            Connection::client(config, Box::new(random), Instant::ZERO)
        } else {
            Connection::server(config, Instant::ZERO)
        };
        Peer {
            conn,
            wire: WireChecker::new(client),
            budget,
            sent: VecDeque::new(),
            sent_total: 0,
            sent_bytes: 0,
            received: 0,
            streaming: None,
            queued: 0,
            frames_seen: 0,
            pongs_matched: 0,
            ended: None,
            close_called: false,
            trim_next: false,
        }
    }
}

struct Pair {
    peers: [Peer; 2],
    now: Instant,
    counter: u32,
}

fn idx(side: Side) -> (usize, usize) {
    match side {
        Side::Client => (0, 1),
        Side::Server => (1, 0),
    }
}

pub fn run_input(input: &Input) {
    let make = |streaming: bool| {
        let mut c = Config::default();
        c.max_send_fragment = FRAGMENT[input.fragment as usize % FRAGMENT.len()];
        c.max_outbound_bytes = BUDGET[input.budget as usize % BUDGET.len()];
        c.outbound_low_water = c.max_outbound_bytes / 2;
        c.delivery = if streaming {
            Delivery::Streaming
        } else {
            Delivery::Messages
        };
        if input.keepalive {
            c.ping_interval = Some(Duration::from_millis(1000));
            c.idle_timeout = Some(Duration::from_millis(3000));
        } else {
            c.ping_interval = None;
            c.idle_timeout = None;
        }
        c.close_timeout = Duration::from_millis(2000);
        c
    };
    let mem_base = alloc_count::live();
    let mut pair = Pair {
        peers: [
            Peer::new(true, make(input.client_streaming), input.seed),
            Peer::new(false, make(input.server_streaming), input.seed),
        ],
        now: Instant::ZERO,
        counter: 0,
    };
    for op in input.ops.iter().take(512) {
        pair.apply(op);
        pair.check_accounting();
        if alloc_count::installed() {
            // Everything alive is bounded by what the ops queued, kept a few times over (the
            // engine's queue and receive buffer, the checker's and the model's copies).
            let used = alloc_count::live().saturating_sub(mem_base);
            let sent: usize = pair.peers.iter().map(|p| p.sent_bytes).sum();
            let frames: usize = pair.peers.iter().map(|p| p.wire.frames.len()).sum();
            assert!(
                used <= (1 << 20) + 16 * sent + 256 * frames,
                "{used} bytes held after queueing {sent} bytes in {frames} frames"
            );
        }
    }
    pair.settle();
}

/// Text of about `len` bytes, cycling through 1- to 4-byte characters, starting with a counter
/// so that a reordering cannot go unnoticed.
fn text_payload(counter: u32, len: usize, fill: u8) -> String {
    const CHARS: [char; 5] = ['a', 'é', '€', '𝄞', '\u{7f}'];
    let mut s = format!("{counter}:");
    let mut i = fill as usize;
    while s.len() < len {
        s.push(CHARS[i % CHARS.len()]);
        i += 1;
    }
    s
}

fn binary_payload(counter: u32, len: usize, fill: u8) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(31)))
        .collect();
    for (d, s) in v.iter_mut().zip(counter.to_le_bytes()) {
        *d = s;
    }
    v
}

impl Pair {
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Send {
                side,
                text,
                how,
                len,
                fill,
            } => self.send(side, text, how, len as usize % (MAX_LEN + 1), fill),
            Op::Ping { side, len } => {
                let (a, _) = idx(side);
                let payload = Bytes::from(vec![len; len as usize % 130]);
                let can = self.peers[a].conn.can_send();
                match self.peers[a].conn.ping(payload.clone()) {
                    Ok(()) => assert!(can && payload.len() <= 125),
                    Err(SendError::ControlTooLong(n)) => assert!(n > 125),
                    Err(SendError::Closing { .. }) => assert!(!can),
                    Err(e) => panic!("ping refused: {e:?}"),
                }
            }
            Op::Close {
                side,
                code,
                reason_len,
            } => {
                let (a, _) = idx(side);
                let code = 1000 + code % 4000;
                let reason = "r".repeat(reason_len as usize % 130);
                let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                match self.peers[a].conn.close(code, &reason) {
                    Ok(()) => {
                        assert!(sendable && reason.len() <= 123);
                        self.peers[a].close_called = true;
                    }
                    Err(SendError::InvalidCloseCode(c)) => assert!(!sendable && c == code),
                    Err(SendError::ControlTooLong(_)) => assert!(reason.len() > 123),
                    Err(e) => panic!("close refused: {e:?}"),
                }
            }
            Op::Write {
                side,
                max,
                vectored,
            } => {
                self.write(side, max as usize + 1, vectored);
            }
            Op::Flush { side } => {
                for _ in 0..100_000 {
                    if !self.write(side, 1 << 16, false) {
                        break;
                    }
                }
            }
            Op::Events { side } => {
                self.events(side);
                // Drained, as an adapter is before it waits, which is when it frees what the
                // engine need not hold: all of it once quiet, the larger part while busy (not
                // a new operation: the committed inputs keep their meaning).
                let (a, _) = idx(side);
                let peer = &mut self.peers[a];
                if peer.trim_next {
                    peer.conn.trim_memory();
                } else {
                    peer.conn.release_idle_memory();
                }
                peer.trim_next = !peer.trim_next;
            }
            Op::Tick { ms } => {
                self.now = self.now + Duration::from_millis(ms as u64);
                for side in [Side::Client, Side::Server] {
                    let (a, _) = idx(side);
                    self.peers[a].conn.handle_timeout(self.now);
                    self.assert_not_failed(a);
                }
            }
            Op::WriteTimeout { side } => {
                let (a, _) = idx(side);
                self.peers[a]
                    .conn
                    .transport_failed(self.now, TransportError::WriteTimeout);
                self.events(side);
            }
            Op::Eof { side } => {
                let (a, _) = idx(side);
                self.peers[a].conn.transport_closed(self.now);
                self.events(side);
            }
        }
    }

    /// Only a failed (or ended) engine refuses an empty receive: the probe for "failed".
    fn assert_not_failed(&mut self, a: usize) {
        let p = &mut self.peers[a];
        if !p.conn.is_ended() {
            assert_eq!(
                p.conn.receive(self.now, &[]),
                Ok(()),
                "an engine failed with a correct peer"
            );
        }
    }

    fn send(&mut self, side: Side, text: bool, how: SendHow, len: usize, fill: u8) {
        let (a, b) = idx(side);
        self.counter += 1;
        let p = &mut self.peers[a];
        // What a write-through put on the wire.
        let mut through = Vec::new();
        let (bytes, prepared) = if text {
            let s = text_payload(self.counter, len, fill);
            (s.clone().into_bytes(), PreparedMessage::text(Text::from(s)))
        } else {
            let v = binary_payload(self.counter, len, fill);
            (v.clone(), PreparedMessage::binary(Bytes::from(v)))
        };
        let len = bytes.len();
        let result = match how {
            SendHow::Plain if text => p
                .conn
                .send_text(String::from_utf8(bytes.clone()).expect("text payloads are UTF-8")),
            SendHow::Plain => p.conn.send_binary(Bytes::from(bytes.clone())),
            SendHow::Prepared => p.conn.send_prepared(&prepared),
            SendHow::PreparedThrough { max } => {
                p.conn.send_prepared_through(&prepared, |header, payload| {
                    through.extend_from_slice(header);
                    through.extend_from_slice(payload);
                    through.truncate(max as usize);
                    through.len()
                })
            }
        };
        let can = !p.conn.is_ended() && p.ended.is_none();
        let charged = p.charged();
        let fits = p.queued_messages() == 0 || charged + bytes.len() + MESSAGE_CHARGE <= p.budget;
        match result {
            Ok(()) => {
                assert!(can, "send accepted after the end");
                assert!(
                    fits,
                    "send accepted past the budget: {} + {}",
                    p.queued,
                    bytes.len()
                );
                p.queued += bytes.len();
                p.sent_total += 1;
                p.sent_bytes += bytes.len();
                p.sent.push_back((text, bytes));
            }
            Err(SendError::Backpressure {
                payload,
                queued,
                budget,
            }) => {
                assert!(
                    !fits,
                    "refused although it fits: {} + {}",
                    p.queued,
                    bytes.len()
                );
                assert_eq!(
                    &payload[..],
                    &bytes[..],
                    "refused payload handed back changed"
                );
                assert_eq!((queued, budget), (charged, p.budget));
            }
            Err(SendError::Closing { payload }) => {
                assert!(
                    p.close_called || p.conn.is_ended() || !p.conn.can_send(),
                    "refused as closing while open"
                );
                assert_eq!(&payload[..], &bytes[..]);
            }
            Err(e) => panic!("send refused: {e:?}"),
        }
        if !through.is_empty() {
            assert!(
                matches!(how, SendHow::PreparedThrough { .. }) && p.queued_messages() == 1,
                "written through past the queue"
            );
            let frames_before = p.wire.frames.len();
            p.wire.push(&through);
            let whole = p.wire.frames.len() - frames_before;
            // A server's unmasked header: 2, 4 or 10 bytes.
            let header = match len {
                0..=125 => 2,
                126..=0xffff => 4,
                _ => 10,
            };
            assert_eq!(whole, usize::from(through.len() == header + len));
            assert_eq!(p.conn.stats().bytes_out, p.wire.bytes, "bytes_out");
            Self::account_frames(p);
            self.deliver(b, &through);
        }
    }

    /// Hands `bytes` written by the other side to the engine of `to`.
    fn deliver(&mut self, to: usize, bytes: &[u8]) {
        let q = &mut self.peers[to];
        match q.conn.receive(self.now, bytes) {
            Ok(()) => {}
            Err(ReceiveError::NotAccepting) => {
                assert!(q.conn.is_ended(), "receive refused by a live engine")
            }
            Err(ReceiveError::Protocol(e)) => panic!("protocol error between correct peers: {e}"),
        }
    }

    /// One write of at most `max` bytes from `side` to its peer. False if nothing to write.
    fn write(&mut self, side: Side, max: usize, vectored: bool) -> bool {
        let (a, b) = idx(side);
        let mut out = Vec::new();
        {
            let p = &mut self.peers[a];
            if vectored {
                let mut slices: [&[u8]; 8] = [&[]; 8];
                let n = p.conn.transmit_chunks(&mut slices, max);
                for s in &slices[..n] {
                    assert!(!s.is_empty());
                    out.extend_from_slice(s);
                }
            } else if let Some(t) = p.conn.poll_transmit() {
                assert_eq!(t.starts_frame, p.wire.at_boundary(), "starts_frame");
                assert!(!t.is_empty());
                out.extend_from_slice(t.header);
                out.extend_from_slice(t.payload);
            }
            if out.is_empty() {
                return false;
            }
            out.truncate(max);
            let frames_before = p.wire.frames.len();
            p.wire.push(&out);
            let done = p.conn.advance_transmit(out.len());
            assert_eq!(
                done,
                p.wire.frames.len() - frames_before,
                "frames completed"
            );
            if !p.conn.is_ended() {
                assert_eq!(p.conn.stats().bytes_out, p.wire.bytes, "bytes_out");
            }
            Self::account_frames(p);
        }
        self.deliver(b, &out);
        true
    }

    /// Updates the model with frames newly completed on `p`'s wire.
    fn account_frames(p: &mut Peer) {
        while p.frames_seen < p.wire.frames.len() {
            let f = &p.wire.frames[p.frames_seen];
            p.frames_seen += 1;
            match f.opcode {
                0..=2 => {
                    p.queued = p
                        .queued
                        .checked_sub(f.len)
                        .expect("more data written than queued");
                }
                8 => {
                    // The ordering rule: every message queued before the Close is on the wire
                    // before it.
                    assert_eq!(
                        p.wire.messages.len(),
                        p.sent_total,
                        "Close sent before all queued messages"
                    );
                }
                _ => {}
            }
        }
    }

    fn check_accounting(&mut self) {
        for p in &mut self.peers {
            if p.conn.is_ended() {
                continue;
            }
            let stats = p.conn.stats();
            assert_eq!(p.conn.queued_bytes(), p.queued, "queued bytes vs model");
            assert_eq!(stats.queued_bytes, p.queued);
            assert_eq!(
                p.conn.outbound_charge(),
                p.charged(),
                "budget charge vs model"
            );
            assert_eq!(
                stats.messages_out as usize,
                p.wire.messages.len(),
                "messages_out"
            );
            // Past the budget only by the one message an empty queue takes. (Admission itself
            // is checked exactly in `send`; "empty" means no message waiting, zero-length ones
            // included: each counts `MESSAGE_CHARGE`.)
        }
    }

    fn events(&mut self, side: Side) {
        let (b, a) = idx(side);
        loop {
            let Some(event) = self.peers[b].conn.poll_event() else {
                break;
            };
            assert!(
                self.peers[b].ended.is_none(),
                "event after Ended: {event:?}"
            );
            match event {
                Event::Text(t) => self.delivered(a, b, true, t.as_bytes().to_vec()),
                Event::Binary(d) => self.delivered(a, b, false, d.to_vec()),
                Event::Chunk(c) => {
                    let q = &mut self.peers[b];
                    match &mut q.streaming {
                        None => {
                            assert!(c.first);
                            q.streaming = Some((c.kind, c.data.to_vec()));
                        }
                        Some((kind, data)) => {
                            assert!(!c.first);
                            assert_eq!(*kind, c.kind, "chunk kind changed");
                            data.extend_from_slice(&c.data);
                        }
                    }
                    if c.last {
                        let (kind, data) = q.streaming.take().expect("set");
                        self.delivered(a, b, kind == DataKind::Text, data);
                    }
                }
                Event::Ping(p) => {
                    assert!(p.len() <= 125);
                }
                Event::Pong(p) => {
                    // It answers one of our PINGs: the latest at the time, so later or equal to
                    // the one the previous PONG answered.
                    let q = &mut self.peers[b];
                    let pings: Vec<&Vec<u8>> = q
                        .wire
                        .frames
                        .iter()
                        .filter(|f| f.opcode == 9)
                        .map(|f| &f.payload)
                        .collect();
                    let found = (q.pongs_matched..pings.len()).find(|&i| *pings[i] == p[..]);
                    let i = found.unwrap_or_else(|| {
                        panic!(
                            "PONG {p:?} answers no PING sent (from #{})",
                            q.pongs_matched
                        )
                    });
                    q.pongs_matched = i;
                }
                Event::Close(_) | Event::Writable => {}
                Event::Ended(ended) => {
                    let q = &mut self.peers[b];
                    assert!(q.conn.is_ended());
                    assert!(
                        !matches!(ended.reason, wsframe::EndReason::ProtocolError(_)),
                        "protocol error between correct peers: {ended}"
                    );
                    // What was left: the model's queue, in bytes and in messages.
                    assert_eq!(ended.unsent.bytes, q.queued, "unsent bytes");
                    assert_eq!(
                        ended.unsent.messages,
                        q.sent_total - q.wire.messages.len(),
                        "unsent messages"
                    );
                    q.ended = Some(*ended);
                }
            }
        }
        // Every message counted was handed out (the queue is drained now).
        let q = &mut self.peers[b];
        assert_eq!(
            q.conn.stats().messages_in as usize,
            q.received,
            "messages_in"
        );
        if q.conn.is_ended() {
            assert!(q.conn.poll_transmit().is_none(), "transmit after the end");
        }
    }

    /// `b` received a whole message: it must be the next one `a` sent.
    fn delivered(&mut self, a: usize, b: usize, text: bool, data: Vec<u8>) {
        let expected = self.peers[a]
            .sent
            .pop_front()
            .expect("a message arrived that was never sent");
        assert_eq!(
            (text, data.len()),
            (expected.0, expected.1.len()),
            "message #{} differs (kind, length)",
            self.peers[b].received
        );
        assert!(
            data == expected.1,
            "message #{} differs",
            self.peers[b].received
        );
        self.peers[b].received += 1;
    }

    /// The end of the script: close both, let everything through, run the timers out, close the
    /// transports. Then both must have ended, and nothing may come out of either.
    fn settle(&mut self) {
        for side in [Side::Client, Side::Server] {
            let (a, _) = idx(side);
            let _ = self.peers[a].conn.close(1000, "settle");
        }
        for _ in 0..4 {
            for side in [Side::Client, Side::Server] {
                self.events(side);
                for _ in 0..100_000 {
                    if !self.write(side, 1 << 16, false) {
                        break;
                    }
                }
                self.events(side);
            }
        }
        // Both correct, both connected, both drained: if neither side's transport was cut, the
        // close handshake must have completed on both.
        self.now = self.now + Duration::from_secs(10);
        for side in [Side::Client, Side::Server] {
            let (a, _) = idx(side);
            self.peers[a].conn.handle_timeout(self.now);
            self.events(side);
        }
        for side in [Side::Client, Side::Server] {
            let (a, _) = idx(side);
            self.peers[a].conn.transport_closed(self.now);
            self.events(side);
        }
        for p in &mut self.peers {
            assert!(p.ended.is_some(), "no Ended at the end");
            assert!(p.conn.poll_transmit().is_none());
            assert!(p.conn.poll_event().is_none());
            let mut slices: [&[u8]; 4] = [&[]; 4];
            assert_eq!(p.conn.transmit_chunks(&mut slices, 1 << 20), 0);
        }
    }
}
