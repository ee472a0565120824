//! `handshake`: arbitrary bytes to the server's request parser and to the client's response
//! validator, in arbitrary pieces.
//!
//! Input layout: 1 control byte (limits, chunking, what the server answers, subprotocols), then
//! the bytes. The same bytes go to both sides: as an HTTP request to a [`ServerHandshake`], and
//! as an HTTP response to a [`ClientHandshake`] (whose nonce is fixed, so the fuzzer can learn
//! the matching `Sec-WebSocket-Accept` from the comparisons it sees).
//!
//! Invariants:
//!
//! * never a panic, whatever the bytes and however they are split;
//! * every rejection is a well-formed HTTP response, checked by an independent parser below: a
//!   `HTTP/1.1 4xx|5xx Reason` status line matching `status()`, header lines that are tokens and
//!   field values (nothing that could split the response), `Connection: close`, and a
//!   `Content-Length` equal to the body; so is the response of `Request::reject` with any
//!   status 400-599 and any reason;
//! * an accepted request's `101` answer is well-formed, names `websocket`, and carries the accept
//!   key for the request's key; `leftover` is exactly the bytes fed after the head;
//! * the server never accepts a request whose head is over the configured limits, nor one
//!   that is not a `GET`;
//! * the client only completes on a `101` that carries the expected accept key, and its
//!   `leftover` is exactly the bytes fed after the head.

#![allow(dead_code)]

use wsframe::handshake::{
    check_accept_key, Accept, ClientHandshake, ClientOptions, ClientStatus, HandshakeLimits,
    ServerHandshake, ServerStatus,
};

use super::wire::Rng;

/// The fixed nonce the client handshake draws: its key is base64 of sixteen 0x2a bytes.
pub const NONCE_BYTE: u8 = 0x2a;

pub fn run(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let limits = match ctl & 3 {
        0 => HandshakeLimits::default(),
        1 => HandshakeLimits::new(64, 64),
        2 => HandshakeLimits::new(300, 3),
        _ => HandshakeLimits::new(1 << 20, 1000),
    };
    let mut rng = Rng::new(u64::from(ctl));
    let chunk_max = [1usize, 3, 17, 4096][((ctl >> 2) & 3) as usize];
    server(input, limits, &mut rng, chunk_max, ctl);
    client(input, limits, &mut rng, chunk_max, ctl);
}

fn server(input: &[u8], limits: HandshakeLimits, rng: &mut Rng, chunk_max: usize, ctl: u8) {
    let mut hs = ServerHandshake::new(limits);
    let mut pos = 0;
    loop {
        let n = rng.size(chunk_max).min(input.len() - pos);
        let piece = &input[pos..pos + n];
        pos += n;
        match hs.receive(piece) {
            Ok(ServerStatus::Partial) => {
                if pos == input.len() {
                    // Incomplete: nothing to answer yet. Within the limits, necessarily.
                    return;
                }
            }
            Err(rejection) => {
                let parsed = check_http_response(rejection.response());
                assert_eq!(parsed.status, rejection.status());
                assert!((400..=599).contains(&parsed.status));
                assert!(
                    parsed.connection_close,
                    "rejection without Connection: close"
                );
                return;
            }
            Ok(ServerStatus::Complete(request)) => {
                // The head ends at the first blank line; what follows is left over, intact.
                let end = head_end(input).expect("complete without a blank line");
                // Bytes fed after the head (later pieces were never handed over).
                assert_eq!(request.leftover(), &input[end..pos], "leftover");
                assert!(
                    end <= limits.max_header_bytes,
                    "accepted a {end}-byte head over the {}-byte limit",
                    limits.max_header_bytes
                );
                assert!(
                    input[leading_empty_lines(input)..].starts_with(b"GET "),
                    "accepted a request that is not a GET"
                );
                // Accept, with the first offered subprotocol or none.
                let mut accept = Accept::new();
                if ctl & 0x10 != 0 {
                    if let Some(p) = request.protocols().first() {
                        accept = accept.protocol(p.clone());
                    }
                }
                let response = request.accept(&accept).expect("offered protocol or none");
                let parsed = check_http_response(&response);
                assert_eq!(parsed.status, 101);
                let header = |name: &str| {
                    parsed
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                assert!(header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")));
                let accept_value = header("sec-websocket-accept").expect("accept header");
                assert!(check_accept_key(request.key().as_bytes(), &accept_value));
                // Any rejection the application chooses is well-formed too.
                let status = 400 + (rng.next_u64() % 200) as u16;
                let reason: String = input.iter().take(40).map(|&b| char::from(b)).collect();
                let rejection = request.reject(status, &reason);
                let parsed = check_http_response(rejection.response());
                assert_eq!(parsed.status, status);
                return;
            }
        }
    }
}

fn client(input: &[u8], limits: HandshakeLimits, rng: &mut Rng, chunk_max: usize, ctl: u8) {
    let mut options = ClientOptions::new().limits(limits);
    if ctl & 0x20 != 0 {
        options = options.protocol("chat").protocol("superchat");
    }
    let mut nonce = |buf: &mut [u8]| buf.fill(NONCE_BYTE);
    let (mut hs, request) = ClientHandshake::new("ws://example.com/chat?x=1", options, &mut nonce)
        .expect("a valid URL and options");
    // Our own request is well-formed HTTP (independent check of the head only).
    assert!(request.starts_with(b"GET /chat?x=1 HTTP/1.1\r\n"));
    assert!(request.ends_with(b"\r\n\r\n"));
    let expected = hs.expected_accept().to_owned();
    let mut pos = 0;
    loop {
        let n = rng.size(chunk_max).min(input.len() - pos);
        let piece = &input[pos..pos + n];
        pos += n;
        match hs.receive(piece) {
            Ok(ClientStatus::Partial) => {
                if pos == input.len() {
                    return;
                }
            }
            Err(_) => return,
            Ok(ClientStatus::Complete(response)) => {
                let end = head_end(input).expect("complete without a blank line");
                assert_eq!(response.leftover(), &input[end..pos], "leftover");
                let head = &input[leading_empty_lines(input)..end];
                assert!(
                    head.starts_with(b"HTTP/1.1 101"),
                    "completed on a status other than 101"
                );
                // The accept key must be in there, exactly (modulo surrounding whitespace).
                assert!(
                    find(head, expected.as_bytes()).is_some(),
                    "completed without the expected accept key"
                );
                if let Some(p) = response.protocol() {
                    assert!(ctl & 0x20 != 0 && (p == "chat" || p == "superchat"));
                }
                return;
            }
        }
    }
}

/// Where the head ends: after the first empty line. Lines end in CRLF or, as RFC 9112 section
/// 2.2 lets a recipient accept (and httparse does), a bare LF.
fn head_end(input: &[u8]) -> Option<usize> {
    // Empty lines before the start line are skipped (RFC 9112 section 2.2; httparse does).
    let mut start = leading_empty_lines(input);
    let mut first = true;
    for (i, &b) in input.iter().enumerate().skip(start) {
        if b == b'\n' {
            let line = &input[start..i];
            if !first && (line.is_empty() || line == b"\r") {
                return Some(i + 1);
            }
            first = false;
            start = i + 1;
        }
    }
    None
}

/// Bytes of CRLF or LF line ends before the start line.
fn leading_empty_lines(input: &[u8]) -> usize {
    let mut i = 0;
    loop {
        if input[i..].starts_with(b"\r\n") {
            i += 2;
        } else if input[i..].starts_with(b"\n") {
            i += 1;
        } else {
            return i;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the independent parser found in a response.
#[derive(Debug)]
pub struct ParsedResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub connection_close: bool,
}

/// An independent, strict parser for the responses the handshake writes (RFC 9112): panics on
/// anything malformed.
pub fn check_http_response(bytes: &[u8]) -> ParsedResponse {
    let end = find(bytes, b"\r\n\r\n").expect("response without an end of head");
    // The head with its last line's CRLF; every line then ends in CRLF.
    let (head, body) = (&bytes[..end + 2], &bytes[end + 4..]);
    let mut lines = head.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n');
    let status_line = lines.next().expect("status line");
    let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
    assert!(
        status_line.starts_with(b"HTTP/1.1 ") && status_line.len() >= 13,
        "status line {:?}",
        String::from_utf8_lossy(status_line)
    );
    let code = &status_line[9..12];
    assert!(code.iter().all(u8::is_ascii_digit), "status code");
    assert_eq!(status_line[12], b' ', "space after the status code");
    assert!(
        status_line[13..]
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)),
        "reason phrase"
    );
    let status: u16 = core::str::from_utf8(code).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    let mut content_length = None;
    let mut connection_close = false;
    for line in lines {
        let line = line
            .strip_suffix(b"\r")
            .expect("header line not ended by CRLF");
        assert!(!line.contains(&b'\r'), "bare CR in a header line");
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .expect("header without ':'");
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        assert!(
            !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "header name {:?}",
            String::from_utf8_lossy(name)
        );
        let value = value.strip_prefix(b" ").unwrap_or(value);
        assert!(
            value.iter().all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f),
            "control character in header {:?}",
            String::from_utf8_lossy(name)
        );
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name.eq_ignore_ascii_case("content-length") {
            assert!(content_length.is_none(), "two Content-Length headers");
            let v: usize = core::str::from_utf8(value)
                .unwrap()
                .parse()
                .expect("length");
            content_length = Some(v);
        }
        if name.eq_ignore_ascii_case("connection") {
            connection_close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        headers.push((name, value.to_vec()));
    }
    if status == 101 {
        assert!(body.is_empty(), "a body after 101");
    } else {
        assert_eq!(content_length, Some(body.len()), "Content-Length vs body");
    }
    ParsedResponse {
        status,
        headers,
        connection_close,
    }
}
