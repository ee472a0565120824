//! Streaming UTF-8 validation for text messages (RFC 6455 section 8.1).
//!
//! Text payloads arrive in fragments and in reads that split code points anywhere. The validator
//! keeps at most three bytes of an unfinished code point between calls and fails at the first
//! byte that no valid continuation could rescue, so a peer that sends garbage in the first
//! fragment of a large message is stopped there, not after the whole message was buffered.

use thiserror::Error;

/// Text that can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("invalid UTF-8 at byte {offset} of the text")]
pub struct InvalidUtf8 {
    /// Offset of the first offending byte within everything fed since the last reset.
    pub offset: u64,
}

/// Incremental validator; feed it bytes in any split, then [`finish`](Utf8Validator::finish).
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
    fed: u64,
}

/// Width of the code point a lead byte starts (1 for bytes that cannot lead; the validator then
/// reports them as errors).
#[inline]
fn width_of_lead(byte: u8) -> usize {
    match byte {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 4],
            pending_len: 0,
            fed: 0,
        }
    }

    /// Forgets everything: ready for the next message.
    #[inline]
    pub fn reset(&mut self) {
        self.pending_len = 0;
        self.fed = 0;
    }

    /// True when no code point is left unfinished.
    #[inline]
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Validates the next bytes of the text. Fails as soon as the text so far can no longer be a
    /// prefix of valid UTF-8.
    #[inline]
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let start = self.fed;
        self.fed += bytes.len() as u64;
        if self.pending_len != 0 {
            let have = self.pending_len as usize;
            let need = width_of_lead(self.pending[0]) - have;
            let take = need.min(bytes.len());
            self.pending[have..have + take].copy_from_slice(&bytes[..take]);
            let joined = &self.pending[..have + take];
            match core::str::from_utf8(joined) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.pending_len = (have + take) as u8;
                    return Ok(());
                }
                Err(_) => {
                    return Err(InvalidUtf8 {
                        // The bad byte is somewhere in the joined bytes; the first new byte is
                        // the earliest point at which we could know.
                        offset: start,
                    });
                }
            }
            bytes = &bytes[take..];
        }
        let base = self.fed - bytes.len() as u64;
        match validate(bytes) {
            Ok(()) => Ok(()),
            Err((valid_up_to, true)) => {
                let tail = &bytes[valid_up_to..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err((valid_up_to, false)) => Err(InvalidUtf8 {
                offset: base + valid_up_to as u64,
            }),
        }
    }

    /// [`feed`](Self::feed) for bytes the caller may already know to be ASCII (`ascii`, from
    /// the unmasking pass): then, with no code point left unfinished before them, they are
    /// valid and only counted (performance: no second pass over ASCII text).
    #[inline]
    pub fn feed_checked(&mut self, bytes: &[u8], ascii: bool) -> Result<(), InvalidUtf8> {
        if ascii && self.pending_len == 0 {
            debug_assert!(bytes.is_ascii());
            self.fed += bytes.len() as u64;
            return Ok(());
        }
        self.feed(bytes)
    }

    /// Checks that the text did not end inside a code point.
    #[inline]
    pub fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.pending_len == 0 {
            Ok(())
        } else {
            Err(InvalidUtf8 {
                offset: self.fed - self.pending_len as u64,
            })
        }
    }
}

/// Validates a whole message in one call: the same answer (and offset) as a fresh validator's
/// `feed` then `finish`, without the streaming state (performance: the receive path's
/// single-frame messages).
#[inline]
pub(crate) fn validate_message(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    // Incomplete at the end or invalid, `feed` + `finish` both report the first byte that is
    // not part of a complete character: `valid_up_to`.
    validate(bytes).map_err(|(valid_up_to, _)| InvalidUtf8 {
        offset: valid_up_to as u64,
    })
}

/// Validates one chunk: `Err((valid_up_to, incomplete_at_end))`.
#[inline]
fn validate(bytes: &[u8]) -> Result<(), (usize, bool)> {
    // ASCII is the common case for text protocols (JSON); a word-at-a-time scan finds its end
    // cheaply and the full decoder only runs from the first non-ASCII byte.
    let ascii = ascii_prefix_len(bytes);
    if ascii == bytes.len() {
        return Ok(());
    }
    // simdutf8's compat API gives the same `valid_up_to`/`error_len` as core's, at SIMD speed
    // (core's decoder manages about 1 GiB/s on text with many multi-byte characters).
    match simdutf8::compat::from_utf8(&bytes[ascii..]) {
        Ok(_) => Ok(()),
        Err(e) => Err((ascii + e.valid_up_to(), e.error_len().is_none())),
    }
}

#[inline]
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    // 64 bytes per step with SSE2 (part of every x86_64 CPU): four loads ORed together and
    // one movemask, about 9 instructions per 64 bytes against 7 per 16 for the u64 loop below
    // (performance: this scan is most of the cost of receiving ASCII text).
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
        while bytes.len() - i >= 64 {
            // SAFETY: bytes i..i + 64 are in bounds (the loop condition); loadu accepts any
            // alignment; SSE2 is baseline on x86_64.
            let high = unsafe {
                let p = bytes.as_ptr().add(i).cast::<__m128i>();
                let ab = _mm_or_si128(_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
                let cd = _mm_or_si128(_mm_loadu_si128(p.add(2)), _mm_loadu_si128(p.add(3)));
                _mm_movemask_epi8(_mm_or_si128(ab, cd))
            };
            if high != 0 {
                break;
            }
            i += 64;
        }
    }
    while i + 16 <= bytes.len() {
        let a = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
        let b = u64::from_le_bytes(bytes[i + 8..i + 16].try_into().unwrap());
        if (a | b) & HIGH != 0 {
            break;
        }
        i += 16;
    }
    while i < bytes.len() && bytes[i] < 0x80 {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in parts {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn split_code_points_are_accepted() {
        let text = "κόσμε€𝄞".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(
                    feed_all(&[&text[..a], &text[a..b], &text[b..]]),
                    Ok(()),
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn fails_at_first_impossible_byte() {
        // Autobahn 6.4.x: F4 90 is already beyond U+10FFFF, so the second byte fails.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xCE, 0xBA, 0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8 { offset: 3 }));
        // A lone continuation byte fails at once.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ab\x80"), Err(InvalidUtf8 { offset: 2 }));
        // Surrogates (ED A0..) fail at the second byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xED]), Ok(()));
        assert!(v.feed(&[0xA0]).is_err());
    }

    #[test]
    fn unfinished_code_point_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8 { offset: 0 }));
    }
}
