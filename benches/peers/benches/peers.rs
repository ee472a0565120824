//! wsframe against tungstenite, tokio-websockets and fastwebsockets, on the same bytes, in one
//! criterion run, plus the physical limits (memcpy, plain XOR, fused walk-and-unmask).
//!
//! Configuration, as comparable as the libraries allow:
//!
//! * binary frames (and text frames for the UTF-8 groups), no compression, no TLS;
//! * one long-lived connection per library over an in-memory transport that never blocks: reads
//!   hand out at most 64 KiB (`READ_SIZE`) of a fixed buffer of masked client frames, cycling;
//!   writes are counted and discarded;
//! * limits large enough never to trip (64 MiB messages, 16 MiB frames);
//! * receive: every message is taken whole (wsframe `Event::Binary`/`Text`, tungstenite `read`,
//!   tokio-websockets `next`, fastwebsockets `read_frame`: its frames are whole messages here);
//! * send: one message at a time, written out (flushed) before the next; the caller keeps its
//!   payload (tungstenite and tokio-websockets take `Bytes`, fastwebsockets a borrowed slice);
//! * the async libraries run on a current-thread tokio runtime, one `block_on` per iteration.

use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsframe::{Connection, Instant};

#[path = "../../common/mod.rs"]
mod common;
use common::*;

// ----- the in-memory transport --------------------------------------------------------------

/// Reads cycle through `input` (a whole number of frames) in pieces of at most `READ_SIZE`;
/// writes are counted and dropped.
struct Mem {
    input: Vec<u8>,
    pos: usize,
    written: u64,
}

impl Mem {
    fn new(input: Vec<u8>) -> Self {
        Mem {
            input,
            pos: 0,
            written: 0,
        }
    }

    fn read_into(&mut self, out: &mut [u8]) -> usize {
        if self.input.is_empty() {
            return 0;
        }
        let n = out.len().min(READ_SIZE).min(self.input.len() - self.pos);
        out[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.input.len() {
            self.pos = 0;
        }
        n
    }
}

impl io::Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_into(buf))
    }
}

impl io::Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        black_box(buf);
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = bufs.iter().map(|b| b.len()).sum::<usize>();
        self.written += n as u64;
        black_box(bufs);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Mem {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.read_into(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(io::Write::write(self.get_mut(), buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(io::Write::write_vectored(self.get_mut(), bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

// ----- peers' configurations ----------------------------------------------------------------

fn tungstenite_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(16 << 20))
}

fn tungstenite_ws(
    role: tungstenite::protocol::Role,
    input: Vec<u8>,
) -> tungstenite::WebSocket<Mem> {
    tungstenite::WebSocket::from_raw_socket(Mem::new(input), role, Some(tungstenite_config()))
}

fn tokio_ws_server(input: Vec<u8>) -> tokio_websockets::WebSocketStream<Mem> {
    tokio_websockets::ServerBuilder::new()
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(64 << 20)))
        .serve(Mem::new(input))
}

fn tokio_ws_client(input: Vec<u8>) -> tokio_websockets::WebSocketStream<Mem> {
    tokio_websockets::ClientBuilder::new()
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(64 << 20)))
        .take_over(Mem::new(input))
}

fn fast_ws(role: fastwebsockets::Role, input: Vec<u8>) -> fastwebsockets::WebSocket<Mem> {
    let mut ws = fastwebsockets::WebSocket::after_handshake(Mem::new(input), role);
    ws.set_max_message_size(64 << 20);
    ws
}

// ----- receive ------------------------------------------------------------------------------

fn receive(c: &mut Criterion) {
    let rt = runtime();
    for kind in [Kind::Binary, Kind::Ascii, Kind::Mixed] {
        let mut g = c.benchmark_group(format!("receive/{}", kind.name()));
        for size in SIZES {
            if kind == Kind::Mixed && size < 1024 {
                continue;
            }
            let count = count_for(size);
            let input = client_stream(size, count, kind);
            g.throughput(Throughput::Bytes((size * count) as u64));

            let mut server = Connection::server(config(), Instant::ZERO);
            g.bench_with_input(BenchmarkId::new("wsframe", size), &input, |b, input| {
                b.iter(|| wsframe_receive(&mut server, input))
            });

            let mut server = Connection::server(config(), Instant::ZERO);
            g.bench_with_input(
                BenchmarkId::new("wsframe-lent", size),
                &input,
                |b, input| b.iter(|| wsframe_receive_lent(&mut server, input)),
            );

            let mut ws = tungstenite_ws(tungstenite::protocol::Role::Server, input.clone());
            g.bench_function(BenchmarkId::new("tungstenite", size), |b| {
                b.iter(|| {
                    for _ in 0..count {
                        black_box(ws.read().expect("message"));
                    }
                })
            });

            let mut ws = tokio_ws_server(input.clone());
            g.bench_function(BenchmarkId::new("tokio-websockets", size), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        for _ in 0..count {
                            black_box(ws.next().await.expect("open").expect("message"));
                        }
                    })
                })
            });

            let mut ws = fast_ws(fastwebsockets::Role::Server, input.clone());
            g.bench_function(BenchmarkId::new("fastwebsockets", size), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        for _ in 0..count {
                            let frame = ws.read_frame().await.expect("frame");
                            black_box(&frame.payload[..]);
                        }
                    })
                })
            });
        }
        g.finish();
    }
}

// ----- the physical limits, in the same run -------------------------------------------------

fn limits(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits");
    for size in SIZES {
        let count = count_for(size);
        let input = client_stream(size, count, Kind::Binary);
        g.throughput(Throughput::Bytes((size * count) as u64));
        let mut dst = vec![0u8; input.len()];
        g.bench_with_input(BenchmarkId::new("memcpy", size), &input, |b, input| {
            b.iter(|| limit_memcpy(&mut dst, input))
        });
        let mut buf = input.clone();
        g.bench_with_input(BenchmarkId::new("xor", size), &size, |b, _| {
            b.iter(|| limit_xor(&mut buf, black_box([1, 2, 3, 4])))
        });
        let mut out = vec![0u8; input.len()];
        g.bench_with_input(BenchmarkId::new("fused", size), &input, |b, input| {
            b.iter(|| limit_fused(input, &mut out))
        });
    }
    g.finish();
}

// ----- send ---------------------------------------------------------------------------------

fn send(c: &mut Criterion) {
    let rt = runtime();
    for client in [false, true] {
        let role = if client { "client" } else { "server" };
        let mut g = c.benchmark_group(format!("send/{role}"));
        for size in SIZES {
            let count = count_for(size);
            let data = payload(size, Kind::Binary, 1);
            // Static `Bytes` for the libraries that take `Bytes` (see `static_bytes`);
            // fastwebsockets borrows the slice.
            let bytes = static_bytes(data.clone());
            g.throughput(Throughput::Bytes((size * count) as u64));

            let mut conn = if client {
                client_engine()
            } else {
                Connection::server(config(), Instant::ZERO)
            };
            g.bench_with_input(BenchmarkId::new("wsframe", size), &bytes, |b, bytes| {
                b.iter(|| wsframe_send(&mut conn, bytes, count))
            });

            let t_role = if client {
                tungstenite::protocol::Role::Client
            } else {
                tungstenite::protocol::Role::Server
            };
            let mut ws = tungstenite_ws(t_role, Vec::new());
            g.bench_with_input(BenchmarkId::new("tungstenite", size), &bytes, |b, bytes| {
                b.iter(|| {
                    for _ in 0..count {
                        ws.write(tungstenite::Message::Binary(bytes.clone()))
                            .unwrap();
                        ws.flush().unwrap();
                    }
                })
            });

            let mut ws = if client {
                tokio_ws_client(Vec::new())
            } else {
                tokio_ws_server(Vec::new())
            };
            g.bench_with_input(
                BenchmarkId::new("tokio-websockets", size),
                &bytes,
                |b, bytes| {
                    b.iter(|| {
                        rt.block_on(async {
                            for _ in 0..count {
                                ws.send(tokio_websockets::Message::binary(bytes.clone()))
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                },
            );

            let f_role = if client {
                fastwebsockets::Role::Client
            } else {
                fastwebsockets::Role::Server
            };
            let mut ws = fast_ws(f_role, Vec::new());
            g.bench_with_input(
                BenchmarkId::new("fastwebsockets", size),
                &data,
                |b, data| {
                    b.iter(|| {
                        rt.block_on(async {
                            for _ in 0..count {
                                let frame = fastwebsockets::Frame::binary(
                                    fastwebsockets::Payload::Borrowed(data),
                                );
                                ws.write_frame(frame).await.unwrap();
                            }
                        })
                    })
                },
            );
        }
        g.finish();
    }
}

// ----- fan-out: one message to 1 000 server connections ------------------------------------

fn fanout(c: &mut Criterion) {
    const N: usize = 1000;
    let rt = runtime();
    let mut g = c.benchmark_group("fanout-1000");
    for size in [125usize, 1024, 16 << 10] {
        let data = payload(size, Kind::Binary, 2);
        let bytes = Bytes::from(data.clone());
        g.throughput(Throughput::Elements(N as u64));

        let mut engines: Vec<Connection> = (0..N)
            .map(|_| Connection::server(config(), Instant::ZERO))
            .collect();
        g.bench_with_input(BenchmarkId::new("wsframe", size), &bytes, |b, bytes| {
            b.iter(|| wsframe_fan_out(&mut engines, bytes))
        });

        // The same through the queue (`send_prepared`, `poll_transmit`): each engine's queue
        // holds a clone of the payload until it is written, two atomic operations per engine.
        g.bench_with_input(
            BenchmarkId::new("wsframe-queued", size),
            &bytes,
            |b, bytes| b.iter(|| wsframe_fan_out_queued(&mut engines, bytes)),
        );

        let mut socks: Vec<_> = (0..N)
            .map(|_| tungstenite_ws(tungstenite::protocol::Role::Server, Vec::new()))
            .collect();
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &bytes, |b, bytes| {
            b.iter(|| {
                for ws in socks.iter_mut() {
                    ws.write(tungstenite::Message::Binary(bytes.clone()))
                        .unwrap();
                    ws.flush().unwrap();
                }
            })
        });

        let mut socks: Vec<_> = (0..N).map(|_| tokio_ws_server(Vec::new())).collect();
        g.bench_with_input(
            BenchmarkId::new("tokio-websockets", size),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    rt.block_on(async {
                        for ws in socks.iter_mut() {
                            ws.send(tokio_websockets::Message::binary(bytes.clone()))
                                .await
                                .unwrap();
                        }
                    })
                })
            },
        );

        let mut socks: Vec<_> = (0..N)
            .map(|_| fast_ws(fastwebsockets::Role::Server, Vec::new()))
            .collect();
        g.bench_with_input(
            BenchmarkId::new("fastwebsockets", size),
            &data,
            |b, data| {
                b.iter(|| {
                    rt.block_on(async {
                        for ws in socks.iter_mut() {
                            let frame = fastwebsockets::Frame::binary(
                                fastwebsockets::Payload::Borrowed(data),
                            );
                            ws.write_frame(frame).await.unwrap();
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, receive, send, fanout, limits);
criterion_main!(benches);
