//! Driving one engine with exact bytes and collecting exactly what comes out.

#![allow(dead_code)]

use std::time::Duration;

use wsframe::{Config, Connection, EndReason, Event, Instant, ProtocolError, ReceiveError, Role};

use super::wire::{self, Frame, CLOSE};

/// The fixed mask-key byte of [`client`]'s random source.
pub const CLIENT_KEY_BYTE: u8 = 0x5a;

/// A server engine with the default configuration, at time zero.
pub fn server() -> Connection {
    Connection::server(Config::default(), Instant::ZERO)
}

/// A server engine with a changed configuration.
pub fn server_with(change: impl FnOnce(&mut Config)) -> Connection {
    let mut config = Config::default();
    change(&mut config);
    Connection::server(config, Instant::ZERO)
}

/// A client engine whose mask keys are all `5a 5a 5a 5a`.
pub fn client() -> Connection {
    client_with(|_| {})
}

/// A client engine with a changed configuration and mask keys `5a 5a 5a 5a`.
pub fn client_with(change: impl FnOnce(&mut Config)) -> Connection {
    let mut config = Config::default();
    change(&mut config);
    Connection::client(
        config,
        Box::new(|b: &mut [u8]| b.fill(CLIENT_KEY_BYTE)),
        Instant::ZERO,
    )
}

/// A client engine whose random source counts 0, 1, 2, ... (so every frame gets another key).
pub fn counting_client(change: impl FnOnce(&mut Config)) -> Connection {
    let mut config = Config::default();
    change(&mut config);
    let mut next = 0u8;
    Connection::client(
        config,
        Box::new(move |b: &mut [u8]| {
            for x in b {
                *x = next;
                next = next.wrapping_add(1);
            }
        }),
        Instant::ZERO,
    )
}

/// An engine of either role, default configuration.
pub fn engine(role: Role) -> Connection {
    match role {
        Role::Server => server(),
        Role::Client => client(),
    }
}

/// A frame as the peer of an engine of `role` sends it (masked towards a server, section 5.1).
pub fn peer_frame(role: Role, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    match role {
        Role::Server => wire::client_frame(fin, opcode, payload),
        Role::Client => wire::server_frame(fin, opcode, payload),
    }
}

/// Feeds all bytes in one `receive` call at time zero.
pub fn feed(conn: &mut Connection, bytes: &[u8]) -> Result<(), ReceiveError> {
    conn.receive(Instant::ZERO, bytes)
}

/// Feeds the bytes in chunks of `size` (the last one shorter). Stops at the first error and
/// returns it with the index of the chunk's first byte.
pub fn feed_chunked(
    conn: &mut Connection,
    bytes: &[u8],
    size: usize,
) -> Result<(), (usize, ReceiveError)> {
    assert!(size > 0);
    for (i, chunk) in bytes.chunks(size).enumerate() {
        conn.receive(Instant::ZERO, chunk)
            .map_err(|e| (i * size, e))?;
    }
    Ok(())
}

/// Feeds the bytes cut at the given (ascending) positions.
pub fn feed_cut(conn: &mut Connection, bytes: &[u8], cuts: &[usize]) -> Result<(), ReceiveError> {
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(start, bytes.len());
        conn.receive(Instant::ZERO, &bytes[start..cut])?;
        start = cut;
    }
    Ok(())
}

/// Writes out everything the engine hands out, whole frames at a time, and returns the bytes.
pub fn take_wire(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut guard = 0;
    while let Some(t) = conn.poll_transmit() {
        assert!(!t.is_empty(), "poll_transmit handed out an empty Transmit");
        out.extend_from_slice(t.header);
        out.extend_from_slice(t.payload);
        let n = t.len();
        conn.advance_transmit(n);
        guard += 1;
        assert!(guard < 10_000_000, "poll_transmit never runs dry");
    }
    out
}

/// Writes out everything, reporting the writes `step` bytes at a time (partial writes).
pub fn take_wire_partial(conn: &mut Connection, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = conn.poll_transmit() {
        let mut rest = t.header.to_vec();
        rest.extend_from_slice(t.payload);
        let n = rest.len().min(step);
        out.extend_from_slice(&rest[..n]);
        conn.advance_transmit(n);
    }
    out
}

/// Writes out everything and parses it with the independent parser.
pub fn take_frames(conn: &mut Connection) -> Vec<Frame> {
    wire::parse_all(&take_wire(conn))
}

/// Drains every event.
pub fn take_events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Checks the masking direction of frames the engine wrote (section 5.1): a client masks
/// every frame (with the key its source gave), a server never does.
pub fn check_mask_direction(role: Role, frames: &[Frame]) {
    for f in frames {
        match role {
            Role::Server => assert_eq!(f.mask, None, "server sent a masked frame: {f:?}"),
            Role::Client => assert!(f.mask.is_some(), "client sent an unmasked frame: {f:?}"),
        }
    }
}

/// What a failed connection must look like (section 7.1.7 "Fail the WebSocket Connection"):
///
/// * `result` (the `receive` that saw the violation) is `Err(Protocol)` with `code`;
/// * any further `receive` is `Err(NotAccepting)`;
/// * the wire carries nothing but one Close frame with `code` (masked for a client);
/// * the events end with `Ended(ProtocolError)` carrying the same code, produced once the
///   Close is written, and nothing is handed out after it.
///
/// Returns the protocol error and the events before `Ended`.
pub fn expect_failed(
    conn: &mut Connection,
    result: Result<(), ReceiveError>,
    code: u16,
) -> (ProtocolError, Vec<Event>) {
    let frames = take_frames(conn);
    expect_failed_with_wire(conn, result, code, frames)
}

/// [`expect_failed`] for a caller that already took the wire bytes (and expects them to be
/// exactly one Close).
pub fn expect_failed_with_wire(
    conn: &mut Connection,
    result: Result<(), ReceiveError>,
    code: u16,
    frames: Vec<Frame>,
) -> (ProtocolError, Vec<Event>) {
    let err = match result {
        Err(ReceiveError::Protocol(e)) => e,
        other => panic!("expected a protocol error with close code {code}, got {other:?}"),
    };
    assert_eq!(err.code, code, "close code of {err:?}");
    let (ended_with, events) = check_failed(conn, code, frames);
    assert_eq!(
        ended_with, err,
        "Ended reports another error than receive returned"
    );
    (err, events)
}

/// The state of a connection the engine failed with `code` (by `receive` or by a timer):
/// no more input, `frames` (what was written) is exactly one Close with `code`, the last
/// event is `Ended(ProtocolError)` with that code. Returns the error and the earlier events.
pub fn check_failed(
    conn: &mut Connection,
    code: u16,
    frames: Vec<Frame>,
) -> (ProtocolError, Vec<Event>) {
    // No more input is taken.
    assert_eq!(
        conn.receive(Instant::ZERO, &wire::client_frame(true, wire::PING, b"x")),
        Err(ReceiveError::NotAccepting)
    );
    assert_eq!(
        conn.receive(Instant::ZERO, &[0x81]),
        Err(ReceiveError::NotAccepting)
    );
    // Exactly one Close, with the code.
    assert_eq!(
        frames.len(),
        1,
        "a failed connection writes only its Close; got {frames:?}"
    );
    let close = &frames[0];
    assert_eq!(close.opcode, CLOSE);
    assert!(close.fin);
    assert_eq!(close.close_code(), Some(code));
    assert!(close.payload.len() <= 125);
    let _ = close.close_reason();
    check_mask_direction(conn.role(), &frames);
    // Then the end, with the same code.
    let mut events = take_events(conn);
    let ended = match events.pop() {
        Some(Event::Ended(ended)) => ended,
        other => panic!("expected Ended as the last event, got {other:?} (all: {events:?})"),
    };
    let err = match &ended.reason {
        EndReason::ProtocolError(e) => e.clone(),
        other => panic!("expected EndReason::ProtocolError with code {code}, got {other:?}"),
    };
    assert_eq!(err.code, code);
    assert_eq!(err.violation.close_code(), code);
    assert!(!ended.is_clean());
    assert!(
        !events.iter().any(|e| matches!(e, Event::Ended(_))),
        "Ended twice"
    );
    assert!(conn.is_ended());
    assert!(conn.poll_transmit().is_none());
    assert!(conn.poll_event().is_none());
    (err, events)
}

/// Feeds `bytes` whole to a fresh engine of `role` and expects a failure with `code`.
pub fn fails_whole(role: Role, bytes: &[u8], code: u16) -> (ProtocolError, Vec<Event>) {
    let mut conn = engine(role);
    let result = feed(&mut conn, bytes);
    expect_failed(&mut conn, result, code)
}

/// Feeds `bytes` one byte per `receive` call to a fresh engine and expects a failure with
/// `code`; returns the index of the byte whose arrival failed the connection.
pub fn fails_bytewise(role: Role, bytes: &[u8], code: u16) -> usize {
    let mut conn = engine(role);
    match feed_chunked(&mut conn, bytes, 1) {
        Ok(()) => panic!("no failure after all {} bytes", bytes.len()),
        Err((at, e)) => {
            expect_failed(&mut conn, Err(e), code);
            at
        }
    }
}

/// Feeds `bytes` whole and byte by byte to fresh server engines and expects a failure with
/// `code` both ways.
pub fn server_fails(bytes: &[u8], code: u16) -> ProtocolError {
    fails_bytewise(Role::Server, bytes, code);
    fails_whole(Role::Server, bytes, code).0
}

/// Feeds the bytes and expects them to be taken without error.
pub fn ok(conn: &mut Connection, bytes: &[u8]) {
    if let Err(e) = feed(conn, bytes) {
        panic!("receive failed: {e:?}");
    }
}

/// The instant `secs` seconds after the epoch.
pub fn at_secs(secs: f64) -> Instant {
    Instant::from_duration(Duration::from_secs_f64(secs))
}
