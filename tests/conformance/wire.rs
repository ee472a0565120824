//! An independent, deliberately simple frame encoder and parser, written from RFC 6455
//! section 5.2 (base framing) and section 5.3 (masking). It shares no code with the crate's
//! `frame` or `mask` modules: a byte loop, a `match` on the length field, nothing clever.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

#![allow(dead_code)]

/// Section 5.2 opcodes.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// RSV bits as they sit in the first byte.
pub const RSV1: u8 = 0x40;
pub const RSV2: u8 = 0x20;
pub const RSV3: u8 = 0x10;

/// The masking key every hand-built client frame uses unless a test picks another one: the
/// key of the masked "Hello" example in section 5.7.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as it was on the wire, payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..3 as the bits of the first byte (`RSV1 | RSV2 | RSV3`).
    pub rsv: u8,
    pub opcode: u8,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// How the length was written: 0 (7-bit), 2 (16-bit) or 8 (64-bit extended length).
    pub len_bytes: usize,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The frame an engine should write: FIN, opcode, mask key, payload, minimal length form.
    pub fn new(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Frame {
        Frame {
            fin,
            rsv: 0,
            opcode,
            mask,
            len_bytes: match payload.len() {
                0..=125 => 0,
                126..=0xFFFF => 2,
                _ => 8,
            },
            payload: payload.to_vec(),
        }
    }

    /// The close code and reason of a Close frame (None for an empty body).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a Close frame: {self:?}");
        if self.payload.is_empty() {
            None
        } else {
            assert!(self.payload.len() >= 2, "1-byte close body sent: {self:?}");
            Some(u16::from_be_bytes([self.payload[0], self.payload[1]]))
        }
    }

    /// The reason of a Close frame, which must be UTF-8.
    pub fn close_reason(&self) -> String {
        assert_eq!(self.opcode, CLOSE);
        String::from_utf8(self.payload.get(2..).unwrap_or(&[]).to_vec())
            .expect("close reason sent by the engine is UTF-8 (section 5.5.1)")
    }
}

/// `data[i] ^= key[i % 4]` (section 5.3), byte by byte.
pub fn xor_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// How to write the payload length. Section 5.2 asks senders for the minimal form; a header
/// can still be built in a longer one to check how it is received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenForm {
    Minimal,
    /// 7-bit value 126, then a 16-bit length.
    Ext16,
    /// 7-bit value 127, then a 64-bit length (written as given, top bit included).
    Ext64,
}

/// Just the header of a frame: first byte, length (in `form`), masking key.
pub fn header(b0: u8, mask: Option<[u8; 4]>, len: u64, form: LenForm) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0x00 };
    let form = match form {
        LenForm::Minimal if len <= 125 => None,
        LenForm::Minimal if len <= 0xFFFF => Some(LenForm::Ext16),
        LenForm::Minimal => Some(LenForm::Ext64),
        other => Some(other),
    };
    match form {
        None => out.push(mask_bit | len as u8),
        Some(LenForm::Ext16) => {
            assert!(len <= 0xFFFF);
            out.push(mask_bit | 126);
            out.push((len >> 8) as u8);
            out.push(len as u8);
        }
        Some(LenForm::Ext64) => {
            out.push(mask_bit | 127);
            for shift in (0..8).rev() {
                out.push((len >> (shift * 8)) as u8);
            }
        }
        Some(LenForm::Minimal) => unreachable!(),
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// The first header byte: FIN, RSV bits, opcode.
pub fn b0(fin: bool, rsv: u8, opcode: u8) -> u8 {
    assert_eq!(rsv & !(RSV1 | RSV2 | RSV3), 0);
    assert!(opcode <= 0xF);
    (if fin { 0x80 } else { 0 }) | rsv | opcode
}

/// A whole frame with everything chosen by the caller; the payload is given unmasked and
/// masked here when `mask` is set.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = header(
        b0(fin, rsv, opcode),
        mask,
        payload.len() as u64,
        LenForm::Minimal,
    );
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        xor_mask(&mut out[start..], key);
    }
    out
}

/// A frame as a client sends it: masked (section 5.1), with [`KEY`].
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, Some(KEY), payload)
}

/// A frame as a server sends it: unmasked (section 5.1).
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, None, payload)
}

/// A Close body: 2-byte big-endian code and the reason's bytes (section 5.5.1).
pub fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    body
}

/// Concatenates byte strings.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Why `parse_one` could not produce a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed.
    Incomplete,
}

/// Parses one frame at the start of `bytes`: the frame and the bytes it took.
pub fn parse_one(bytes: &[u8]) -> Result<(Frame, usize), ParseError> {
    if bytes.len() < 2 {
        return Err(ParseError::Incomplete);
    }
    let fin = bytes[0] & 0x80 != 0;
    let rsv = bytes[0] & 0x70;
    let opcode = bytes[0] & 0x0F;
    let masked = bytes[1] & 0x80 != 0;
    let mut at = 2;
    let (len, len_bytes) = match bytes[1] & 0x7F {
        126 => {
            if bytes.len() < at + 2 {
                return Err(ParseError::Incomplete);
            }
            let len = (bytes[2] as u64) << 8 | bytes[3] as u64;
            at += 2;
            (len, 2)
        }
        127 => {
            if bytes.len() < at + 8 {
                return Err(ParseError::Incomplete);
            }
            let mut len = 0u64;
            for &b in &bytes[2..10] {
                len = len << 8 | b as u64;
            }
            at += 8;
            (len, 8)
        }
        n => (n as u64, 0),
    };
    let mask = if masked {
        if bytes.len() < at + 4 {
            return Err(ParseError::Incomplete);
        }
        let key = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        at += 4;
        Some(key)
    } else {
        None
    };
    let len = usize::try_from(len).expect("length fits usize");
    if bytes.len() < at + len {
        return Err(ParseError::Incomplete);
    }
    let mut payload = bytes[at..at + len].to_vec();
    if let Some(key) = mask {
        xor_mask(&mut payload, key);
    }
    Ok((
        Frame {
            fin,
            rsv,
            opcode,
            mask,
            len_bytes,
            payload,
        },
        at + len,
    ))
}

/// Parses a byte stream that must consist of whole frames only, and checks what section 5.2
/// asks of every sender: minimal length encoding, no RSV bits (no extension is negotiated),
/// a known opcode, control frames unfragmented and at most 125 bytes.
pub fn parse_all(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = match parse_one(bytes) {
            Ok(ok) => ok,
            Err(e) => panic!(
                "{e:?}: the engine left a partial frame on the wire: {:02x?}",
                &bytes[..bytes.len().min(32)]
            ),
        };
        check_sender_rules(&frame);
        frames.push(frame);
        bytes = &bytes[used..];
    }
    frames
}

/// Section 5.2 rules for anything the engine writes.
pub fn check_sender_rules(frame: &Frame) {
    assert_eq!(frame.rsv, 0, "RSV bits set without an extension: {frame:?}");
    assert!(
        matches!(frame.opcode, CONT | TEXT | BINARY | CLOSE | PING | PONG),
        "reserved opcode sent: {frame:?}"
    );
    let minimal = match frame.payload.len() {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    assert_eq!(
        frame.len_bytes,
        minimal,
        "length not in the minimal form (section 5.2): {} bytes payload",
        frame.payload.len()
    );
    if frame.opcode & 0x8 != 0 {
        assert!(frame.fin, "fragmented control frame sent: {frame:?}");
        assert!(
            frame.payload.len() <= 125,
            "control frame over 125 bytes sent"
        );
    }
}

/// Self-checks of the test-side codec against the RFC's own examples (section 5.7), so a
/// failure elsewhere is not a bug in this file.
#[cfg(test)]
mod self_check {
    use super::*;

    #[test]
    fn rfc_5_7_examples() {
        // A single-frame unmasked text message.
        assert_eq!(
            server_frame(true, TEXT, b"Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        // A single-frame masked text message.
        assert_eq!(
            client_frame(true, TEXT, b"Hello"),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // A fragmented unmasked text message.
        assert_eq!(
            server_frame(false, TEXT, b"Hel"),
            [0x01, 0x03, 0x48, 0x65, 0x6c]
        );
        assert_eq!(server_frame(true, CONT, b"lo"), [0x80, 0x02, 0x6c, 0x6f]);
        // Unmasked Ping and masked Pong.
        assert_eq!(
            server_frame(true, PING, b"Hello"),
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            client_frame(true, PONG, b"Hello"),
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // 256 bytes binary and 64 KiB binary headers.
        assert_eq!(
            &server_frame(true, BINARY, &[0; 256])[..4],
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            &server_frame(true, BINARY, &[0; 65536])[..10],
            [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        let (f, n) = parse_one(&client_frame(true, TEXT, b"Hello")).unwrap();
        assert_eq!(
            (f.payload.as_slice(), f.mask, n),
            (&b"Hello"[..], Some(KEY), 11)
        );
    }
}
