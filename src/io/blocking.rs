//! The blocking adapter: one [`WebSocket`] over a [`TcpStream`], driven by the thread that
//! calls it.
//!
//! [`WebSocket::read`] is the loop of the [adapter contract](crate#the-contract-for-io-adapters):
//! it writes what is queued (each frame under its own write deadline), sleeps in `read` no
//! longer than the engine's next timer (`set_read_timeout`), fires the timers (keepalive PING,
//! idle timeout, close timeout) and returns the next event. Sends queue on the engine and write
//! before they return. A thread that is blocked writing is not reading: keep frames moving in
//! both directions by calling `read` regularly.
//!
//! ```no_run
//! use wsframe::io::{blocking::WebSocket, IoConfig};
//! use wsframe::Event;
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
//! let (stream, _) = listener.accept()?;
//! let mut ws = WebSocket::accept(stream, IoConfig::default())?;
//! while let Some(event) = ws.read() {
//!     match event {
//!         Event::Text(text) => ws.send(text)?,
//!         Event::Binary(bytes) => ws.send(bytes)?,
//!         Event::Ended(ended) => eprintln!("ended: {ended}"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::Instant as StdInstant;

use super::{io_detail, queue_message, start_engine, Answer, Error, IoConfig, Message, Teardown};
use crate::handshake;
use crate::{Connection, Event, Instant, Role, SendError, Stats, TransportError};

/// How often a thread blocked in [`WebSocket::read`] looks for a request from a [`Closer`],
/// once one exists. Without a `Closer` the read sleeps until the engine's next timer.
pub const CLOSER_POLL: Duration = Duration::from_millis(20);

/// At most this many slices (about a dozen frames) go into one vectored write.
const WRITE_SLICES: usize = 32;
/// At most about this many bytes are committed for one vectored write: frames committed to a
/// write can no longer be overtaken by a PONG, so keep it to a few fragments.
const WRITE_BYTES: usize = 64 << 10;

/// A WebSocket connection over a blocking [`TcpStream`].
#[derive(Debug)]
pub struct WebSocket {
    stream: TcpStream,
    conn: Connection,
    /// The engine's epoch: `Instant::ZERO` is this moment.
    epoch: StdInstant,
    write_timeout: Duration,
    read_buf: Vec<u8>,
    /// The deadline of the frame being written; `None` when no frame is in progress.
    write_deadline: Option<StdInstant>,
    /// What `SO_RCVTIMEO` / `SO_SNDTIMEO` are set to, to skip redundant system calls.
    read_timeout_set: Option<Duration>,
    write_timeout_set: Option<Duration>,
    close_request: Arc<Mutex<Option<(u16, String)>>>,
    /// How to close the socket, once `Ended` was handed out.
    teardown: Option<Teardown>,
    finished: bool,
}

impl WebSocket {
    /// Performs the server side of the opening handshake on `stream`, accepting any valid
    /// request (no subprotocol), and returns the connection.
    pub fn accept(stream: TcpStream, config: IoConfig) -> Result<WebSocket, Error> {
        Self::accept_with(stream, config, |_| Ok(handshake::Accept::new())).map(|(ws, _)| ws)
    }

    /// Performs the server side of the opening handshake, letting `decide` look at the
    /// request (path, Origin, subprotocols) first: `Ok(accept)` answers 101 (with the chosen
    /// subprotocol and headers), `Err(rejection)` writes that HTTP response and fails with
    /// [`Error::Rejected`]. An invalid request is refused the same way without asking.
    /// Returns the connection and the request.
    pub fn accept_with<F>(
        mut stream: TcpStream,
        config: IoConfig,
        decide: F,
    ) -> Result<(WebSocket, handshake::Request), Error>
    where
        F: FnOnce(&handshake::Request) -> Result<handshake::Accept, handshake::Rejection>,
    {
        let deadline = StdInstant::now() + config.handshake_timeout;
        let mut server = handshake::ServerHandshake::new(handshake::HandshakeLimits::default());
        let mut buf = alloc::vec![0u8; 4096];
        let request = loop {
            let n = read_before(&mut stream, &mut buf, deadline)?;
            match server.receive(&buf[..n]) {
                Ok(handshake::ServerStatus::Partial) => {}
                Ok(handshake::ServerStatus::Complete(request)) => break request,
                Err(rejection) => {
                    refuse(&mut stream, rejection.response(), deadline);
                    return Err(Error::Rejected(rejection));
                }
            }
        };
        match super::answer(&request, decide) {
            Answer::Accept(response) => write_before(&mut stream, &response, deadline)?,
            Answer::Refuse(response, error) => {
                refuse(&mut stream, &response, deadline);
                return Err(error);
            }
        }
        let ws = WebSocket::new(stream, Role::Server, config, request.leftover())?;
        Ok((ws, request))
    }

    /// Connects to a `ws://` URL over TCP and performs the client side of the opening
    /// handshake. A `wss://` URL fails with
    /// [`RequestError::Tls`](handshake::RequestError::Tls): this adapter has no TLS.
    pub fn connect(url: &str, config: IoConfig) -> Result<WebSocket, Error> {
        Self::connect_with(url, handshake::ClientOptions::new(), config).map(|(ws, _)| ws)
    }

    /// Like [`connect`](Self::connect), with request options (subprotocols, headers); returns
    /// the server's response too.
    pub fn connect_with(
        url: &str,
        options: handshake::ClientOptions,
        config: IoConfig,
    ) -> Result<(WebSocket, handshake::Response), Error> {
        let deadline = StdInstant::now() + config.handshake_timeout;
        let (mut client, request) =
            handshake::ClientHandshake::new(url, options, &mut crate::random::OsRandom)
                .map_err(Error::Request)?;
        let target = client.target();
        if target.is_secure() {
            return Err(Error::Request(handshake::RequestError::Tls));
        }
        let mut stream = connect_before((target.host(), target.port()), deadline)?;
        write_before(&mut stream, &request, deadline)?;
        let mut buf = alloc::vec![0u8; 4096];
        let response = loop {
            let n = read_before(&mut stream, &mut buf, deadline)?;
            match client.receive(&buf[..n]).map_err(Error::Handshake)? {
                handshake::ClientStatus::Partial => {}
                handshake::ClientStatus::Complete(response) => break response,
            }
        };
        let ws = WebSocket::new(stream, Role::Client, config, response.leftover())?;
        Ok((ws, response))
    }

    /// Wraps a stream whose opening handshake is already done. `leftover` are the bytes read
    /// past the end of the handshake (the first frames).
    pub fn new(
        stream: TcpStream,
        role: Role,
        config: IoConfig,
        leftover: &[u8],
    ) -> io::Result<WebSocket> {
        // Frames are small and latency matters more than packet count.
        stream.set_nodelay(true)?;
        // Start from known socket timeouts (the handshake may have left its own).
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        let epoch = StdInstant::now();
        let conn = start_engine(role, &config.engine, leftover);
        Ok(WebSocket {
            stream,
            conn,
            epoch,
            write_timeout: config.write_timeout,
            read_buf: alloc::vec![0; config.read_buffer_size.max(512)],
            write_deadline: None,
            read_timeout_set: None,
            write_timeout_set: None,
            close_request: Arc::new(Mutex::new(None)),
            teardown: None,
            finished: false,
        })
    }

    fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed())
    }

    /// The next event: a message, a PING or PONG from the peer, the peer's Close, and last
    /// [`Event::Ended`]. Blocks until one arrives, writing what is queued and firing the
    /// engine's timers meanwhile. Returns `None` after `Ended` (the first such call closes the
    /// socket as section 7.1.1 asks, waiting at most the close timeout for the peer).
    ///
    /// Taking the peer's Close is what queues the echo (behind everything sent before), and
    /// the next call writes it: keep calling until `None`.
    pub fn read(&mut self) -> Option<Event> {
        loop {
            self.take_close_request();
            if let Some(event) = self.next_event() {
                return Some(event);
            }
            if self.conn.is_ended() {
                self.finish();
                return None;
            }
            self.flush();
            if let Some(event) = self.next_event() {
                return Some(event);
            }
            if !self.conn.is_ended() {
                self.wait_for_input();
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

    /// Sleeps in `read` until input arrives or the engine's next timer is due.
    fn wait_for_input(&mut self) {
        let now = self.now();
        let due = self.conn.poll_timeout();
        if due.is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
            return;
        }
        let mut wait = due.map(|t| t - now);
        if Arc::strong_count(&self.close_request) > 1 {
            wait = Some(wait.map_or(CLOSER_POLL, |w| w.min(CLOSER_POLL)));
        }
        if let Err(e) = self.arm_read_timeout(wait) {
            let now = self.now();
            self.conn
                .transport_failed(now, TransportError::Io(io_detail("set_read_timeout", &e)));
            return;
        }
        let result = self.stream.read(&mut self.read_buf);
        let now = self.now();
        match result {
            Ok(0) => self.conn.transport_closed(now),
            Ok(n) => {
                // A protocol error is the engine's to report: it queued the Close and will end
                // the connection with the reason.
                let _ = self.conn.receive(now, &self.read_buf[..n]);
            }
            Err(e) if is_timeout(&e) => self.conn.handle_timeout(now),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self
                .conn
                .transport_failed(now, TransportError::Io(io_detail("read", &e))),
        }
    }

    /// Sets `SO_RCVTIMEO` so the next read returns by `wait`. A shorter value already set is
    /// kept (an early return is harmless), which saves a system call per read.
    fn arm_read_timeout(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let want = wait.map(|w| w.max(Duration::from_millis(1)));
        let keep = match (self.read_timeout_set, want) {
            (None, None) => true,
            (Some(set), Some(want)) => set <= want && set >= want / 2,
            _ => false,
        };
        if !keep {
            self.stream.set_read_timeout(want)?;
            self.read_timeout_set = want;
        }
        Ok(())
    }

    /// Writes everything queued, each frame under a fresh write deadline. A frame that misses
    /// its deadline ends the connection with a write timeout; a write error ends it as
    /// abnormal. Either way the end arrives as [`Event::Ended`] from [`read`](Self::read).
    pub fn flush(&mut self) {
        while !self.conn.is_transmit_idle() {
            let now = StdInstant::now();
            // A frame starts: it gets the whole write timeout, however long we were idle.
            let deadline = *self.write_deadline.get_or_insert(now + self.write_timeout);
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                let now = self.now();
                self.conn
                    .transport_failed(now, TransportError::WriteTimeout);
                break;
            }
            // SO_SNDTIMEO bounds each write call; the frame's deadline is enforced above, so a
            // shorter timeout already set is fine (the loop just comes back here).
            let keep = self
                .write_timeout_set
                .is_some_and(|set| set <= left && set >= left / 2);
            if !keep {
                let timeout = left.max(Duration::from_millis(1));
                if let Err(e) = self.stream.set_write_timeout(Some(timeout)) {
                    let now = self.now();
                    self.conn.transport_failed(
                        now,
                        TransportError::Io(io_detail("set_write_timeout", &e)),
                    );
                    break;
                }
                self.write_timeout_set = Some(timeout);
            }
            let mut chunks: [&[u8]; WRITE_SLICES] = [&[]; WRITE_SLICES];
            let n = self.conn.transmit_chunks(&mut chunks, WRITE_BYTES);
            let slices: [IoSlice<'_>; WRITE_SLICES] =
                core::array::from_fn(|i| IoSlice::new(chunks[i]));
            let result = (&self.stream).write_vectored(&slices[..n]);
            match result {
                Ok(0) => {
                    let now = self.now();
                    self.conn.transport_failed(
                        now,
                        TransportError::Io(String::from("write: connection accepted no bytes")),
                    );
                    break;
                }
                Ok(written) => {
                    // Report the count at once: the engine hands out the rest of this frame
                    // next, and a completed frame means the next one gets a fresh deadline.
                    if self.conn.advance_transmit(written) > 0 {
                        self.write_deadline = None;
                    }
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let now = self.now();
                    self.conn
                        .transport_failed(now, TransportError::Io(io_detail("write", &e)));
                    break;
                }
            }
        }
        if self.conn.is_transmit_idle() {
            self.write_deadline = None;
        }
    }

    /// Brings the engine's clock to now and fires the timers that are due. Sends call this:
    /// `ping` and `close` take no time (they stamp the PING and start the close timeout at the
    /// engine's clock, which stands still between inputs), and a thread that only sends still
    /// keeps the keepalive and the close timeout.
    fn fire_due_timers(&mut self) {
        let now = self.now();
        self.conn.handle_timeout(now);
    }

    /// Queues a message and writes it (and everything queued before it).
    ///
    /// Fails only when no more data may be sent (we or the peer closed, or the connection
    /// ended), handing the payload back. A write failure is not an error here: it ends the
    /// connection, reported by [`read`](Self::read).
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        self.feed(message)?;
        self.flush();
        Ok(())
    }

    /// Queues a message without writing it, unless the outbound budget is full: then it
    /// writes (blocking, under the write deadlines) until the message fits. Call
    /// [`flush`](Self::flush) (or [`send`](Self::send), or [`read`](Self::read)) to write.
    pub fn feed(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        self.fire_due_timers();
        let mut message = message.into();
        loop {
            match queue_message(&mut self.conn, message) {
                Ok(()) => return Ok(()),
                Err((refused, SendError::Backpressure { .. })) if !self.conn.is_ended() => {
                    // Writing everything empties the queue, and an empty queue takes any
                    // message; if writing fails instead, the next try says `Closing`.
                    self.flush();
                    message = refused;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// Sends a PING (at most 125 bytes); its PONG updates [`Stats::last_rtt`].
    pub fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.fire_due_timers();
        self.conn.ping(payload)?;
        self.flush();
        Ok(())
    }

    /// Starts the close handshake: the Close goes out behind everything queued. Keep calling
    /// [`read`](Self::read) until it returns `None` to finish the handshake.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        self.fire_due_timers();
        self.conn.close(code, reason)?;
        self.flush();
        Ok(())
    }

    /// A handle another thread can use to close this connection (say, at shutdown). While one
    /// exists, [`read`](Self::read) wakes every [`CLOSER_POLL`] to look for its request.
    pub fn closer(&self) -> Closer {
        Closer {
            request: Arc::clone(&self.close_request),
        }
    }

    fn take_close_request(&mut self) {
        let request = match self.close_request.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some((code, reason)) = request {
            self.fire_due_timers();
            // Validated by the Closer; closing twice does nothing.
            let _ = self.conn.close(code, &reason);
        }
    }

    /// Closes the socket after the end, as section 7.1.1 asks (see the [module docs](super)).
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let until = StdInstant::now() + self.conn.config().close_timeout;
        match self.teardown.unwrap_or(Teardown::Abort) {
            Teardown::Abort => {
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            Teardown::ServerLinger => {
                let _ = self.stream.shutdown(Shutdown::Write);
                self.drain_until_eof(until);
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            Teardown::ClientWait => {
                self.drain_until_eof(until);
                let _ = self.stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Reads and discards until the peer closes, an error, or `until`.
    fn drain_until_eof(&mut self, until: StdInstant) {
        loop {
            let left = until.saturating_duration_since(StdInstant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Counters: bytes and frames in and out, queued bytes, last PING round trip.
    pub fn stats(&self) -> Stats {
        self.conn.stats()
    }

    /// The engine, for inspection (`queued_bytes`, `can_send`, `is_ended`, ...).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The socket, for inspection (addresses). Reading or writing it directly would corrupt
    /// the stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

/// A handle that asks a [`WebSocket`] owned by another thread to close, for example with
/// 1001 at shutdown. The owning thread acts on it within [`CLOSER_POLL`].
#[derive(Debug, Clone)]
pub struct Closer {
    request: Arc<Mutex<Option<(u16, String)>>>,
}

impl Closer {
    /// Asks for a close handshake with this code and reason. The first request wins; the
    /// code and reason are checked here.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        let crate::CloseFrame { code, reason } = crate::CloseFrame::checked(code, reason)?;
        let mut slot = match self.request.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        slot.get_or_insert((code, reason));
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One read for the handshake, bounded by `deadline`.
fn read_before(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: StdInstant,
) -> Result<usize, Error> {
    loop {
        let left = deadline.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            return Err(Error::HandshakeTimeout);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(0) => return Err(Error::HandshakeEof),
            Ok(n) => return Ok(n),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

/// Writes all of `bytes` for the handshake, bounded by `deadline`.
fn write_before(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    deadline: StdInstant,
) -> Result<(), Error> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            return Err(Error::HandshakeTimeout);
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(())
}

/// Writes a refusal and closes our side, best effort: the peer is refused either way.
fn refuse(stream: &mut TcpStream, response: &[u8], deadline: StdInstant) {
    if write_before(stream, response, deadline).is_ok() {
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// Connects to `(host, port)`, trying each resolved address, bounded by `deadline`.
fn connect_before(host_port: (&str, u16), deadline: StdInstant) -> Result<TcpStream, Error> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in host_port.to_socket_addrs()? {
        let left = deadline.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            return Err(Error::HandshakeTimeout);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
    })))
}
