//! The server side: read a client's upgrade request, validate it, answer it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use bytes::Bytes;

use super::{
    accept_key, decode_key, find_header, is_field_value, is_token, list_contains, own_headers,
    parse_error_reason, parse_extensions, parse_protocols, trim, HandshakeLimits, HeadReader,
    Rejection, WEBSOCKET_VERSION,
};

/// Reads one upgrade request, as bytes arrive, and validates it (section 4.2.1).
///
/// ```
/// use wsframe::handshake::{Accept, HandshakeLimits, ServerHandshake, ServerStatus};
///
/// let mut server = ServerHandshake::new(HandshakeLimits::default());
/// let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n";
/// let (head, tail) = request.split_at(20);
/// assert!(matches!(server.receive(head), Ok(ServerStatus::Partial)));
/// let Ok(ServerStatus::Complete(request)) = server.receive(tail) else { panic!() };
///
/// if request.origin() != Some("http://example.com") {
///     let refusal = request.reject(403, "origin not allowed");
///     // write refusal.response(), then close
///     # unreachable!("{refusal}");
/// }
/// let response = request.accept(&Accept::new()).unwrap();
/// assert_eq!(
///     response,
///     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
/// );
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    limits: HandshakeLimits,
    reader: HeadReader,
    finished: bool,
}

/// Progress of a [`ServerHandshake`].
#[derive(Debug)]
// Returned a few times per connection and matched at once: boxing the request would cost an
// allocation for no measurable gain.
#[allow(clippy::large_enum_variant)]
pub enum ServerStatus {
    /// The request head is not complete yet: feed more bytes.
    Partial,
    /// The request is complete and valid; accept or reject it.
    Complete(Request),
}

impl ServerHandshake {
    /// A handshake reader bounded by `limits`.
    pub fn new(limits: HandshakeLimits) -> Self {
        ServerHandshake {
            limits,
            reader: HeadReader::new(limits.max_header_bytes),
            finished: false,
        }
    }

    /// Feeds bytes as they arrive, in pieces of any size.
    ///
    /// * `Ok(Partial)`: more bytes are needed.
    /// * `Ok(Complete(request))`: a valid upgrade request; bytes that followed it are in
    ///   [`Request::leftover`].
    /// * `Err(rejection)`: the request is malformed, breaks section 4.2.1 or passes a limit; write
    ///   [`Rejection::response`] and close. Reasons and statuses:
    ///   `405` for a method other than GET; `426` for a `Sec-WebSocket-Version` other than 13;
    ///   `431` for a head over [`HandshakeLimits::max_header_bytes`] or with more than
    ///   [`HandshakeLimits::max_headers`] fields; `400` for anything else.
    ///
    /// The request line is checked as soon as it is complete, so a wrong method or a non-HTTP
    /// peer is turned away without waiting for the headers.
    ///
    /// # Panics
    ///
    /// If called again after it returned `Complete` or `Err`: the handshake is over and further
    /// bytes belong to the engine, or to nobody.
    pub fn receive(&mut self, data: &[u8]) -> Result<ServerStatus, Rejection> {
        assert!(
            !self.finished,
            "ServerHandshake::receive called after the handshake finished"
        );
        let result = self.step(data);
        if !matches!(result, Ok(ServerStatus::Partial)) {
            self.finished = true;
        }
        result
    }

    fn step(&mut self, data: &[u8]) -> Result<ServerStatus, Rejection> {
        let pushed = self.reader.push(data);
        if !pushed.parse {
            return Ok(ServerStatus::Partial);
        }
        let mut slots = [httparse::EMPTY_HEADER; HandshakeLimits::MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots[..self.limits.header_slots()]);
        let outcome = parsed.parse(&self.reader.buf);
        if let Ok(httparse::Status::Complete(end)) = outcome {
            let request = check_request(&parsed)?;
            let leftover = self.reader.leftover(end, &data[pushed.taken..]);
            return Ok(ServerStatus::Complete(Request {
                leftover,
                ..request
            }));
        }
        // The request line may be whole while the rest is missing or broken. Judge it first, as
        // a complete request would be, so that the verdict does not depend on how the bytes
        // were split into reads, and a wrong method is refused without waiting for headers.
        if let Some(method) = parsed.method {
            check_method(method)?;
        }
        if let Some(version) = parsed.version {
            check_version(version)?;
        }
        match outcome {
            Err(httparse::Error::TooManyHeaders) => Err(Rejection::new(
                431,
                &format!(
                    "request has more than {} header fields",
                    self.limits.header_slots()
                ),
            )),
            Err(e) => Err(Rejection::new(
                400,
                &format!("malformed request: {}", parse_error_reason(e)),
            )),
            _ if pushed.full => Err(Rejection::new(
                431,
                &format!(
                    "request head exceeds {} bytes",
                    self.limits.max_header_bytes
                ),
            )),
            _ => Ok(ServerStatus::Partial),
        }
    }
}

impl Default for ServerHandshake {
    fn default() -> Self {
        ServerHandshake::new(HandshakeLimits::default())
    }
}

fn check_method(method: &str) -> Result<(), Rejection> {
    if method == "GET" {
        Ok(())
    } else {
        Err(Rejection::new(
            405,
            &format!("method {method} not allowed: a WebSocket handshake is a GET"),
        ))
    }
}

fn check_version(minor: u8) -> Result<(), Rejection> {
    // httparse only reads HTTP/1.x, so "1.1 or later" means a minor version of at least 1.
    if minor >= 1 {
        Ok(())
    } else {
        Err(Rejection::new(400, "HTTP/1.1 or later required"))
    }
}

fn check_request(parsed: &httparse::Request<'_, '_>) -> Result<Request, Rejection> {
    // A complete parse fills in the request line.
    let method = parsed.method.unwrap_or_default();
    check_method(method)?;
    check_version(parsed.version.unwrap_or_default())?;
    let target = parsed.path.unwrap_or_default();
    // Only the origin form: a WebSocket client sends its resource name (section 4.1, item 2);
    // absolute and asterisk forms are for proxies and OPTIONS.
    if !target.starts_with('/') {
        return Err(Rejection::new(
            400,
            "request target must be a path starting with '/'",
        ));
    }
    let offer = validate_request_headers(parsed.headers.iter().map(|h| (h.name, h.value)))?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(String::from(query))),
        None => (target, None),
    };
    Ok(Request {
        path: String::from(path),
        query,
        headers: own_headers(parsed.headers),
        offer,
        leftover: Bytes::new(),
    })
}

/// Headers that may appear only once, because two copies leave the meaning ambiguous: two
/// `Host`s are a known request-smuggling vector (RFC 9112 section 3.2), two `Origin`s could pass
/// one value to the caller's check while a proxy acted on the other, and section 11.3 allows
/// one key and one version per request.
const SINGLE: [&str; 4] = [
    "Host",
    "Origin",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
];

/// Checks a client's upgrade request headers (section 4.2.1, items 2 to 10), for servers that
/// parse HTTP themselves (hyper, axum) and only need the WebSocket rules.
///
/// Pass every header as a (name, value) pair of anything that is bytes: `(&str, &str)`,
/// `(&[u8], &[u8])`, or hyper's `(&HeaderName, &HeaderValue)` as given by
/// `request.headers().iter()`. Names match without regard to case. The method (GET) and the
/// version (HTTP/1.1) are left to the caller's HTTP stack.
///
/// On success the [`Offer`] holds what the client asked for; answer with a 101 carrying
/// [`Offer::response_headers`]. On failure the [`Rejection`] says which status and reason to
/// send, and [`Rejection::headers`] which headers that status needs.
///
/// ```
/// use wsframe::handshake::validate_request_headers;
///
/// let headers = [
///     ("host", "relay.example"),
///     ("upgrade", "websocket"),
///     ("connection", "keep-alive, Upgrade"),
///     ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
///     ("sec-websocket-version", "13"),
///     ("sec-websocket-protocol", "chat, superchat"),
/// ];
/// let offer = validate_request_headers(headers).unwrap();
/// assert_eq!(offer.protocols(), ["chat", "superchat"]);
///
/// // What a hyper or axum handler would put on its 101 response.
/// let response_headers = offer.response_headers(Some("chat")).unwrap();
/// assert_eq!(
///     response_headers,
///     [
///         ("Upgrade", "websocket".to_string()),
///         ("Connection", "Upgrade".to_string()),
///         ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string()),
///         ("Sec-WebSocket-Protocol", "chat".to_string()),
///     ]
/// );
///
/// // A client of another version gets 426, with the header that names ours.
/// let old = [
///     ("host", "relay.example"),
///     ("upgrade", "websocket"),
///     ("connection", "upgrade"),
///     ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
///     ("sec-websocket-version", "8"),
/// ];
/// let rejection = validate_request_headers(old).unwrap_err();
/// assert_eq!(rejection.status(), 426);
/// assert_eq!(rejection.headers(), [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]);
/// ```
pub fn validate_request_headers<I, N, V>(headers: I) -> Result<Offer, Rejection>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut host: Option<Vec<u8>> = None;
    let mut origin: Option<Vec<u8>> = None;
    let mut key: Option<Vec<u8>> = None;
    let mut version: Option<Vec<u8>> = None;
    let mut upgrade = false;
    let mut connection = false;
    let mut protocols: Vec<String> = Vec::new();
    let mut extensions: Vec<String> = Vec::new();
    let mut bad_protocols = false;
    let mut bad_extensions = false;
    let mut body = false;
    let mut duplicate: Option<&'static str> = None;

    for (name, value) in headers {
        let (name, value) = (name.as_ref(), trim(value.as_ref()));
        let slot = if name.eq_ignore_ascii_case(b"host") {
            Some((&mut host, SINGLE[0]))
        } else if name.eq_ignore_ascii_case(b"origin") {
            Some((&mut origin, SINGLE[1]))
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            Some((&mut key, SINGLE[2]))
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            Some((&mut version, SINGLE[3]))
        } else {
            None
        };
        if let Some((slot, canonical)) = slot {
            if slot.is_some() {
                duplicate = duplicate.or(Some(canonical));
            } else {
                *slot = Some(value.to_vec());
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // List headers may be split over several lines (RFC 9110 section 5.3).
            upgrade |= list_contains(value, "websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= list_contains(value, "upgrade");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            match parse_protocols(value) {
                Some(names) => protocols.extend(names.into_iter().map(String::from)),
                None => bad_protocols = true,
            }
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            match parse_extensions(value) {
                Some(offers) => extensions.extend(offers.into_iter().map(String::from)),
                None => bad_extensions = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && value != b"0")
        {
            body = true;
        }
    }

    let bad = |reason: &str| Rejection::new(400, reason);
    if let Some(name) = duplicate {
        return Err(bad(&format!("duplicate {name} header")));
    }
    let host = host.ok_or_else(|| bad("missing Host header"))?;
    if !upgrade {
        return Err(bad("Upgrade header must contain \"websocket\""));
    }
    if !connection {
        return Err(bad("Connection header must contain \"Upgrade\""));
    }
    let version = version.ok_or_else(|| bad("missing Sec-WebSocket-Version header"))?;
    if version != WEBSOCKET_VERSION.as_bytes() {
        return Err(Rejection::new(
            426,
            "unsupported Sec-WebSocket-Version: only 13 is supported",
        ));
    }
    let key = key.ok_or_else(|| bad("missing Sec-WebSocket-Key header"))?;
    if decode_key(&key).is_none() {
        return Err(bad(
            "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
        ));
    }
    if bad_protocols {
        return Err(bad(
            "Sec-WebSocket-Protocol must be a comma-separated list of tokens",
        ));
    }
    if bad_extensions {
        return Err(bad("malformed Sec-WebSocket-Extensions header"));
    }
    if body {
        // Bytes after the head must be WebSocket frames; a body would be read as one.
        return Err(bad("an upgrade request must not have a body"));
    }
    let host = String::from_utf8(host).map_err(|_| bad("Host header is not valid UTF-8"))?;
    let origin = origin
        .map(String::from_utf8)
        .transpose()
        .map_err(|_| bad("Origin header is not valid UTF-8"))?;
    // A valid key is 24 base64 characters, so ASCII.
    let key = String::from_utf8(key).unwrap_or_default();
    Ok(Offer {
        host,
        origin,
        protocols,
        extensions,
        key,
    })
}

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    host: String,
    origin: Option<String>,
    protocols: Vec<String>,
    extensions: Vec<String>,
    key: String,
}

impl Offer {
    /// The `Host` header.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Origin` header, which browsers send and servers should check (section 10.2).
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The subprotocols offered, in the client's order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extension offers, each as sent (name, then `;`-separated parameters), such as
    /// `permessage-deflate; client_max_window_bits`. This crate implements none, so they are for
    /// information only.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The `Sec-WebSocket-Key`, already checked to be base64 of 16 bytes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value that answers this key.
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }

    /// The headers of the 101 response that accepts this offer, in order, for callers whose HTTP
    /// stack writes the response: `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, and
    /// `Sec-WebSocket-Protocol` if `protocol` is given.
    ///
    /// Fails if `protocol` is not one the client offered (section 4.2.2, item 5.4).
    pub fn response_headers(
        &self,
        protocol: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>, AcceptError> {
        let mut headers = alloc::vec![
            ("Upgrade", String::from("websocket")),
            ("Connection", String::from("Upgrade")),
            ("Sec-WebSocket-Accept", self.accept_key()),
        ];
        if let Some(protocol) = protocol {
            if !self.protocols.iter().any(|p| p == protocol) {
                return Err(AcceptError::ProtocolNotOffered(String::from(protocol)));
            }
            headers.push(("Sec-WebSocket-Protocol", String::from(protocol)));
        }
        Ok(headers)
    }

    /// The `101 Switching Protocols` response bytes that accept this offer.
    pub fn accept(&self, accept: &Accept) -> Result<Vec<u8>, AcceptError> {
        for (name, value) in &accept.headers {
            if !is_token(name.as_bytes()) || !is_field_value(value) {
                return Err(AcceptError::InvalidHeader(name.clone()));
            }
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(AcceptError::ReservedHeader(name.clone()));
            }
        }
        let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in self.response_headers(accept.protocol.as_deref())? {
            // Writing to a String cannot fail.
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let mut response = head.into_bytes();
        for (name, value) in &accept.headers {
            response.extend_from_slice(name.as_bytes());
            response.extend_from_slice(b": ");
            response.extend_from_slice(value);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"\r\n");
        Ok(response)
    }
}

/// Headers a caller may not add to a 101: the handshake writes the first four itself, this
/// crate implements no extension to agree to, and a 101 has no body to frame.
const RESERVED: [&str; 7] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

/// How to accept a request: which subprotocol, which extra response headers.
///
/// ```
/// use wsframe::handshake::Accept;
/// let accept = Accept::new().protocol("chat").header("Set-Cookie", "session=1");
/// # let _ = accept;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    protocol: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Accept {
    /// Accept with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Accept::default()
    }

    /// Selects one of the subprotocols the client offered.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a response header (`Set-Cookie`, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Why an [`Accept`] could not be turned into a response. These are mistakes of the caller, not
/// of the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The chosen subprotocol was not among those offered; the client would fail the connection
    /// (section 4.1, item 6 of the response checks).
    #[error("subprotocol {0:?} was not offered by the client")]
    ProtocolNotOffered(String),
    /// A header name that is not a token, or a value with CR, LF or another control character,
    /// which could split the response.
    #[error("invalid response header {0:?}")]
    InvalidHeader(String),
    /// A header the handshake writes itself, or one that would contradict it.
    #[error("response header {0:?} is set by the handshake and cannot be added")]
    ReservedHeader(String),
}

/// A complete, valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    offer: Offer,
    leftover: Bytes,
}

impl Request {
    /// The path of the request target, such as `/chat`, as sent (still percent-encoded).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query of the request target, without its `?`, as sent.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Every header, name as sent and value as sent.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// The WebSocket part of the request: key, subprotocols, extensions, Origin, Host.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// The `Host` header.
    pub fn host(&self) -> &str {
        self.offer.host()
    }

    /// The `Origin` header, which browsers send and servers should check (section 10.2).
    pub fn origin(&self) -> Option<&str> {
        self.offer.origin()
    }

    /// The subprotocols offered, in the client's order of preference.
    pub fn protocols(&self) -> &[String] {
        self.offer.protocols()
    }

    /// The extension offers, each as sent; see [`Offer::extensions`].
    pub fn extensions(&self) -> &[String] {
        self.offer.extensions()
    }

    /// The `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        self.offer.key()
    }

    /// The `101 Switching Protocols` response bytes. After writing them, hand
    /// [`leftover`](Self::leftover) to the engine.
    pub fn accept(&self, accept: &Accept) -> Result<Vec<u8>, AcceptError> {
        self.offer.accept(accept)
    }

    /// A refusal of the caller's choosing (403 for an Origin not allowed, 404 for an unknown
    /// path...). Write [`Rejection::response`] and close.
    ///
    /// # Panics
    ///
    /// If `status` is not in 400..=599; see [`Rejection::new`].
    pub fn reject(&self, status: u16, reason: &str) -> Rejection {
        Rejection::new(status, reason)
    }

    /// Bytes that arrived after the request head, such as a pipelined first frame. They belong
    /// to the engine.
    pub fn leftover(&self) -> &[u8] {
        &self.leftover
    }

    /// The leftover bytes, without copying.
    pub fn into_leftover(self) -> Bytes {
        self.leftover
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn offer() -> Offer {
        validate_request_headers([
            ("Host", "h"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "chat"),
        ])
        .unwrap()
    }

    #[test]
    fn accept_writes_extra_headers_after_the_handshake_ones() {
        let response = offer()
            .accept(&Accept::new().protocol("chat").header("X-A", "1"))
            .unwrap();
        assert_eq!(
            response,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: chat\r\nX-A: 1\r\n\r\n"
        );
    }

    #[test]
    fn accept_refuses_caller_mistakes() {
        let o = offer();
        assert_eq!(
            o.accept(&Accept::new().protocol("superchat")),
            Err(AcceptError::ProtocolNotOffered("superchat".into()))
        );
        assert_eq!(
            o.accept(&Accept::new().header("X-A", "1\r\nX-B: 2")),
            Err(AcceptError::InvalidHeader("X-A".into()))
        );
        assert_eq!(
            o.accept(&Accept::new().header("X A", "1")),
            Err(AcceptError::InvalidHeader("X A".into()))
        );
        assert_eq!(
            o.accept(&Accept::new().header("sec-websocket-extensions", "x")),
            Err(AcceptError::ReservedHeader(
                "sec-websocket-extensions".into()
            ))
        );
        assert_eq!(
            AcceptError::ReservedHeader("Upgrade".into()).to_string(),
            "response header \"Upgrade\" is set by the handshake and cannot be added"
        );
    }
}
