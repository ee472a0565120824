//! An independent RFC 6455 frame checker for the bytes an engine transmits.
//!
//! Written from the RFC, sharing no code with wsframe (not its parser, not its mask, not its
//! UTF-8 validator), so a bug in the engine's codec cannot hide itself here. It is strict about
//! what a correct *sender* must produce: minimal length encodings, masking exactly when the
//! sender is a client, RSV bits clear, valid opcodes, control frames unfragmented and at most 125
//! bytes, correct fragmentation sequence, UTF-8 text messages, well-formed Close bodies, and not
//! a single byte after the Close frame.
//!
//! Kept dependency-free (std only) so that `tests/fuzz_regressions.rs` can include it by path.

#![allow(dead_code)]

/// One complete frame as seen on the wire. The (unmasked) payload is kept for control frames
/// only; data payloads go into [`WireMessage`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub opcode: u8,
    pub len: usize,
    pub payload: Vec<u8>,
}

/// A whole data message reassembled from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMessage {
    pub text: bool,
    pub data: Vec<u8>,
}

/// Close codes a sender may put on the wire (RFC 6455 section 7.4.1 and the IANA registry:
/// 1000-1003, 1007-1014, 3000-4999).
pub fn code_sendable(code: u16) -> bool {
    (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code)
}

/// Streaming checker for one direction of one connection.
#[derive(Debug)]
pub struct WireChecker {
    /// The sender is a client: every frame must be masked. A server's must not be.
    client_sender: bool,
    /// Bytes of the frame being received (header and payload so far).
    partial: Vec<u8>,
    /// Opcode (1 text, 2 binary) and bytes of the fragmented message in progress.
    message: Option<(u8, Vec<u8>)>,
    /// Set once a Close frame has been seen completely.
    pub close: Option<Vec<u8>>,
    /// Every complete frame, in order.
    pub frames: Vec<WireFrame>,
    /// Every complete data message, in order.
    pub messages: Vec<WireMessage>,
    /// Total bytes pushed.
    pub bytes: u64,
}

impl WireChecker {
    pub fn new(client_sender: bool) -> Self {
        WireChecker {
            client_sender,
            partial: Vec::new(),
            message: None,
            close: None,
            frames: Vec::new(),
            messages: Vec::new(),
            bytes: 0,
        }
    }

    /// True when no frame is partly received: the next byte starts a new frame.
    pub fn at_boundary(&self) -> bool {
        self.partial.is_empty()
    }

    /// True while a fragmented data message is open.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Feeds transmitted bytes; panics on the first violation.
    pub fn push(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            assert!(
                self.close.is_none(),
                "{} bytes transmitted after the Close frame",
                data.len()
            );
            // Take only as much as the current frame needs, so frames are split exactly.
            let need = match frame_len(&self.partial) {
                Some(total) => total - self.partial.len(),
                None => 1,
            };
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Some(total) = frame_len(&self.partial) {
                if total == self.partial.len() {
                    let bytes = core::mem::take(&mut self.partial);
                    self.frame_complete(&bytes);
                }
            }
        }
    }

    fn frame_complete(&mut self, bytes: &[u8]) {
        let b0 = bytes[0];
        let b1 = bytes[1];
        let fin = b0 & 0x80 != 0;
        assert_eq!(b0 & 0x70, 0, "RSV bits set: {b0:#04x}");
        let opcode = b0 & 0x0f;
        assert!(
            matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10),
            "reserved opcode {opcode:#x}"
        );
        let masked = b1 & 0x80 != 0;
        assert_eq!(
            masked,
            self.client_sender,
            "mask bit {masked} from a {} sender",
            if self.client_sender {
                "client"
            } else {
                "server"
            }
        );
        let (len, mut at) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as u64, 4),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            n => (n as u64, 2),
        };
        // Section 5.2: "the minimal number of bytes MUST be used to encode the length".
        match at {
            4 => assert!(len >= 126, "16-bit length form for {len}"),
            10 => {
                assert!(len > 0xffff, "64-bit length form for {len}");
                assert_eq!(len >> 63, 0, "64-bit length with the top bit set");
            }
            _ => {}
        }
        let mut payload = bytes[at + if masked { 4 } else { 0 }..].to_vec();
        let plen = payload.len();
        if masked {
            let key = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
            at += 4;
        }
        let _ = at;
        assert_eq!(payload.len() as u64, len);
        if opcode & 0x8 != 0 {
            assert!(fin, "fragmented control frame {opcode:#x}");
            assert!(len <= 125, "control frame {opcode:#x} of {len} bytes");
            if opcode == 8 {
                check_close_body(&payload);
                self.close = Some(payload.clone());
            }
        } else {
            match (opcode, &mut self.message) {
                (0, None) => panic!("continuation frame with no message open"),
                (0, Some((_, data))) => data.extend_from_slice(&payload),
                (_, Some(_)) => panic!("new data frame {opcode:#x} inside an open message"),
                (op, None) => self.message = Some((op, core::mem::take(&mut payload))),
            }
            payload = Vec::new();
            if fin {
                let (op, data) = self.message.take().expect("just set");
                if op == 1 {
                    assert!(
                        core::str::from_utf8(&data).is_ok(),
                        "text message that is not UTF-8"
                    );
                }
                self.messages.push(WireMessage {
                    text: op == 1,
                    data,
                });
            }
        }
        self.frames.push(WireFrame {
            fin,
            opcode,
            len: plen,
            payload,
        });
    }
}

/// A Close body must be empty or a sendable code followed by a UTF-8 reason (section 5.5.1).
pub fn check_close_body(payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    assert!(payload.len() >= 2, "one-byte Close body");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    assert!(code_sendable(code), "close code {code} on the wire");
    assert!(
        core::str::from_utf8(&payload[2..]).is_ok(),
        "close reason not UTF-8"
    );
}

/// The whole length of the frame starting at `b`, once enough of its header is there.
fn frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 2 {
        return None;
    }
    let mask = if b[1] & 0x80 != 0 { 4 } else { 0 };
    let (len, hdr) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(be), 10)
        }
        n => (n as u64, 2),
    };
    // Engine output is bounded by what the harness queued; a huge length is a bug in itself.
    assert!(len < (1 << 32), "frame length {len}");
    Some(hdr + mask + len as usize)
}

/// A tiny deterministic generator (xorshift64*) for chunk sizes, write sizes and mask keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `1..=max` (max >= 1).
    pub fn size(&mut self, max: usize) -> usize {
        1 + (self.next_u64() % max.max(1) as u64) as usize
    }
}
