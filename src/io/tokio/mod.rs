//! The async adapters (feature `tokio`), in two shapes over the same engine:
//!
//! - **A task per connection** ([`accept`], [`connect`], [`start`]): the task owns the socket
//!   and the engine; the application holds a cloneable [`Sender`] and a [`Receiver`]. Any
//!   number of tasks send to one connection, reading and writing go on whatever the application
//!   does, and the engine's timers fire on their own. The choice for relays and fan-out.
//! - **In the caller's task** ([`WebSocket`]): the application's own task reads, writes and
//!   fires the timers from inside [`WebSocket::recv`] and [`WebSocket::send`], like the
//!   blocking adapter. No second task and no channels between the socket and the application,
//!   so a message costs no task switch (the choice for request/response and echo-like loops,
//!   where latency is the point), but the connection makes progress only while the
//!   application is in one of its calls: keep `recv` running (in a `select!` with the
//!   application's other work) for keepalive, PONGs and the close handshake.
//!
//! Both keep every rule of the [adapter contract](crate#the-contract-for-io-adapters): one
//! owner of the socket, every byte through the engine's one queue, a fresh write deadline for
//! every frame, and one honest [`Event::Ended`](crate::Event::Ended) per connection.
//!
//! Every `await` here can be dropped (cancelled) without losing or duplicating anything: a
//! message is either wholly queued or still the caller's, an event is either returned or
//! still waiting.
//!
//! ```no_run
//! use wsframe::io::{tokio::accept, IoConfig};
//! use wsframe::Event;
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok((tx, mut rx)) = accept(stream, IoConfig::default()).await else { return };
//!         while let Some(event) = rx.recv().await {
//!             match event {
//!                 Event::Text(text) => { let _ = tx.send(text).await; }
//!                 Event::Binary(bytes) => { let _ = tx.send(bytes).await; }
//!                 Event::Ended(ended) => eprintln!("ended: {ended}"),
//!                 _ => {}
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! The same server in the caller's task:
//!
//! ```no_run
//! use wsframe::io::{tokio::WebSocket, IoConfig};
//! use wsframe::Event;
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = WebSocket::accept(stream, IoConfig::default()).await else { return };
//!         while let Some(event) = ws.recv().await {
//!             match event {
//!                 Event::Text(text) => { let _ = ws.send(text).await; }
//!                 Event::Binary(bytes) => { let _ = ws.send(bytes).await; }
//!                 Event::Ended(ended) => eprintln!("ended: {ended}"),
//!                 _ => {}
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! # Streams other than TCP
//!
//! Both shapes take any Tokio byte stream (`AsyncRead + AsyncWrite + Unpin`): a `TcpStream`
//! (the default type of [`WebSocket`]), a TLS stream, hyper's upgraded connection, a Unix
//! socket. Whatever they write they also flush (`AsyncWrite` lets a stream keep bytes until
//! then; `tokio::io::BufWriter` does), and a flush that cannot finish is under the same
//! per-frame write deadline as a write. An HTTP stack that did the upgrade itself hands over
//! the upgraded stream with nothing left over:
//!
//! ```no_run
//! # async fn run(
//! #     upgraded: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
//! # ) -> std::io::Result<()> {
//! use wsframe::io::{tokio::start, IoConfig};
//! use wsframe::Role;
//!
//! // With hyper: `upgraded` is `hyper_util::rt::TokioIo::new(hyper::upgrade::on(req).await?)`,
//! // after a 101 built from `wsframe::handshake::validate_request_headers`.
//! let (tx, mut rx) = start(upgraded, Role::Server, IoConfig::default(), &[])?;
//! # let _ = (tx, rx.recv().await);
//! # Ok(())
//! # }
//! ```
//!
//! For `wss://`, open the TLS stream with your TLS crate and use [`accept`] (server) or
//! [`connect_over`] / [`WebSocket::connect_over`] (client); `connect` opens plain TCP only.
//! Only a `TcpStream` gets `TCP_NODELAY` from the adapters: set it on the socket under a TLS
//! stream yourself.
//!
//! # The peer's Close and the application's replies
//!
//! The engine echoes the peer's Close once the application has *taken* the Close event, behind
//! every reply queued before (so an echo server echoes all 100 messages that arrived before a
//! Close, then the Close). In the caller's task that is simply the order of the calls. Through
//! a channel, the task taking an event is not the application having seen it; so the
//! connection's task leaves the Close in the engine (it looks with
//! [`Connection::peek_event`](crate::Connection::peek_event) and stops reading the socket)
//! until the application has received every earlier event and is waiting in `recv` again,
//! having sent its replies, or until the close timeout. Replies sent from other tasks are not
//! ordered with the Close.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::BufMut;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::io::{self, IoSlice};
use std::sync::{Mutex, MutexGuard};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::TcpStream;
use ::tokio::time::{timeout_at, Instant as TokioInstant};

use super::{io_detail, Answer, Error, IoConfig};
use crate::handshake;
use crate::{Connection, Instant, ReceiveBuffer, TransportError};

mod socket;
mod task;

pub use socket::{Closer, WebSocket};
pub use task::{
    accept, accept_with, connect, connect_over, connect_with, start, Closed, Receiver, Sender,
    TrySendError,
};

/// At most this many slices (about a dozen frames) go into one vectored write.
const WRITE_SLICES: usize = 32;
/// At most about this many bytes are committed for one vectored write: frames committed to a
/// write can no longer be overtaken by a PONG, so keep it to a few fragments.
const WRITE_BYTES: usize = 64 << 10;
/// Writes of several chunks up to this size in all are joined into one buffer first (see
/// [`with_write_slices`]).
const JOIN_WRITES_UP_TO: usize = 256;
/// Reads of input that starts no frame in progress go into a buffer of this size on the stack
/// (see [`read_into`]). Small, because every read pays for its pages: the stack is probed page
/// by page (measured: a 64 KiB buffer cost 16 page probes on every poll of the socket, ready
/// or not), and a large frame is copied as far as this first read took it.
const STACK_READ: usize = 4 << 10;

// ----- opening handshake ----------------------------------------------------------------------

/// Reads the client's request, lets `decide` answer it, and writes the answer. On success the
/// stream is ready for frames (the request's `leftover` holds any that came early).
async fn server_handshake<S, F>(
    stream: &mut S,
    config: &IoConfig,
    decide: F,
) -> Result<handshake::Request, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&handshake::Request) -> Result<handshake::Accept, handshake::Rejection>,
{
    let deadline = TokioInstant::now() + config.handshake_timeout;
    let mut server = handshake::ServerHandshake::new(handshake::HandshakeLimits::default());
    let mut buf = alloc::vec![0u8; 4096];
    let request = loop {
        let n = read_before(stream, &mut buf, deadline).await?;
        match server.receive(&buf[..n]) {
            Ok(handshake::ServerStatus::Partial) => {}
            Ok(handshake::ServerStatus::Complete(request)) => break request,
            Err(rejection) => {
                refuse(stream, rejection.response(), deadline).await;
                return Err(Error::Rejected(rejection));
            }
        }
    };
    match super::answer(&request, decide) {
        Answer::Accept(response) => write_before(stream, &response, deadline).await?,
        Answer::Refuse(response, error) => {
            refuse(stream, &response, deadline).await;
            return Err(error);
        }
    }
    Ok(request)
}

/// Connects to a `ws://` URL and performs the client side of the opening handshake. A
/// `wss://` URL is refused ([`RequestError::Tls`](handshake::RequestError::Tls)): TLS is the
/// caller's, through [`client_handshake_over`].
async fn client_handshake(
    url: &str,
    options: handshake::ClientOptions,
    config: &IoConfig,
) -> Result<(TcpStream, handshake::Response), Error> {
    let deadline = TokioInstant::now() + config.handshake_timeout;
    let (client, request) = start_client_handshake(url, options)?;
    let target = client.target();
    if target.is_secure() {
        return Err(Error::Request(handshake::RequestError::Tls));
    }
    let connecting = TcpStream::connect((target.host(), target.port()));
    let mut stream = match timeout_at(deadline, connecting).await {
        Ok(stream) => stream?,
        Err(_) => return Err(Error::HandshakeTimeout),
    };
    let response = finish_client_handshake(&mut stream, client, &request, deadline).await?;
    Ok((stream, response))
}

/// The client side of the opening handshake for `url` over a stream the caller opened (TLS
/// for a `wss://` URL, or any other).
async fn client_handshake_over<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    url: &str,
    options: handshake::ClientOptions,
    config: &IoConfig,
) -> Result<handshake::Response, Error> {
    let deadline = TokioInstant::now() + config.handshake_timeout;
    let (client, request) = start_client_handshake(url, options)?;
    finish_client_handshake(stream, client, &request, deadline).await
}

fn start_client_handshake(
    url: &str,
    options: handshake::ClientOptions,
) -> Result<(handshake::ClientHandshake, Vec<u8>), Error> {
    handshake::ClientHandshake::new(url, options, &mut crate::random::OsRandom)
        .map_err(Error::Request)
}

/// Writes the request and reads the response until it is complete and valid.
async fn finish_client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut client: handshake::ClientHandshake,
    request: &[u8],
    deadline: TokioInstant,
) -> Result<handshake::Response, Error> {
    write_before(stream, request, deadline).await?;
    let mut buf = alloc::vec![0u8; 4096];
    loop {
        let n = read_before(stream, &mut buf, deadline).await?;
        match client.receive(&buf[..n]).map_err(Error::Handshake)? {
            handshake::ClientStatus::Partial => {}
            handshake::ClientStatus::Complete(response) => return Ok(response),
        }
    }
}

/// Writes a refusal and closes our side, best effort: the peer is refused either way.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, response: &[u8], deadline: TokioInstant) {
    if write_before(stream, response, deadline).await.is_ok() {
        let _ = timeout_at(deadline, stream.shutdown()).await;
    }
}

async fn read_before<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: TokioInstant,
) -> Result<usize, Error> {
    match timeout_at(deadline, stream.read(buf)).await {
        Err(_) => Err(Error::HandshakeTimeout),
        Ok(Ok(0)) => Err(Error::HandshakeEof),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(Error::Io(e)),
    }
}

async fn write_before<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    deadline: TokioInstant,
) -> Result<(), Error> {
    // Flushed too: a stream may keep what it was given until then.
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match timeout_at(deadline, written).await {
        Err(_) => Err(Error::HandshakeTimeout),
        Ok(result) => result.map_err(Error::Io),
    }
}

// ----- what both adapters do with the socket --------------------------------------------------

/// The engine's clock for an adapter whose engine started at `epoch` (`Instant::ZERO`).
#[inline]
fn engine_now(epoch: TokioInstant) -> Instant {
    Instant::from_duration(epoch.elapsed())
}

/// The earliest of the engine's next timer and the adapter's own deadlines (`write`: the frame
/// in flight's, `other`: the adapter's), on Tokio's clock.
#[inline]
fn next_deadline(
    conn: &Connection,
    epoch: TokioInstant,
    write: Option<TokioInstant>,
    other: Option<TokioInstant>,
) -> Option<TokioInstant> {
    let engine = conn.poll_timeout().map(|t| epoch + t.since_epoch());
    earliest(earliest(engine, write), other)
}

#[inline]
fn earliest(a: Option<TokioInstant>, b: Option<TokioInstant>) -> Option<TokioInstant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The stream as a [`TcpStream`], if it is one: the adapters take any stream, and keep TCP's
/// fast paths (`set_nodelay_if_tcp`, `may_read`, `poll_write_chunks`, and no flush to make,
/// see `FrameWriter`). The type is known when the code is compiled, so the check costs nothing
/// at run time.
#[inline(always)]
fn as_tcp<S: 'static>(stream: &S) -> Option<&TcpStream> {
    (stream as &dyn core::any::Any).downcast_ref::<TcpStream>()
}

/// Frames are small and latency matters more than packet count: a TCP socket gets
/// `TCP_NODELAY`. Any other stream (TLS over TCP, an upgraded hyper connection) is the
/// caller's to tune, on the socket beneath it.
fn set_nodelay_if_tcp<S: 'static>(stream: &S) -> io::Result<()> {
    match as_tcp(stream) {
        Some(tcp) => tcp.set_nodelay(true),
        None => Ok(()),
    }
}

/// Whether a read may find something, asked before one is set up: for a [`TcpStream`],
/// Tokio's readiness, which costs a few instructions where setting up a read that finds
/// nothing costs about a hundred (measured: 319 fewer instructions per echo round trip in
/// the task adapter, which waits on its socket between messages, callgrind); for any other
/// stream, always (its read is the only way to know). `false` leaves `cx` registered.
fn may_read<S: 'static>(stream: &S, cx: &mut Context<'_>) -> bool {
    match as_tcp(stream) {
        Some(tcp) => tcp.poll_read_ready(cx).is_ready(),
        None => true,
    }
}

/// What a read left of the socket's input side.
enum ReadOutcome {
    /// Bytes arrived and went to the engine.
    Data,
    /// The peer closed, or the read failed; the engine was told. Read no more.
    Closed,
}

/// One read from `stream` into the engine. `Pending` (with `cx` registered for readiness)
/// when the socket has nothing now.
///
/// The rest of a frame that spans reads is read straight into the engine's buffer
/// ([`Connection::receive_buffer`]) and unmasked there: a large payload is copied only as far
/// as its first read took it. Other input lands on the stack ([`STACK_READ`] bytes):
/// nothing to allocate or zero per read, and nothing held while the connection waits (the
/// engine copies only the payloads it keeps; a read buffer would otherwise be most of an idle
/// connection's memory). A stack read that comes back full with no frame left in progress
/// means a burst of smaller frames: the reads after it take up to `read_size` at a time into
/// the [`BurstBuffer`]. Through `AsyncRead`, so that tokio clears the socket's readiness after
/// a short read (the socket is drained) and the next wait sleeps instead of waking for a read
/// that can only fail with WouldBlock.
fn read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    conn: &mut Connection,
    epoch: TokioInstant,
    read_size: usize,
    burst: &mut BurstBuffer,
) -> Poll<ReadOutcome> {
    match conn.receive_buffer(read_size) {
        Some(room) => {
            // A large frame, not a burst of small ones: the frame's own buffer takes it.
            burst.on = false;
            read_in_place(stream, cx, conn, epoch, room)
        }
        None => read_copied(stream, cx, conn, epoch, read_size, burst),
    }
}

/// The buffer for reads during a burst of input (see [`read_into`]): allocated when a burst
/// is seen, kept while reads into it come back full, dropped at the first that does not (or
/// that would block), so that a waiting connection holds none.
#[derive(Debug, Default)]
struct BurstBuffer {
    buf: Vec<u8>,
    /// The last stack read came back full with no frame in progress.
    on: bool,
}

/// [`read_into`] for the rest of a frame in progress: into the engine's own buffer.
fn read_in_place<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    conn: &mut Connection,
    epoch: TokioInstant,
    mut room: ReceiveBuffer,
) -> Poll<ReadOutcome> {
    // SAFETY: `ReadBuf` only ever writes initialized bytes into the slice (it never reads
    // from or de-initializes it).
    let mut buf = ReadBuf::uninit(unsafe { room.chunk_mut().as_uninit_slice_mut() });
    let result = match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Ready(result) => result,
        Poll::Pending => {
            // Nothing was filled: the room goes back (`now` is not looked at).
            let _ = conn.receive_filled(Instant::ZERO, room);
            return Poll::Pending;
        }
    };
    let filled = buf.filled().len();
    let now = engine_now(epoch);
    Poll::Ready(match result {
        Ok(()) if filled > 0 => {
            // SAFETY: `ReadBuf` reports the first `filled` bytes of the chunk initialized.
            unsafe { room.advance_mut(filled) };
            // A protocol error is the engine's to report, as in `read_copied`.
            let _ = conn.receive_filled(now, room);
            ReadOutcome::Data
        }
        other => nothing_read(conn, now, other),
    })
}

/// [`read_into`] when no frame is in progress: on the stack, or in the burst buffer.
fn read_copied<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    conn: &mut Connection,
    epoch: TokioInstant,
    read_size: usize,
    burst: &mut BurstBuffer,
) -> Poll<ReadOutcome> {
    let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
    let mut heap = core::mem::take(&mut burst.buf);
    let on_heap = core::mem::take(&mut burst.on) && read_size > STACK_READ;
    let mut buf = if on_heap {
        heap.reserve_exact(read_size);
        ReadBuf::uninit(&mut heap.spare_capacity_mut()[..read_size])
    } else {
        ReadBuf::uninit(&mut stack[..read_size.min(STACK_READ)])
    };
    let result = match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Ready(result) => result,
        // Nothing held while waiting: the burst buffer is dropped.
        Poll::Pending => return Poll::Pending,
    };
    let now = engine_now(epoch);
    Poll::Ready(match result {
        Ok(()) if !buf.filled().is_empty() => {
            let full = buf.remaining() == 0;
            // A protocol error is the engine's to report: it queues the Close and ends the
            // connection with the reason.
            let _ = conn.receive(now, buf.filled());
            if full {
                burst.on = true;
                if on_heap {
                    burst.buf = heap;
                }
            }
            ReadOutcome::Data
        }
        other => nothing_read(conn, now, other),
    })
}

/// What a read that brought no bytes means: the peer closed (`Ok`), a signal interrupted it
/// (read again), or the transport failed. The engine is told of an end.
fn nothing_read(conn: &mut Connection, now: Instant, result: io::Result<()>) -> ReadOutcome {
    match result {
        Ok(()) => {
            conn.transport_closed(now);
            ReadOutcome::Closed
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Data,
        Err(e) => {
            conn.transport_failed(now, TransportError::Io(io_detail("read", &e)));
            ReadOutcome::Closed
        }
    }
}

/// The writing side of an adapter: everything the engine queues leaves through
/// [`write`](Self::write), each frame under a fresh write deadline, and is flushed.
///
/// The deadline is armed when a frame first has to wait (the first write that would block),
/// not when it starts: the two are apart by the time of the writes in between, microseconds,
/// and a frame that goes out at once (the common case) then costs no clock read.
///
/// Flushing is part of writing: `AsyncWrite` lets a stream keep the bytes it took until it is
/// flushed (`tokio::io::BufWriter` does; tokio-rustls writes its records at once, other
/// wrappers may not), so the last frame before a quiet spell (a reply, a Close) could
/// otherwise sit in its buffer. A flush that has to wait is under a write deadline too.
#[derive(Debug)]
struct FrameWriter {
    timeout: Duration,
    /// The deadline of the frame being written (or flushed); `None` when none is waiting.
    deadline: Option<TokioInstant>,
    /// The last [`write`](Self::write) could not finish: the stream holds the caller's waker
    /// for when it can go on.
    blocked: bool,
    /// Bytes went into the stream since its last flush.
    unflushed: bool,
}

impl FrameWriter {
    fn new(timeout: Duration) -> Self {
        FrameWriter {
            timeout,
            deadline: None,
            blocked: false,
            unflushed: false,
        }
    }

    /// Nothing queued and nothing waiting for a flush.
    #[inline]
    fn is_idle(&self, conn: &Connection) -> bool {
        !self.unflushed && conn.is_transmit_idle()
    }

    /// The deadline of the write (or flush) in progress, if one had to wait.
    fn deadline(&self, conn: &Connection) -> Option<TokioInstant> {
        self.deadline.filter(|_| !self.is_idle(conn))
    }

    /// Writes what the stream takes now, then flushes it, reporting each count to the engine
    /// right after the write returns. Returns true (and leaves `cx` registered with the stream)
    /// when it has to wait with bytes still queued or unflushed; a frame past its deadline then
    /// ends the connection with a write timeout.
    #[inline]
    fn write<S: AsyncWrite + Unpin + 'static>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
        conn: &mut Connection,
        epoch: TokioInstant,
    ) -> bool {
        // Checked before the call that sets up the slice arrays (performance: the adapters
        // call this on every step, mostly with nothing queued).
        self.blocked = !self.is_idle(conn) && self.write_some(stream, cx, conn, epoch);
        if !self.blocked {
            self.deadline = None;
        }
        self.blocked
    }

    #[inline(never)]
    fn write_some<S: AsyncWrite + Unpin + 'static>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
        conn: &mut Connection,
        epoch: TokioInstant,
    ) -> bool {
        while !conn.is_transmit_idle() {
            // A message sent into an idle queue, the usual case: its frame as handed out,
            // nothing to gather (see `Connection::transmit_is_one_frame`).
            let polled = if conn.transmit_is_one_frame() {
                let Some(frame) = conn.poll_transmit() else {
                    break;
                };
                poll_write_chunks(stream, cx, &[frame.header, frame.payload])
            } else {
                let mut chunks: [&[u8]; WRITE_SLICES] = [&[]; WRITE_SLICES];
                let n = conn.transmit_chunks(&mut chunks, WRITE_BYTES);
                poll_write_chunks(stream, cx, &chunks[..n])
            };
            match polled {
                Poll::Ready(Ok(0)) => self.fail(
                    conn,
                    epoch,
                    TransportError::Io(String::from("write: connection accepted no bytes")),
                ),
                Poll::Ready(Ok(written)) => {
                    // A TcpStream hands its bytes to the kernel at once: it has no flush to
                    // wait for (performance: no flush call per write on TCP).
                    self.unflushed = as_tcp(stream).is_none();
                    // No await between the write and this report, so a cancelled or
                    // interrupted caller can never lose the count. A completed frame ends its
                    // deadline.
                    if conn.advance_transmit(written) > 0 {
                        self.deadline = None;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.fail(conn, epoch, TransportError::Io(io_detail("write", &e)))
                }
                Poll::Pending => return self.wait_or_time_out(conn, epoch),
            }
        }
        if self.unflushed {
            match Pin::new(stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => {
                    self.fail(conn, epoch, TransportError::Io(io_detail("flush", &e)))
                }
                Poll::Pending => return self.wait_or_time_out(conn, epoch),
            }
        }
        false
    }

    /// The stream cannot take more now: the frame (or flush) waits, and gets the whole write
    /// timeout from its first wait, however long the connection was idle before. Returns
    /// whether it still waits (false: it timed out, and the connection ended).
    fn wait_or_time_out(&mut self, conn: &mut Connection, epoch: TokioInstant) -> bool {
        let now = TokioInstant::now();
        if now < *self.deadline.get_or_insert(now + self.timeout) {
            return true;
        }
        self.fail(conn, epoch, TransportError::WriteTimeout);
        false
    }

    /// Flushes what was written, for the teardown after the end (the Close may be in the
    /// stream's buffer). `Ready` once flushed or failed.
    fn poll_flushed<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.unflushed {
            ::core::task::ready!(Pin::new(stream).poll_flush(cx)).ok();
            self.unflushed = false;
        }
        Poll::Ready(())
    }

    /// The transport failed: the engine ends the connection and drops what was queued, and
    /// nothing more is written or flushed.
    fn fail(&mut self, conn: &mut Connection, epoch: TokioInstant, error: TransportError) {
        self.unflushed = false;
        conn.transport_failed(engine_now(epoch), error);
    }
}

/// One write of `chunks`. A [`TcpStream`] is written with `try_write`, which skips the
/// readiness poll that `poll_write` makes before every write; only a write that would block
/// polls readiness, which registers `cx`. (Measured with the engine's small accessors marked
/// `#[inline]` in the same step: 120 fewer instructions per echo round trip in the in-task
/// adapter, 272 in the task adapter, callgrind.)
#[inline]
fn poll_write_chunks<S: AsyncWrite + Unpin + 'static>(
    stream: &mut S,
    cx: &mut Context<'_>,
    chunks: &[&[u8]],
) -> Poll<io::Result<usize>> {
    if let Some(tcp) = as_tcp(&*stream) {
        loop {
            let result = with_write_slices(chunks, |slices| match slices {
                [one] => tcp.try_write(one),
                _ => tcp.try_write_vectored(slices),
            });
            match result {
                // Ready: writable again since the try; try once more.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ::core::task::ready!(tcp.poll_write_ready(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }
    let stream = Pin::new(stream);
    with_write_slices(chunks, |slices| match slices {
        [one] => stream.poll_write(cx, one),
        _ => stream.poll_write_vectored(cx, slices),
    })
}

/// Hands `chunks` to `write` as the slices of one write. Small ones (a header and a short
/// payload) are joined on the stack into one slice, for one plain write: the kernel's
/// vectored write costs more per call than the copy (measured, loopback echo of 16-byte
/// messages: 11.2 to 11.0 µs per round trip). The join buffer is small because it is zeroed
/// on every call.
#[inline]
fn with_write_slices<R>(chunks: &[&[u8]], write: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
    // One frame's header and payload, the common case, without the loops (performance: 56
    // instructions per echo round trip).
    let total: usize = match chunks {
        [header, payload] => header.len() + payload.len(),
        _ => chunks.iter().map(|chunk| chunk.len()).sum(),
    };
    if chunks.len() > 1 && total <= JOIN_WRITES_UP_TO {
        let mut joined = [0u8; JOIN_WRITES_UP_TO];
        match chunks {
            [header, payload] => {
                joined[..header.len()].copy_from_slice(header);
                joined[header.len()..total].copy_from_slice(payload);
            }
            _ => {
                let mut at = 0;
                for chunk in chunks {
                    joined[at..at + chunk.len()].copy_from_slice(chunk);
                    at += chunk.len();
                }
            }
        }
        return write(&[IoSlice::new(&joined[..total])]);
    }
    let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
    for (slice, chunk) in slices.iter_mut().zip(chunks) {
        *slice = IoSlice::new(chunk);
    }
    write(&slices[..chunks.len()])
}

/// Shuts down our sending side, bounded by the caller's timer: `Ready` once done or failed.
fn poll_shutdown_write<S: AsyncWrite + Unpin>(stream: &mut S, cx: &mut Context<'_>) -> Poll<()> {
    Pin::new(stream).poll_shutdown(cx).map(|_| ())
}

/// Reads and discards until the peer closes or an error (the caller bounds it in time).
fn poll_drain<S: AsyncRead + Unpin>(stream: &mut S, cx: &mut Context<'_>) -> Poll<()> {
    let mut scratch = [MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let mut buf = ReadBuf::uninit(&mut scratch);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Wakes a connection's driver (its task, or the task in [`WebSocket::recv`]) from a handle.
/// A flag and the waker, polled in place (a `Notify` would need a `Notified` future made and
/// dropped per wait). A raise with nobody waiting is kept until the next wait, like
/// `Notify::notify_one`.
#[derive(Default)]
struct WakeSignal {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl WakeSignal {
    fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        let waker = lock(&self.waker).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.raised.swap(false, Ordering::SeqCst) {
            return Poll::Ready(());
        }
        {
            let mut slot = lock(&self.waker);
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        // A raise between the first check and the registration found no waker to wake:
        // seen here instead of lost.
        if self.raised.swap(false, Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data guarded here stays consistent whatever panicked while holding the lock.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
