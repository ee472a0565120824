//! The opening handshake (RFC 6455 section 4): every acceptance and rejection rule of both sides,
//! with exact statuses, reasons and bytes, plus property tests for splitting, garbage input and
//! the shape of every error response.

use proptest::prelude::*;
use wsframe::handshake::{
    accept_key, check_accept_key, validate_request_headers, Accept, ClientHandshake, ClientOptions,
    ClientStatus, HandshakeError, HandshakeLimits, Rejection, Request, RequestError, Response,
    ServerHandshake, ServerStatus, Target,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The header lines of a valid request, without the request line.
const VALID_HEADERS: [&str; 5] = [
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// A request with `request_line` and `headers`, ended by the blank line.
fn request(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn valid_request() -> Vec<u8> {
    request("GET /chat HTTP/1.1", &VALID_HEADERS)
}

/// The valid headers with the one named `name` replaced by `line`, or dropped if `line` is None.
fn with_header(name: &str, line: Option<&str>) -> Vec<u8> {
    let mut headers: Vec<&str> = VALID_HEADERS
        .iter()
        .copied()
        .filter(|h| !h.starts_with(name))
        .collect();
    headers.extend(line);
    request("GET /chat HTTP/1.1", &headers)
}

/// `bytes` with the first `from` replaced by `to`, for bytes a `&str` cannot hold.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

fn serve(bytes: &[u8]) -> Result<ServerStatus, Rejection> {
    ServerHandshake::new(HandshakeLimits::default()).receive(bytes)
}

fn accepted(bytes: &[u8]) -> Request {
    match serve(bytes) {
        Ok(ServerStatus::Complete(request)) => request,
        other => panic!("expected a complete request, got {other:?}"),
    }
}

/// Feeds `bytes` whole and expects a rejection, checked for well-formedness.
fn rejected(bytes: &[u8]) -> Rejection {
    match serve(bytes) {
        Err(rejection) => {
            assert_well_formed(&rejection);
            rejection
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn assert_rejected(bytes: &[u8], status: u16, reason: &str) -> Rejection {
    let rejection = rejected(bytes);
    assert_eq!(
        (rejection.status(), rejection.reason()),
        (status, reason),
        "for {:?}",
        String::from_utf8_lossy(bytes)
    );
    rejection
}

/// A rejection is a complete HTTP/1.1 response: a status line with its status, `Connection:
/// close`, a `Content-Length` that matches the body exactly, and the reason as the body.
fn assert_well_formed(rejection: &Rejection) {
    let bytes = rejection.response();
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut slots);
    let end = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(end)) => end,
        other => panic!("rejection does not parse as HTTP: {other:?}"),
    };
    assert_eq!(parsed.version, Some(1));
    assert_eq!(parsed.code, Some(rejection.status()));
    assert!(!parsed.reason.unwrap().is_empty());
    let header = |name: &str| {
        let values: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect();
        assert_eq!(values.len(), 1, "exactly one {name} header");
        std::str::from_utf8(values[0]).unwrap()
    };
    assert!(header("Connection")
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("close")));
    let body = &bytes[end..];
    assert_eq!(header("Content-Length"), body.len().to_string());
    assert_eq!(body, format!("{}\n", rejection.reason()).as_bytes());
    assert!(!rejection.reason().contains(['\r', '\n']));
    for (name, value) in rejection.headers() {
        assert_eq!(header(name), *value);
    }
}

// Server: acceptance.

#[test]
fn valid_request_is_parsed() {
    let bytes = request(
        "GET /chat/room?id=7&x=y HTTP/1.1",
        &[
            "Host: server.example.com:8080",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Origin: http://example.com",
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Protocol: v2.chat",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo",
            "Sec-WebSocket-Version: 13",
            "X-Custom: @bytes",
        ],
    );
    let bytes = replace(&bytes, b"@bytes", b"\x80bytes");
    let r = accepted(&bytes);
    assert_eq!(r.path(), "/chat/room");
    assert_eq!(r.query(), Some("id=7&x=y"));
    assert_eq!(r.host(), "server.example.com:8080");
    assert_eq!(r.origin(), Some("http://example.com"));
    assert_eq!(r.protocols(), ["chat", "superchat", "v2.chat"]);
    assert_eq!(
        r.extensions(),
        ["permessage-deflate; client_max_window_bits", "x-foo"]
    );
    assert_eq!(r.key(), KEY);
    assert_eq!(r.offer().accept_key(), ACCEPT);
    assert_eq!(r.headers().len(), 10);
    assert_eq!(
        r.headers()[0],
        ("Host".to_string(), b"server.example.com:8080".to_vec())
    );
    assert_eq!(r.header("x-custom"), Some(&b"\x80bytes"[..]));
    assert_eq!(r.header("Cookie"), None);
    assert_eq!(r.leftover(), b"");
}

#[test]
fn accept_answers_with_the_rfc_example_key() {
    let response = accepted(&valid_request()).accept(&Accept::new()).unwrap();
    assert_eq!(
        response,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        )
        .as_bytes()
    );
}

#[test]
fn accept_with_protocol_and_headers() {
    let r = accepted(&with_header(
        "Sec-WebSocket-Protocol",
        Some("Sec-WebSocket-Protocol: chat, superchat"),
    ));
    let response = r
        .accept(
            &Accept::new()
                .protocol("superchat")
                .header("Set-Cookie", "s=1"),
        )
        .unwrap();
    assert_eq!(
        response,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: superchat\r\n\
             Set-Cookie: s=1\r\n\r\n"
        )
        .as_bytes()
    );
}

#[test]
fn header_names_and_tokens_ignore_case() {
    let bytes = request(
        "GET / HTTP/1.1",
        &[
            "host: a",
            "UPGRADE: WebSocket",
            "connection: keep-alive, upgrade",
            "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
            "SEC-WEBSOCKET-VERSION: 13",
        ],
    );
    assert_eq!(accepted(&bytes).path(), "/");
}

#[test]
fn list_headers_may_span_lines_and_hold_other_tokens() {
    let bytes = with_header(
        "Connection",
        Some("Connection: keep-alive\r\nConnection: Upgrade"),
    );
    accepted(&bytes);
    let bytes = with_header("Upgrade", Some("Upgrade: h2c, websocket"));
    accepted(&bytes);
}

#[test]
fn empty_body_and_whitespace_are_tolerated() {
    accepted(&with_header("Host", Some("Host: a\r\nContent-Length: 0")));
    accepted(&with_header(
        "Sec-WebSocket-Key",
        Some("Sec-WebSocket-Key: \t dGhlIHNhbXBsZSBub25jZQ== "),
    ));
    // RFC 9112 section 2.2: a server should ignore a blank line before the request line.
    let mut bytes = b"\r\n".to_vec();
    bytes.extend(valid_request());
    accepted(&bytes);
}

#[test]
fn one_byte_at_a_time() {
    let bytes = valid_request();
    let mut server = ServerHandshake::default();
    for &b in &bytes[..bytes.len() - 1] {
        assert!(matches!(server.receive(&[b]), Ok(ServerStatus::Partial)));
    }
    match server.receive(&bytes[bytes.len() - 1..]) {
        Ok(ServerStatus::Complete(r)) => assert_eq!(r, accepted(&bytes)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_reads_change_nothing() {
    let mut server = ServerHandshake::default();
    assert!(matches!(server.receive(b""), Ok(ServerStatus::Partial)));
    assert!(matches!(server.receive(b"GET"), Ok(ServerStatus::Partial)));
    assert!(matches!(server.receive(b""), Ok(ServerStatus::Partial)));
    assert!(matches!(
        server.receive(&valid_request()[3..]),
        Ok(ServerStatus::Complete(_))
    ));
}

#[test]
fn pipelined_frame_is_handed_over() {
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    let mut bytes = valid_request();
    bytes.extend_from_slice(&frame);
    let r = accepted(&bytes);
    assert_eq!(r.leftover(), frame);
    assert_eq!(r.into_leftover().as_ref(), frame);
}

#[test]
fn pipelined_bytes_past_the_limit_are_kept() {
    // The head fills the limit exactly, so the frame bytes of the same read are never buffered
    // and must still come back.
    let head = valid_request();
    let mut bytes = head.clone();
    bytes.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]);
    let mut server = ServerHandshake::new(HandshakeLimits::new(head.len(), 64));
    match server.receive(&bytes) {
        Ok(ServerStatus::Complete(r)) => assert_eq!(r.leftover(), [0x88, 0x80, 0, 0, 0, 0]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn leftover_split_between_reads() {
    let head = valid_request();
    let mut server = ServerHandshake::default();
    assert!(matches!(
        server.receive(&head[..head.len() - 2]),
        Ok(ServerStatus::Partial)
    ));
    match server.receive(b"\r\nxyz") {
        Ok(ServerStatus::Complete(r)) => assert_eq!(r.leftover(), b"xyz"),
        other => panic!("{other:?}"),
    }
}

// Server: rejections.

#[test]
fn other_methods_get_405_with_allow() {
    let r = assert_rejected(
        &request("POST /chat HTTP/1.1", &VALID_HEADERS),
        405,
        "method POST not allowed: a WebSocket handshake is a GET",
    );
    assert_eq!(r.headers(), [("Allow", "GET")]);
    assert_eq!(
        r.response(),
        b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\n\
          Content-Type: text/plain; charset=utf-8\r\nContent-Length: 56\r\nAllow: GET\r\n\r\n\
          method POST not allowed: a WebSocket handshake is a GET\n"
    );
}

#[test]
fn wrong_method_is_refused_before_the_headers() {
    let mut server = ServerHandshake::default();
    let r = server.receive(b"PUT /chat HTTP/1.1\r\n").unwrap_err();
    assert_eq!(
        (r.status(), r.reason()),
        (
            405,
            "method PUT not allowed: a WebSocket handshake is a GET"
        )
    );
}

#[test]
fn http_10_is_refused() {
    assert_rejected(
        &request("GET /chat HTTP/1.0", &VALID_HEADERS),
        400,
        "HTTP/1.1 or later required",
    );
    assert_rejected(
        &request("GET /chat HTTP/2.0", &VALID_HEADERS),
        400,
        "malformed request: invalid HTTP version",
    );
}

#[test]
fn target_must_be_a_path() {
    for line in [
        "GET * HTTP/1.1",
        "GET http://server.example.com/chat HTTP/1.1",
    ] {
        assert_rejected(
            &request(line, &VALID_HEADERS),
            400,
            "request target must be a path starting with '/'",
        );
    }
}

#[test]
fn missing_host() {
    assert_rejected(&with_header("Host", None), 400, "missing Host header");
}

#[test]
fn upgrade_must_name_websocket() {
    let reason = "Upgrade header must contain \"websocket\"";
    assert_rejected(&with_header("Upgrade", None), 400, reason);
    assert_rejected(&with_header("Upgrade", Some("Upgrade: h2c")), 400, reason);
    assert_rejected(
        &with_header("Upgrade", Some("Upgrade: websockets")),
        400,
        reason,
    );
}

#[test]
fn connection_must_name_upgrade() {
    let reason = "Connection header must contain \"Upgrade\"";
    assert_rejected(&with_header("Connection", None), 400, reason);
    assert_rejected(
        &with_header("Connection", Some("Connection: keep-alive")),
        400,
        reason,
    );
    assert_rejected(
        &with_header("Connection", Some("Connection: Upgrade-Insecure")),
        400,
        reason,
    );
}

#[test]
fn version_must_be_13() {
    assert_rejected(
        &with_header("Sec-WebSocket-Version", None),
        400,
        "missing Sec-WebSocket-Version header",
    );
    for v in ["8", "14", "13, 8", ""] {
        let line = format!("Sec-WebSocket-Version: {v}");
        let r = assert_rejected(
            &with_header("Sec-WebSocket-Version", Some(&line)),
            426,
            "unsupported Sec-WebSocket-Version: only 13 is supported",
        );
        assert_eq!(
            r.headers(),
            [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]
        );
    }
}

#[test]
fn key_must_be_16_bytes_of_base64() {
    assert_rejected(
        &with_header("Sec-WebSocket-Key", None),
        400,
        "missing Sec-WebSocket-Key header",
    );
    for key in [
        "",
        "dGhlIHNhbXBsZSBub25j",         // 15 bytes
        "dGhlIHNhbXBsZSBub25jZWE=",     // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ",       // unpadded
        "dGhlIHNhbXBsZSBub25jZQ!=",     // not base64
        "dGhlIHNhbXBsZSBub25jZQ==dGhl", // trailing data
    ] {
        let line = format!("Sec-WebSocket-Key: {key}");
        assert_rejected(
            &with_header("Sec-WebSocket-Key", Some(&line)),
            400,
            "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
        );
    }
}

#[test]
fn duplicate_critical_headers() {
    for (name, line) in [
        ("Host", "Host: other.example.com"),
        (
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",
        ),
        ("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13"),
        ("Origin", "Origin: http://a.example"),
    ] {
        let mut headers = VALID_HEADERS.to_vec();
        headers.push("Origin: http://b.example");
        headers.push(line);
        if name == "Origin" {
            headers.push(line);
        }
        assert_rejected(
            &request("GET / HTTP/1.1", &headers),
            400,
            &format!("duplicate {name} header"),
        );
    }
}

#[test]
fn subprotocols_must_be_tokens() {
    for value in ["chat, super chat", "ch@t", "\"chat\""] {
        let line = format!("Sec-WebSocket-Protocol: {value}");
        assert_rejected(
            &with_header("Sec-WebSocket-Protocol", Some(&line)),
            400,
            "Sec-WebSocket-Protocol must be a comma-separated list of tokens",
        );
    }
}

#[test]
fn extensions_must_follow_the_grammar() {
    for value in ["a b", "x; y=\"open", "; z"] {
        let line = format!("Sec-WebSocket-Extensions: {value}");
        assert_rejected(
            &with_header("Sec-WebSocket-Extensions", Some(&line)),
            400,
            "malformed Sec-WebSocket-Extensions header",
        );
    }
}

#[test]
fn a_body_is_refused() {
    for line in ["Content-Length: 5", "Transfer-Encoding: chunked"] {
        let mut bytes = with_header("X", Some(line));
        bytes.extend_from_slice(b"hello");
        assert_rejected(&bytes, 400, "an upgrade request must not have a body");
    }
}

#[test]
fn origin_and_host_must_be_utf8() {
    assert_rejected(
        &replace(
            &with_header("Origin", Some("Origin: http://@.example")),
            b"@",
            b"\xff",
        ),
        400,
        "Origin header is not valid UTF-8",
    );
    assert_rejected(
        &replace(&with_header("Host", Some("Host: @")), b"@", b"\xff"),
        400,
        "Host header is not valid UTF-8",
    );
}

#[test]
fn malformed_requests() {
    // A TLS ClientHello on the plain port is turned away at its first byte.
    let mut server = ServerHandshake::default();
    let r = server.receive(b"\x16").unwrap_err();
    assert_eq!(
        (r.status(), r.reason()),
        (400, "malformed request: invalid request line")
    );
    assert_rejected(
        &with_header("X", Some("X: a\x01b")),
        400,
        "malformed request: invalid header value",
    );
    assert_rejected(
        &with_header("X", Some("Bad Name: x")),
        400,
        "malformed request: invalid header name",
    );
    assert_rejected(
        b"GET /chat HTTP/1.1\r\nHost: a\r\r\n\r\n",
        400,
        "malformed request: invalid header value",
    );
}

#[test]
fn head_over_the_byte_limit_gets_431() {
    let long = format!("X-Filler: {}", "a".repeat(8 * 1024));
    let r = assert_rejected(
        &with_header("X", Some(&long)),
        431,
        "request head exceeds 8192 bytes",
    );
    assert_eq!(
        r.to_string(),
        "431 Request Header Fields Too Large: request head exceeds 8192 bytes"
    );

    // Trickled in, it is refused exactly when the limit is reached.
    let limit = 100;
    let mut server = ServerHandshake::new(HandshakeLimits::new(limit, 64));
    let bytes = with_header("X", Some(&long));
    for &b in &bytes[..limit - 1] {
        assert!(matches!(server.receive(&[b]), Ok(ServerStatus::Partial)));
    }
    let r = server.receive(&bytes[limit - 1..limit]).unwrap_err();
    assert_eq!(
        (r.status(), r.reason()),
        (431, "request head exceeds 100 bytes")
    );
}

#[test]
fn too_many_headers_get_431() {
    let extra: Vec<String> = (0..60).map(|i| format!("X-{i}: {i}")).collect();
    let mut headers: Vec<&str> = VALID_HEADERS.to_vec();
    headers.extend(extra.iter().map(String::as_str));
    assert_rejected(
        &request("GET / HTTP/1.1", &headers),
        431,
        "request has more than 64 header fields",
    );
    // Exactly 64 is fine.
    headers.pop();
    accepted(&request("GET / HTTP/1.1", &headers));

    let mut server = ServerHandshake::new(HandshakeLimits::new(8192, 4));
    let r = server.receive(&valid_request()).unwrap_err();
    assert_eq!(
        (r.status(), r.reason()),
        (431, "request has more than 4 header fields")
    );
}

#[test]
fn caller_rejection_is_a_full_response() {
    let r = accepted(&with_header("Origin", Some("Origin: http://evil.example")));
    assert_eq!(r.origin(), Some("http://evil.example"));
    let refusal = r.reject(403, "origin http://evil.example not allowed");
    assert_well_formed(&refusal);
    assert_eq!(
        refusal.into_response(),
        b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\
          Content-Type: text/plain; charset=utf-8\r\nContent-Length: 39\r\n\r\n\
          origin http://evil.example not allowed\n"
    );
}

#[test]
#[should_panic(expected = "ServerHandshake::receive called after the handshake finished")]
fn server_refuses_bytes_after_it_finished() {
    let mut server = ServerHandshake::default();
    let _ = server.receive(&valid_request());
    let _ = server.receive(b"more");
}

// Interop functions.

#[test]
fn pure_functions_for_http_stacks() {
    assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    assert!(check_accept_key(KEY.as_bytes(), ACCEPT.as_bytes()));
    assert!(!check_accept_key(
        KEY.as_bytes(),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo"
    ));

    let owned: Vec<(Vec<u8>, Vec<u8>)> = VALID_HEADERS
        .iter()
        .map(|h| {
            let (n, v) = h.split_once(": ").unwrap();
            (n.as_bytes().to_vec(), v.as_bytes().to_vec())
        })
        .collect();
    let offer = validate_request_headers(owned.iter().map(|(n, v)| (n, v))).unwrap();
    assert_eq!(offer.host(), "server.example.com");
    assert_eq!(offer.key(), KEY);
    assert_eq!(offer.origin(), None);
    assert_eq!(
        offer.response_headers(None).unwrap(),
        [
            ("Upgrade", "websocket".to_string()),
            ("Connection", "Upgrade".to_string()),
            ("Sec-WebSocket-Accept", ACCEPT.to_string()),
        ]
    );

    let r = validate_request_headers(owned.iter().skip(1).map(|(n, v)| (n, v))).unwrap_err();
    assert_eq!((r.status(), r.reason()), (400, "missing Host header"));
}

// Client: the request.

fn sample_nonce(buf: &mut [u8]) {
    buf.copy_from_slice(b"the sample nonce");
}

fn client(url: &str, options: ClientOptions) -> (ClientHandshake, Vec<u8>) {
    ClientHandshake::new(url, options, &mut sample_nonce).unwrap()
}

#[test]
fn client_request_bytes() {
    let (c, bytes) = client(
        "ws://server.example.com:8080/chat?room=1",
        ClientOptions::new()
            .protocol("chat")
            .protocol("superchat")
            .header("Origin", "http://example.com"),
    );
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com:8080\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
         Origin: http://example.com\r\n\r\n"
    );
    assert_eq!(c.expected_accept(), ACCEPT);
    assert_eq!(
        (c.target().host(), c.target().port(), c.target().resource()),
        ("server.example.com", 8080, "/chat?room=1")
    );
}

#[test]
fn client_key_is_fresh_from_the_random_source() {
    let mut counter = 0u8;
    let mut rng = move |buf: &mut [u8]| {
        counter += 1;
        buf.fill(counter);
    };
    let (a, _) = ClientHandshake::new("ws://h/", ClientOptions::new(), &mut rng).unwrap();
    let (b, _) = ClientHandshake::new("ws://h/", ClientOptions::new(), &mut rng).unwrap();
    assert_eq!(a.expected_accept(), accept_key(b"AQEBAQEBAQEBAQEBAQEBAQ=="));
    assert_eq!(b.expected_accept(), accept_key(b"AgICAgICAgICAgICAgICAg=="));
}

#[test]
fn wss_builds_the_same_request_for_a_tls_stream_the_caller_opens() {
    // Section 4.1: the handshake over TLS is the same bytes; only the default port differs.
    let (client, request) = ClientHandshake::new(
        "wss://example.com/chat",
        ClientOptions::new(),
        &mut sample_nonce,
    )
    .unwrap();
    assert!(client.target().is_secure());
    assert_eq!(client.target().port(), 443);
    let (_, plain) = ClientHandshake::new(
        "ws://example.com/chat",
        ClientOptions::new(),
        &mut sample_nonce,
    )
    .unwrap();
    assert_eq!(request, plain);
}

#[test]
fn client_options_are_checked() {
    let build = |options| {
        ClientHandshake::new("ws://h/", options, &mut sample_nonce)
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        build(ClientOptions::new().protocol("a b")),
        RequestError::InvalidProtocol("a b".into())
    );
    assert_eq!(
        build(ClientOptions::new().protocol("a").protocol("a")),
        RequestError::DuplicateProtocol("a".into())
    );
    assert_eq!(
        build(ClientOptions::new().header("X", "1\r\nHost: evil")),
        RequestError::InvalidHeader("X".into())
    );
    assert_eq!(
        build(ClientOptions::new().header("sec-websocket-key", "x")),
        RequestError::ReservedHeader("sec-websocket-key".into())
    );
    assert_eq!(
        build(ClientOptions::new().header("Sec-WebSocket-Extensions", "permessage-deflate")),
        RequestError::ReservedHeader("Sec-WebSocket-Extensions".into())
    );
}

#[test]
fn target_parsing() {
    let t = Target::parse("ws://example.com").unwrap();
    assert_eq!(
        (t.host(), t.port(), t.resource(), t.host_header()),
        ("example.com", 80, "/", "example.com")
    );
    let t = Target::parse("ws://[2001:db8::1]/x").unwrap();
    assert_eq!(
        (t.host(), t.host_header()),
        ("2001:db8::1", "[2001:db8::1]")
    );
    assert_eq!(
        Target::parse("ftp://example.com").unwrap_err().to_string(),
        "not a WebSocket URL: it must start with ws:// or wss://"
    );
}

// Client: the response.

fn response(status_line: &str, headers: &[&str]) -> Vec<u8> {
    request(status_line, headers)
}

fn valid_response() -> Vec<u8> {
    response(
        "HTTP/1.1 101 Switching Protocols",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Accept: {ACCEPT}"),
        ],
    )
}

fn check(options: ClientOptions, bytes: &[u8]) -> Result<ClientStatus, HandshakeError> {
    client("ws://server.example.com/chat", options)
        .0
        .receive(bytes)
}

fn opened(options: ClientOptions, bytes: &[u8]) -> Response {
    match check(options, bytes) {
        Ok(ClientStatus::Complete(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn valid_101_opens() {
    let mut bytes = valid_response();
    bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    let r = opened(ClientOptions::new(), &bytes);
    assert_eq!(r.protocol(), None);
    assert_eq!(r.leftover(), [0x81, 0x02, b'h', b'i']);
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT.as_bytes()));
    assert_eq!(r.headers().len(), 3);
}

#[test]
fn valid_101_one_byte_at_a_time() {
    let bytes = valid_response();
    let (mut c, _) = client("ws://server.example.com/chat", ClientOptions::new());
    for &b in &bytes[..bytes.len() - 1] {
        assert!(matches!(c.receive(&[b]), Ok(ClientStatus::Partial)));
    }
    assert!(matches!(
        c.receive(&bytes[bytes.len() - 1..]),
        Ok(ClientStatus::Complete(_))
    ));
}

#[test]
fn response_tokens_ignore_case() {
    let bytes = response(
        "HTTP/1.1 101 Switching Protocols",
        &[
            "upgrade: WebSocket",
            "CONNECTION: upgrade",
            &format!("sec-websocket-accept: {ACCEPT}"),
        ],
    );
    opened(ClientOptions::new(), &bytes);
}

#[test]
fn chosen_subprotocol_must_be_offered() {
    let with_protocol = |p: &str| {
        let mut b = valid_response();
        b.truncate(b.len() - 2);
        b.extend_from_slice(format!("Sec-WebSocket-Protocol: {p}\r\n\r\n").as_bytes());
        b
    };
    let offers = || ClientOptions::new().protocol("chat").protocol("superchat");
    assert_eq!(
        opened(offers(), &with_protocol("superchat")).protocol(),
        Some("superchat")
    );
    assert_eq!(opened(offers(), &valid_response()).protocol(), None);
    assert_eq!(
        check(offers(), &with_protocol("other")).unwrap_err(),
        HandshakeError::ProtocolNotOffered("other".into())
    );
    assert_eq!(
        check(offers(), &with_protocol("chat, superchat")).unwrap_err(),
        HandshakeError::ProtocolNotOffered("chat, superchat".into())
    );
    let err = check(ClientOptions::new(), &with_protocol("chat")).unwrap_err();
    assert_eq!(err, HandshakeError::ProtocolNotOffered("chat".into()));
    assert_eq!(
        err.to_string(),
        "server chose subprotocol \"chat\", which was not offered"
    );
    assert_eq!(err.status(), Some(101));
}

#[test]
fn extensions_not_offered_are_refused() {
    let mut b = valid_response();
    b.truncate(b.len() - 2);
    b.extend_from_slice(
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
    );
    let err = check(ClientOptions::new(), &b).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::ExtensionNotOffered("permessage-deflate".into())
    );
    assert_eq!(
        err.to_string(),
        "server agreed to extension \"permessage-deflate\", which was not offered"
    );
    let mut b = valid_response();
    b.truncate(b.len() - 2);
    b.extend_from_slice(b"Sec-WebSocket-Extensions: a b\r\n\r\n");
    assert_eq!(
        check(ClientOptions::new(), &b).unwrap_err(),
        HandshakeError::MalformedExtensions
    );
}

#[test]
fn refusals_carry_status_reason_and_headers() {
    for (status, reason, header) in [
        (401, "Unauthorized", "WWW-Authenticate: Bearer"),
        (403, "Forbidden", "X-Reason: origin"),
        (404, "Not Found", "Content-Length: 0"),
        (503, "Service Unavailable", "Retry-After: 30"),
        (200, "OK", "Content-Type: text/html"),
    ] {
        let bytes = response(&format!("HTTP/1.1 {status} {reason}"), &[header]);
        let err = check(ClientOptions::new(), &bytes).unwrap_err();
        let (name, value) = header.split_once(": ").unwrap();
        assert_eq!(
            err,
            HandshakeError::Rejected {
                status,
                reason: reason.into(),
                headers: vec![(name.into(), value.as_bytes().to_vec())],
            }
        );
        assert_eq!(err.status(), Some(status));
        assert_eq!(
            err.to_string(),
            format!("server refused the WebSocket upgrade: {status} {reason}")
        );
    }
}

#[test]
fn bad_101_responses() {
    let accept = format!("Sec-WebSocket-Accept: {ACCEPT}");
    let cases: Vec<(Vec<u8>, HandshakeError, &str)> = vec![
        (
            response("HTTP/1.1 101 Switching Protocols", &["Connection: Upgrade", &accept]),
            HandshakeError::MissingUpgrade,
            "101 response lacks \"Upgrade: websocket\"",
        ),
        (
            response(
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: h2c", "Connection: Upgrade", &accept],
            ),
            HandshakeError::MissingUpgrade,
            "101 response lacks \"Upgrade: websocket\"",
        ),
        (
            response("HTTP/1.1 101 Switching Protocols", &["Upgrade: websocket", &accept]),
            HandshakeError::MissingConnection,
            "101 response lacks \"Connection: Upgrade\"",
        ),
        (
            response(
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: Upgrade"],
            ),
            HandshakeError::MissingAccept,
            "101 response lacks Sec-WebSocket-Accept",
        ),
        (
            response(
                "HTTP/1.1 101 Switching Protocols",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                ],
            ),
            HandshakeError::WrongAccept {
                expected: ACCEPT.into(),
                found: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            },
            "Sec-WebSocket-Accept is \"AAAAAAAAAAAAAAAAAAAAAAAAAAA=\", expected \"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\"",
        ),
        (
            response(
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: Upgrade", &accept, &accept],
            ),
            HandshakeError::DuplicateHeader("Sec-WebSocket-Accept"),
            "101 response repeats the Sec-WebSocket-Accept header",
        ),
        (
            response(
                "HTTP/1.0 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: Upgrade", &accept],
            ),
            HandshakeError::NotHttp11,
            "101 response must be HTTP/1.1",
        ),
        (
            b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            HandshakeError::Malformed("invalid HTTP version"),
            "malformed HTTP response: invalid HTTP version",
        ),
    ];
    for (bytes, error, message) in cases {
        let got = check(ClientOptions::new(), &bytes).unwrap_err();
        assert_eq!(got, error, "{:?}", String::from_utf8_lossy(&bytes));
        assert_eq!(got.to_string(), message);
    }
}

#[test]
fn response_limits() {
    let limits = HandshakeLimits::new(64, 2);
    let (mut c, _) = client("ws://h/", ClientOptions::new().limits(limits));
    let err = c.receive(&valid_response()).unwrap_err();
    assert_eq!(err, HandshakeError::TooLarge(64));
    assert_eq!(err.to_string(), "response head exceeds 64 bytes");
    assert_eq!(err.status(), None);

    let limits = HandshakeLimits::new(1024, 2);
    let (mut c, _) = client("ws://h/", ClientOptions::new().limits(limits));
    let err = c.receive(&valid_response()).unwrap_err();
    assert_eq!(err, HandshakeError::TooManyHeaders(2));
    assert_eq!(err.to_string(), "response has more than 2 header fields");
}

// Both sides together.

#[test]
fn client_and_server_agree() {
    let (mut c, request_bytes) = client(
        "ws://server.example.com:9000/chat?v=1",
        ClientOptions::new()
            .protocol("chat")
            .header("Origin", "http://example.com"),
    );
    // The client's first frame rides along with its request.
    let mut wire = request_bytes.clone();
    wire.extend_from_slice(b"\x81\x80\x00\x00\x00\x00");
    let r = accepted(&wire);
    assert_eq!(r.host(), "server.example.com:9000");
    assert_eq!((r.path(), r.query()), ("/chat", Some("v=1")));
    assert_eq!(r.origin(), Some("http://example.com"));
    assert_eq!(r.protocols(), ["chat"]);
    assert_eq!(r.leftover(), b"\x81\x80\x00\x00\x00\x00");

    let mut answer = r.accept(&Accept::new().protocol("chat")).unwrap();
    answer.extend_from_slice(b"\x81\x00");
    match c.receive(&answer) {
        Ok(ClientStatus::Complete(resp)) => {
            assert_eq!(resp.protocol(), Some("chat"));
            assert_eq!(resp.into_leftover().as_ref(), b"\x81\x00");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_accepts_a_server_rejection_as_rejected() {
    let (mut c, request_bytes) = client("ws://h/", ClientOptions::new());
    let refusal = accepted(&request_bytes).reject(403, "no");
    match c.receive(refusal.response()).unwrap_err() {
        HandshakeError::Rejected { status, reason, .. } => {
            assert_eq!((status, reason.as_str()), (403, "Forbidden"))
        }
        other => panic!("{other:?}"),
    }
}

// Properties.

/// Splits `bytes` at the given fractions, feeding each piece to `feed` until it says stop.
fn cut_points(len: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points
}

fn serve_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<ServerStatus, Rejection> {
    let mut server = ServerHandshake::default();
    let points = cut_points(bytes.len(), cuts);
    for pair in points.windows(2) {
        match server.receive(&bytes[pair[0]..pair[1]]) {
            Ok(ServerStatus::Partial) => {}
            done => return done,
        }
    }
    Ok(ServerStatus::Partial)
}

/// Header lines, valid and not, to build requests that hit every rule.
fn header_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: a.example".to_string()),
        Just("Upgrade: websocket".to_string()),
        Just("Upgrade: h2c".to_string()),
        Just("Connection: Upgrade".to_string()),
        Just("Connection: close".to_string()),
        Just(format!("Sec-WebSocket-Key: {KEY}")),
        Just("Sec-WebSocket-Key: short".to_string()),
        Just("Sec-WebSocket-Version: 13".to_string()),
        Just("Sec-WebSocket-Version: 8".to_string()),
        Just("Sec-WebSocket-Protocol: chat".to_string()),
        Just("Sec-WebSocket-Protocol: a b".to_string()),
        Just("Sec-WebSocket-Extensions: x; y=\"1\"".to_string()),
        Just("Origin: http://o.example".to_string()),
        Just("Content-Length: 3".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,20}",
        "[ -~]{0,30}",
    ]
}

fn request_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET /chat HTTP/1.1".to_string()),
        Just("GET /chat HTTP/1.0".to_string()),
        Just("POST /chat HTTP/1.1".to_string()),
        Just("GET * HTTP/1.1".to_string()),
        "[A-Z]{1,7} /[ -~]{0,10} HTTP/1\\.[01]",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Section 3: any string is refused or parsed without a panic; a ws:// and a wss:// URL
    /// with the same rest name the same host and resource, with the scheme's default port
    /// (80, 443) when none is given, and the Host header carries the port only when it is not
    /// that default.
    #[test]
    fn urls_parse_the_same_for_ws_and_wss_but_for_the_default_port(
        any_text in "\\PC{0,40}",
        host in "[a-z][a-z0-9.-]{0,15}",
        port in proptest::option::of(1u16..),
        path in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,8}){0,3}(\\?[a-z=&]{0,8})?",
    ) {
        let _ = Target::parse(&any_text);
        let rest = match port {
            Some(p) => format!("{host}:{p}{path}"),
            None => format!("{host}{path}"),
        };
        let plain = Target::parse(&format!("ws://{rest}")).unwrap();
        let secure = Target::parse(&format!("wss://{rest}")).unwrap();
        prop_assert!(!plain.is_secure() && secure.is_secure());
        prop_assert_eq!(plain.host(), secure.host());
        prop_assert_eq!(plain.resource(), secure.resource());
        prop_assert_eq!(plain.port(), port.unwrap_or(80));
        prop_assert_eq!(secure.port(), port.unwrap_or(443));
        for (t, default) in [(&plain, 80), (&secure, 443)] {
            let shown = t.host_header().rsplit_once(':').map(|(_, p)| p.to_string());
            prop_assert_eq!(shown, (t.port() != default).then(|| t.port().to_string()));
        }
    }

    #[test]
    fn any_split_of_a_valid_request_parses_the_same(
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = request(
            "GET /chat?x=1 HTTP/1.1",
            &[
                "Host: server.example.com",
                "Upgrade: websocket",
                "Connection: keep-alive, Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol: chat, superchat",
                "Origin: http://example.com",
                "Sec-WebSocket-Version: 13",
            ],
        );
        let whole = accepted(&bytes);
        bytes.extend_from_slice(&tail);
        match serve_in_pieces(&bytes, &cuts) {
            Ok(ServerStatus::Complete(r)) => {
                // The request ends at the last cut inside it; what follows arrives in later
                // reads, which a real caller hands straight to the engine.
                let head_len = bytes.len() - tail.len();
                let points = cut_points(bytes.len(), &cuts);
                let read_end = *points.iter().find(|&&p| p >= head_len).unwrap();
                prop_assert_eq!(r.leftover(), &bytes[head_len..read_end]);
                prop_assert_eq!(r.path(), whole.path());
                prop_assert_eq!(r.query(), whole.query());
                prop_assert_eq!(r.headers(), whole.headers());
                prop_assert_eq!(r.offer(), whole.offer());
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn any_split_of_a_valid_response_parses_the_same(
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = valid_response();
        let head_len = bytes.len();
        bytes.extend_from_slice(&tail);
        let (mut c, _) = client("ws://server.example.com/chat", ClientOptions::new());
        let points = cut_points(bytes.len(), &cuts);
        let mut result = None;
        for pair in points.windows(2) {
            match c.receive(&bytes[pair[0]..pair[1]]) {
                Ok(ClientStatus::Partial) => {}
                Ok(ClientStatus::Complete(r)) => {
                    prop_assert_eq!(r.leftover(), &bytes[head_len..pair[1]]);
                    result = Some(r);
                    break;
                }
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
        prop_assert_eq!(result.unwrap().headers().len(), 3);
    }

    #[test]
    fn random_bytes_never_panic_and_rejections_are_well_formed(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        if let Err(rejection) = serve_in_pieces(&bytes, &cuts) {
            assert_well_formed(&rejection);
        }
        let (mut c, _) = client("ws://h/", ClientOptions::new());
        let points = cut_points(bytes.len(), &cuts);
        for pair in points.windows(2) {
            if !matches!(c.receive(&bytes[pair[0]..pair[1]]), Ok(ClientStatus::Partial)) {
                break;
            }
        }
    }

    #[test]
    fn plausible_requests_are_accepted_or_properly_refused(
        line in request_line(),
        start_valid in any::<bool>(),
        headers in proptest::collection::vec(header_line(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        // Starting from the valid set makes acceptance and the single-fault rules likely.
        let mut refs: Vec<&str> = if start_valid { VALID_HEADERS.to_vec() } else { Vec::new() };
        refs.extend(headers.iter().map(String::as_str));
        let bytes = request(&line, &refs);
        let whole = serve(&bytes);
        match (&whole, serve_in_pieces(&bytes, &cuts)) {
            (Err(a), Err(b)) => {
                assert_well_formed(a);
                // Pieces may reveal a bad request line earlier, never a different verdict on it.
                prop_assert_eq!(a, &b);
            }
            (Ok(ServerStatus::Complete(a)), Ok(ServerStatus::Complete(b))) => {
                prop_assert_eq!(a.path(), b.path());
                prop_assert_eq!(a.query(), b.query());
                prop_assert_eq!(a.headers(), b.headers());
                prop_assert_eq!(a.offer(), b.offer());
                // Bytes after the blank line (a generated empty header line ends the request
                // early) are leftover; fed in pieces, only those up to the read that completed
                // the request were given.
                prop_assert!(a.leftover().starts_with(b.leftover()));
                prop_assert!(a.accept(&Accept::new()).is_ok());
            }
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    #[test]
    fn random_responses_never_panic(
        status in 100u16..600,
        headers in proptest::collection::vec(
            prop_oneof![
                Just("Upgrade: websocket".to_string()),
                Just("Connection: Upgrade".to_string()),
                Just(format!("Sec-WebSocket-Accept: {ACCEPT}")),
                Just("Sec-WebSocket-Protocol: chat".to_string()),
                Just("Sec-WebSocket-Extensions: x".to_string()),
                "[A-Za-z-]{1,12}: [ -~]{0,20}",
                "[ -~]{0,30}",
            ],
            0..8,
        ),
    ) {
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let bytes = response(&format!("HTTP/1.1 {status} X"), &refs);
        match check(ClientOptions::new().protocol("chat"), &bytes) {
            Ok(ClientStatus::Complete(_)) => prop_assert_eq!(status, 101),
            Ok(ClientStatus::Partial) => prop_assert!(false, "a complete head left pending"),
            // A garbage header line makes the whole head unreadable; otherwise a refusal
            // carries its status.
            Err(HandshakeError::Malformed(_)) => {}
            Err(e) if status != 101 => prop_assert_eq!(e.status(), Some(status)),
            Err(e) => prop_assert_eq!(e.status(), Some(101)),
        }
    }
}
