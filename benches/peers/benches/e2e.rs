//! End-to-end: one echo round trip at a time (one message in flight) over real loopback TCP,
//! client and server in one process on a current-thread Tokio runtime, for wsframe's Tokio
//! adapter, tokio-tungstenite and fastwebsockets, and the raw-TCP floor (the same bytes with
//! no WebSocket). Payloads of 16 B and 64 KiB, binary. Criterion's time is one round trip.
//!
//!   cargo bench --manifest-path benches/peers/Cargo.toml --bench e2e -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

mod loopback;
use loopback::{spawn_server, LIBRARIES, REQUEST};

const SIZES: [usize; 2] = [16, 64 << 10];

/// A connected client of one library; `round_trip` sends `size` bytes and waits for the echo.
enum Client {
    Wsframe(wsframe::io::tokio::Sender, wsframe::io::tokio::Receiver),
    Tungstenite(tokio_tungstenite::WebSocketStream<TcpStream>),
    Fast(fastwebsockets::WebSocket<TcpStream>, Vec<u8>),
    Raw(TcpStream, Vec<u8>),
}

impl Client {
    async fn connect(library: &'static str, port: u16) -> Client {
        let url = format!("ws://127.0.0.1:{port}/");
        match library {
            "wsframe" => {
                let config = wsframe::io::IoConfig::default();
                let (tx, rx) = wsframe::io::tokio::connect(&url, config).await.unwrap();
                Client::Wsframe(tx, rx)
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

    async fn round_trip(&mut self, payload: &Bytes) {
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

fn echo(c: &mut Criterion) {
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("e2e/echo");
    for size in SIZES {
        let payload = Bytes::from(vec![0xa5u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for library in LIBRARIES {
            let mut client = runtime.block_on(async {
                let port = spawn_server(library).await;
                let mut client = Client::connect(library, port).await;
                // Proves the echo works before timing it.
                client.round_trip(&payload).await;
                client
            });
            group.bench_function(BenchmarkId::new(library, size), |b| {
                b.iter(|| runtime.block_on(client.round_trip(black_box(&payload))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, echo);
criterion_main!(benches);
