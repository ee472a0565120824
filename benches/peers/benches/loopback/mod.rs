//! Echo servers and clients over real loopback sockets for every library, shared by the
//! end-to-end benchmark (`e2e.rs`) and the idle-memory measurement (`idle_heap.rs`).
//!
//! Every server accepts connections on a `127.0.0.1` listener and echoes each data message
//! with its opcode until the connection ends; "raw" is plain TCP with no WebSocket at all (the
//! floor: the same syscalls and wake-ups with no framing).

use std::io::{Read, Write};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The libraries compared, in report order.
pub const LIBRARIES: [&str; 4] = ["wsframe", "tokio-tungstenite", "fastwebsockets", "raw-tcp"];

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
                "wsframe" => tokio::spawn(serve_wsframe(stream)),
                "tokio-tungstenite" => tokio::spawn(serve_tungstenite(stream)),
                "fastwebsockets" => tokio::spawn(serve_fastwebsockets(stream)),
                "raw-tcp" => tokio::spawn(serve_raw(stream)),
                other => unreachable!("unknown library {other}"),
            };
        }
    });
    port
}

async fn serve_wsframe(stream: TcpStream) {
    use wsframe::io::tokio::accept;
    use wsframe::io::{IoConfig, Message};
    use wsframe::Event;
    let (tx, mut rx) = accept(stream, IoConfig::default()).await.unwrap();
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

// Only `idle_heap` uses the blocking client.
#[allow(dead_code)]
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

#[allow(dead_code)]
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
