//! Close frame bodies and which status codes may appear on the wire (RFC 6455 sections 5.5.1,
//! 7.4).

use alloc::string::String;
use bytes::Bytes;

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, page navigation).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type the endpoint cannot accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Reserved: "no status code was present". Never sent on the wire.
pub const NO_STATUS: u16 = 1005;
/// Reserved: "closed abnormally, without a Close frame". Never sent on the wire.
pub const ABNORMAL: u16 = 1006;
/// Text that was not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A policy was violated (used for a fragmented message that took too long).
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame or message over the configured limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server hit an unexpected condition.
pub const INTERNAL_ERROR: u16 = 1011;
/// Overloaded; try again later (used for subscribers that cannot keep up).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Whether `code` may appear in a Close frame on the wire (section 7.4): 1000-1003, 1007-1014
/// and the registered/private ranges 3000-4999. 1004, 1005, 1006, 1015 and 1016-2999 are
/// reserved or unassigned; 1012-1014 were registered with IANA after the RFC and are in use.
pub const fn is_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A Close frame's body: a status code and a UTF-8 reason of at most 123 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: u16,
    /// The reason, possibly empty.
    pub reason: String,
}

impl CloseFrame {
    /// The Close we may send with this code and reason: a code an endpoint may send (section
    /// 7.4) and a reason that fits a control frame with it (section 5.5).
    pub(crate) fn checked(code: u16, reason: &str) -> Result<CloseFrame, crate::SendError> {
        if !is_sendable(code) {
            return Err(crate::SendError::InvalidCloseCode(code));
        }
        if reason.len() > crate::frame::MAX_CONTROL_PAYLOAD - 2 {
            return Err(crate::SendError::ControlTooLong(reason.len() + 2));
        }
        Ok(CloseFrame {
            code,
            reason: String::from(reason),
        })
    }
}

impl core::fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {:?}", self.code, self.reason)
        }
    }
}

/// Why a received Close body is invalid (all are protocol errors, close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseBodyError {
    /// A body of one byte cannot hold a 2-byte code (section 5.5.1).
    #[error("close frame body of 1 byte")]
    OneByte,
    /// A code that may not be sent (section 7.4.1).
    #[error("close code {0} may not be sent on the wire")]
    ForbiddenCode(u16),
    /// The reason is not UTF-8 (section 5.5.1).
    #[error("close reason is not valid UTF-8")]
    ReasonNotUtf8,
}

/// Parses a received (already unmasked) Close payload. `None` means the peer sent no code.
pub fn parse_close_body(payload: &[u8]) -> Result<Option<CloseFrame>, CloseBodyError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(CloseBodyError::OneByte),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_sendable(code) {
                return Err(CloseBodyError::ForbiddenCode(code));
            }
            let reason =
                core::str::from_utf8(&payload[2..]).map_err(|_| CloseBodyError::ReasonNotUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: String::from(reason),
            }))
        }
    }
}

/// Encodes a Close body; `None` gives the empty body.
pub(crate) fn encode_close_body(frame: Option<&CloseFrame>) -> Bytes {
    match frame {
        None => Bytes::new(),
        Some(f) => {
            let mut body = alloc::vec::Vec::with_capacity(2 + f.reason.len());
            body.extend_from_slice(&f.code.to_be_bytes());
            body.extend_from_slice(f.reason.as_bytes());
            Bytes::from(body)
        }
    }
}

/// Cuts `reason` to at most 123 bytes (so the body fits a control frame) at a char boundary.
pub(crate) fn truncate_reason(reason: &str) -> &str {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_section_7_4() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!is_sendable(code), "{code}");
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(is_sendable(code), "{code}");
        }
    }

    #[test]
    fn close_bodies_section_5_5_1() {
        assert_eq!(parse_close_body(&[]), Ok(None));
        assert_eq!(parse_close_body(&[0x03]), Err(CloseBodyError::OneByte));
        assert_eq!(
            parse_close_body(&[0x03, 0xED]),
            Err(CloseBodyError::ForbiddenCode(1005))
        );
        assert_eq!(
            parse_close_body(&[0x03, 0xE8, 0xFF]),
            Err(CloseBodyError::ReasonNotUtf8)
        );
        assert_eq!(
            parse_close_body(b"\x03\xe8bye"),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            }))
        );
    }

    #[test]
    fn reason_truncation_keeps_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123 && cut.len() == 122);
    }
}
