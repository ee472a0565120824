//! The opening handshake (RFC 6455 section 4), sans-IO: bytes in, a decision and bytes out.
//!
//! * Server side: feed request bytes to a [`ServerHandshake`] as they arrive. It answers
//!   [`ServerStatus::Partial`] until the request head is complete, then hands over a parsed and
//!   validated [`Request`]. The caller looks at it (path, Origin, offered subprotocols) and
//!   either [accepts](Request::accept) it, which yields the `101 Switching Protocols` bytes, or
//!   [rejects](Request::reject) it with a status of its choosing. A request that breaks the
//!   rules comes back as a [`Rejection`] that already holds a complete HTTP error response to
//!   write before closing, so a peer is never left without an answer.
//! * Client side: [`ClientHandshake::new`] builds the request for a `ws://` URL and
//!   [`ClientHandshake::receive`] validates the server's answer.
//! * HTTP stacks that do the upgrade themselves (hyper, axum) can use the pure functions
//!   [`accept_key`], [`check_accept_key`] and [`validate_request_headers`].
//!
//! Bytes that arrive in the same read after the end of the handshake (a pipelined first frame)
//! are never lost: [`Request::leftover`] and [`Response::leftover`] hold them for the engine.
//!
//! ```
//! use wsframe::handshake::{
//!     Accept, ClientHandshake, ClientOptions, ClientStatus, HandshakeLimits, ServerHandshake,
//!     ServerStatus,
//! };
//!
//! // The client builds its request; the nonce comes from a caller-supplied random source.
//! let mut rng = |buf: &mut [u8]| buf.fill(7);
//! let (mut client, request_bytes) =
//!     ClientHandshake::new("ws://example.com/chat", ClientOptions::new().protocol("chat"), &mut rng)
//!         .unwrap();
//!
//! // The server parses it, looks at it and accepts it.
//! let mut server = ServerHandshake::new(HandshakeLimits::default());
//! let request = match server.receive(&request_bytes) {
//!     Ok(ServerStatus::Complete(request)) => request,
//!     other => panic!("unexpected {other:?}"),
//! };
//! assert_eq!(request.path(), "/chat");
//! let response_bytes = request.accept(&Accept::new().protocol("chat")).unwrap();
//!
//! // The client checks the answer.
//! match client.receive(&response_bytes) {
//!     Ok(ClientStatus::Complete(response)) => assert_eq!(response.protocol(), Some("chat")),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use sha1::{Digest, Sha1};

mod client;
mod response;
mod server;

pub use client::{
    ClientHandshake, ClientOptions, ClientStatus, HandshakeError, RequestError, Response, Target,
};
pub use response::Rejection;
pub use server::{
    validate_request_headers, Accept, AcceptError, Offer, Request, ServerHandshake, ServerStatus,
};

/// The GUID that section 1.3 appends to the client's key before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this crate speaks (section 4.1, item 9).
pub const WEBSOCKET_VERSION: &str = "13";

/// Bounds on what a peer may make us buffer while reading a handshake head.
///
/// Both sides stop reading once a bound is passed: the server answers
/// `431 Request Header Fields Too Large`, the client reports
/// [`HandshakeError::TooLarge`] or [`HandshakeError::TooManyHeaders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Most bytes in the head: the request or status line, every header line and the blank line
    /// that ends them. Default 8 KiB.
    pub max_header_bytes: usize,
    /// Most header fields. Default 64; values above [`HandshakeLimits::MAX_HEADERS`] count as
    /// that, because the parser keeps its header slots in a fixed array on the stack.
    pub max_headers: usize,
}

impl HandshakeLimits {
    /// The largest usable [`max_headers`](Self::max_headers).
    pub const MAX_HEADERS: usize = 128;

    /// Limits of `max_header_bytes` bytes and `max_headers` header fields.
    pub const fn new(max_header_bytes: usize, max_headers: usize) -> Self {
        HandshakeLimits {
            max_header_bytes,
            max_headers,
        }
    }

    fn header_slots(&self) -> usize {
        if self.max_headers < Self::MAX_HEADERS {
            self.max_headers
        } else {
            Self::MAX_HEADERS
        }
    }
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits::new(8 * 1024, 64)
    }
}

/// Computes `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (section 4.2.2, item 5.4):
/// base64 of the SHA-1 of the key followed by [`WEBSOCKET_GUID`].
///
/// Surrounding spaces and tabs are ignored, so a raw header value can be passed as is. The key is
/// not checked; [`validate_request_headers`] does that.
///
/// ```
/// // The example of section 1.3.
/// assert_eq!(
///     wsframe::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(trim(client_key));
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether `accept` (a `Sec-WebSocket-Accept` value, surrounding spaces ignored) is the one the
/// server must send for `client_key`.
///
/// ```
/// use wsframe::handshake::check_accept_key;
/// assert!(check_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
/// assert!(!check_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOp="));
/// ```
pub fn check_accept_key(client_key: &[u8], accept: &[u8]) -> bool {
    trim(accept) == accept_key(client_key).as_bytes()
}

/// Decodes a `Sec-WebSocket-Key` value; section 4.1 requires base64 of exactly 16 bytes.
fn decode_key(value: &[u8]) -> Option<[u8; 16]> {
    let value = trim(value);
    // 16 bytes always encode to 24 characters; checking first keeps decoding cheap and bounded.
    if value.len() != 24 {
        return None;
    }
    // The decoder wants room for its worst-case estimate (18 bytes for 24 characters).
    let mut out = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(value, &mut out) {
        Ok(16) => {
            let mut key = [0u8; 16];
            key.copy_from_slice(&out[..16]);
            Some(key)
        }
        _ => None,
    }
}

fn encode_key(nonce: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// Strips optional whitespace (RFC 9110 section 5.6.3) from both ends.
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Whether a comma-separated header value has `token` among its elements, ignoring case.
fn list_contains(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim(item).eq_ignore_ascii_case(token.as_bytes()))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Whether a header value may be written as is: no CR, LF or NUL that would end the line early or
/// smuggle another header, and no other control character but tab.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Splits a `Sec-WebSocket-Extensions` value into its offers, each checked against section 9.1's
/// grammar: `name *( ";" param [ "=" ( token / quoted-string ) ] )`. Returns `None` if any offer
/// is malformed. Commas inside quoted strings do not split.
fn parse_extensions(value: &[u8]) -> Option<Vec<&str>> {
    let text = core::str::from_utf8(value).ok()?;
    let mut offers = Vec::new();
    for item in split_unquoted(text, b',')? {
        push_extension(item, &mut offers)?;
    }
    Some(offers)
}

fn push_extension<'a>(item: &'a str, offers: &mut Vec<&'a str>) -> Option<()> {
    let item = trim_str(item);
    // HTTP lists allow empty elements; they carry nothing.
    if item.is_empty() {
        return Some(());
    }
    let mut parts = split_unquoted(item, b';')?.into_iter();
    let name = parts.next()?;
    if !is_token(trim_str(name).as_bytes()) {
        return None;
    }
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (trim_str(k), Some(trim_str(v))),
            None => (trim_str(param), None),
        };
        if !is_token(key.as_bytes()) {
            return None;
        }
        if let Some(v) = value {
            if !(is_token(v.as_bytes()) || is_quoted_string(v)) {
                return None;
            }
        }
    }
    offers.push(item);
    Some(())
}

/// Splits `text` at each `separator` outside quoted strings, where a backslash escapes the
/// next character (RFC 7230 section 3.2.6). `None` if a quoted string is left open.
fn split_unquoted(text: &str, separator: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == separator {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

fn is_quoted_string(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return false;
    }
    let mut escaped = false;
    for &c in &b[1..b.len() - 1] {
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' || (c < 0x20 && c != b'\t') || c == 0x7f {
            return false;
        }
    }
    !escaped
}

/// The extension name of one offer (the text before its first `;`).
fn extension_name(offer: &str) -> &str {
    trim_str(offer.split(';').next().unwrap_or(""))
}

fn trim_str(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Splits a `Sec-WebSocket-Protocol` value into subprotocol names. Returns `None` if an element
/// is not a token (section 4.1, item 10).
fn parse_protocols(value: &[u8]) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    for item in value.split(|&b| b == b',') {
        let item = trim(item);
        if item.is_empty() {
            continue;
        }
        if !is_token(item) {
            return None;
        }
        // Tokens are ASCII, so this cannot fail.
        names.push(core::str::from_utf8(item).ok()?);
    }
    Some(names)
}

/// Reason phrase for a status line. Clients must not depend on it (RFC 9110 section 15.1), so an
/// unlisted code gets its class's name.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ if status < 500 => "Client Error",
        _ => "Server Error",
    }
}

/// Short descriptions of httparse's errors, ours so that its type stays out of our API.
fn parse_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid request line",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Copies parsed headers out of the receive buffer.
fn own_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (String::from(h.name), h.value.to_vec()))
        .collect()
}

/// First value of a header, by case-insensitive name.
fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Accumulates a handshake head (request or status line plus headers) up to a byte limit and
/// says when it is worth running the HTTP parser.
///
/// Re-parsing the whole buffer on every read would cost quadratic time when a peer trickles
/// bytes one at a time, so the parser runs only when something can have changed its verdict: on
/// the first bytes and when the first line ends (so garbage such as a TLS hello on a plain port is
/// rejected at once), when a blank line ends the head, and when the limit is reached.
#[derive(Debug)]
struct HeadReader {
    buf: Vec<u8>,
    limit: usize,
    /// A byte other than CR or LF has been seen; blank lines before it are skipped, as httparse
    /// and RFC 9112 section 2.2 do.
    started: bool,
    /// Nothing but CR has been seen since the last LF.
    line_empty: bool,
    first_line_done: bool,
}

/// What one [`HeadReader::push`] did.
struct Pushed {
    /// How many bytes of the input went into the buffer; the rest lie beyond the limit.
    taken: usize,
    /// Whether to run the parser now.
    parse: bool,
    /// Whether the buffer has reached the limit.
    full: bool,
}

impl HeadReader {
    fn new(limit: usize) -> Self {
        HeadReader {
            buf: Vec::new(),
            limit,
            started: false,
            line_empty: false,
            first_line_done: false,
        }
    }

    fn push(&mut self, data: &[u8]) -> Pushed {
        let room = self.limit.saturating_sub(self.buf.len());
        let taken = data.len().min(room);
        let mut parse = self.buf.is_empty() && taken > 0;
        for &b in &data[..taken] {
            if !self.started {
                if b != b'\r' && b != b'\n' {
                    self.started = true;
                }
                continue;
            }
            match b {
                b'\n' if self.line_empty => parse = true,
                b'\n' => {
                    if !self.first_line_done {
                        self.first_line_done = true;
                        parse = true;
                    }
                    self.line_empty = true;
                }
                b'\r' => {}
                _ => self.line_empty = false,
            }
        }
        self.buf.extend_from_slice(&data[..taken]);
        let full = self.buf.len() >= self.limit;
        Pushed {
            taken,
            parse: parse || full,
            full,
        }
    }

    /// Hands over everything after the head's `end` offset, followed by the input bytes that did
    /// not fit in the buffer: together, the bytes the peer sent after its handshake.
    fn leftover(&mut self, end: usize, rest: &[u8]) -> bytes::Bytes {
        let mut buf = core::mem::take(&mut self.buf);
        buf.drain(..end);
        buf.extend_from_slice(rest);
        bytes::Bytes::from(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(b" dGhlIHNhbXBsZSBub25jZQ==\t"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(check_accept_key(
            b"dGhlIHNhbXBsZSBub25jZQ==",
            b" s3pPLMBiTxaQ9kYGzzhZRbK+xOo= "
        ));
        assert!(!check_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==", b""));
    }

    #[test]
    fn key_decoding_requires_16_bytes() {
        assert_eq!(
            decode_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            Some(*b"the sample nonce")
        );
        // 15 and 17 bytes, missing padding, and a non-canonical last character.
        assert_eq!(decode_key(b"dGhlIHNhbXBsZSBub25jZQ"), None);
        assert_eq!(decode_key(b"dGhlIHNhbXBsZSBub25j"), None);
        assert_eq!(decode_key(b"dGhlIHNhbXBsZSBub25jZWE="), None);
        assert_eq!(decode_key(b"dGhlIHNhbXBsZSBub25jZR=="), None);
        assert_eq!(decode_key(b"dGhlIHNhbXBsZSBub25jZQ!="), None);
        assert_eq!(encode_key(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn lists_and_tokens() {
        assert!(list_contains(b"keep-alive, Upgrade", "upgrade"));
        assert!(list_contains(b"WebSocket", "websocket"));
        assert!(!list_contains(b"upgraded", "upgrade"));
        assert!(!list_contains(b"", "upgrade"));
        assert_eq!(
            parse_protocols(b"chat, , superchat"),
            Some(alloc::vec!["chat", "superchat"])
        );
        assert_eq!(parse_protocols(b"chat, a b"), None);
        assert_eq!(parse_protocols(b"ch@t"), None);
    }

    #[test]
    fn extension_grammar() {
        assert_eq!(
            parse_extensions(b"permessage-deflate; client_max_window_bits, x-foo; a=\"1,2\""),
            Some(alloc::vec![
                "permessage-deflate; client_max_window_bits",
                "x-foo; a=\"1,2\""
            ])
        );
        assert_eq!(parse_extensions(b""), Some(alloc::vec![]));
        // Neither separator splits inside quotes, nor does an escaped quote end them.
        assert_eq!(
            parse_extensions(b"x; a=\"1;2\", y; b=\"q\\\"; ,\""),
            Some(alloc::vec!["x; a=\"1;2\"", "y; b=\"q\\\"; ,\""])
        );
        assert_eq!(parse_extensions(b"a; b=\"unterminated"), None);
        assert_eq!(parse_extensions(b"a b"), None);
        assert_eq!(parse_extensions(b"a; =1"), None);
        assert_eq!(parse_extensions(b"a; b=c d"), None);
        assert_eq!(parse_extensions(b"; a"), None);
        assert_eq!(extension_name("x-foo; a=1"), "x-foo");
    }

    #[test]
    fn head_reader_parses_only_when_useful() {
        let mut r = HeadReader::new(64);
        let first = r.push(b"G");
        assert!(first.parse && !first.full && first.taken == 1);
        assert!(!r.push(b"ET / HTTP/1.1\r").parse);
        assert!(r.push(b"\n").parse, "end of the first line");
        assert!(!r.push(b"Host: a\r\n").parse);
        assert!(!r.push(b"\r").parse);
        assert!(r.push(b"\n").parse, "end of the head");
        let mut r = HeadReader::new(4);
        let p = r.push(b"GET / HTTP/1.1");
        assert!(p.parse && p.full && p.taken == 4);
        assert_eq!(r.leftover(2, b"xy").as_ref(), b"T xy");
    }

    #[test]
    fn leading_blank_lines_do_not_end_the_head() {
        let mut r = HeadReader::new(64);
        r.push(b"\r\n\r\n\r\n");
        assert!(!r.push(b"\r\n").parse);
    }
}
