#![no_std]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! # wsframe
//!
//! A sans-IO WebSocket (RFC 6455) engine for relay servers and their clients. The engine never
//! touches a socket and never reads a clock: bytes and time go in, events and bytes come out.
//! It runs under `#![no_std]` with `alloc`; the `std` feature (default) adds the OS random
//! source and a blocking adapter, `tokio` an async one.
//!
//! Every outbound byte (data, application PINGs, and the engine's own PONG and Close replies)
//! leaves through one queue the engine owns, one whole frame at a time, in the order written
//! down in [`outbound`](crate::outbound#the-ordering-rule).
//!
//! ```
//! use wsframe::{Config, Connection, Event, Instant};
//!
//! let mut server = Connection::server(Config::default(), Instant::ZERO);
//! // A masked text frame "Hello" from a client (RFC 6455 section 5.7).
//! server.receive(Instant::ZERO, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])?;
//! let Some(Event::Text(text)) = server.poll_event() else { panic!() };
//! server.send_text(text)?; // echo it
//! let frame = server.poll_transmit().unwrap();
//! assert_eq!((frame.header, &frame.payload[..]), (&[0x81, 0x05][..], &b"Hello"[..]));
//! let n = frame.len();
//! server.advance_transmit(n);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The contract for IO adapters
//!
//! An adapter owns one transport and one [`Connection`]. It is the only writer of the
//! transport. In a loop:
//!
//! 1. **Read** whatever the transport has and pass it to [`Connection::receive`] with the
//!    current time. On end of file call [`Connection::transport_closed`]; on a read error,
//!    [`Connection::transport_failed`]. While a frame spans reads,
//!    [`Connection::receive_buffer`] lends room in the engine's own buffer for the rest of it:
//!    read into that and hand it back with [`Connection::receive_filled`], and a large payload
//!    is unmasked where it stays instead of being copied from your buffer.
//! 2. **Write**: call [`Connection::poll_transmit`] (one frame) or
//!    [`Connection::transmit_chunks`] (several whole frames for one vectored write), write as
//!    much as the transport takes, and report the count with
//!    [`Connection::advance_transmit`]. Until a frame is finished the engine hands out the
//!    rest of that same frame and nothing else, so a partial write or a cancelled write
//!    future (that reported what it wrote) can never interleave frames. Arm a fresh write
//!    deadline whenever a frame starts ([`Transmit::starts_frame`], or the count returned by
//!    `advance_transmit`), never one for the whole connection: a PONG written after an idle
//!    hour must get a full deadline. A missed deadline is
//!    `transport_failed(now, TransportError::WriteTimeout)`. If the transport may keep what
//!    it took (a buffered writer, some TLS wrappers), flush it once the queue is empty, under
//!    the same kind of deadline, and before closing it: a reply or a Close left in a buffer is
//!    not sent.
//! 3. **Events**: drain [`Connection::poll_event`] and hand them to the application. Taking
//!    the peer's [`Event::Close`] is what queues the echo, behind every reply the application
//!    queued first; so drain events before writing. Code that handles each message in place
//!    (parses it, copies what it keeps) can use [`Connection::poll_event_ref`] instead: the
//!    same events, whole messages lent rather than handed out as `Bytes`, which saves a
//!    reference count per message (the larger part of a small message's cost).
//! 4. **Time**: sleep until [`Connection::poll_timeout`] (or until the transport is readable,
//!    writable, or the application sends), then call [`Connection::handle_timeout`]. It may
//!    queue a PING or end the connection. Before sleeping, [`Connection::release_idle_memory`]
//!    frees the storage of empty queues and buffers, so that idle connections hold little;
//!    while messages keep coming, [`Connection::trim_memory`] frees the large part of it and
//!    keeps the small queues and receive buffer (at most 1 KiB each) the next message reuses.
//! 5. **The end**: [`Event::Ended`] is the last event, produced once nothing more will be
//!    written. Close the transport then. A server closes TCP right away (section 7.1.1); a
//!    client should wait a moment (up to the close timeout) for the server to close first,
//!    to leave the TIME_WAIT state on the server's side.
//!
//! Application calls ([`Connection::send_text`], [`Connection::send_binary`],
//! [`Connection::send_prepared`], [`Connection::ping`], [`Connection::close`]) only queue;
//! something must then run step 2.
//!
//! # Endings
//!
//! [`Ended`] says how the connection ended, one [`EndReason`] per connection: closed by the
//! peer or by us (handshake completed), close timeout, idle timeout (peer silent), write
//! timeout, protocol error (with the close code sent), or abnormal (transport gone with no
//! Close; no close code is ever invented for it). If data was still queued, [`Unsent`] says
//! how much.
//!
//! # Memory
//!
//! Received bytes are buffered only as they arrive: a header declaring 16 MiB reserves nothing.
//! Limits (`max_frame_size`, `max_message_size`) are checked from the header. Outbound data is
//! bounded by `max_outbound_bytes` (sends beyond it are refused and handed back); control
//! replies are coalesced, so they are bounded without counting against it.

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod close;
mod config;
mod connection;
mod error;
mod event;
pub mod frame;
pub mod handshake;
#[cfg(feature = "std")]
pub mod io;
mod keepalive;
pub mod mask;
pub mod outbound;
pub mod random;
mod receive_buffer;
mod time;
pub mod utf8;

pub use close::CloseFrame;
pub use config::{Config, Delivery, Role};
pub use connection::{Connection, Stats};
pub use error::{
    EndReason, Ended, ProtocolError, ReceiveError, SendError, TransportError, Unsent, Violation,
};
pub use event::{Chunk, DataKind, Event, EventRef, Text};
pub use outbound::{PreparedMessage, Transmit};
pub use receive_buffer::ReceiveBuffer;
pub use time::Instant;

// The README's examples compile as doctests (with the `tokio` feature, which they use).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
