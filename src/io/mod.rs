//! IO adapters: the engine driven over real sockets.
//!
//! Both adapters follow the [contract for IO adapters](crate#the-contract-for-io-adapters):
//! one owner of the socket and the engine, every byte through the engine's one queue, a fresh
//! write deadline for every frame, and the engine's timers (keepalive PING, idle timeout, close
//! timeout) fired on time.
//!
//! - [`blocking`]: a [`WebSocket`](blocking::WebSocket) over [`std::net::TcpStream`] with a
//!   simple read/send API for one thread.
//! - `tokio` (feature `tokio`), in two shapes: a task per connection that owns the socket and
//!   the engine, with a cloneable `Sender` and a `Receiver` for the application; or a
//!   `WebSocket` driven by the application's own task (no second task, no channels: the
//!   lowest latency per message). Both run over any Tokio byte stream: a `TcpStream`, a TLS
//!   stream (`wss://`), hyper's upgraded connection, a Unix socket.
//!
//! Both perform the opening handshake with the sans-IO [`crate::handshake`] module
//! and expose the engine's [`Stats`](crate::Stats).
//!
//! # How a connection ends here
//!
//! Every connection ends with exactly one [`Event::Ended`](crate::Event::Ended), whose
//! `Display` is the one-line log form. Read errors, resets and missed write deadlines are
//! reported to the engine, so they arrive as that event too (`abnormal: ...`,
//! `write timeout`); no IO error is returned from the read or send calls after the handshake.
//!
//! After the end the socket is closed the way section 7.1.1 asks: a server closes TCP first
//! (it shuts down its sending side, then drains what the peer still sends until the peer
//! closes, bounded by the close timeout, so unread input cannot turn the close into a reset
//! that destroys the final Close frame in flight); a client waits, bounded by the close
//! timeout, for the server to close first. A connection that ended because the peer is dead
//! or stuck (idle, write or close timeout) or gone (abnormal) is closed at once.

use alloc::string::String;
use bytes::Bytes;
use core::time::Duration;
use std::io;

use crate::handshake;
use crate::{Config, Connection, EndReason, Instant, PreparedMessage, Role, Text};

pub mod blocking;
#[cfg(feature = "tokio")]
pub mod tokio;

/// Settings for an adapter: the engine's [`Config`] plus what only IO knows about.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// The engine's settings (limits, keepalive, close timeout, outbound budget).
    pub engine: Config,
    /// How long one frame may take to be written. Armed afresh whenever a frame starts, never
    /// once for the connection, so a PONG written after an idle hour gets the full time. A
    /// frame that misses it ends the connection with a write timeout (a stuck or half-open
    /// peer that stopped reading). Default 10 s.
    pub write_timeout: Duration,
    /// How long the whole opening handshake may take (slow or silent clients are dropped).
    /// Default 10 s.
    pub handshake_timeout: Duration,
    /// The most bytes one read takes. Default 64 KiB: a 64 KiB message then takes one read
    /// rather than four (measured: loopback echo of 64 KiB messages went from 0.76x to 0.81x
    /// of fastwebsockets). The async adapter reads into a buffer on the stack (up to 64 KiB) and
    /// holds a heap buffer only for larger sizes while the socket has more to read: an idle
    /// connection keeps no read buffer. The blocking adapter holds one of this size.
    pub read_buffer_size: usize,
    /// Async adapter: how many received events may wait for the application before the task
    /// stops reading the socket (inbound backpressure). Default 64.
    pub event_capacity: usize,
    /// Async adapter: how many outgoing messages may wait in the connection's command channel
    /// (the byte budget, [`Config::max_outbound_bytes`], bounds their size). Default 256.
    pub send_capacity: usize,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            engine: Config::default(),
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            read_buffer_size: 64 << 10,
            event_capacity: 64,
            send_capacity: 256,
        }
    }
}

impl IoConfig {
    /// These adapter settings around the given engine settings.
    pub fn new(engine: Config) -> Self {
        IoConfig {
            engine,
            ..IoConfig::default()
        }
    }

    /// Sets the per-frame write deadline.
    pub fn with_write_timeout(mut self, write_timeout: Duration) -> Self {
        self.write_timeout = write_timeout;
        self
    }
}

/// A data message to send.
#[derive(Debug, Clone)]
pub enum Message {
    /// A text message.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
    /// A message encoded once and shared between connections (fan-out without copies).
    Prepared(PreparedMessage),
}

impl Message {
    /// The payload's length in bytes (what counts against the outbound budget).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            Message::Prepared(p) => p.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Text> for Message {
    fn from(t: Text) -> Self {
        Message::Text(t)
    }
}

impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Message::Text(Text::from(s))
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(Text::from(s))
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<alloc::vec::Vec<u8>> for Message {
    fn from(v: alloc::vec::Vec<u8>) -> Self {
        Message::Binary(Bytes::from(v))
    }
}

impl From<PreparedMessage> for Message {
    fn from(p: PreparedMessage) -> Self {
        Message::Prepared(p)
    }
}

impl From<&PreparedMessage> for Message {
    fn from(p: &PreparedMessage) -> Self {
        Message::Prepared(p.clone())
    }
}

/// The engine for an adapter's connection, started at `Instant::ZERO` (the adapter's epoch),
/// with `leftover` (what was read past the opening handshake: the first frames) already fed
/// to it. A protocol error among them is the engine's to report, as `Ended`.
pub(crate) fn start_engine(role: Role, config: &Config, leftover: &[u8]) -> Connection {
    let mut conn = match role {
        Role::Server => Connection::server(config.clone(), Instant::ZERO),
        Role::Client => Connection::client_os_random(config.clone(), Instant::ZERO),
    };
    if !leftover.is_empty() {
        let _ = conn.receive(Instant::ZERO, leftover);
    }
    conn
}

/// Queues `message` on the engine; a refusal hands the message itself back (a prepared
/// message is rebuilt from the original, which costs one reference count).
pub(crate) fn queue_message(
    conn: &mut crate::Connection,
    message: Message,
) -> Result<(), (Message, crate::SendError)> {
    match message {
        Message::Text(text) => conn.send_text(text).map_err(|e| {
            // The payload handed back is the same validated text.
            let text = e
                .clone()
                .into_payload()
                .and_then(|b| Text::from_utf8(b).ok())
                .unwrap_or_default();
            (Message::Text(text), e)
        }),
        Message::Binary(bytes) => conn.send_binary(bytes).map_err(|e| {
            let bytes = e.clone().into_payload().unwrap_or_default();
            (Message::Binary(bytes), e)
        }),
        Message::Prepared(p) => conn
            .send_prepared(&p)
            .map_err(|e| (Message::Prepared(p), e)),
    }
}

/// Why an opening handshake (or the connection attempt before it) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed (connect, read or write).
    Io(io::Error),
    /// The handshake did not finish within [`IoConfig::handshake_timeout`].
    HandshakeTimeout,
    /// The peer closed the connection before the handshake finished.
    HandshakeEof,
    /// Server side: the request was not a valid WebSocket upgrade, or the application refused
    /// it. The rejection's HTTP response was written to the peer.
    Rejected(handshake::Rejection),
    /// Server side: the application's [`Accept`](handshake::Accept) was invalid (a subprotocol
    /// the client did not offer, a reserved header). A 500 response was written to the peer.
    Accept(handshake::AcceptError),
    /// Client side: the URL or the options cannot make a request.
    Request(handshake::RequestError),
    /// Client side: the server refused the upgrade or answered invalidly.
    Handshake(handshake::HandshakeError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::HandshakeTimeout => f.write_str("opening handshake timed out"),
            Error::HandshakeEof => f.write_str("connection closed during the opening handshake"),
            Error::Rejected(r) => write!(f, "handshake refused: {r}"),
            Error::Accept(e) => write!(f, "invalid handshake answer: {e}"),
            Error::Request(e) => write!(f, "cannot make the handshake request: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Rejected(e) => Some(e),
            Error::Accept(e) => Some(e),
            Error::Request(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::HandshakeTimeout | Error::HandshakeEof => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// What the server writes after reading a request: the 101 answer, or a refusal.
pub(crate) enum Answer {
    /// The 101 response bytes.
    Accept(alloc::vec::Vec<u8>),
    /// The refusal's response bytes, and the error to report.
    Refuse(alloc::vec::Vec<u8>, Error),
}

/// Runs the application's decision on a valid request and builds the bytes to write.
pub(crate) fn answer<F>(request: &handshake::Request, decide: F) -> Answer
where
    F: FnOnce(&handshake::Request) -> Result<handshake::Accept, handshake::Rejection>,
{
    match decide(request) {
        Ok(accept) => match request.accept(&accept) {
            Ok(bytes) => Answer::Accept(bytes),
            Err(e) => {
                let refusal =
                    handshake::Rejection::new(500, "server could not answer the handshake");
                Answer::Refuse(refusal.into_response(), Error::Accept(e))
            }
        },
        Err(rejection) => Answer::Refuse(rejection.response().to_vec(), Error::Rejected(rejection)),
    }
}

/// How to close the socket once the engine reported the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// The peer is dead, stuck or gone: close at once.
    Abort,
    /// Server after a close handshake or a protocol error: shut down our sending side, then
    /// drain the peer's bytes until it closes (bounded), then close.
    ServerLinger,
    /// Client after a close handshake: wait (bounded) for the server to close first.
    ClientWait,
}

impl Teardown {
    pub(crate) fn for_end(role: crate::Role, reason: &EndReason) -> Self {
        match reason {
            EndReason::ClosedByPeer(_)
            | EndReason::ClosedLocally { .. }
            | EndReason::ProtocolError(_) => match role {
                crate::Role::Server => Teardown::ServerLinger,
                crate::Role::Client => Teardown::ClientWait,
            },
            EndReason::CloseTimeout
            | EndReason::IdleTimeout(_)
            | EndReason::WriteTimeout
            | EndReason::Abnormal(_) => Teardown::Abort,
        }
    }
}

/// The text of an IO error as the engine's `Abnormal` detail.
pub(crate) fn io_detail(context: &str, e: &io::Error) -> String {
    alloc::format!("{context}: {e}")
}
