//! `differential`: the same bytes from a peer, read by a wsframe engine and by tungstenite, must
//! give the same messages, PINGs, PONGs and Close, and fail (or not) alike.
//!
//! Input layout: 1 control byte (role, limits, how tungstenite's reads are cut), then the bytes
//! "received from the peer". wsframe takes them in one `receive`; tungstenite reads them
//! through an in-memory stream that says `WouldBlock` once they run out. Both stop at the
//! first Close or failure.
//!
//! wsframe judges a frame from its header, and text as it arrives (section 8.1 fail-fast);
//! tungstenite once the frame is whole. So when wsframe failed on bytes tungstenite is still
//! waiting on, the harness finishes the frame for tungstenite (zero bytes, one at a time) and
//! holds it to its first verdict: the same failure, with the same code.
//!
//! Beyond that they may differ only where wsframe documents why (each case is a function
//! below):
//!
//! * a Close whose reason is not UTF-8: wsframe answers 1002 (its brief; Autobahn 7.5.1 takes
//!   either), tungstenite 1007;
//! * a frame over a size limit that also breaks another rule: each reader reports the rule
//!   it checks first;
//! * tungstenite does not know close code 1014 (registered by IANA after RFC 6455) and
//!   answers a Close carrying it as it answers an invalid code; wsframe accepts it;
//! * for a Close with a code no endpoint may send, tungstenite hands the application a Close
//!   it made up (1002, "Protocol violation") where wsframe fails the connection with 1002:
//!   the peer gets the same answer (if the reason is not UTF-8 either, tungstenite fails it
//!   for that, 1007).
//!
//! Limits: the frame limit is never above the message limit, and at least 125 bytes, so that
//! which of two broken rules a frame is failed for cannot differ (tungstenite checks a single
//! frame's message limit only once it is complete).

use std::io::{self, Read, Write};

use wsframe::{
    close::CloseBodyError, Config, Connection, Delivery, EndReason, Event, Instant, ReceiveError,
    Violation,
};

pub use super::frame_parse::Logical;
use super::wire::Rng;

/// How reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte taken; waiting for more.
    Waiting,
    /// The peer's Close was read.
    Closed,
    /// The connection was failed, with the close code sent.
    Failed(u16),
    /// wsframe failed the connection (1002) for a Close carrying this code, which no endpoint
    /// may send.
    FailedOnCloseCode(u16),
    /// wsframe failed the connection (1002) for a Close whose reason is not UTF-8.
    FailedOnCloseReason,
}

pub type Outcome = (Vec<Logical>, End);

pub fn run(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let server = ctl & 1 == 0;
    let (frame_limit, message_limit) =
        [(125, 125), (200, 1000), (1024, 4096), (64 << 10, 16 << 20)][((ctl >> 1) & 3) as usize];
    let read_max = [1usize, 7, 512, 1 << 20][((ctl >> 3) & 3) as usize];
    let ours = read_wsframe(input, server, frame_limit, message_limit);
    let mut tungstenite = Tungstenite::new(server, frame_limit, message_limit, read_max, ctl);
    let mut end = tungstenite.read(input);
    if ours.1 != End::Waiting && ours.1 != End::Closed && end == End::Waiting {
        // wsframe failed the connection on bytes tungstenite has not judged yet: it checks a
        // frame once the frame is whole (wsframe from the header, and UTF-8 as it arrives).
        // Finish the frame for it, one zero byte at a time, and hold it to the first verdict.
        let most = frame_limit as usize + 14;
        for _ in 0..most {
            end = tungstenite.read(&[0]);
            if end != End::Waiting {
                break;
            }
        }
    }
    let theirs = tungstenite.outcome(end);
    if !agree(input, server, &ours, &theirs) {
        panic!(
            "wsframe and tungstenite disagree ({} role, limits {frame_limit}/{message_limit}):\n  \
             wsframe:     {:?}\n  tungstenite: {:?}",
            if server { "server" } else { "client" },
            ours,
            theirs
        );
    }
}

pub fn read_wsframe(input: &[u8], server: bool, frame_limit: u64, message_limit: u64) -> Outcome {
    let config = Config {
        max_frame_size: frame_limit,
        max_message_size: message_limit,
        ping_interval: None,
        idle_timeout: None,
        delivery: Delivery::Messages,
        ..Config::default()
    };
    let mut conn = if server {
        Connection::server(config, Instant::ZERO)
    } else {
        let mut rng = Rng::new(1);
        let random = move |buf: &mut [u8]| buf.fill_with(|| rng.next_u64() as u8);
        Connection::client(config, Box::new(random), Instant::ZERO)
    };
    let failed = match conn.receive(Instant::ZERO, input) {
        Err(ReceiveError::Protocol(e)) => Some(match e.violation {
            Violation::CloseBody(CloseBodyError::ForbiddenCode(code)) => {
                assert_eq!(e.code, 1002, "a forbidden close code is a protocol error");
                End::FailedOnCloseCode(code)
            }
            Violation::CloseBody(CloseBodyError::ReasonNotUtf8) => {
                assert_eq!(
                    e.code, 1002,
                    "the brief answers a bad Close reason with 1002"
                );
                End::FailedOnCloseReason
            }
            _ => End::Failed(e.code),
        }),
        Err(ReceiveError::NotAccepting) => unreachable!("a fresh engine accepts input"),
        Ok(()) => None,
    };
    let mut seen = Vec::new();
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Text(text) => seen.push(Logical::Message {
                text: true,
                data: text.as_bytes().to_vec(),
            }),
            Event::Binary(data) => seen.push(Logical::Message {
                text: false,
                data: data.to_vec(),
            }),
            Event::Ping(data) => seen.push(Logical::Ping(data.to_vec())),
            Event::Pong(data) => seen.push(Logical::Pong(data.to_vec())),
            Event::Close(frame) => {
                seen.push(Logical::Close(frame.map(|f| (f.code, f.reason))));
                return (seen, End::Closed);
            }
            Event::Ended(ended) => match ended.reason {
                EndReason::ProtocolError(_) => break,
                other => panic!("wsframe ended without a failure or a Close: {other:?}"),
            },
            Event::Chunk(_) => unreachable!("whole messages were asked for"),
            Event::Writable => {}
        }
    }
    (seen, failed.unwrap_or(End::Waiting))
}

/// The peer's bytes, handed out in pieces of at most `read_max`, then `WouldBlock` until more
/// are added; writes (tungstenite's PONGs and Close) go nowhere.
struct Peer {
    input: Vec<u8>,
    taken: usize,
    rng: Rng,
    read_max: usize,
}

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.taken..];
        if left.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.rng.size(self.read_max).min(buf.len()).min(left.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.taken += n;
        Ok(n)
    }
}

impl Write for Peer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite reading a peer's bytes, able to take more after it ran out.
pub struct Tungstenite {
    ws: tungstenite::protocol::WebSocket<Peer>,
    seen: Vec<Logical>,
}

impl Tungstenite {
    pub fn new(
        server: bool,
        frame_limit: u64,
        message_limit: u64,
        read_max: usize,
        seed: u8,
    ) -> Self {
        use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
        let config = WebSocketConfig::default()
            .max_frame_size(Some(frame_limit as usize))
            .max_message_size(Some(message_limit as usize));
        let role = if server { Role::Server } else { Role::Client };
        let peer = Peer {
            input: Vec::new(),
            taken: 0,
            rng: Rng::new(u64::from(seed)),
            read_max,
        };
        Tungstenite {
            ws: WebSocket::from_raw_socket(peer, role, Some(config)),
            seen: Vec::new(),
        }
    }

    /// Reads `more` bytes after the earlier ones, as far as they go.
    pub fn read(&mut self, more: &[u8]) -> End {
        use tungstenite::error::{CapacityError, Error};
        use tungstenite::protocol::Message;
        self.ws.get_mut().input.extend_from_slice(more);
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => self.seen.push(Logical::Message {
                    text: true,
                    data: text.as_bytes().to_vec(),
                }),
                Ok(Message::Binary(data)) => self.seen.push(Logical::Message {
                    text: false,
                    data: data.to_vec(),
                }),
                Ok(Message::Ping(data)) => self.seen.push(Logical::Ping(data.to_vec())),
                Ok(Message::Pong(data)) => self.seen.push(Logical::Pong(data.to_vec())),
                Ok(Message::Close(frame)) => {
                    let frame = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    self.seen.push(Logical::Close(frame));
                    return End::Closed;
                }
                Ok(Message::Frame(_)) => unreachable!("raw frames are only written"),
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return End::Waiting,
                Err(Error::Capacity(CapacityError::MessageTooLong { .. })) => {
                    return End::Failed(1009)
                }
                Err(Error::Utf8(_)) => return End::Failed(1007),
                Err(Error::Protocol(_)) => return End::Failed(1002),
                Err(other) => panic!("tungstenite failed unexpectedly: {other:?}"),
            }
        }
    }

    pub fn outcome(&self, end: End) -> Outcome {
        (self.seen.clone(), end)
    }
}

/// Whether the two outcomes of reading `input` (in the server role if `server`) are the same,
/// or differ only where wsframe documents why.
pub fn agree(input: &[u8], server: bool, ours: &Outcome, theirs: &Outcome) -> bool {
    ours == theirs
        || close_code_1014(ours, theirs)
        || invalid_close_code(ours, theirs)
        || close_reason_not_utf8(ours, theirs)
        || limit_checked_first(input, server, ours, theirs)
}

/// tungstenite's answer to a Close whose code it does not accept: a Close of its own making
/// shown to the application, after the same events as `before`.
fn made_up_close_after(theirs: &Outcome, before: &[Logical]) -> bool {
    matches!(
        theirs.0.split_last(),
        Some((Logical::Close(Some((1002, reason))), rest))
            if reason == "Protocol violation" && rest == before
    )
}

/// Both failed the same frame, one for a size limit (1009) and one for another rule: the
/// frame breaks both, and each reader checks a different one first (tungstenite the frame
/// size before anything else). Holds if wsframe, with no limits, fails it for the other rule.
fn limit_checked_first(input: &[u8], server: bool, ours: &Outcome, theirs: &Outcome) -> bool {
    let (End::Failed(a), End::Failed(b)) = (ours.1, theirs.1) else {
        return false;
    };
    if a == b || (a != 1009 && b != 1009) || ours.0 != theirs.0 {
        return false;
    }
    let other = if a == 1009 { b } else { a };
    let unlimited = read_wsframe(input, server, u64::MAX, u64::MAX);
    unlimited == (ours.0.clone(), End::Failed(other))
}

/// 1014 (Bad Gateway) is a code an endpoint may send; tungstenite predates it.
fn close_code_1014(ours: &Outcome, theirs: &Outcome) -> bool {
    match ours.0.split_last() {
        Some((Logical::Close(Some((1014, _))), before)) => made_up_close_after(theirs, before),
        _ => false,
    }
}

/// A Close whose reason is not UTF-8: wsframe answers 1002 (as its brief asks; Autobahn 7.5.1
/// takes either), tungstenite 1007.
fn close_reason_not_utf8(ours: &Outcome, theirs: &Outcome) -> bool {
    ours.1 == End::FailedOnCloseReason && theirs.1 == End::Failed(1007) && ours.0 == theirs.0
}

/// A Close with a code no endpoint may send: both answer 1002; tungstenite also shows the
/// application a Close it made up. If its reason is not UTF-8 either, tungstenite (which
/// checks the reason first) fails it with 1007.
fn invalid_close_code(ours: &Outcome, theirs: &Outcome) -> bool {
    if !matches!(ours.1, End::FailedOnCloseCode(_)) {
        return false;
    }
    if theirs.1 == End::Failed(1007) {
        ours.0 == theirs.0
    } else {
        made_up_close_after(theirs, &ours.0)
    }
}
