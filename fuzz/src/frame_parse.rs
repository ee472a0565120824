//! `frame_parse`: arbitrary bytes fed to a server engine and to a client engine.
//!
//! Input layout: 4 control bytes (limits, delivery, echo, chunking, write sizes, seed), then the
//! bytes "received from the peer". Each role is driven three times:
//!
//! * **whole**: the input in one `receive` call;
//! * **chunked**: the same input in pseudo-random pieces (1 byte up to 1 KiB), with random
//!   partial writes of whatever the engine transmits in between, and `release_idle_memory`
//!   after some of them (as an adapter calls it before it waits);
//! * **timed**: chunked, and the clock also moves (keepalive, idle, close and message timers),
//!   and the application may call `close()` part-way through.
//!
//! Invariants checked:
//!
//! * no panic (libFuzzer), no hang (libFuzzer's timeout; every loop here is bounded);
//! * memory stays bounded by what arrived (counting allocator): a header declaring 16 MiB
//!   reserves nothing;
//! * `poll_event_ref` (the chunked run) lends exactly the events `poll_event` (the whole run)
//!   hands out;
//! * events are sane: text is UTF-8, sizes within the configured limits, control payloads at
//!   most 125 bytes, chunk first/last markers consistent, `Ended` exactly once and last;
//! * `whole` and `chunked` produce the same messages, pings, pongs, Close and error code:
//!   the parser does not depend on how the input was split;
//! * everything transmitted parses with the independent checker in `wire.rs`, `starts_frame`
//!   marks exactly the frame boundaries, and `advance_transmit` counts the frames completed;
//! * once the engine has failed the connection, it emits nothing but the rest of the frame in
//!   flight and then its Close frame, with the error's close code;
//! * after `Ended`, nothing is transmitted and input is refused.

#![allow(dead_code)]

use core::time::Duration;

use bytes::{BufMut, Bytes};
use wsframe::{
    Config, Connection, DataKind, Delivery, EndReason, Event, Instant, PreparedMessage,
    ReceiveError,
};

use super::alloc_count;
use super::wire::{code_sendable, Rng, WireChecker};

/// What the application saw, independent of how the input was split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logical {
    Message { text: bool, data: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// What one drive saw: the logical events and the close code of the failure, if any.
pub type Outcome = (Vec<Logical>, Option<u16>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Chunked,
    Timed,
}

/// The settings the control bytes select.
#[derive(Debug, Clone)]
pub struct Setup {
    pub config: Config,
    pub echo: bool,
    pub prepared: bool,
    pub chunk_max: usize,
    pub write_max: usize,
    pub vectored: bool,
    pub close_at: Option<usize>,
    pub seed: u64,
}

pub fn setup(ctl: [u8; 4]) -> Setup {
    const FRAME: [u64; 8] = [16 << 20, 0, 1, 125, 126, 1000, 65_536, u64::MAX];
    const MESSAGE: [u64; 8] = [64 << 20, 0, 10, 125, 300, 2000, 65_537, u64::MAX];
    const FRAGMENT: [usize; 8] = [16 << 10, 1, 2, 7, 125, 126, 1000, 0];
    const BUDGET: [usize; 4] = [4 << 20, 0, 64, 1000];
    const CHUNK: [usize; 8] = [1, 2, 3, 7, 16, 64, 300, 1024];
    const WRITE: [usize; 8] = [1, 2, 5, 14, 100, 1000, 70_000, usize::MAX];
    let mut config = Config::default();
    config.max_frame_size = FRAME[(ctl[0] & 7) as usize];
    config.max_message_size = MESSAGE[((ctl[0] >> 3) & 7) as usize];
    config.delivery = if ctl[0] & 0x40 != 0 {
        Delivery::Streaming
    } else {
        Delivery::Messages
    };
    config.max_send_fragment = FRAGMENT[(ctl[1] & 7) as usize];
    config.max_outbound_bytes = BUDGET[((ctl[1] >> 3) & 3) as usize];
    config.outbound_low_water = config.max_outbound_bytes / 2;
    // Short timers, so the timed run reaches them.
    config.ping_interval = (ctl[2] & 0x10 != 0).then(|| Duration::from_millis(1000));
    config.idle_timeout = (ctl[2] & 0x20 != 0).then(|| Duration::from_millis(3000));
    config.close_timeout = Duration::from_millis(2000);
    config.message_timeout = (ctl[2] & 0x40 != 0).then(|| Duration::from_millis(1500));
    Setup {
        config,
        echo: ctl[0] & 0x80 != 0,
        prepared: ctl[1] & 0x20 != 0,
        chunk_max: CHUNK[((ctl[1] >> 5) & 7) as usize],
        write_max: WRITE[(ctl[2] & 7) as usize],
        vectored: ctl[2] & 0x08 != 0,
        close_at: (ctl[2] & 0x80 != 0).then_some((ctl[3] & 0x3f) as usize),
        seed: ctl[3] as u64,
    }
}

/// The fuzz target's entry point.
pub fn run(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (ctl, input) = data.split_at(4);
    let setup = setup([ctl[0], ctl[1], ctl[2], ctl[3]]);
    for client in [false, true] {
        let whole = drive(client, &setup, input, Mode::Whole);
        let chunked = drive(client, &setup, input, Mode::Chunked);
        assert_eq!(
            whole, chunked,
            "client={client}: the split of the input changed what the application saw"
        );
        drive(client, &setup, input, Mode::Timed);
    }
}

/// `expected` is the failure's code, or 0 for "1000 or 1008" (a message timeout after our
/// own `close(1000)`: the error reports 1000 if that Close was already committed).
fn code_matches(expected: u16, got: u16) -> bool {
    got == expected || (expected == 0 && matches!(got, 1000 | 1008))
}

fn engine(client: bool, config: &Config, seed: u64) -> Connection {
    if client {
        let mut rng = Rng::new(seed ^ 0x5eed);
        let random = move |buf: &mut [u8]| {
            for b in buf {
                *b = rng.next_u64() as u8;
            }
        };
        Connection::client(config.clone(), Box::new(random), Instant::ZERO)
    } else {
        Connection::server(config.clone(), Instant::ZERO)
    }
}

/// The state one drive keeps besides the engine.
struct Driver {
    conn: Connection,
    wire: WireChecker,
    rng: Rng,
    setup: Setup,
    logical: Vec<Logical>,
    /// Streaming: the message being assembled from chunks (kind, bytes).
    streaming: Option<(DataKind, Vec<u8>)>,
    /// Failure: (close code, frames complete at that moment, a frame was in flight).
    failed: Option<(u16, usize, bool)>,
    ended: bool,
    end_reason: Option<EndReason>,
    /// The application called `close(1000, ..)` and it was accepted.
    closed: bool,
    received: usize,
    mem_base: usize,
    mode: Mode,
}

fn drive(client: bool, setup: &Setup, input: &[u8], mode: Mode) -> Outcome {
    let mem_base = alloc_count::live();
    let mut d = Driver {
        conn: engine(client, &setup.config, setup.seed),
        // The engine under test transmits; the checker plays its peer.
        wire: WireChecker::new(client),
        rng: Rng::new(setup.seed.wrapping_add(mode as u64)),
        setup: setup.clone(),
        logical: Vec::new(),
        streaming: None,
        failed: None,
        ended: false,
        end_reason: None,
        closed: false,
        received: 0,
        mem_base,
        mode,
    };
    let mut now = Instant::ZERO;
    let mut pos = 0;
    let mut step = 0;
    while pos < input.len() {
        let n = if mode == Mode::Whole {
            input.len()
        } else {
            d.rng.size(setup.chunk_max).min(input.len() - pos)
        };
        let chunk = &input[pos..pos + n];
        pos += n;
        if mode == Mode::Timed {
            let r = d.rng.next_u64();
            let ms = if r & 15 == 0 { 5000 } else { r % 800 };
            now = now + Duration::from_millis(ms);
            d.timeout(now);
            if setup.close_at == Some(step) && d.conn.close(1000, "fuzz").is_ok() {
                d.closed = true;
            }
            step += 1;
        }
        d.receive(now, chunk);
        d.events();
        if mode != Mode::Whole {
            d.pump(4);
            // An adapter about to wait for input frees what the engine need not hold; it must
            // change nothing the application or the peer sees.
            match d.rng.size(3) {
                1 => d.conn.release_idle_memory(),
                2 => d.conn.trim_memory(),
                _ => {}
            }
        }
    }
    // Let every timer that is set fire, once input is over.
    if mode == Mode::Timed {
        for _ in 0..4 {
            if let Some(t) = d.conn.poll_timeout() {
                now = now.max(t);
                d.timeout(now);
                d.events();
                d.pump(8);
            }
        }
    }
    d.finish(now, mode);
    (d.logical, d.failed.map(|f| f.0))
}

impl Driver {
    /// Feeds `chunk`; in the chunked modes, as much of it as the engine offers room for goes
    /// through its own buffer (`receive_buffer`), which must make no difference.
    fn receive(&mut self, now: Instant, mut chunk: &[u8]) {
        if self.mode != Mode::Whole {
            while let Some(mut room) = self.conn.receive_buffer(chunk.len()) {
                let n = room.remaining_mut().min(chunk.len());
                assert!(n > 0, "receive_buffer offered no room");
                room.put_slice(&chunk[..n]);
                let was_refusing = self.failed.is_some() || self.conn.is_ended();
                let result = self.conn.receive_filled(now, room);
                self.took(result, was_refusing, n);
                chunk = &chunk[n..];
                if chunk.is_empty() {
                    return;
                }
            }
        }
        let was_refusing = self.failed.is_some() || self.conn.is_ended();
        let result = self.conn.receive(now, chunk);
        self.took(result, was_refusing, chunk.len());
    }

    fn took(&mut self, result: Result<(), ReceiveError>, was_refusing: bool, len: usize) {
        match result {
            Ok(()) => assert!(!was_refusing, "input accepted after failure or end"),
            Err(ReceiveError::NotAccepting) => {
                assert!(was_refusing, "input refused by a live connection")
            }
            Err(ReceiveError::Protocol(e)) => {
                assert!(!was_refusing, "a second protocol error: {e}");
                // The violation's code; or, once our own Close is on its way, that Close's
                // code (the error reports the code the peer gets).
                assert!(
                    matches!(e.code, 1002 | 1007 | 1008 | 1009) || (self.closed && e.code == 1000),
                    "close code {} for {e}",
                    e.code
                );
                self.failed = Some((e.code, self.wire.frames.len(), !self.wire.at_boundary()));
            }
        }
        self.received += len;
        self.check_memory();
    }

    /// Fires the timers. A message timeout fails the connection from here (1008): an empty
    /// `receive` is the probe that tells (refused while not ended).
    fn timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        if self.failed.is_none()
            && !self.conn.is_ended()
            && self.conn.receive(now, &[]) == Err(ReceiveError::NotAccepting)
        {
            assert!(
                self.setup.config.message_timeout.is_some(),
                "failed by a timer"
            );
            // 1008, or 1000 if our Close was already committed (0: either).
            let code = if self.closed { 0 } else { 1008 };
            self.failed = Some((code, self.wire.frames.len(), !self.wire.at_boundary()));
        }
    }

    fn check_memory(&self) {
        if !alloc_count::installed() {
            return;
        }
        let used = alloc_count::live().saturating_sub(self.mem_base);
        // The harness's own copies count too: logical events (at most what arrived) and one
        // checker record per transmitted frame. The engine's outbound queue holds what the
        // echo queued, which the budget bounds (payload and a charge per message; a queue's
        // storage may be twice its entries), not what arrived: a frame streamed in 1-byte
        // chunks is echoed as a 1-byte message per byte.
        let bound = (64 << 10)
            + 64 * self.received
            + 128 * self.wire.frames.len()
            + 3 * self.conn.outbound_charge();
        assert!(
            used <= bound,
            "{used} bytes held after receiving {} bytes (bound {bound}, {:?} mode, {} frames sent)",
            self.received,
            self.mode,
            self.wire.frames.len()
        );
    }

    fn events(&mut self) {
        let config = self.setup.config.clone();
        loop {
            // The chunked run takes events through the lending API, the whole run through
            // `poll_event`; `run` asserts that both saw the same.
            let event = if self.mode == Mode::Chunked {
                match self.conn.poll_event_ref() {
                    Some(lent) => lent.into_owned(),
                    None => break,
                }
            } else {
                match self.conn.poll_event() {
                    Some(event) => event,
                    None => break,
                }
            };
            assert!(!self.ended, "event after Ended: {event:?}");
            match event {
                Event::Text(text) => {
                    assert!(core::str::from_utf8(text.as_bytes()).is_ok());
                    assert!(text.len() as u64 <= config.max_message_size);
                    assert!(self.streaming.is_none());
                    self.logical.push(Logical::Message {
                        text: true,
                        data: text.as_bytes().to_vec(),
                    });
                    if self.setup.echo {
                        let _ = self.conn.send_text(text);
                    }
                }
                Event::Binary(data) => {
                    assert!(data.len() as u64 <= config.max_message_size);
                    self.logical.push(Logical::Message {
                        text: false,
                        data: data.to_vec(),
                    });
                    self.echo_binary(data);
                }
                Event::Chunk(chunk) => {
                    assert_eq!(config.delivery, Delivery::Streaming);
                    assert!(chunk.data.len() as u64 <= config.max_frame_size);
                    match &mut self.streaming {
                        None => {
                            assert!(chunk.first, "first chunk not marked first");
                            self.streaming = Some((chunk.kind, chunk.data.to_vec()));
                        }
                        Some((kind, data)) => {
                            assert!(!chunk.first, "a second first chunk");
                            assert_eq!(*kind, chunk.kind, "kind changed inside a message");
                            data.extend_from_slice(&chunk.data);
                        }
                    }
                    let total = self.streaming.as_ref().map_or(0, |s| s.1.len());
                    assert!(total as u64 <= config.max_message_size);
                    if chunk.last {
                        let (kind, data) = self.streaming.take().expect("just set");
                        if kind == DataKind::Text {
                            assert!(core::str::from_utf8(&data).is_ok(), "streamed text");
                        }
                        self.logical.push(Logical::Message {
                            text: kind == DataKind::Text,
                            data,
                        });
                    }
                    if chunk.kind == DataKind::Binary && !chunk.data.is_empty() {
                        self.echo_binary(chunk.data);
                    }
                }
                Event::Ping(p) => {
                    assert!(p.len() <= 125);
                    self.logical.push(Logical::Ping(p.to_vec()));
                }
                Event::Pong(p) => {
                    assert!(p.len() <= 125);
                    self.logical.push(Logical::Pong(p.to_vec()));
                }
                Event::Close(body) => {
                    if let Some(c) = &body {
                        assert!(code_sendable(c.code), "Close event with code {}", c.code);
                        assert!(c.reason.len() <= 123);
                    }
                    self.logical
                        .push(Logical::Close(body.map(|c| (c.code, c.reason))));
                }
                Event::Writable => {}
                Event::Ended(ended) => {
                    self.ended = true;
                    self.end_reason = Some(ended.reason.clone());
                    if let Some((code, _, _)) = self.failed {
                        match &ended.reason {
                            EndReason::ProtocolError(e) => assert!(code_matches(code, e.code)),
                            // A dead peer may still be declared dead while our error Close
                            // waits to be written.
                            EndReason::IdleTimeout(_) => {}
                            other => panic!("failed with {code} but ended with {other:?}"),
                        }
                    }
                }
            }
        }
        if self.ended {
            assert!(self.conn.is_ended());
            assert!(self.conn.poll_transmit().is_none(), "transmit after Ended");
        }
    }

    fn echo_binary(&mut self, data: Bytes) {
        if !self.setup.echo {
            return;
        }
        let _ = if self.setup.prepared {
            self.conn.send_prepared(&PreparedMessage::binary(data))
        } else {
            self.conn.send_binary(data)
        };
    }

    /// Writes what the engine transmits, in random partial writes, `rounds` writes at most.
    fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            if !self.write_once() {
                break;
            }
            self.events();
        }
    }

    /// One write of a random size. Returns false when there was nothing to write.
    fn write_once(&mut self) -> bool {
        let want = self.rng.size(self.setup.write_max);
        let frames_before = self.wire.frames.len();
        let written = if self.setup.vectored && self.rng.next_u64() & 1 == 0 {
            let mut slices: [&[u8]; 6] = [&[]; 6];
            let max_bytes = self.rng.size(4096);
            let n = self.conn.transmit_chunks(&mut slices, max_bytes);
            if n == 0 {
                return false;
            }
            let mut left = want;
            for s in &slices[..n] {
                assert!(!s.is_empty(), "empty slice from transmit_chunks");
                let k = left.min(s.len());
                self.wire.push(&s[..k]);
                left -= k;
                if left == 0 {
                    break;
                }
            }
            want - left
        } else {
            let Some(t) = self.conn.poll_transmit() else {
                return false;
            };
            assert!(!t.is_empty(), "empty transmit");
            assert_eq!(
                t.starts_frame,
                self.wire.at_boundary(),
                "starts_frame disagrees with the byte stream"
            );
            let k = want.min(t.len());
            let h = k.min(t.header.len());
            self.wire.push(&t.header[..h]);
            self.wire.push(&t.payload[..k - h]);
            k
        };
        let done = self.conn.advance_transmit(written);
        if !self.ended {
            assert_eq!(
                done,
                self.wire.frames.len() - frames_before,
                "advance_transmit's frame count"
            );
            assert_eq!(self.conn.stats().bytes_out, self.wire.bytes);
        }
        self.check_after_failure();
        true
    }

    /// After a failure: the frame in flight, then only the Close.
    fn check_after_failure(&self) {
        if let Some((code, done, in_flight)) = self.failed {
            let first_new = done + usize::from(in_flight);
            for f in self.wire.frames.iter().skip(first_new) {
                assert_eq!(f.opcode, 8, "frame {:#x} sent after failing", f.opcode);
                assert!(f.payload.len() >= 2, "failing Close without a code");
                let sent = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                assert!(
                    code_matches(code, sent),
                    "the failing Close carries {sent}, the error said {code}"
                );
            }
        }
    }

    fn finish(&mut self, now: Instant, mode: Mode) {
        // Drain the outbound queue (bounded: every write moves at least one byte and the queue
        // only holds what the input made the engine queue).
        let mut guard = 0;
        while !self.ended && self.write_once() {
            self.events();
            guard += 1;
            assert!(guard < 1_000_000, "transmit never drains");
        }
        self.events();
        if self.failed.is_some() {
            // Drained: the Close went out (ours from before the failure, or the failing one,
            // checked by check_after_failure) and that ended the connection. Only a timer can
            // end it first.
            assert!(self.ended, "failed and drained, but not ended");
            if mode != Mode::Timed {
                assert!(
                    self.wire.close.is_some(),
                    "failed and drained, no Close sent"
                );
            }
        }
        if !self.ended {
            self.conn.transport_closed(now);
            self.events();
        }
        assert!(self.ended, "no Ended after transport_closed");
        assert!(self.conn.poll_event().is_none());
        assert!(self.conn.poll_transmit().is_none());
        assert_eq!(
            self.conn.receive(now, b"\x81\x00"),
            Err(ReceiveError::NotAccepting)
        );
        if let Some((kind, _)) = self.streaming.take() {
            // An unfinished streamed message is not part of the comparison.
            let _ = kind;
        }
    }
}
