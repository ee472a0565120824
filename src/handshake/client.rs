//! The client side: build an upgrade request for a `ws://` or `wss://` URL, validate the
//! server's answer.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use bytes::Bytes;

use super::{
    accept_key, encode_key, extension_name, find_header, is_field_value, is_token, list_contains,
    own_headers, parse_error_reason, parse_extensions, trim, HandshakeLimits, HeadReader,
    WEBSOCKET_VERSION,
};
use crate::random::RandomSource;

/// Where a `ws://` or `wss://` URL points: the host and port to connect to, whether the
/// connection must be TLS, and the resource to ask for.
///
/// ```
/// use wsframe::handshake::Target;
/// let t = Target::parse("ws://[::1]:9001/feed?since=5").unwrap();
/// assert_eq!((t.host(), t.port(), t.resource()), ("::1", 9001, "/feed?since=5"));
/// assert_eq!(t.host_header(), "[::1]:9001");
///
/// let t = Target::parse("wss://relay.example/feed").unwrap();
/// assert_eq!((t.port(), t.is_secure(), t.host_header()), (443, true, "relay.example"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
    secure: bool,
    host_header: String,
    resource: String,
}

impl Target {
    /// Parses a `ws://host[:port][/path][?query]` or `wss://...` URL (section 3). The scheme
    /// is case-insensitive and the port defaults to 80 (`ws`) or 443 (`wss`). A `wss://`
    /// target needs a TLS stream, which the caller opens (wsframe has no TLS of its own).
    pub fn parse(url: &str) -> Result<Self, RequestError> {
        let (scheme, rest) = url.split_once("://").ok_or(RequestError::NotWs)?;
        let secure = if scheme.eq_ignore_ascii_case("wss") {
            true
        } else if scheme.eq_ignore_ascii_case("ws") {
            false
        } else {
            return Err(RequestError::NotWs);
        };
        let default_port = if secure { 443 } else { 80 };
        // Section 3: fragments are meaningless in WebSocket URIs and must not be used.
        if rest.contains('#') {
            return Err(RequestError::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(RequestError::UserInfo);
        }
        let (host, bracketed, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or(RequestError::InvalidHost)?;
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(RequestError::InvalidHost);
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(RequestError::InvalidHost)?),
            };
            (host, true, port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let valid = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            if host.is_empty() {
                return Err(RequestError::MissingHost);
            }
            if !host.bytes().all(valid) {
                return Err(RequestError::InvalidHost);
            }
            (host, false, port)
        };
        let port = match port {
            // RFC 3986 section 3.2.3 allows an empty port, meaning the default.
            None | Some("") => default_port,
            Some(digits) => {
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RequestError::InvalidPort);
                }
                match digits.parse::<u16>() {
                    Ok(port) if port != 0 => port,
                    _ => return Err(RequestError::InvalidPort),
                }
            }
        };
        // The resource goes verbatim into the request line; a space or control byte would
        // corrupt it and a non-ASCII one is not allowed in a URI.
        if !resource.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RequestError::InvalidResource);
        }
        let resource = if resource.starts_with('/') {
            String::from(resource)
        } else {
            let mut r = String::from("/");
            r.push_str(resource);
            r
        };
        let mut host_header = String::new();
        // Writing to a String cannot fail.
        let _ = if bracketed {
            write!(host_header, "[{host}]")
        } else {
            write!(host_header, "{host}")
        };
        // Section 4.1, item 4: the port appears only when it is not the scheme's default.
        if port != default_port {
            let _ = write!(host_header, ":{port}");
        }
        Ok(Target {
            host: String::from(host),
            port,
            secure,
            host_header,
            resource,
        })
    }

    /// The host to connect to; an IPv6 address comes without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URL is `wss://`: the connection must be TLS.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The `Host` header value: the host, bracketed if IPv6, and the port unless it is the
    /// scheme's default (80, or 443 for `wss://`).
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// Path and query for the request line, such as `/chat?room=1`; `/` when the URL has none.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

/// Options for the client's request.
///
/// ```
/// use wsframe::handshake::ClientOptions;
/// let options = ClientOptions::new()
///     .protocol("chat")
///     .protocol("superchat")
///     .header("Origin", "http://example.com");
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    protocols: Vec<String>,
    headers: Vec<(String, Vec<u8>)>,
    limits: HandshakeLimits,
}

impl ClientOptions {
    /// No subprotocols, no extra headers, default limits.
    pub fn new() -> Self {
        ClientOptions::default()
    }

    /// Offers a subprotocol; offers go out in the order they are added, most preferred first.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a request header (`Origin`, `Authorization`, `Cookie`...).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bounds on the server's response head.
    pub fn limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Why a client request could not be built: a URL or an option this crate cannot send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A `wss://` URL given to an adapter's `connect`, which opens plain TCP only. Open the
    /// TLS stream yourself (tokio-rustls, tokio-native-tls) and hand it to
    /// `io::tokio::WebSocket::connect_over` or `io::tokio::connect_over`.
    #[error(
        "wss:// needs TLS, which wsframe does not open itself: open the TLS stream and hand it to \
         the tokio adapter's connect_over (or run handshake::ClientHandshake over it)"
    )]
    Tls,
    /// Some other scheme, or none.
    #[error("not a WebSocket URL: it must start with ws:// or wss://")]
    NotWs,
    /// No host between `ws://` and the path.
    #[error("the URL has no host")]
    MissingHost,
    /// A host with characters outside a DNS name or a bracketed IPv6 address.
    #[error("the URL's host is not a DNS name, IPv4 address or bracketed IPv6 address")]
    InvalidHost,
    /// A port that is not a number from 1 to 65535.
    #[error("the URL's port must be a number from 1 to 65535")]
    InvalidPort,
    /// `user:password@` in the URL, which section 3 does not allow.
    #[error("user information in the URL is not supported; send an Authorization header")]
    UserInfo,
    /// A `#fragment`, which section 3 forbids.
    #[error("WebSocket URLs cannot have a #fragment")]
    Fragment,
    /// A path or query with spaces, control or non-ASCII characters.
    #[error("the URL's path and query must be printable ASCII; percent-encode other characters")]
    InvalidResource,
    /// A subprotocol that is not an HTTP token (section 4.1, item 10).
    #[error("subprotocol {0:?} is not a valid token")]
    InvalidProtocol(String),
    /// The same subprotocol offered twice (section 4.1 requires unique names).
    #[error("subprotocol {0:?} is offered twice")]
    DuplicateProtocol(String),
    /// A header name that is not a token, or a value with CR, LF or another control character.
    #[error("invalid request header {0:?}")]
    InvalidHeader(String),
    /// A header the handshake writes itself, or an extension offer, which this crate cannot
    /// honour.
    #[error("request header {0:?} is set by the handshake and cannot be added")]
    ReservedHeader(String),
}

/// Headers the caller may not add: the handshake writes these, and this crate implements no
/// extension it could offer.
const RESERVED: [&str; 8] = [
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
];

/// Builds a client's upgrade request and validates the server's answer (section 4.1).
///
/// ```
/// use wsframe::handshake::{ClientHandshake, ClientOptions, ClientStatus, HandshakeError};
///
/// let mut rng = |buf: &mut [u8]| buf.copy_from_slice(b"the sample nonce");
/// let (mut client, request) =
///     ClientHandshake::new("ws://example.com/chat", ClientOptions::new(), &mut rng).unwrap();
/// assert_eq!(
///     request,
///     b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
/// );
///
/// // A server that refuses is reported with its status, for the caller to act on.
/// let refusal = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n";
/// match client.receive(refusal) {
///     Err(HandshakeError::Rejected { status: 401, .. }) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    target: Target,
    accept: String,
    protocols: Vec<String>,
    limits: HandshakeLimits,
    reader: HeadReader,
    finished: bool,
}

/// Progress of a [`ClientHandshake`].
#[derive(Debug)]
pub enum ClientStatus {
    /// The response head is not complete yet: feed more bytes.
    Partial,
    /// The server accepted; the connection speaks WebSocket from here on.
    Complete(Response),
}

/// A server's valid `101 Switching Protocols` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    protocol: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    leftover: Bytes,
}

impl Response {
    /// The subprotocol the server chose, one of those offered.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Every header, name as sent and value as sent.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// Bytes that arrived after the response head (frames the server sent at once). They belong
    /// to the engine.
    pub fn leftover(&self) -> &[u8] {
        &self.leftover
    }

    /// The leftover bytes, without copying.
    pub fn into_leftover(self) -> Bytes {
        self.leftover
    }
}

/// Why the server's answer does not open a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with a status other than 101: a refusal (401, 403, 404), a redirect
    /// or an outage (503). The body, if any, is not read.
    #[error("server refused the WebSocket upgrade: {status} {reason}")]
    Rejected {
        /// The response status.
        status: u16,
        /// The reason phrase of the status line.
        reason: String,
        /// Every header (`WWW-Authenticate`, `Location`, `Retry-After`...).
        headers: Vec<(String, Vec<u8>)>,
    },
    /// The bytes are not an HTTP/1.x response.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// The response head passed [`HandshakeLimits::max_header_bytes`].
    #[error("response head exceeds {0} bytes")]
    TooLarge(usize),
    /// The response had more than [`HandshakeLimits::max_headers`] header fields.
    #[error("response has more than {0} header fields")]
    TooManyHeaders(usize),
    /// A 101 in HTTP/1.0, which has no upgrade mechanism.
    #[error("101 response must be HTTP/1.1")]
    NotHttp11,
    /// A 101 without `Upgrade: websocket`.
    #[error("101 response lacks \"Upgrade: websocket\"")]
    MissingUpgrade,
    /// A 101 without `Connection: Upgrade`.
    #[error("101 response lacks \"Connection: Upgrade\"")]
    MissingConnection,
    /// A 101 without `Sec-WebSocket-Accept`.
    #[error("101 response lacks Sec-WebSocket-Accept")]
    MissingAccept,
    /// A `Sec-WebSocket-Accept` that does not answer our key: the server did not read our
    /// request as a WebSocket handshake (a cache or a confused proxy, say).
    #[error("Sec-WebSocket-Accept is {found:?}, expected {expected:?}")]
    WrongAccept {
        /// The value the key calls for.
        expected: String,
        /// The value received (invalid UTF-8 replaced).
        found: String,
    },
    /// A header that may appear only once appeared twice.
    #[error("101 response repeats the {0} header")]
    DuplicateHeader(&'static str),
    /// A subprotocol we did not offer, or a list where one name belongs.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    ProtocolNotOffered(String),
    /// An extension agreed to that we did not offer (we offer none).
    #[error("server agreed to extension {0:?}, which was not offered")]
    ExtensionNotOffered(String),
    /// A `Sec-WebSocket-Extensions` header that does not follow section 9.1's grammar.
    #[error("malformed Sec-WebSocket-Extensions header in 101 response")]
    MalformedExtensions,
}

impl HandshakeError {
    /// The status the server answered with: its own for [`Rejected`](Self::Rejected), 101 for a
    /// 101 that fails the checks, `None` when no status line could be read.
    pub fn status(&self) -> Option<u16> {
        match self {
            HandshakeError::Rejected { status, .. } => Some(*status),
            HandshakeError::Malformed(_)
            | HandshakeError::TooLarge(_)
            | HandshakeError::TooManyHeaders(_) => None,
            _ => Some(101),
        }
    }
}

impl ClientHandshake {
    /// Builds the request for `url` with a fresh 16-byte nonce from `rng` (section 4.1, item 7).
    /// Returns the handshake, which validates the answer, and the request bytes to write.
    ///
    /// Headers from `options` follow the handshake's own. Connect to
    /// [`target`](Self::target)'s host and port.
    pub fn new(
        url: &str,
        options: ClientOptions,
        rng: &mut dyn RandomSource,
    ) -> Result<(Self, Vec<u8>), RequestError> {
        let target = Target::parse(url)?;
        for (i, protocol) in options.protocols.iter().enumerate() {
            if !is_token(protocol.as_bytes()) {
                return Err(RequestError::InvalidProtocol(protocol.clone()));
            }
            if options.protocols[..i].contains(protocol) {
                return Err(RequestError::DuplicateProtocol(protocol.clone()));
            }
        }
        for (name, value) in &options.headers {
            if !is_token(name.as_bytes()) || !is_field_value(value) {
                return Err(RequestError::InvalidHeader(name.clone()));
            }
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(RequestError::ReservedHeader(name.clone()));
            }
        }
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce);
        let key = encode_key(&nonce);

        let mut head = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            head,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n",
            target.resource(),
            target.host_header(),
        );
        if !options.protocols.is_empty() {
            let _ = write!(
                head,
                "Sec-WebSocket-Protocol: {}\r\n",
                options.protocols.join(", ")
            );
        }
        let mut request = head.into_bytes();
        for (name, value) in &options.headers {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");

        let handshake = ClientHandshake {
            target,
            accept: accept_key(key.as_bytes()),
            protocols: options.protocols,
            limits: options.limits,
            reader: HeadReader::new(options.limits.max_header_bytes),
            finished: false,
        };
        Ok((handshake, request))
    }

    /// Where to connect.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The `Sec-WebSocket-Accept` the server must answer with.
    pub fn expected_accept(&self) -> &str {
        &self.accept
    }

    /// Feeds response bytes as they arrive, in pieces of any size.
    ///
    /// `Ok(Partial)` needs more bytes; `Ok(Complete(response))` means the connection is open,
    /// with any bytes after the head in [`Response::leftover`]; `Err` says why it is not (for a
    /// refusal, [`HandshakeError::Rejected`] carries the server's status).
    ///
    /// # Panics
    ///
    /// If called again after it returned `Complete` or `Err`.
    pub fn receive(&mut self, data: &[u8]) -> Result<ClientStatus, HandshakeError> {
        assert!(
            !self.finished,
            "ClientHandshake::receive called after the handshake finished"
        );
        let result = self.step(data);
        if !matches!(result, Ok(ClientStatus::Partial)) {
            self.finished = true;
        }
        result
    }

    fn step(&mut self, data: &[u8]) -> Result<ClientStatus, HandshakeError> {
        let pushed = self.reader.push(data);
        if !pushed.parse {
            return Ok(ClientStatus::Partial);
        }
        let mut slots = [httparse::EMPTY_HEADER; HandshakeLimits::MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots[..self.limits.header_slots()]);
        let (end, response) = match parsed.parse(&self.reader.buf) {
            Ok(httparse::Status::Complete(end)) => (end, self.check(&parsed)?),
            Ok(httparse::Status::Partial) if pushed.full => {
                return Err(HandshakeError::TooLarge(self.limits.max_header_bytes))
            }
            Ok(httparse::Status::Partial) => return Ok(ClientStatus::Partial),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders(self.limits.header_slots()))
            }
            Err(e) => return Err(HandshakeError::Malformed(parse_error_reason(e))),
        };
        let leftover = self.reader.leftover(end, &data[pushed.taken..]);
        Ok(ClientStatus::Complete(Response {
            leftover,
            ..response
        }))
    }

    /// Section 4.1's checks of the server's response, items 1 to 6.
    fn check(&self, parsed: &httparse::Response<'_, '_>) -> Result<Response, HandshakeError> {
        // A complete parse fills in the status line.
        let status = parsed.code.unwrap_or_default();
        if status != 101 {
            return Err(HandshakeError::Rejected {
                status,
                reason: String::from(parsed.reason.unwrap_or_default()),
                headers: own_headers(parsed.headers),
            });
        }
        if parsed.version != Some(1) {
            return Err(HandshakeError::NotHttp11);
        }
        let mut upgrade = false;
        let mut connection = false;
        let mut accept: Option<&[u8]> = None;
        let mut protocol: Option<&[u8]> = None;
        let mut extensions: Vec<&str> = Vec::new();
        for header in parsed.headers.iter() {
            let (name, value) = (header.name, trim(header.value));
            if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= list_contains(value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= list_contains(value, "upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                if accept.replace(value).is_some() {
                    return Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Accept"));
                }
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                if protocol.replace(value).is_some() {
                    return Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Protocol"));
                }
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                let offers = parse_extensions(value).ok_or(HandshakeError::MalformedExtensions)?;
                extensions.extend(offers.into_iter().map(extension_name));
            }
        }
        if !upgrade {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !connection {
            return Err(HandshakeError::MissingConnection);
        }
        let accept = accept.ok_or(HandshakeError::MissingAccept)?;
        if accept != self.accept.as_bytes() {
            return Err(HandshakeError::WrongAccept {
                expected: self.accept.clone(),
                found: String::from_utf8_lossy(accept).into_owned(),
            });
        }
        let protocol = match protocol {
            None => None,
            Some(value) => match self.protocols.iter().find(|p| p.as_bytes() == value) {
                Some(offered) => Some(offered.clone()),
                None => {
                    return Err(HandshakeError::ProtocolNotOffered(
                        String::from_utf8_lossy(value).into_owned(),
                    ))
                }
            },
        };
        // We offer no extensions, so any the server names is one we did not offer.
        if let Some(name) = extensions.first() {
            return Err(HandshakeError::ExtensionNotOffered(String::from(*name)));
        }
        Ok(Response {
            protocol,
            headers: own_headers(parsed.headers),
            leftover: Bytes::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_omits_default_port() {
        let t = Target::parse("WS://Example.com:80").unwrap();
        assert_eq!(t.host_header(), "Example.com");
        assert_eq!(t.resource(), "/");
        let t = Target::parse("ws://example.com:?a=1").unwrap();
        assert_eq!((t.port(), t.resource()), (80, "/?a=1"));
        let t = Target::parse("ws://10.0.0.1:8080/x").unwrap();
        assert_eq!((t.host(), t.host_header()), ("10.0.0.1", "10.0.0.1:8080"));
        assert!(!t.is_secure());
    }

    #[test]
    fn wss_defaults_to_port_443_and_omits_only_that_port() {
        let t = Target::parse("WSS://Example.com/chat").unwrap();
        assert_eq!((t.port(), t.is_secure()), (443, true));
        assert_eq!((t.host_header(), t.resource()), ("Example.com", "/chat"));
        let t = Target::parse("wss://example.com:443").unwrap();
        assert_eq!(t.host_header(), "example.com");
        // 80 is not wss's default: it stays in the Host header.
        let t = Target::parse("wss://[::1]:80/").unwrap();
        assert_eq!((t.host(), t.host_header()), ("::1", "[::1]:80"));
        let mut rng = |buf: &mut [u8]| buf.fill(1);
        let (_, request) =
            ClientHandshake::new("wss://example.com/feed", ClientOptions::new(), &mut rng).unwrap();
        let request = core::str::from_utf8(&request).unwrap();
        assert!(
            request.starts_with("GET /feed HTTP/1.1\r\nHost: example.com\r\n"),
            "{request}"
        );
    }

    #[test]
    fn bad_urls() {
        let cases: [(&str, RequestError); 13] = [
            ("http://example.com/", RequestError::NotWs),
            ("https://example.com/", RequestError::NotWs),
            ("example.com/", RequestError::NotWs),
            ("ws:///path", RequestError::MissingHost),
            ("ws://exa mple.com/", RequestError::InvalidHost),
            ("ws://[::1/", RequestError::InvalidHost),
            ("ws://[::1]x/", RequestError::InvalidHost),
            ("ws://example.com:0/", RequestError::InvalidPort),
            ("ws://example.com:65536/", RequestError::InvalidPort),
            ("ws://user:pw@example.com/", RequestError::UserInfo),
            ("ws://example.com/#top", RequestError::Fragment),
            ("ws://example.com/a b", RequestError::InvalidResource),
            ("wss://example.com:0/", RequestError::InvalidPort),
        ];
        for (url, error) in cases {
            assert_eq!(Target::parse(url), Err(error), "{url}");
        }
        assert_eq!(
            Target::parse("ws://example.com/caf\u{e9}"),
            Err(RequestError::InvalidResource)
        );
        assert_eq!(
            Target::parse("ws://example.com:+1/"),
            Err(RequestError::InvalidPort)
        );
    }
}
