//! Workloads shared by `benches/engine.rs`, `benches/callgrind_driver.rs` and the peer
//! comparison in `benches/peers/` (which includes this file by path), so every library parses
//! exactly the same bytes.

#![allow(dead_code)]

use std::hint::black_box;

use wsframe::{Config, Connection, Instant, PreparedMessage};

/// Payload sizes of the receive and send benchmarks.
pub const SIZES: [usize; 6] = [16, 125, 1024, 16 << 10, 64 << 10, 1 << 20];

/// Payload bytes per benchmark iteration: enough frames that per-iteration overhead vanishes,
/// few enough that an iteration stays around a millisecond.
pub const BYTES_PER_ITER: usize = 256 << 10;

/// The size of one socket read handed to an engine (a typical read buffer).
pub const READ_SIZE: usize = 64 << 10;

/// Messages per iteration for a payload size (at least one).
pub fn count_for(size: usize) -> usize {
    (BYTES_PER_ITER / size).max(1)
}

/// What the payload bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pseudo-random bytes in binary frames.
    Binary,
    /// ASCII text (JSON-like) in text frames: the common case for text protocols.
    Ascii,
    /// Text with about a third of its bytes in 2- to 4-byte UTF-8 sequences.
    Mixed,
}

impl Kind {
    pub fn opcode(self) -> u8 {
        match self {
            Kind::Binary => 0x2,
            Kind::Ascii | Kind::Mixed => 0x1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Binary => "binary",
            Kind::Ascii => "text-ascii",
            Kind::Mixed => "text-mixed",
        }
    }
}

/// xorshift64*: deterministic bytes and mask keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A payload of exactly `size` bytes of the given kind.
pub fn payload(size: usize, kind: Kind, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    match kind {
        Kind::Binary => {
            let mut rng = Rng::new(seed);
            while out.len() < size {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
            out.truncate(size);
        }
        Kind::Ascii => {
            const JSON: &[u8] = br#"{"id":1234567,"user":"relay-42","tags":["a","bc"],"v":3.25},"#;
            while out.len() < size {
                out.extend_from_slice(JSON);
            }
            out.truncate(size);
        }
        Kind::Mixed => {
            const MIXED: &str = "héllo wörld, naïve café — 日本語のテキスト 😀 ok; ";
            let mut s = String::with_capacity(size + 8);
            'fill: loop {
                for c in MIXED.chars() {
                    if s.len() + c.len_utf8() > size {
                        break 'fill;
                    }
                    s.push(c);
                }
            }
            while s.len() < size {
                s.push('.');
            }
            out = s.into_bytes();
        }
    }
    out
}

/// Appends one frame (FIN set) with `payload`, masked with `key` if given.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) {
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(mask_bit | n as u8);
    } else if n <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match key {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// `count` frames of `size` bytes as a client sends them (masked, a fresh key per frame): the
/// input of every receive benchmark.
pub fn client_stream(size: usize, count: usize, kind: Kind) -> Vec<u8> {
    let mut rng = Rng::new(size as u64 ^ 0xfeed);
    let mut out = Vec::with_capacity(count * (size + 14));
    for i in 0..count {
        let p = payload(size, kind, i as u64 % 7);
        let key = (rng.next() as u32).to_le_bytes();
        push_frame(&mut out, kind.opcode(), &p, Some(key));
    }
    out
}

/// The engine configuration used everywhere: defaults, with limits that the largest workload
/// does not trip and no keepalive (no clock in a benchmark).
pub fn config() -> Config {
    Config {
        ping_interval: None,
        idle_timeout: None,
        max_frame_size: 16 << 20,
        max_message_size: 64 << 20,
        max_outbound_bytes: 64 << 20,
        max_send_fragment: 16 << 20,
        ..Config::default()
    }
}

/// A client engine as applications get one: mask keys from the crate's default source (a
/// ChaCha12 stream keyed by the OS), as the peers draw theirs from their own defaults.
pub fn client_engine() -> Connection {
    Connection::client_os_random(config(), Instant::ZERO)
}

/// A payload as `Bytes` that costs nothing to clone or drop (static storage, leaked once per
/// benchmark): the send benchmarks measure the engines, not the atomic reference count of a
/// shared buffer that some applications have and others do not.
pub fn static_bytes(data: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from_static(Box::leak(data.into_boxed_slice()))
}

/// Feeds `input` to a server engine in `READ_SIZE` reads and takes every event, as an IO
/// adapter does. Returns the number of events (messages).
#[inline(never)]
pub fn wsframe_receive(server: &mut Connection, input: &[u8]) -> usize {
    let mut n = 0;
    for read in input.chunks(READ_SIZE) {
        server.receive(Instant::ZERO, read).expect("valid frames");
        while let Some(event) = server.poll_event() {
            black_box(&event);
            n += 1;
        }
    }
    n
}

/// [`wsframe_receive`] through `poll_event_ref`: whole messages lent, not handed out as
/// `Bytes` (the counterpart of fastwebsockets' borrowed payloads).
#[inline(never)]
pub fn wsframe_receive_lent(server: &mut Connection, input: &[u8]) -> usize {
    let mut n = 0;
    for read in input.chunks(READ_SIZE) {
        server.receive(Instant::ZERO, read).expect("valid frames");
        while let Some(event) = server.poll_event_ref() {
            black_box(&event);
            n += 1;
        }
    }
    n
}

/// Queues `count` binary messages on `conn` and writes each (header and payload slices handed to
/// a no-op "socket"), one frame at a time as an IO adapter does. Returns the bytes "written".
#[inline(never)]
pub fn wsframe_send(conn: &mut Connection, payload: &bytes::Bytes, count: usize) -> usize {
    let mut total = 0;
    for _ in 0..count {
        conn.send_binary(payload.clone()).expect("within budget");
        let t = conn.poll_transmit().expect("a frame");
        black_box(t.header);
        black_box(t.payload);
        let n = t.len();
        total += n;
        conn.advance_transmit(n);
    }
    total
}

/// One prepared message to every engine, each written straight through to a no-op "socket"
/// (`send_prepared_through`: the payload is lent, no reference count taken per engine).
#[inline(never)]
pub fn wsframe_fan_out(engines: &mut [Connection], payload: &bytes::Bytes) {
    let message = PreparedMessage::binary(payload.clone());
    for e in engines.iter_mut() {
        e.send_prepared_through(&message, |header, payload| {
            black_box(header);
            black_box(payload);
            header.len() + payload.len()
        })
        .unwrap();
    }
}

/// [`wsframe_fan_out`] through the queue: `send_prepared` (each engine's queue holds a clone of
/// the payload until it is written), then `poll_transmit` and `advance_transmit`.
#[inline(never)]
pub fn wsframe_fan_out_queued(engines: &mut [Connection], payload: &bytes::Bytes) {
    let message = PreparedMessage::binary(payload.clone());
    for e in engines.iter_mut() {
        e.send_prepared(&message).unwrap();
        let t = e.poll_transmit().unwrap();
        black_box(t.header);
        black_box(t.payload);
        let n = t.len();
        e.advance_transmit(n);
    }
}

// ----- the physical limits ----------------------------------------------------------------

/// memcpy of the whole input.
#[inline(never)]
pub fn limit_memcpy(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

/// A plain XOR of the whole buffer with a repeating 4-byte key, in place (what LLVM makes of
/// the obvious u32 loop; no hand-written SIMD).
#[inline(never)]
pub fn limit_xor(buf: &mut [u8], key: [u8; 4]) {
    let k = u32::from_ne_bytes(key);
    let mut words = buf.chunks_exact_mut(4);
    for w in &mut words {
        let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) ^ k;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// The least a receiver must do: walk the headers and copy-unmask each payload into `out`, in
/// one plain loop (no validation beyond what walking needs, no events, no allocation).
/// Returns the number of frames.
#[inline(never)]
pub fn limit_fused(input: &[u8], out: &mut [u8]) -> usize {
    let mut at = 0;
    let mut written = 0;
    let mut frames = 0;
    while at + 2 <= input.len() {
        let b1 = input[at + 1];
        let (len, mut h) = match b1 & 0x7f {
            126 => (
                u16::from_be_bytes([input[at + 2], input[at + 3]]) as usize,
                4,
            ),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&input[at + 2..at + 10]);
                (u64::from_be_bytes(be) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let key = [
            input[at + h],
            input[at + h + 1],
            input[at + h + 2],
            input[at + h + 3],
        ];
        h += 4;
        let src = &input[at + h..at + h + len];
        let dst = &mut out[written..written + len];
        let k = u32::from_ne_bytes(key);
        let mut d4 = dst.chunks_exact_mut(4);
        let mut s4 = src.chunks_exact(4);
        for (d, s) in (&mut d4).zip(&mut s4) {
            let v = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]) ^ k;
            d.copy_from_slice(&v.to_ne_bytes());
        }
        for ((d, s), k) in d4.into_remainder().iter_mut().zip(s4.remainder()).zip(key) {
            *d = s ^ k;
        }
        written += len;
        at += h + len;
        frames += 1;
    }
    frames
}
