//! What went wrong, and how a connection ended.

use alloc::string::String;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;
use thiserror::Error;

use crate::close::{CloseBodyError, CloseFrame};
use crate::frame::HeaderError;
use crate::utf8::InvalidUtf8;

/// What the peer did wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    /// A header the codec rejects (reserved opcode, 64-bit length with the top bit set).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// RSV1-3 set although no extension was negotiated (section 5.2).
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// A control frame with FIN clear (section 5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame payload over 125 bytes (section 5.5).
    #[error("control frame payload of {0} bytes (limit 125)")]
    ControlTooLong(u64),
    /// A continuation frame with no fragmented message open (section 5.4).
    #[error("continuation frame with no message started")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still open (section 5.4).
    #[error("new data frame while a fragmented message is unfinished")]
    MessageUnfinished,
    /// A server received an unmasked frame (section 5.1).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A client received a masked frame (section 5.1).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A text message that is not UTF-8 (section 8.1).
    #[error(transparent)]
    InvalidUtf8(#[from] InvalidUtf8),
    /// A malformed Close body (section 5.5.1).
    #[error(transparent)]
    CloseBody(#[from] CloseBodyError),
    /// A frame whose declared payload exceeds `max_frame_size`.
    #[error("frame payload of {len} bytes exceeds max_frame_size {limit}")]
    FrameTooBig {
        /// The declared length.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A message whose fragments together exceed `max_message_size`.
    #[error("message of at least {len} bytes exceeds max_message_size {limit}")]
    MessageTooBig {
        /// The length declared so far.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A fragmented message not finished within `message_timeout`.
    #[error("fragmented message not finished within {0:?}")]
    MessageTimeout(Duration),
}

impl Violation {
    /// The close code this violation is answered with (section 7.4.1).
    pub fn close_code(&self) -> u16 {
        use crate::close;
        match self {
            Violation::InvalidUtf8(_) => close::INVALID_PAYLOAD,
            Violation::FrameTooBig { .. } | Violation::MessageTooBig { .. } => {
                close::MESSAGE_TOO_BIG
            }
            Violation::MessageTimeout(_) => close::POLICY_VIOLATION,
            _ => close::PROTOCOL_ERROR,
        }
    }
}

/// The peer broke the protocol; the engine failed the connection and sent `code`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{violation}; sent close {code}")]
pub struct ProtocolError {
    /// What was wrong.
    pub violation: Violation,
    /// The close code queued in answer.
    pub code: u16,
}

/// Why [`Connection::receive`](crate::Connection::receive) did not take the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReceiveError {
    /// These bytes broke the protocol; the connection is failed and a Close is queued.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The connection was already failed or has ended; the bytes were discarded.
    #[error("connection no longer accepts input (failed or ended); bytes discarded")]
    NotAccepting,
}

/// Why a send was refused. Refused data is handed back, never half-queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// The outbound byte budget would be exceeded; nothing was queued.
    #[error("outbound queue full ({queued} of {budget} bytes queued); message of {} bytes handed back", payload.len())]
    Backpressure {
        /// The refused payload.
        payload: Bytes,
        /// What the queued data counted against the budget at the time: payload bytes and 64
        /// per message ([`Connection::outbound_charge`](crate::Connection::outbound_charge)).
        queued: usize,
        /// `max_outbound_bytes`.
        budget: usize,
    },
    /// `close()` was called, the peer closed, or the connection failed: no more data may be sent.
    #[error("connection is closing; no data may be sent after a Close (message of {} bytes handed back)", payload.len())]
    Closing {
        /// The refused payload.
        payload: Bytes,
    },
    /// A control frame payload (ping, close reason) over 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// A close code that may not be sent on the wire (section 7.4).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// Messages prepared for one role cannot be queued on an engine of the other.
    #[error("prepared message was encoded for the other role")]
    WrongRole,
}

impl SendError {
    /// The refused payload, if this error carries one.
    pub fn into_payload(self) -> Option<Bytes> {
        match self {
            SendError::Backpressure { payload, .. } | SendError::Closing { payload } => {
                Some(payload)
            }
            _ => None,
        }
    }
}

/// A failure the IO layer reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// A frame could not be written within its write deadline.
    WriteTimeout,
    /// Reading or writing failed (reset, broken pipe...), with the error's text.
    Io(String),
}

/// How a connection ended. Exactly one per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The peer sent Close first and we echoed it (or the peer closed the transport after its
    /// Close). `None`: the peer's Close carried no code.
    ClosedByPeer(Option<CloseFrame>),
    /// We sent Close first and the peer answered with the given Close.
    ClosedLocally {
        /// The Close we sent.
        sent: CloseFrame,
        /// The peer's answer (`None`: no code).
        reply: Option<CloseFrame>,
    },
    /// We sent Close and the peer did not answer within `close_timeout`.
    CloseTimeout,
    /// Nothing arrived for `idle_timeout`: the peer is presumed dead (half-open TCP).
    IdleTimeout(Duration),
    /// A frame could not be written within its deadline.
    WriteTimeout,
    /// The peer broke the protocol; the error names the close code sent.
    ProtocolError(ProtocolError),
    /// The transport ended or failed without a completed close handshake. No close code is
    /// invented for this (1006 is never reported as the peer's).
    Abnormal(String),
}

/// Data that was queued but never written when the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsent {
    /// Whole or partly written messages not fully sent.
    pub messages: usize,
    /// Payload bytes not sent.
    pub bytes: usize,
}

/// The end of a connection: why, and what was left unsent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Why it ended.
    pub reason: EndReason,
    /// What was still queued.
    pub unsent: Unsent,
}

impl Ended {
    /// True when the close handshake completed (either side first).
    pub fn is_clean(&self) -> bool {
        matches!(
            self.reason,
            EndReason::ClosedByPeer(_) | EndReason::ClosedLocally { .. }
        )
    }
}

/// The one-line form relays log: `closed <code>`, `idle timeout`, `write timeout`,
/// `close timeout`, `protocol error <code>: <detail>` or `abnormal: <detail>`, followed by the
/// unsent count when anything was left queued.
impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            EndReason::ClosedByPeer(Some(c)) => write!(f, "closed {c} (by peer)")?,
            EndReason::ClosedByPeer(None) => write!(f, "closed 1005 (by peer, no status code)")?,
            EndReason::ClosedLocally { sent, reply } => match reply {
                Some(r) => write!(f, "closed {} (by us; peer replied {r})", sent.code)?,
                None => write!(
                    f,
                    "closed {} (by us; peer replied without a code)",
                    sent.code
                )?,
            },
            EndReason::CloseTimeout => {
                f.write_str("close timeout (peer never answered our Close)")?
            }
            EndReason::IdleTimeout(d) => write!(f, "idle timeout (nothing received for {d:?})")?,
            EndReason::WriteTimeout => {
                f.write_str("write timeout (a frame could not be written)")?
            }
            EndReason::ProtocolError(e) => write!(f, "protocol error {}: {}", e.code, e.violation)?,
            EndReason::Abnormal(detail) => write!(f, "abnormal: {detail}")?,
        }
        if self.unsent.messages > 0 {
            write!(
                f,
                "; unsent {} messages ({} bytes)",
                self.unsent.messages, self.unsent.bytes
            )?;
        }
        Ok(())
    }
}
