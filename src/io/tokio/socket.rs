//! The adapter in the caller's task: a [`WebSocket`] whose `recv`, `send` and `flush` do the
//! reading, writing and timer firing themselves (see the [module docs](super)).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use bytes::Bytes;
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::io;
use std::sync::Mutex;

use ::tokio::io::{AsyncRead, AsyncWrite};
use ::tokio::net::TcpStream;
use ::tokio::time::{sleep_until, Instant as TokioInstant, Sleep};

use super::{
    client_handshake, client_handshake_over, engine_now, lock, next_deadline, poll_drain,
    poll_shutdown_write, read_into, server_handshake, set_nodelay_if_tcp, BurstBuffer, FrameWriter,
    ReadOutcome, WakeSignal,
};
use crate::handshake;
use crate::io::{queue_message, start_engine, Error, IoConfig, Message, Teardown};
use crate::{Connection, Event, Instant, Role, SendError, Stats};

/// A WebSocket connection driven by the task that calls it: [`recv`](Self::recv) reads the
/// socket, writes what is queued (the engine's PONG and Close replies, keepalive PINGs) and
/// fires the engine's timers; [`send`](Self::send) queues a message and writes it before it
/// returns. Nothing runs between calls, so keep `recv` running while the connection is open.
///
/// While `send` or [`flush`](Self::flush) waits for a slow peer to take bytes, nothing is
/// read; each frame has its own write deadline ([`IoConfig::write_timeout`]), so a peer that
/// stops reading ends the connection with a write timeout instead of holding it.
///
/// Dropping it closes the socket at once, with no close handshake (the peer sees the
/// connection cut); for a clean end, [`close`](Self::close) and then call `recv` until `None`.
///
/// Also a `futures_core::Stream` of events, like [`recv`](Self::recv).
///
/// Over any byte stream `S` (Tokio's `AsyncRead + AsyncWrite`), a [`TcpStream`] by default: a
/// TLS stream, an upgraded hyper connection (`hyper_util::rt::TokioIo<Upgraded>`), a Unix
/// socket. What it writes it also flushes: `AsyncWrite` lets a stream keep bytes until then
/// (`tokio::io::BufWriter` does), so every frame is on its way whatever the stream.
#[derive(Debug)]
pub struct WebSocket<S = TcpStream> {
    /// `None` once the connection is over and the stream closed.
    stream: Option<S>,
    conn: Connection,
    /// The engine's epoch: `Instant::ZERO` is this moment.
    epoch: TokioInstant,
    writer: FrameWriter,
    /// The most bytes one read takes (`IoConfig::read_buffer_size`).
    read_size: usize,
    /// Where reads land during a burst of input (see `read_into`).
    read_buf: BurstBuffer,
    read_closed: bool,
    /// One timer for whatever is due first: the engine's, the write deadline, the teardown's.
    /// Made on first need (a connection without timers allocates none).
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<TokioInstant>,
    /// The waker the timer was last polled with since it was armed: polling it again with the
    /// same one changes nothing, so it is skipped (performance: twice per message).
    timer_waker: Option<Waker>,
    /// Input arrived since the last wait began. A wait that follows input is part of a
    /// conversation and keeps the engine's buffers; one that follows a wait with no input
    /// (the connection went quiet) releases them (see `poll_recv`).
    input_since_wait: bool,
    close_request: Arc<CloseRequest>,
    /// How to close the socket, once `Ended` was handed out.
    teardown: Option<Teardown>,
    /// When the teardown must be over, once it started.
    teardown_until: Option<TokioInstant>,
    /// Our sending side is shut down (`Teardown::ServerLinger`).
    shut_down: bool,
}

/// A close asked for by a [`Closer`], and the signal that wakes the owning task for it.
struct CloseRequest {
    slot: Mutex<Option<(u16, String)>>,
    signal: WakeSignal,
}

impl core::fmt::Debug for CloseRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CloseRequest")
            .field("slot", &*lock(&self.slot))
            .finish()
    }
}

impl WebSocket<TcpStream> {
    /// Connects to a `ws://` URL over TCP and performs the client side of the opening
    /// handshake. For `wss://`, open the TLS stream and use
    /// [`connect_over`](WebSocket::connect_over).
    pub async fn connect(url: &str, config: IoConfig) -> Result<WebSocket, Error> {
        Self::connect_with(url, handshake::ClientOptions::new(), config)
            .await
            .map(|(ws, _)| ws)
    }

    /// Like [`connect`](Self::connect), with request options (subprotocols, headers);
    /// returns the server's response too.
    pub async fn connect_with(
        url: &str,
        options: handshake::ClientOptions,
        config: IoConfig,
    ) -> Result<(WebSocket, handshake::Response), Error> {
        let (stream, response) = client_handshake(url, options, &config).await?;
        let ws = WebSocket::new(stream, Role::Client, config, response.leftover())?;
        Ok((ws, response))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> WebSocket<S> {
    /// Performs the server side of the opening handshake on `stream`, accepting any valid
    /// request (no subprotocol), and returns the connection.
    pub async fn accept(stream: S, config: IoConfig) -> Result<WebSocket<S>, Error> {
        Self::accept_with(stream, config, |_| Ok(handshake::Accept::new()))
            .await
            .map(|(ws, _)| ws)
    }

    /// Performs the server side of the opening handshake, letting `decide` look at the
    /// request (path, Origin, subprotocols) first: `Ok(accept)` answers 101, `Err(rejection)`
    /// writes that HTTP response and fails with [`Error::Rejected`]. An invalid request is
    /// refused the same way without asking. Returns the connection and the request.
    pub async fn accept_with<F>(
        mut stream: S,
        config: IoConfig,
        decide: F,
    ) -> Result<(WebSocket<S>, handshake::Request), Error>
    where
        F: FnOnce(&handshake::Request) -> Result<handshake::Accept, handshake::Rejection>,
    {
        let request = server_handshake(&mut stream, &config, decide).await?;
        let ws = WebSocket::new(stream, Role::Server, config, request.leftover())?;
        Ok((ws, request))
    }

    /// Performs the client side of the opening handshake for `url` over a stream the caller
    /// opened: a TLS stream for a `wss://` URL (wsframe opens no TLS itself), or any other.
    /// The URL gives the `Host` header and the resource; the stream is used as it is.
    pub async fn connect_over(
        mut stream: S,
        url: &str,
        options: handshake::ClientOptions,
        config: IoConfig,
    ) -> Result<(WebSocket<S>, handshake::Response), Error> {
        let response = client_handshake_over(&mut stream, url, options, &config).await?;
        let ws = WebSocket::new(stream, Role::Client, config, response.leftover())?;
        Ok((ws, response))
    }

    /// A connection over a stream whose opening handshake is done (by [`accept`](Self::accept),
    /// or by an HTTP stack that did the upgrade); `leftover` is what was read past the end of
    /// the handshake (the first frames). A [`TcpStream`] gets `TCP_NODELAY` (frames are small
    /// and latency matters more than packet count); any other stream is the caller's to tune.
    /// Must be called inside a Tokio runtime.
    pub fn new(
        stream: S,
        role: Role,
        config: IoConfig,
        leftover: &[u8],
    ) -> io::Result<WebSocket<S>> {
        set_nodelay_if_tcp(&stream)?;
        let epoch = TokioInstant::now();
        Ok(WebSocket {
            stream: Some(stream),
            conn: start_engine(role, &config.engine, leftover),
            epoch,
            writer: FrameWriter::new(config.write_timeout),
            read_size: config.read_buffer_size.max(512),
            read_buf: BurstBuffer::default(),
            read_closed: false,
            timer: None,
            timer_at: None,
            timer_waker: None,
            input_since_wait: false,
            close_request: Arc::new(CloseRequest {
                slot: Mutex::new(None),
                signal: WakeSignal::default(),
            }),
            teardown: None,
            teardown_until: None,
            shut_down: false,
        })
    }

    fn now(&self) -> Instant {
        engine_now(self.epoch)
    }

    // ----- receiving ------------------------------------------------------------------------

    /// The next event: a message, a PING or PONG from the peer, the peer's Close, and last
    /// [`Event::Ended`]; then `None` (that call closes the socket as section 7.1.1 asks,
    /// waiting at most the close timeout for the peer). Meanwhile it writes what is queued and
    /// fires the engine's timers.
    ///
    /// Taking the peer's Close is what queues the echo (behind everything sent before), and
    /// the next call writes it: keep calling until `None`. Cancel-safe: bytes read are in the
    /// engine at once, and an event is either returned or still waiting.
    pub async fn recv(&mut self) -> Option<Event> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event (see [`recv`](Self::recv)); `Ready(None)` after
    /// [`Event::Ended`] and the socket's teardown.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.next_event() {
                return Poll::Ready(Some(event));
            }
            if self.conn.is_ended() {
                return self.poll_teardown(cx).map(|()| None);
            }
            self.take_close_request();
            self.write(cx);
            if self.conn.is_ended() {
                continue;
            }
            if self.poll_io(cx, true).is_pending() {
                // About to sleep. Between the messages of a busy connection, freeing the
                // engine's empty buffers would cost their allocations again on the next message
                // (performance: a few mallocs and frees per message); once a wait ended with no
                // input (a timer, the keepalive), the connection has gone quiet, and what an
                // idle connection need not hold goes.
                if !core::mem::take(&mut self.input_since_wait) {
                    self.conn.release_idle_memory();
                }
                return Poll::Pending;
            }
        }
    }

    /// The engine's next event for the application (`Writable` is the adapter's own).
    fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.conn.poll_event()? {
                Event::Writable => continue,
                Event::Ended(ended) => {
                    self.teardown = Some(Teardown::for_end(self.conn.role(), &ended.reason));
                    return Some(Event::Ended(ended));
                }
                event => return Some(event),
            }
        }
    }

    /// Waits for whatever can move the connection on, besides room to write (a blocked
    /// [`write`](Self::write) left `cx` with the stream): a timer (so that a flood of input
    /// cannot hold off a write deadline), input (if `read`) or a [`Closer`]'s request.
    /// `Ready` when one of them did (its effect is in the engine), `Pending` with `cx`
    /// registered for all of them.
    fn poll_io(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<()> {
        if self.stream.is_none() {
            return Poll::Ready(());
        }
        if self.poll_timer(cx).is_ready() {
            return Poll::Ready(());
        }
        if read && !self.read_closed {
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Ready(());
            };
            let outcome = read_into(
                stream,
                cx,
                &mut self.conn,
                self.epoch,
                self.read_size,
                &mut self.read_buf,
            );
            if let Poll::Ready(outcome) = outcome {
                match outcome {
                    ReadOutcome::Data => self.input_since_wait = true,
                    ReadOutcome::Closed => self.read_closed = true,
                }
                return Poll::Ready(());
            }
        }
        // Only once a `Closer` exists is there anyone to wake us for a close.
        if read
            && Arc::strong_count(&self.close_request) > 1
            && self.close_request.signal.poll(cx).is_ready()
        {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Arms the one timer for the earliest of the engine's next timer, the write deadline and
    /// the teardown's end, and fires what is due when it goes off. A timer already armed
    /// earlier is kept: firing early is harmless (only what is due acts), and it saves
    /// re-arming on every step.
    #[inline]
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Nothing armed and nothing to arm, the usual case between messages without keepalive:
        // answered here, inline, before the deadlines are gathered (performance).
        if self.timer_at.is_none()
            && self.writer.deadline.is_none()
            && self.teardown_until.is_none()
            && self.conn.poll_timeout().is_none()
        {
            return Poll::Pending;
        }
        self.poll_armed_timer(cx)
    }

    /// [`poll_timer`](Self::poll_timer) with a deadline armed or to arm.
    #[inline(never)]
    fn poll_armed_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let write = self.writer.deadline(&self.conn);
        let Some(at) = next_deadline(&self.conn, self.epoch, write, self.teardown_until) else {
            self.timer_at = None;
            return Poll::Pending;
        };
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
        if self.timer_at.is_none_or(|armed| armed > at) {
            timer.as_mut().reset(at);
            self.timer_at = Some(at);
            self.timer_waker = None;
        }
        let registered = self
            .timer_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered && !timer.is_elapsed() {
            return Poll::Pending;
        }
        if timer.as_mut().poll(cx).is_pending() {
            self.timer_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // A write deadline that passed is acted on by the next `write`: it tries once more,
        // and ends the connection if the frame is still stuck.
        self.timer_waker = None;
        self.timer_at = None;
        let now = self.now();
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        Poll::Ready(())
    }

    // ----- sending --------------------------------------------------------------------------

    /// Queues a message and writes it (and everything queued before it).
    ///
    /// Fails only when no more data may be sent (we or the peer closed, or the connection
    /// ended), handing the payload back. A write failure is not an error here: it ends the
    /// connection, reported by [`recv`](Self::recv).
    ///
    /// Cancelled (the future dropped before it finished): if it was still waiting for room in
    /// a full queue (see [`feed`](Self::feed)), the message was not queued; once queued, it
    /// stays queued and the next call writes it. Nothing is ever written twice or cut off mid
    /// frame. Where the difference matters (a retry after a timeout), queue with
    /// [`try_feed`](Self::try_feed), which says at once, and write with
    /// [`flush`](Self::flush), which is cancel-safe.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        // An empty queue takes any message, so the usual send has nothing to wait for
        // (performance: `feed`'s wait loop is a future made and dropped per message).
        if self.conn.is_transmit_idle() {
            self.try_feed(message)?;
        } else {
            self.feed(message).await?;
        }
        self.flush().await;
        Ok(())
    }

    /// Queues a message without writing it, unless the outbound budget
    /// ([`Config::max_outbound_bytes`](crate::Config::max_outbound_bytes)) is full: then it
    /// writes (under the write deadlines) until the message fits. Call
    /// [`flush`](Self::flush) (or [`send`](Self::send), or [`recv`](Self::recv)) to write.
    /// Cancelled while waiting for room, the message was not queued.
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        let mut message = message.into();
        loop {
            match queue_message(&mut self.conn, message) {
                Ok(()) => return Ok(()),
                Err((refused, SendError::Backpressure { .. })) if !self.conn.is_ended() => {
                    // Writing everything empties the queue, and an empty queue takes any
                    // message; if writing fails instead, the next try says `Closing`.
                    self.flush().await;
                    message = refused;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// Queues a message now, without writing and without waiting: a full outbound budget
    /// hands it back as [`SendError::Backpressure`] (its payload in
    /// [`SendError::into_payload`]), as does a closed connection with its own error.
    pub fn try_feed(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        queue_message(&mut self.conn, message.into()).map_err(|(_, e)| e)
    }

    /// Writes everything queued, each frame under a fresh write deadline. A frame that misses
    /// its deadline ends the connection with a write timeout, a write error ends it as
    /// abnormal; either way the end arrives as [`Event::Ended`] from [`recv`](Self::recv).
    /// Cancel-safe: what was written is accounted for, the rest stays queued.
    pub async fn flush(&mut self) {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Polls [`flush`](Self::flush).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if !self.write(cx) || self.conn.is_ended() {
                return Poll::Ready(());
            }
            if self.poll_io(cx, false).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Writes and flushes what the stream takes now (see [`FrameWriter::write`]); true when
    /// it has to wait for the stream (with `cx` registered).
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        match self.stream.as_mut() {
            Some(stream) => self.writer.write(stream, cx, &mut self.conn, self.epoch),
            None => false,
        }
    }

    /// Sends a PING (at most 125 bytes) ahead of queued data; its PONG updates
    /// [`Stats::last_rtt`].
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.bring_clock_to_now();
        self.conn.ping(payload)?;
        self.flush().await;
        Ok(())
    }

    /// Starts the close handshake: the Close goes out behind everything queued. Keep calling
    /// [`recv`](Self::recv) until it returns `None` to finish the handshake.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        self.bring_clock_to_now();
        self.conn.close(code, reason)?;
        self.flush().await;
        Ok(())
    }

    /// A handle another task can use to close this connection (say, at shutdown); it wakes
    /// a task waiting in [`recv`](Self::recv).
    pub fn closer(&self) -> Closer {
        Closer {
            request: Arc::clone(&self.close_request),
        }
    }

    fn take_close_request(&mut self) {
        if Arc::strong_count(&self.close_request) == 1 {
            return;
        }
        let request = lock(&self.close_request.slot).take();
        if let Some((code, reason)) = request {
            self.bring_clock_to_now();
            // Validated by the Closer; closing twice does nothing.
            let _ = self.conn.close(code, &reason);
        }
    }

    /// `ping` and `close` take no time: they stamp the PING and start the close timeout at
    /// the engine's clock, which stands still between inputs. Bring it to now first (this
    /// fires only timers that are due anyway).
    fn bring_clock_to_now(&mut self) {
        let now = self.now();
        self.conn.handle_timeout(now);
    }

    // ----- the end --------------------------------------------------------------------------

    /// Closes the socket after the end, as section 7.1.1 asks (see the
    /// [`io` module docs](crate::io)), within the close timeout.
    fn poll_teardown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let close_timeout = self.conn.config().close_timeout;
        let until = *self
            .teardown_until
            .get_or_insert_with(|| TokioInstant::now() + close_timeout);
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Ready(());
            };
            let done = match self.teardown.unwrap_or(Teardown::Abort) {
                Teardown::Abort => true,
                // What was written (the Close among it) is flushed before the stream is shut
                // down or waited on.
                _ if self.writer.poll_flushed(stream, cx).is_pending() => false,
                Teardown::ServerLinger => {
                    if !self.shut_down && poll_shutdown_write(stream, cx).is_ready() {
                        self.shut_down = true;
                    }
                    self.shut_down && poll_drain(stream, cx).is_ready()
                }
                Teardown::ClientWait => poll_drain(stream, cx).is_ready(),
            };
            if done || TokioInstant::now() >= until {
                // Dropping the socket closes it.
                self.stream = None;
                self.timer = None;
                self.timer_at = None;
                self.timer_waker = None;
                return Poll::Ready(());
            }
            if self.poll_timer(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    // ----- inspection -----------------------------------------------------------------------

    /// Counters: bytes and frames in and out, queued bytes, last PING round trip.
    pub fn stats(&self) -> Stats {
        self.conn.stats()
    }

    /// The engine, for inspection (`queued_bytes`, `can_send`, `is_ended`, ...).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The stream, for inspection (addresses); `None` once it was closed after the end.
    /// Reading or writing it directly would corrupt the connection.
    pub fn get_ref(&self) -> Option<&S> {
        self.stream.as_ref()
    }
}

/// The same events as [`WebSocket::recv`], for stream combinators: ends after
/// [`Event::Ended`].
impl<S: AsyncRead + AsyncWrite + Unpin + 'static> futures_core::Stream for WebSocket<S> {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_recv(cx)
    }
}

/// A handle that asks a [`WebSocket`] owned by another task to close, for example with 1001
/// at shutdown. The owning task acts on it in its next (or current) [`WebSocket::recv`].
#[derive(Debug, Clone)]
pub struct Closer {
    request: Arc<CloseRequest>,
}

impl Closer {
    /// Asks for a close handshake with this code and reason. The first request wins; the
    /// code and reason are checked here.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        let crate::CloseFrame { code, reason } = crate::CloseFrame::checked(code, reason)?;
        lock(&self.request.slot).get_or_insert((code, reason));
        self.request.signal.raise();
        Ok(())
    }
}
