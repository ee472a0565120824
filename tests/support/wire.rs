//! A deliberately simple WebSocket client for end-to-end tests: hand-built masked frames, a
//! hand-written handshake, and an independent parser for what the server sends. It shares no
//! code with the crate, so a bug in the crate's encoder or parser cannot hide itself here.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a Close frame (`None`: no body).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a Close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Parses one server-to-client frame from the front of `buf`: `Ok(None)` when incomplete,
/// `Err` for anything a server must not send (RFC 6455 sections 5.1, 5.2, 5.5).
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(format!("reserved bits set in {b0:#04x}"));
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(format!("reserved opcode {opcode:#x}"));
    }
    if b1 & 0x80 != 0 {
        return Err("a server frame is masked".into());
    }
    let (len, header) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= CLOSE && (len > 125 || !fin) {
        return Err(format!(
            "bad control frame: opcode {opcode:#x}, fin {fin}, length {len}"
        ));
    }
    let total = header + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let frame = Frame {
        fin,
        opcode,
        payload: buf[header..total].to_vec(),
    };
    Ok(Some((frame, total)))
}

/// A masked client frame.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A Close body: the code, then the reason.
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason.as_bytes());
    body
}

/// A client over a plain TCP socket.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    keys: u32,
}

impl RawClient {
    /// Connects to `addr` and performs the opening handshake for `/` by hand.
    pub fn connect(addr: SocketAddr) -> RawClient {
        Self::connect_path(addr, "/")
    }

    /// Connects and performs the opening handshake for `path` by hand; checks the 101 and the
    /// accept key (the RFC's own example key, so the expected answer is a constant).
    pub fn connect_path(addr: SocketAddr, path: &str) -> RawClient {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut client = RawClient {
            stream,
            buf: Vec::new(),
            keys: 0x1234_5678,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let end = loop {
            if let Some(i) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            client.fill(deadline).expect("handshake response");
        };
        let head = String::from_utf8_lossy(&client.buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "not a 101: {head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong accept key: {head}"
        );
        client.buf.drain(..end);
        client
    }

    /// A fresh mask key (predictable is fine in a test; the server must not care).
    pub fn next_key(&mut self) -> [u8; 4] {
        self.keys = self
            .keys
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.keys.to_be_bytes()
    }

    pub fn frame(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = self.next_key();
        masked_frame(true, opcode, payload, key)
    }

    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        let frame = self.frame(opcode, payload);
        self.stream.write_all(&frame).expect("write frame");
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(TEXT, text.as_bytes());
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send(CLOSE, &close_body(code, reason));
    }

    /// Reads more bytes into the buffer; `Err` on timeout, EOF or error.
    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err("timed out".into())
            }
            Err(e) => Err(format!("read error: {e}")),
        }
    }

    /// The next frame, within `timeout`. A framing error panics: it is what the tests look for.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Frame, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => self.fill(deadline)?,
                Err(e) => panic!("framing error from the server: {e}"),
            }
        }
    }

    /// Reads until the connection closes (EOF or error) or `timeout`; true if it closed.
    pub fn wait_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(()) => self.buf.clear(),
                Err(e) => return e != "timed out",
            }
        }
    }
}
