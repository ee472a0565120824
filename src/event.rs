//! What the engine hands to the application.

use alloc::boxed::Box;
use alloc::string::String;
use bytes::Bytes;

use crate::close::CloseFrame;
use crate::error::Ended;

/// UTF-8 text held in [`Bytes`], so received text is handed out and sent text is queued without
/// a copy. The invariant (valid UTF-8) is checked once, where the bytes enter.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(Bytes);

impl Text {
    /// Wraps bytes that are known to be UTF-8, checking them.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, core::str::Utf8Error> {
        core::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    /// Wraps bytes the engine has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Text {
        debug_assert!(core::str::from_utf8(&bytes).is_ok());
        Text(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or, inside the engine, has already checked with the
        // streaming validator) that the bytes are UTF-8, and `Bytes` is immutable.
        unsafe { core::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The underlying bytes, borrowed.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl core::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl core::fmt::Debug for Text {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for Text {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// Text or binary: the two kinds of data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// A piece of a data message, delivered as it arrives in [`Delivery::Streaming`](crate::Delivery::Streaming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The message's kind (from its first frame).
    pub kind: DataKind,
    /// This is the message's first chunk.
    pub first: bool,
    /// This is the message's last chunk.
    pub last: bool,
    /// The unmasked bytes. Text chunks are valid UTF-8 as a sequence, but a chunk may end
    /// inside a code point.
    pub data: Bytes,
}

/// Something the application should know about, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message.
    Text(Text),
    /// A whole binary message.
    ///
    /// Its payload is a slice of the buffer its read was unmasked into (no copy), which it
    /// shares with the other messages of that read and the reads after it, up to a few KiB
    /// (or one read, for larger ones). Holding a small message for long holds that buffer: copy
    /// it out (`Bytes::copy_from_slice`) to keep it. The same holds for [`Event::Text`].
    Binary(Bytes),
    /// Part of a data message (streaming delivery only).
    Chunk(Chunk),
    /// The peer pinged; the PONG is already queued.
    Ping(Bytes),
    /// The peer ponged (answer to our PING, or unsolicited).
    Pong(Bytes),
    /// The peer's Close (`None`: it carried no code). Taking this event queues our echo when
    /// the peer closed first, behind everything the application sent before.
    Close(Option<CloseFrame>),
    /// The outbound queue drained to the low-water mark after a send was refused.
    Writable,
    /// The connection is over; the last event. Close the transport (see the crate docs).
    Ended(Box<Ended>),
}

/// An event lent by [`Connection::poll_event_ref`](crate::Connection::poll_event_ref): a whole
/// message's payload borrowed where the engine unmasked it, or any other event owned.
#[derive(Debug, PartialEq, Eq)]
pub enum EventRef<'a> {
    /// A whole text message, valid UTF-8, borrowed until the next call on the connection.
    Text(&'a str),
    /// A whole binary message, borrowed until the next call on the connection.
    Binary(&'a [u8]),
    /// Any other event, owned, exactly as [`Connection::poll_event`](crate::Connection::poll_event)
    /// returns it (messages included, when the engine had already made them into events).
    Event(Event),
}

impl EventRef<'_> {
    /// The owned event (copying a borrowed payload).
    pub fn into_owned(self) -> Event {
        match self {
            EventRef::Text(text) => Event::Text(Text(Bytes::copy_from_slice(text.as_bytes()))),
            EventRef::Binary(bytes) => Event::Binary(Bytes::copy_from_slice(bytes)),
            EventRef::Event(event) => event,
        }
    }
}
