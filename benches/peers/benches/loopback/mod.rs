//! Echo servers and clients over real loopback sockets for every library, shared by the
//! end-to-end benchmark (`e2e.rs`) and the idle-memory measurement (`idle_heap.rs`).
//!
//! Every server accepts connections on a `127.0.0.1` listener and echoes each data message
//! with its opcode until the connection ends; "raw" is plain TCP with no WebSocket at all (the
//! floor: the same syscalls and wake-ups with no framing).

// Shared by three benches (e2e, e2e_count, idle_heap), each of which uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The libraries compared, in report order.
/// `wsframe` is the Tokio adapter with a task per connection (`Sender` / `Receiver`),
/// `wsframe-direct` the one in the caller's task (`io::tokio::WebSocket`). Both are set up to
/// do what the peers do: no keepalive (they have none), and a message sent as one frame
/// however long (they never fragment). The `-defaults` variants run wsframe's defaults: a PING
/// after 20 s of silence and an idle timeout of 60 s (a timer registered with Tokio for the
/// connection's whole life), and messages over 16 KiB sent in 16 KiB fragments (so a PONG
/// waits behind at most one of them; the receiver then joins the fragments, a copy).
pub const LIBRARIES: [&str; 7] = [
    "wsframe",
    "wsframe-defaults",
    "wsframe-direct",
    "wsframe-direct-defaults",
    "tokio-tungstenite",
    "fastwebsockets",
    "raw-tcp",
];

/// The opening handshake request every hand-written client sends (the key of RFC 6455
/// section 1.3, whose accept value is `ACCEPT`).
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Binds a listener on a free loopback port and serves `library`'s echo on it; returns the port.
pub async fn spawn_server(library: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            // One async fn per library, so each connection's task holds only its own
            // library's state (a single `match` would size every task for the largest).
            match library {
                "wsframe" | "wsframe-defaults" => {
                    tokio::spawn(serve_wsframe(stream, wsframe_config(library)))
                }
                "wsframe-direct" | "wsframe-direct-defaults" => {
                    tokio::spawn(serve_wsframe_direct(stream, wsframe_config(library)))
                }
                "tokio-tungstenite" => tokio::spawn(serve_tungstenite(stream)),
                "fastwebsockets" => tokio::spawn(serve_fastwebsockets(stream)),
                "raw-tcp" => tokio::spawn(serve_raw(stream)),
                other => unreachable!("unknown library {other}"),
            };
        }
    });
    port
}

/// wsframe's settings for a library name of [`LIBRARIES`]: the peers' behaviour (no keepalive,
/// no fragments), or the defaults if the name says `-defaults`.
pub fn wsframe_config(library: &str) -> wsframe::io::IoConfig {
    let mut config = wsframe::io::IoConfig::default();
    if !library.ends_with("-defaults") {
        config.engine.ping_interval = None;
        config.engine.idle_timeout = None;
        config.engine.max_send_fragment = usize::MAX;
    }
    config
}

async fn serve_wsframe(stream: TcpStream, config: wsframe::io::IoConfig) {
    use wsframe::io::tokio::accept;
    use wsframe::io::Message;
    use wsframe::Event;
    let (tx, mut rx) = accept(stream, config).await.unwrap();
    while let Some(event) = rx.recv().await {
        let reply = match event {
            Event::Binary(b) => Message::Binary(b),
            Event::Text(t) => Message::Text(t),
            Event::Ended(_) => break,
            _ => continue,
        };
        if tx.send(reply).await.is_err() {
            break;
        }
    }
}

async fn serve_wsframe_direct(stream: TcpStream, config: wsframe::io::IoConfig) {
    use wsframe::io::tokio::WebSocket;
    use wsframe::io::Message;
    use wsframe::Event;
    let mut ws = WebSocket::accept(stream, config).await.unwrap();
    while let Some(event) = ws.recv().await {
        let reply = match event {
            Event::Binary(b) => Message::Binary(b),
            Event::Text(t) => Message::Text(t),
            Event::Ended(_) => break,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

async fn serve_tungstenite(stream: TcpStream) {
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_binary() || message.is_text()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn serve_fastwebsockets(stream: TcpStream) {
    use fastwebsockets::{Frame, OpCode, Role, WebSocket};
    let stream = server_handshake(stream).await;
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    while let Ok(frame) = ws.read_frame().await {
        match frame.opcode {
            OpCode::Binary | OpCode::Text => {
                // A fresh unmasked frame: echoing the received one as is would send
                // the client's mask key back (a masked server frame).
                let reply = Frame::new(true, frame.opcode, None, frame.payload);
                if ws.write_frame(reply).await.is_err() {
                    break;
                }
            }
            OpCode::Close => break,
            _ => {}
        }
    }
}

async fn serve_raw(stream: TcpStream) {
    // Echo whatever arrives, reading up to 64 KiB at a time into a buffer held only while data
    // flows (the same policy as wsframe's adapter, so the idle figure is tokio's own share).
    let mut stream = server_handshake(stream).await;
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let mut buf = Vec::with_capacity(64 << 10);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if stream.write_all(&buf).await.is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
}

/// A connected client of one library; `round_trip` sends `size` bytes and waits for the echo.
// One client per run: boxing the large variant would only add a pointer hop to the measured loop.
#[allow(clippy::large_enum_variant)]
pub enum Client {
    Wsframe(wsframe::io::tokio::Sender, wsframe::io::tokio::Receiver),
    WsframeDirect(wsframe::io::tokio::WebSocket),
    Tungstenite(tokio_tungstenite::WebSocketStream<TcpStream>),
    Fast(fastwebsockets::WebSocket<TcpStream>, Vec<u8>),
    Raw(TcpStream, Vec<u8>),
}

impl Client {
    pub async fn connect(library: &'static str, port: u16) -> Client {
        let url = format!("ws://127.0.0.1:{port}/");
        match library {
            "wsframe" | "wsframe-defaults" => {
                let config = wsframe_config(library);
                let (tx, rx) = wsframe::io::tokio::connect(&url, config).await.unwrap();
                Client::Wsframe(tx, rx)
            }
            "wsframe-direct" | "wsframe-direct-defaults" => {
                let config = wsframe_config(library);
                let ws = wsframe::io::tokio::WebSocket::connect(&url, config)
                    .await
                    .unwrap();
                Client::WsframeDirect(ws)
            }
            "tokio-tungstenite" => {
                let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
                Client::Tungstenite(ws)
            }
            "fastwebsockets" => {
                let tcp = hand_handshake(port).await;
                let ws =
                    fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client);
                Client::Fast(ws, Vec::new())
            }
            "raw-tcp" => Client::Raw(hand_handshake(port).await, Vec::new()),
            other => unreachable!("unknown library {other}"),
        }
    }

    pub async fn round_trip(&mut self, payload: &Bytes) {
        let size = payload.len();
        let echoed = match self {
            Client::Wsframe(tx, rx) => {
                tx.send(wsframe::io::Message::Binary(payload.clone()))
                    .await
                    .unwrap();
                match rx.recv().await {
                    Some(wsframe::Event::Binary(b)) => b.len(),
                    other => panic!("wsframe: expected the echo, got {other:?}"),
                }
            }
            Client::WsframeDirect(ws) => {
                ws.send(wsframe::io::Message::Binary(payload.clone()))
                    .await
                    .unwrap();
                match ws.recv().await {
                    Some(wsframe::Event::Binary(b)) => b.len(),
                    other => panic!("wsframe-direct: expected the echo, got {other:?}"),
                }
            }
            Client::Tungstenite(ws) => {
                let message = tokio_tungstenite::tungstenite::Message::Binary(payload.clone());
                ws.send(message).await.unwrap();
                match ws.next().await {
                    Some(Ok(m)) => m.len(),
                    other => panic!("tokio-tungstenite: expected the echo, got {other:?}"),
                }
            }
            Client::Fast(ws, scratch) => {
                // The client masks in place: a scratch copy, as the caller keeps its payload.
                scratch.clear();
                scratch.extend_from_slice(payload);
                let frame =
                    fastwebsockets::Frame::binary(fastwebsockets::Payload::BorrowedMut(scratch));
                ws.write_frame(frame).await.unwrap();
                let frame = ws.read_frame().await.unwrap();
                assert_eq!(frame.opcode, fastwebsockets::OpCode::Binary);
                frame.payload.len()
            }
            Client::Raw(tcp, buf) => {
                tcp.write_all(payload).await.unwrap();
                buf.resize(size, 0);
                tcp.read_exact(buf).await.unwrap();
                buf.len()
            }
        };
        assert_eq!(echoed, size);
    }
}

/// TCP connect plus the opening handshake written by hand (fastwebsockets leaves it to the
/// caller; raw TCP goes through it so its server is the same code path).
async fn hand_handshake(port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(REQUEST).await.unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        seen.push(byte[0]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 101"));
    tcp
}

/// Reads a request up to its blank line and answers 101 (for the libraries that leave the
/// handshake to the caller); the request's bytes are not checked: the clients are ours.
async fn server_handshake(mut stream: TcpStream) -> TcpStream {
    let mut seen = Vec::with_capacity(256);
    let mut byte = [0u8; 256];
    while !seen.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n > 0, "client left during the handshake");
        seen.extend_from_slice(&byte[..n]);
    }
    stream.write_all(RESPONSE).await.unwrap();
    stream
}

/// A blocking client with no WebSocket library: sends `REQUEST`, reads the response up to its
/// blank line. Used where the client's own memory must stay out of the measurement.
pub fn raw_client(port: u16) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(REQUEST).unwrap();
    let mut seen = [0u8; 512];
    let mut len = 0;
    while !seen[..len].ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut seen[len..len + 1]).unwrap();
        assert!(n > 0, "server closed during the handshake");
        len += n;
    }
    assert!(seen.starts_with(b"HTTP/1.1 101"), "handshake refused");
    stream
}

/// Sends one masked 16-byte binary frame and reads its echo (an unmasked frame: 2 header
/// bytes), so the server has read and written once and holds whatever it keeps after use.
pub fn raw_round_trip(stream: &mut std::net::TcpStream, websocket: bool) {
    let payload = [0x5au8; 16];
    let mut frame = [0u8; 22];
    if websocket {
        frame[..6].copy_from_slice(&[0x82, 0x80 | 16, 1, 2, 3, 4]);
        for (i, b) in payload.iter().enumerate() {
            frame[6 + i] = b ^ [1, 2, 3, 4][i % 4];
        }
        stream.write_all(&frame).unwrap();
        let mut echo = [0u8; 18];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(&echo[2..], &payload[..], "echo differs");
    } else {
        stream.write_all(&payload).unwrap();
        let mut echo = [0u8; 16];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(echo, payload, "echo differs");
    }
}
