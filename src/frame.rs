//! The frame codec (RFC 6455 section 5.2): header parsing and encoding, nothing else.
//!
//! Parsing is incremental in the style of `httparse`: [`parse_header`] looks at the bytes that
//! have arrived and answers [`Status::Partial`] until the whole header is there. It never
//! allocates and never looks at the payload; the payload length it reports is only a claim
//! until the bytes arrive, and callers must not size anything by it.

use thiserror::Error;

/// The longest possible header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (section 5.2). Reserved opcodes are rejected by [`parse_header`], so a
/// parsed header always holds one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// A text frame: the message is UTF-8.
    Text = 0x1,
    /// A binary frame.
    Binary = 0x2,
    /// Close (section 5.5.1).
    Close = 0x8,
    /// Ping (section 5.5.2).
    Ping = 0x9,
    /// Pong (section 5.5.3).
    Pong = 0xA,
}

impl OpCode {
    /// Maps a 4-bit opcode to an [`OpCode`], or `None` for the reserved values 3-7 and 11-15.
    pub const fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Control frames are Close, Ping and Pong (opcodes with the high bit set).
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// RSV1-3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present exactly when the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// The declared payload length. Untrusted until the bytes arrive.
    pub payload_len: u64,
}

/// The outcome of looking for a header in the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The header is complete; the value and the header's length in bytes.
    Complete(T, usize),
    /// More bytes are needed.
    Partial,
}

/// What was wrong with a frame header. Every variant is a protocol error (close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Opcode 3-7 or 11-15.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A 64-bit length whose most significant bit is set (section 5.2 forbids it).
    #[error("64-bit payload length with the most significant bit set")]
    LengthTopBit,
}

/// Looks for a complete frame header at the start of `buf`.
///
/// Only checks what the header alone decides and every role agrees on (reserved opcodes, the
/// 64-bit length's top bit). A length written in a longer form than needed is accepted: section
/// 5.2 binds the sender, and rejecting it would only break peers with that (known) encoder bug. Rules that depend on the connection (masking direction, RSV without extensions,
/// control frame limits, fragmentation state) are the connection's.
// Always inlined (performance): it runs once per frame, and inlined the nested Result/Status
// it returns never goes through memory. Two call sites in the crate.
#[inline(always)]
pub fn parse_header(buf: &[u8]) -> Result<Status<FrameHeader>, HeaderError> {
    if buf.len() < 2 {
        return Ok(Status::Partial);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let opcode = match OpCode::from_u8(b0 & 0x0F) {
        Some(op) => op,
        None => return Err(HeaderError::ReservedOpcode(b0 & 0x0F)),
    };
    let masked = b1 & 0x80 != 0;
    let mask_len = if masked { 4 } else { 0 };
    let (payload_len, len_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(Status::Partial);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(Status::Partial);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(HeaderError::LengthTopBit);
            }
            (len, 8)
        }
        short => (short as u64, 0),
    };
    let header_len = 2 + len_len + mask_len;
    if buf.len() < header_len {
        return Ok(Status::Partial);
    }
    let mask = if masked {
        // One bounds check for the four bytes (performance: four indexings cost 25
        // instructions per frame).
        let at = 2 + len_len;
        match buf.get(at..at + 4) {
            Some(&[a, b, c, d]) => Some([a, b, c, d]),
            _ => return Ok(Status::Partial),
        }
    } else {
        None
    };
    Ok(Status::Complete(
        FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode,
            mask,
            payload_len,
        },
        header_len,
    ))
}

/// An encoded header: up to [`MAX_HEADER_LEN`] bytes kept inline, so queueing a frame never
/// allocates for its header.
// 16 bytes, aligned (performance: queued and committed frames copy it as two words, not as
// five pieces at odd offsets).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    /// The header's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl core::fmt::Debug for EncodedHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EncodedHeader({:02x?})", self.as_slice())
    }
}

/// Encodes a header with the minimal length form (section 5.2).
#[inline]
pub fn encode_header(
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> EncodedHeader {
    // Built as one little-endian integer, byte i at bits 8i (performance: a few shifts and two
    // word stores, not byte stores at varying offsets through the stack).
    let first = u128::from(((fin as u8) << 7) | opcode as u8);
    let (mask_bit, key, key_len) = match mask {
        Some(key) => (0x80, u128::from(u32::from_le_bytes(key)), 4),
        None => (0, 0, 0),
    };
    // The key follows the length; each form shifts it by a constant.
    let (word, len) = if payload_len < 126 {
        let second = u128::from(mask_bit | payload_len as u8);
        (first | second << 8 | key << 16, 2)
    } else if payload_len <= u16::MAX as u64 {
        let extended = u128::from(u16::from_le_bytes((payload_len as u16).to_be_bytes()));
        (
            first | u128::from(mask_bit | 126) << 8 | extended << 16 | key << 32,
            4,
        )
    } else {
        let extended = u128::from(u64::from_le_bytes(payload_len.to_be_bytes()));
        (
            first | u128::from(mask_bit | 127) << 8 | extended << 16 | key << 80,
            10,
        )
    };
    let len = len + key_len;
    let mut bytes = [0u8; MAX_HEADER_LEN];
    bytes.copy_from_slice(&word.to_le_bytes()[..MAX_HEADER_LEN]);
    EncodedHeader {
        bytes,
        len: len as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_header_is_the_unmasked_one_with_the_mask_bit_and_the_key() {
        // Section 5.2: the MASK bit, then the key right after the payload length, whichever
        // of the three length forms.
        for len in [0, 1, 125, 126, 65535, 65536, u64::MAX >> 1] {
            for fin in [false, true] {
                let key = [0xa1, 0xb2, 0xc3, 0xd4];
                let mut expected = encode_header(fin, OpCode::Text, None, len)
                    .as_slice()
                    .to_vec();
                expected[1] |= 0x80;
                expected.extend_from_slice(&key);
                assert_eq!(
                    encode_header(fin, OpCode::Text, Some(key), len).as_slice(),
                    &expected[..]
                );
            }
        }
    }

    #[test]
    fn rfc_5_7_examples() {
        // Section 5.7: a single-frame unmasked text message "Hello".
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let Status::Complete(h, n) = parse_header(&unmasked).unwrap() else {
            panic!("complete")
        };
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // Section 5.7: the masked "Hello".
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let Status::Complete(h, n) = parse_header(&masked).unwrap() else {
            panic!("complete")
        };
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(n, 6);
        // Section 5.7: 256 bytes binary in one unmasked frame uses the 16-bit form.
        assert_eq!(
            encode_header(true, OpCode::Binary, None, 256).as_slice(),
            &[0x82, 0x7E, 0x01, 0x00]
        );
        // Section 5.7: 64 KiB binary uses the 64-bit form.
        assert_eq!(
            encode_header(true, OpCode::Binary, None, 65536).as_slice(),
            &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn partial_at_every_prefix() {
        let h = encode_header(false, OpCode::Binary, Some([1, 2, 3, 4]), 70000);
        let bytes = h.as_slice();
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_header(&bytes[..cut]),
                Ok(Status::Partial),
                "cut {cut}"
            );
        }
        assert!(matches!(parse_header(bytes), Ok(Status::Complete(_, 14))));
    }

    #[test]
    fn rejects_bad_lengths_and_opcodes() {
        assert_eq!(
            parse_header(&[0x83, 0x00]),
            Err(HeaderError::ReservedOpcode(3))
        );
        assert_eq!(
            parse_header(&[0x8B, 0x00]),
            Err(HeaderError::ReservedOpcode(0xB))
        );
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::LengthTopBit)
        );
        // Non-minimal lengths are tolerated (see parse_header).
        assert!(
            matches!(parse_header(&[0x82, 0x7E, 0, 5]), Ok(Status::Complete(h, 4)) if h.payload_len == 5)
        );
    }
}
