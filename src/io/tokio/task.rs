//! The task-per-connection adapter: [`start`] spawns a task that owns the socket and the
//! engine; the application holds a cloneable [`Sender`] and a [`Receiver`] (see the
//! [module docs](super)).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;

use bytes::Bytes;
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use core::task::{Context, Poll};
use core::time::Duration;
use std::io;
use std::sync::Mutex;

use ::tokio::io::{AsyncRead, AsyncWrite};
use ::tokio::sync::{mpsc, Notify};
use ::tokio::time::{sleep_until, timeout_at, Instant as TokioInstant, Sleep};

use super::{
    client_handshake, client_handshake_over, engine_now, lock, may_read, next_deadline, poll_drain,
    poll_shutdown_write, read_into, server_handshake, set_nodelay_if_tcp, BurstBuffer, FrameWriter,
    ReadOutcome, WakeSignal,
};
use crate::handshake;
use crate::io::{queue_message, start_engine, Error, IoConfig, Message, Teardown};
use crate::outbound::charge;
use crate::{Connection, Ended, Event, Instant, Role, SendError, Stats, Unsent};

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const ENDED: u8 = 2;

// ----- opening handshake ----------------------------------------------------------------------

/// Performs the server side of the opening handshake on `stream`, accepting any valid request
/// (no subprotocol), and starts the connection's task. Must be called inside a Tokio runtime.
///
/// `stream` is any byte stream: a `TcpStream`, a TLS stream, a Unix socket (see [`start`]).
pub async fn accept<S>(stream: S, config: IoConfig) -> Result<(Sender, Receiver), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(stream, config, |_| Ok(handshake::Accept::new()))
        .await
        .map(|(tx, rx, _)| (tx, rx))
}

/// Performs the server side of the opening handshake, letting `decide` look at the request
/// (path, Origin, subprotocols) first: `Ok(accept)` answers 101 (with the chosen subprotocol
/// and headers), `Err(rejection)` writes that HTTP response and fails with
/// [`Error::Rejected`]. An invalid request is refused the same way without asking. Starts the
/// connection's task and returns its handles and the request.
pub async fn accept_with<S, F>(
    mut stream: S,
    config: IoConfig,
    decide: F,
) -> Result<(Sender, Receiver, handshake::Request), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&handshake::Request) -> Result<handshake::Accept, handshake::Rejection>,
{
    let request = server_handshake(&mut stream, &config, decide).await?;
    let (tx, rx) = start(stream, Role::Server, config, request.leftover())?;
    Ok((tx, rx, request))
}

/// Connects to a `ws://` URL over TCP, performs the client side of the opening handshake and
/// starts the connection's task. Must be called inside a Tokio runtime. For `wss://`, open the
/// TLS stream and use [`connect_over`].
pub async fn connect(url: &str, config: IoConfig) -> Result<(Sender, Receiver), Error> {
    connect_with(url, handshake::ClientOptions::new(), config)
        .await
        .map(|(tx, rx, _)| (tx, rx))
}

/// Like [`connect`], with request options (subprotocols, headers); returns the server's
/// response too.
pub async fn connect_with(
    url: &str,
    options: handshake::ClientOptions,
    config: IoConfig,
) -> Result<(Sender, Receiver, handshake::Response), Error> {
    let (stream, response) = client_handshake(url, options, &config).await?;
    let (tx, rx) = start(stream, Role::Client, config, response.leftover())?;
    Ok((tx, rx, response))
}

/// Performs the client side of the opening handshake for `url` over a stream the caller
/// opened (a TLS stream for a `wss://` URL; wsframe opens no TLS itself) and starts the
/// connection's task. The URL gives the `Host` header and the resource.
pub async fn connect_over<S>(
    mut stream: S,
    url: &str,
    options: handshake::ClientOptions,
    config: IoConfig,
) -> Result<(Sender, Receiver, handshake::Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let response = client_handshake_over(&mut stream, url, options, &config).await?;
    let (tx, rx) = start(stream, Role::Client, config, response.leftover())?;
    Ok((tx, rx, response))
}

/// Starts the task for a stream whose opening handshake is done (`leftover`: the bytes read
/// past the handshake, the first frames). Must be called inside a Tokio runtime.
///
/// `stream` is any byte stream (Tokio's `AsyncRead + AsyncWrite`): a `TcpStream`, which gets
/// `TCP_NODELAY` (frames are small and latency matters more than packet count), or a TLS
/// stream, an upgraded hyper connection (`hyper_util::rt::TokioIo<Upgraded>`), a Unix socket,
/// which are the caller's to tune. What the task writes it also flushes (`AsyncWrite` lets a
/// stream keep bytes until then), so every frame is on its way whatever the stream.
pub fn start<S>(
    stream: S,
    role: Role,
    config: IoConfig,
    leftover: &[u8],
) -> io::Result<(Sender, Receiver)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    set_nodelay_if_tcp(&stream)?;
    let epoch = TokioInstant::now();
    let conn = start_engine(role, &config.engine, leftover);
    let shared = Arc::new(Shared {
        budget: config.engine.max_outbound_bytes,
        reserved: AtomicUsize::new(0),
        state: AtomicU8::new(OPEN),
        room: Notify::new(),
        room_waiters: AtomicUsize::new(0),
        wake: WakeSignal::default(),
        control: Mutex::new(Control::default()),
        close_held: AtomicBool::new(false),
        waiting_at: AtomicU64::new(0),
        stats: Mutex::new(Stats::default()),
        tail: Mutex::new(VecDeque::new()),
        ended: Notify::new(),
    });
    let (command_tx, command_rx) = mpsc::channel(config.send_capacity.max(1));
    let (event_tx, event_rx) = mpsc::channel(config.event_capacity.max(1));
    let state = State {
        conn,
        epoch,
        writer: FrameWriter::new(config.write_timeout),
        close_timeout: config.engine.close_timeout,
        shared: Arc::clone(&shared),
        commands: command_rx,
        commands_open: true,
        events: event_tx,
        backlog: VecDeque::new(),
        ended: None,
        delivered: 0,
        close_held_since: None,
        close_released: false,
        stalled: None,
        refused: Unsent::default(),
        engine_queued: 0,
        read_closed: false,
        active_since_wait: false,
        read_size: config.read_buffer_size.max(512),
        read_buf: BurstBuffer::default(),
        timer: Box::pin(sleep_until(epoch)),
        timer_at: None,
    };
    ::tokio::spawn(Driver { stream, state }.run());
    let tx = Sender {
        commands: command_tx,
        shared: Arc::clone(&shared),
    };
    let rx = Receiver {
        events: event_rx,
        shared,
        consumed: 0,
        done: false,
    };
    Ok((tx, rx))
}

// ----- state shared between the task and the handles -----------------------------------------

#[derive(Default)]
struct Control {
    ping: Option<Bytes>,
    /// Code, reason, and whether queued data is dropped (`close_now`).
    close: Option<(u16, String, bool)>,
}

struct Shared {
    /// The engine's outbound budget, mirrored here so senders feel it before queueing.
    budget: usize,
    /// Data accepted from senders and not yet written, counted as for the engine's budget
    /// (`outbound::charge`): in the command channel plus in the engine's queue. Senders add;
    /// the task subtracts what the engine wrote or refused.
    reserved: AtomicUsize,
    /// OPEN, CLOSING (no more data accepted) or ENDED.
    state: AtomicU8,
    /// Wakes senders waiting for budget.
    room: Notify,
    /// Senders waiting on `room`; releases skip the notification (a lock) when there are none.
    /// SeqCst with `reserved`: a sender counts itself, then checks the budget; a release
    /// frees budget, then reads the count; one of the two always sees the other.
    room_waiters: AtomicUsize,
    /// Wakes the task: a control request, or the receiver waiting while a Close is held.
    wake: WakeSignal,
    control: Mutex<Control>,
    /// The task holds back the peer's Close until the application catches up.
    close_held: AtomicBool,
    /// `consumed + 1` when the receiver last found no event waiting (0: never).
    waiting_at: AtomicU64,
    stats: Mutex<Stats>,
    /// Events left when the task ended (the last is `Ended`), read after the channel.
    tail: Mutex<VecDeque<Event>>,
    /// Wakes [`Sender::closed`].
    ended: Notify,
}

impl Shared {
    fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Reserves budget for a message of `len` payload bytes, counted as the engine counts it.
    /// Like the engine, an empty queue takes any one message, so the engine never refuses what
    /// was reserved here.
    fn try_reserve(&self, len: usize) -> bool {
        let len = charge(len);
        let mut current = self.reserved.load(Ordering::SeqCst);
        loop {
            if current != 0 && current.saturating_add(len) > self.budget {
                return false;
            }
            match self.reserved.compare_exchange_weak(
                current,
                current + len,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self, len: usize) {
        if len > 0 {
            self.reserved.fetch_sub(len, Ordering::SeqCst);
            if self.room_waiters.load(Ordering::SeqCst) > 0 {
                self.room.notify_waiters();
            }
        }
    }

    fn close_sending(&self) {
        let _ = self
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A sender counted in `Shared::room_waiters` for as long as it waits (also when its future
/// is dropped mid-wait).
struct RoomWaiter<'a>(&'a Shared);

impl<'a> RoomWaiter<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.room_waiters.fetch_add(1, Ordering::SeqCst);
        RoomWaiter(shared)
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.0.room_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

// ----- the application's handles --------------------------------------------------------------

/// The sending half of a connection: cloneable, usable from any number of tasks. Dropping
/// every `Sender` and the [`Receiver`] closes the connection with 1000.
#[derive(Clone)]
pub struct Sender {
    commands: mpsc::Sender<Message>,
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("queued_bytes", &self.queued_bytes())
            .field("open", &self.shared.is_open())
            .finish()
    }
}

/// The message could not be sent: the connection is closing or has ended.
#[derive(Debug, Clone)]
pub struct Closed(pub Message);

impl core::fmt::Display for Closed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "connection is closing or ended; message of {} bytes handed back",
            self.0.len()
        )
    }
}

impl std::error::Error for Closed {}

/// Why [`Sender::try_send`] handed the message back.
#[derive(Debug, Clone)]
pub enum TrySendError {
    /// The outbound budget (or the command channel) is full: the peer is not keeping up.
    Full(Message),
    /// The connection is closing or has ended.
    Closed(Message),
}

impl TrySendError {
    /// The message handed back.
    pub fn into_inner(self) -> Message {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }
}

impl core::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrySendError::Full(m) => write!(
                f,
                "outbound queue full; message of {} bytes handed back",
                m.len()
            ),
            TrySendError::Closed(m) => Closed(m.clone()).fmt(f),
        }
    }
}

impl std::error::Error for TrySendError {}

impl Sender {
    /// Queues a message, waiting while the outbound budget is full.
    ///
    /// Cancel-safe: dropping the future before it completes leaves nothing queued and no
    /// budget taken.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Closed> {
        let message = message.into();
        if !self.shared.is_open() {
            return Err(Closed(message));
        }
        // A channel slot first (holds no budget while waiting), then the budget; the message
        // moves into the channel only in the same synchronous step that took the budget.
        let Ok(permit) = self.commands.reserve().await else {
            return Err(Closed(message));
        };
        let len = message.len();
        if self.shared.is_open() && self.shared.try_reserve(len) {
            // The common case: room now, no waiting (and no waiter registered, a lock).
            permit.send(message);
            return Ok(());
        }
        let _counted = RoomWaiter::new(&self.shared);
        loop {
            let room = self.shared.room.notified();
            let mut room = core::pin::pin!(room);
            // Registered before checking, so a release between the check and the wait is seen.
            room.as_mut().enable();
            if !self.shared.is_open() {
                return Err(Closed(message));
            }
            if self.shared.try_reserve(len) {
                permit.send(message);
                return Ok(());
            }
            room.await;
        }
    }

    /// Queues a message if the budget and the channel have room now; otherwise hands it back.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        let message = message.into();
        if !self.shared.is_open() {
            return Err(TrySendError::Closed(message));
        }
        let permit = match self.commands.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Err(TrySendError::Full(message)),
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(TrySendError::Closed(message))
            }
        };
        if !self.shared.try_reserve(message.len()) {
            return Err(TrySendError::Full(message));
        }
        permit.send(message);
        Ok(())
    }

    /// Sends a PING (at most 125 bytes). It overtakes queued data; a PING not yet started is
    /// replaced. Its PONG updates [`Stats::last_rtt`].
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        let payload = payload.into();
        if payload.len() > crate::frame::MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        if !self.shared.is_open() {
            return Err(SendError::Closing { payload });
        }
        lock(&self.shared.control).ping = Some(payload);
        self.shared.wake.raise();
        Ok(())
    }

    /// Starts the close handshake: the Close goes out behind every message this task sent
    /// before. No data is accepted afterwards. The connection ends when the peer answers, or
    /// at the close timeout. Closing again does nothing.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        let crate::CloseFrame { code, reason } = crate::CloseFrame::checked(code, reason)?;
        self.shared.close_sending();
        lock(&self.shared.control)
            .close
            .get_or_insert((code, reason, false));
        self.shared.wake.raise();
        Ok(())
    }

    /// Closes without waiting for queued data (see
    /// [`Connection::close_now`](crate::Connection::close_now)): messages not yet started are
    /// dropped and counted in the end report, and the Close goes out after the frame in flight.
    /// For a peer that has fallen too far behind. Overrides a pending [`close`](Self::close).
    pub fn close_now(&self, code: u16, reason: &str) -> Result<(), SendError> {
        let crate::CloseFrame { code, reason } = crate::CloseFrame::checked(code, reason)?;
        self.shared.close_sending();
        lock(&self.shared.control).close = Some((code, reason, true));
        self.shared.wake.raise();
        Ok(())
    }

    /// Data sent and not yet written (waiting in the channel or in the engine's queue),
    /// counted as for the budget: payload bytes and 64 per message.
    pub fn queued_bytes(&self) -> usize {
        self.shared.reserved.load(Ordering::Acquire)
    }

    /// The connection's counters, as of the task's last step.
    pub fn stats(&self) -> Stats {
        *lock(&self.shared.stats)
    }

    /// True once no more data is accepted (closing or ended).
    pub fn is_closed(&self) -> bool {
        !self.shared.is_open()
    }

    /// Waits until the connection has ended (or its task is gone, say with its runtime).
    /// Cancel-safe.
    pub async fn closed(&self) {
        loop {
            let ended = self.shared.ended.notified();
            let mut ended = core::pin::pin!(ended);
            ended.as_mut().enable();
            if self.shared.state.load(Ordering::Acquire) == ENDED {
                return;
            }
            ::tokio::select! {
                () = ended => {}
                () = self.commands.closed() => return,
            }
        }
    }
}

/// The receiving half of a connection: the peer's messages, PINGs, PONGs and Close, then
/// [`Event::Ended`] last, then `None`. ([`Event::Writable`] is the adapter's own and never
/// appears.)
pub struct Receiver {
    events: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    /// Events returned so far.
    consumed: u64,
    done: bool,
}

impl core::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("consumed", &self.consumed)
            .field("done", &self.done)
            .finish()
    }
}

impl Receiver {
    /// The next event; `None` after [`Event::Ended`]. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Event> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event; `Ready(None)` after [`Event::Ended`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.consumed += 1;
                Poll::Ready(Some(event))
            }
            Poll::Ready(None) => {
                // The task has ended: what it could not put in the channel, then `Ended`.
                let next = lock(&self.shared.tail).pop_front();
                if matches!(next, None | Some(Event::Ended(_))) {
                    self.done = true;
                }
                Poll::Ready(next)
            }
            Poll::Pending => {
                // Everything delivered so far has been taken and the application asks for
                // more: if the task holds the peer's Close, this is its moment. SeqCst pairs
                // with the task's store of `close_held` and load of `waiting_at`: one of the
                // two sides always sees the other.
                self.shared
                    .waiting_at
                    .store(self.consumed + 1, Ordering::SeqCst);
                if self.shared.close_held.load(Ordering::SeqCst) {
                    self.shared.wake.raise();
                }
                Poll::Pending
            }
        }
    }

    /// The connection's counters, as of the task's last step.
    pub fn stats(&self) -> Stats {
        *lock(&self.shared.stats)
    }
}

/// The same events as [`Receiver::recv`], for stream combinators (`StreamExt` and friends):
/// ends after [`Event::Ended`].
impl futures_core::Stream for Receiver {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // The task stops holding back a Close for nobody, and closes if no Sender is left.
        self.shared.wake.raise();
    }
}

// ----- the task -------------------------------------------------------------------------------

/// What woke the task.
enum Woke {
    Timer,
    /// A blocked write went on (it is in the engine).
    Wrote,
    /// A read brought something (it is in the engine).
    Read(ReadOutcome),
    Command(Option<Message>),
    /// Anything handled at the top of the loop (control requests, the receiver waiting, an
    /// event delivered).
    Nudge,
}

/// The connection's task: the stream, and everything else in [`State`], whose code does not
/// depend on the stream's type, so it is compiled once in this crate rather than once per
/// stream type in the application's (measured: 52 fewer instructions per echo round trip than
/// the whole task generic, callgrind).
struct Driver<S> {
    stream: S,
    state: State,
}

/// The task's state apart from the stream.
struct State {
    conn: Connection,
    /// The engine's epoch: `Instant::ZERO` is this moment.
    epoch: TokioInstant,
    writer: FrameWriter,
    close_timeout: Duration,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Message>,
    commands_open: bool,
    events: mpsc::Sender<Event>,
    /// Events taken from the engine that the channel had no room for yet. While any wait, the
    /// socket is not read.
    backlog: VecDeque<Event>,
    ended: Option<Ended>,
    /// Events put into the channel so far.
    delivered: u64,
    /// Since when the peer's Close has been left in the engine, waiting for the application
    /// to catch up (see the module docs).
    close_held_since: Option<TokioInstant>,
    /// The application caught up (or the wait is over): the Close may be taken.
    close_released: bool,
    /// A message the engine refused for backpressure (the budget mirror should prevent it).
    stalled: Option<Message>,
    /// Messages that reached the task after no more data could be sent.
    refused: Unsent,
    /// The engine's queued data as last seen, counted as for the budget
    /// (`Connection::outbound_charge`), to release budget as it is written.
    engine_queued: usize,
    read_closed: bool,
    /// The last wait ended with input or a command: the next sleep only trims the engine's
    /// memory (`Connection::trim_memory`); a sleep after a quiet wake (a timer, a nudge)
    /// releases all it can.
    active_since_wait: bool,
    /// The most bytes one read takes (`IoConfig::read_buffer_size`).
    read_size: usize,
    /// Where reads land during a burst of input; empty while the connection waits for input
    /// (see `read_into`).
    read_buf: BurstBuffer,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<TokioInstant>,
}

impl State {
    fn now(&self) -> Instant {
        engine_now(self.epoch)
    }

    /// The earliest of the engine's next timer, the write deadline and the held Close's
    /// deadline. A timer already armed earlier is kept: firing early is harmless (the engine
    /// acts only on what is due), and it saves re-arming on every step.
    fn arm_timer(&mut self) {
        let write = self.writer.deadline(&self.conn);
        let held = self
            .close_held_since
            .map(|since| since + self.close_timeout);
        let next = next_deadline(&self.conn, self.epoch, write, held);
        match next {
            None => self.timer_at = None,
            Some(at) => {
                if self.timer_at.is_none_or(|armed| armed > at) {
                    self.timer.as_mut().reset(at);
                    self.timer_at = Some(at);
                }
            }
        }
    }

    /// A write deadline that passed is acted on by the next `write`: it tries once more, and
    /// ends the connection if the frame is still stuck.
    fn on_timer(&mut self) {
        let now = self.now();
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
    }

    /// Lets the held Close through once the application has caught up, nobody receives, or
    /// the close timeout passed. Returns whether it did.
    fn release_close(&mut self) -> bool {
        let Some(since) = self.close_held_since else {
            return false;
        };
        let overdue = TokioInstant::now() >= since + self.close_timeout;
        let caught_up = self.backlog.is_empty()
            && self.shared.waiting_at.load(Ordering::SeqCst) == self.delivered + 1;
        // Once we closed (or failed), the peer's Close is an answer, not something to echo.
        let answer = !self.conn.can_send();
        if !(overdue || caught_up || answer || self.events.is_closed()) {
            return false;
        }
        // The replies the application sent before asking for more are in the channel now:
        // queue them before the engine is given the go-ahead to echo.
        self.take_commands();
        if self.stalled.is_some() && !overdue && !answer {
            return false;
        }
        self.close_held_since = None;
        self.close_released = true;
        self.shared.close_held.store(false, Ordering::SeqCst);
        true
    }

    /// Acts on ping and close requests from the handles.
    fn take_control(&mut self) {
        let (ping, close) = {
            let mut control = lock(&self.shared.control);
            (control.ping.take(), control.close.take())
        };
        if ping.is_some() || close.is_some() {
            // `ping` and `close` take no time: they stamp the PING and start the close
            // timeout at the engine's clock, which has stood still since its last input.
            // Bring it to now first (this fires only timers that are due anyway).
            let now = self.now();
            self.conn.handle_timeout(now);
        }
        if let Some(payload) = ping {
            // Refused only when closing, which the handle reports itself.
            let _ = self.conn.ping(payload);
        }
        if let Some((code, reason, now)) = close {
            if now {
                let _ = self.conn.close_now(code, &reason);
            } else {
                // Data sent before the close goes first.
                self.take_commands();
                if self.stalled.is_some() {
                    lock(&self.shared.control).close = Some((code, reason, false));
                } else {
                    let _ = self.conn.close(code, &reason);
                }
            }
        }
        if !self.commands_open && self.events.is_closed() && self.conn.can_send() {
            // Nobody can send or receive any more: close normally.
            let now = self.now();
            self.conn.handle_timeout(now);
            let _ = self.conn.close(crate::close::NORMAL, "");
        }
    }

    /// Moves the messages waiting in the channel into the engine, without waiting.
    fn take_commands(&mut self) {
        let mut budget = self.commands.max_capacity();
        while self.stalled.is_none() && budget > 0 {
            match self.commands.try_recv() {
                Ok(message) => self.queue(message),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.commands_open = false;
                    break;
                }
            }
            budget -= 1;
        }
    }

    fn queue(&mut self, message: Message) {
        let len = message.len();
        match queue_message(&mut self.conn, message) {
            Ok(()) => self.engine_queued += charge(len),
            Err((message, SendError::Backpressure { .. })) => self.stalled = Some(message),
            Err(_) => {
                // No more data may be sent: the message is counted as unsent at the end.
                self.shared.release(charge(len));
                self.refused.messages += 1;
                self.refused.bytes += len;
            }
        }
    }

    /// Takes every engine event to the application: into the channel while it has room and
    /// nothing waits before them, else into the backlog, which goes first next time.
    fn pump_events(&mut self) {
        self.drain_backlog();
        loop {
            // Taking the peer's Close queues its echo: leave it in the engine until the
            // application has caught up with the events before it (module docs).
            if matches!(self.conn.peek_event(), Some(Event::Close(_)))
                && self.conn.can_send()
                && !self.close_released
            {
                if self.close_held_since.is_none() {
                    self.close_held_since = Some(TokioInstant::now());
                    self.shared.close_held.store(true, Ordering::SeqCst);
                }
                break;
            }
            let Some(event) = self.conn.poll_event() else {
                break;
            };
            match event {
                Event::Writable => {
                    if let Some(message) = self.stalled.take() {
                        self.queue(message);
                    }
                }
                Event::Ended(ended) => self.ended = Some(*ended),
                event => self.deliver(event),
            }
        }
    }

    /// Hands one event to the application, in order behind the backlog (performance: with
    /// the channel keeping up, the usual case, an event never passes through the backlog,
    /// which saves a push, a pop and, since `wait` frees an empty backlog, an allocation).
    fn deliver(&mut self, event: Event) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => self.delivered += 1,
            Err(mpsc::error::TrySendError::Full(event)) => self.backlog.push_back(event),
            // Nobody receives any more.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Moves what fits of the backlog into the event channel.
    fn drain_backlog(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => self.delivered += 1,
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
    }

    /// Releases the budget of what the engine wrote (or dropped), and marks the handles
    /// closed once no more data can be sent.
    fn sync_budget(&mut self) {
        let queued = self.conn.outbound_charge();
        if queued < self.engine_queued {
            self.shared.release(self.engine_queued - queued);
        }
        self.engine_queued = queued;
        if !self.conn.can_send() {
            self.shared.close_sending();
        }
    }

    /// Hands the end to the handles: the unsent count, the events still waiting and `Ended`
    /// into the tail, the budget released, every waiter woken. Returns how to close the stream;
    /// `None` if the connection has not ended.
    fn publish_end(&mut self) -> Option<Teardown> {
        let mut ended = self.ended.take()?;
        // Whatever never reached the engine was not sent either.
        self.commands.close();
        let mut unsent = self.refused;
        let mut count = |message: &Message| {
            unsent.messages += 1;
            unsent.bytes += message.len();
        };
        if let Some(message) = self.stalled.take() {
            count(&message);
        }
        while let Ok(message) = self.commands.try_recv() {
            count(&message);
        }
        ended.unsent.messages += unsent.messages;
        ended.unsent.bytes += unsent.bytes;
        let teardown = Teardown::for_end(self.conn.role(), &ended.reason);
        *lock(&self.shared.stats) = self.conn.stats();
        {
            let mut tail = lock(&self.shared.tail);
            tail.extend(self.backlog.drain(..));
            tail.push_back(Event::Ended(Box::new(ended)));
        }
        self.shared.state.store(ENDED, Ordering::Release);
        self.shared.reserved.store(0, Ordering::Release);
        self.shared.room.notify_waiters();
        self.shared.ended.notify_waiters();
        Some(teardown)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Driver<S> {
    // Not an `async fn`: its argument would be stored in the task twice (once as the
    // argument, once as the binding), 1.6 KiB more per connection. The block captures `self`
    // once and uses it in place (measured: 3 800 bytes as an `async fn`, 2 192 as this).
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl core::future::Future<Output = ()> {
        async move {
            loop {
                self.state.take_control();
                self.state.take_commands();
                self.state.pump_events();
                if self.state.ended.is_none() && self.state.release_close() {
                    continue;
                }
                if self.state.ended.is_none() {
                    // Polled here for the task's own waker, which a write that has to wait
                    // leaves with the stream.
                    poll_fn(|cx| {
                        self.write(cx);
                        Poll::Ready(())
                    })
                    .await;
                    self.state.pump_events();
                }
                self.state.sync_budget();
                *lock(&self.state.shared.stats) = self.state.conn.stats();
                if self.state.ended.is_some() {
                    break;
                }
                self.wait().await;
            }
            // Boxed: the teardown's state (a second copy of the driver, the drain buffer and its
            // timer) would otherwise be part of every connection's task for its whole life.
            Box::pin(self.finish()).await;
        }
    }

    /// Sleeps until something needs the task: input, room to write, room in the event
    /// channel, a command, a control request, or a timer.
    async fn wait(&mut self) {
        let can_read = self.state.backlog.is_empty()
            && self.state.close_held_since.is_none()
            && !self.state.read_closed;
        let want_write = self.state.writer.blocked;
        let take_commands = self.state.commands_open && self.state.stalled.is_none();
        self.state.arm_timer();
        let timer_armed = self.state.timer_at.is_some();
        // The application is behind: also wait for room in the event channel. Tokio's `Sender`
        // has no poll form; the reservation is boxed, in this less common case, rather than
        // a `select!` whose futures would be part of every connection's task.
        let mut room = (!self.state.backlog.is_empty())
            .then(|| Box::pin(self.state.events.clone().reserve_owned()));
        if room.is_none() && self.state.backlog.capacity() > 0 {
            // The application caught up: the backlog's storage is not needed while waiting.
            self.state.backlog = VecDeque::new();
        }
        // Polled in place, not a `select!` over futures made and dropped on every wait
        // (performance: measured at about 1 300 instructions per wait, the largest cost of a
        // small message through the adapter). Same priorities as listed.
        let mut idle_released = false;
        let woke = poll_fn(|cx| {
            if timer_armed && self.state.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Timer);
            }
            if want_write {
                let queued = self.state.conn.queued_bytes();
                if !self.write(cx) || self.state.conn.queued_bytes() != queued {
                    return Poll::Ready(Woke::Wrote);
                }
            }
            if can_read && may_read(&self.stream, cx) {
                let state = &mut self.state;
                let outcome = read_into(
                    &mut self.stream,
                    cx,
                    &mut state.conn,
                    state.epoch,
                    state.read_size,
                    &mut state.read_buf,
                );
                if let Poll::Ready(outcome) = outcome {
                    return Poll::Ready(Woke::Read(outcome));
                }
            }
            if take_commands {
                if let Poll::Ready(message) = self.state.commands.poll_recv(cx) {
                    return Poll::Ready(Woke::Command(message));
                }
            }
            if self.state.shared.wake.poll(cx).is_ready() {
                return Poll::Ready(Woke::Nudge);
            }
            if let Some(permit) = room.as_mut().and_then(|room| match room.as_mut().poll(cx) {
                Poll::Ready(permit) => Some(permit),
                Poll::Pending => None,
            }) {
                match permit {
                    Ok(permit) => {
                        if let Some(event) = self.state.backlog.pop_front() {
                            permit.send(event);
                            self.state.delivered += 1;
                        }
                    }
                    // Nobody receives any more.
                    Err(_) => self.state.backlog.clear(),
                }
                return Poll::Ready(Woke::Nudge);
            }
            if !idle_released {
                // The task is about to sleep: what a waiting connection need not hold goes,
                // except, while it is busy, the small queues the next message reuses.
                idle_released = true;
                if core::mem::take(&mut self.state.active_since_wait) {
                    self.state.conn.trim_memory();
                } else {
                    self.state.conn.release_idle_memory();
                }
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Timer => {
                self.state.timer_at = None;
                self.state.on_timer();
            }
            Woke::Wrote => {}
            Woke::Read(ReadOutcome::Data) => self.state.active_since_wait = true,
            Woke::Read(ReadOutcome::Closed) => self.state.read_closed = true,
            Woke::Command(Some(message)) => {
                self.state.active_since_wait = true;
                self.state.queue(message)
            }
            Woke::Command(None) => self.state.commands_open = false,
            Woke::Nudge => {}
        }
    }

    /// Writes and flushes what the stream takes now (see [`FrameWriter::write`]); true when
    /// it has to wait for the stream (with `cx` registered).
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        self.state
            .writer
            .write(&mut self.stream, cx, &mut self.state.conn, self.state.epoch)
    }

    /// Publishes the end, then closes the socket as section 7.1.1 asks.
    async fn finish(self) {
        let Driver {
            mut stream,
            mut state,
        } = self;
        let Some(teardown) = state.publish_end() else {
            return;
        };
        let State {
            events,
            close_timeout,
            mut writer,
            ..
        } = state;
        // The receiver sees the end of the channel, then the tail.
        drop(events);
        let until = TokioInstant::now() + close_timeout;
        if teardown != Teardown::Abort {
            // What was written (the Close among it) is flushed before the stream is shut
            // down or waited on.
            let _ = timeout_at(until, poll_fn(|cx| writer.poll_flushed(&mut stream, cx))).await;
        }
        match teardown {
            Teardown::Abort => {}
            Teardown::ServerLinger => {
                let _ = timeout_at(until, poll_fn(|cx| poll_shutdown_write(&mut stream, cx))).await;
                let _ = timeout_at(until, poll_fn(|cx| poll_drain(&mut stream, cx))).await;
            }
            Teardown::ClientWait => {
                let _ = timeout_at(until, poll_fn(|cx| poll_drain(&mut stream, cx))).await;
            }
        }
    }
}
