//! Simulation support: two engines joined by in-memory links, stepped in virtual time
//! (quinn-proto style), and an independent frame parser written from RFC 6455 section 5.2.
#![allow(dead_code)]

use core::time::Duration;
use wsframe::{Config, Connection, Event, Instant};

/// A frame as seen on the wire by the independent parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Parses a complete byte stream into frames, unmasking payloads. Deliberately simple and
/// separate from the crate's codec. Fails on a truncated or malformed stream.
pub fn parse_stream(mut bytes: &[u8]) -> Result<Vec<WireFrame>, String> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return Err(format!("truncated header: {bytes:02x?}"));
        }
        let fin = bytes[0] & 0x80 != 0;
        if bytes[0] & 0x70 != 0 {
            return Err("reserved bits set".into());
        }
        let opcode = bytes[0] & 0x0f;
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(format!("bad opcode {opcode}"));
        }
        let masked = bytes[1] & 0x80 != 0;
        let mut at = 2;
        let len = match bytes[1] & 0x7f {
            126 => {
                let l = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
                at = 4;
                l
            }
            127 => {
                let l = u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize;
                at = 10;
                l
            }
            l => l as usize,
        };
        let key = if masked {
            let k = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            at += 4;
            Some(k)
        } else {
            None
        };
        if bytes.len() < at + len {
            return Err(format!(
                "truncated payload: need {}, have {}",
                at + len,
                bytes.len()
            ));
        }
        let mut payload = bytes[at..at + len].to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        if opcode >= 8 && (!fin || len > 125) {
            return Err(format!(
                "bad control frame opcode {opcode} fin {fin} len {len}"
            ));
        }
        frames.push(WireFrame {
            fin,
            opcode,
            masked,
            payload,
        });
        bytes = &bytes[at + len..];
    }
    Ok(frames)
}

/// Encodes one frame by hand (client frames masked with `key`).
pub fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | opcode];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match key {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client frame, masked with a fixed key.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some([0x12, 0x34, 0x56, 0x78]))
}

/// A transport that takes at most `limit` bytes of a frame's `header` then `payload` into
/// `wire`; returns how many it took.
pub fn write_at_most(wire: &mut Vec<u8>, limit: usize, header: &[u8], payload: &[u8]) -> usize {
    let n = (header.len() + payload.len()).min(limit);
    let from_header = n.min(header.len());
    wire.extend_from_slice(&header[..from_header]);
    wire.extend_from_slice(&payload[..n - from_header]);
    n
}

/// Takes everything the engine wants to write, in `max_write`-byte writes.
pub fn drain_transmit(conn: &mut Connection, max_write: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = conn.poll_transmit() {
        let n = write_at_most(&mut out, max_write, t.header, t.payload);
        conn.advance_transmit(n);
    }
    out
}

pub fn drain_events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// A deterministic mask-key source for client engines.
pub fn counter_random() -> Box<dyn wsframe::random::RandomSource> {
    let mut n: u8 = 0;
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_mul(31).wrapping_add(7);
            *b = n;
        }
    })
}

/// One side of a simulated pair.
pub struct Side {
    pub conn: Connection,
    pub events: Vec<Event>,
    /// Bytes this side wrote, in order (everything, for independent parsing).
    pub wrote: Vec<u8>,
    /// When false, this side neither reads nor writes nor takes events (a hung peer).
    pub alive: bool,
}

/// A client and a server joined by in-memory links, stepped in virtual time.
pub struct Pair {
    pub client: Side,
    pub server: Side,
    pub now: Instant,
    /// When false, bytes from client to server are lost (a half-open link).
    pub client_to_server: bool,
    pub server_to_client: bool,
}

impl Pair {
    pub fn new(client: Config, server: Config) -> Pair {
        let now = Instant::ZERO;
        Pair {
            client: Side {
                conn: Connection::client(client, counter_random(), now),
                events: Vec::new(),
                wrote: Vec::new(),
                alive: true,
            },
            server: Side {
                conn: Connection::server(server, now),
                events: Vec::new(),
                wrote: Vec::new(),
                alive: true,
            },
            now,
            client_to_server: true,
            server_to_client: true,
        }
    }

    /// Moves bytes and events until nothing changes.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for client_writes in [true, false] {
                let (from, to, link) = if client_writes {
                    (&mut self.client, &mut self.server, self.client_to_server)
                } else {
                    (&mut self.server, &mut self.client, self.server_to_client)
                };
                if from.alive {
                    from.events.extend(drain_events(&mut from.conn));
                    let bytes = drain_transmit(&mut from.conn, usize::MAX);
                    if !bytes.is_empty() {
                        progressed = true;
                        from.wrote.extend_from_slice(&bytes);
                        if link && to.alive {
                            let _ = to.conn.receive(self.now, &bytes);
                        }
                    }
                    from.events.extend(drain_events(&mut from.conn));
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Steps virtual time to `until`, firing each engine's timers at exactly the instant it
    /// asked for.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let next = [&self.client, &self.server]
                .into_iter()
                .filter(|s| s.alive)
                .filter_map(|s| s.conn.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for side in [&mut self.client, &mut self.server] {
                        if side.alive {
                            side.conn.handle_timeout(self.now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.pump();
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}

/// The `Ended` event among `events`, if any.
pub fn ended(events: &[Event]) -> Option<&wsframe::Ended> {
    events.iter().find_map(|e| match e {
        Event::Ended(e) => Some(&**e),
        _ => None,
    })
}
