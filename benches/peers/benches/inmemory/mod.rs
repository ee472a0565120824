//! The in-memory workloads of the peer comparison: wsframe against tungstenite,
//! tokio-websockets and fastwebsockets on the same bytes, and the physical limits (memcpy,
//! plain XOR, fused walk-and-unmask).
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
use criterion::Throughput;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;
use wsframe::{Connection, Instant};

use crate::common::*;
use crate::workload::{run, selected, Run, Workload};

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

/// The runtime the async libraries' iterations run on (current-thread, no IO driver: the
/// transport never blocks).
pub fn runtime() -> Runtime {
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

/// Builds every workload `filters` selects (see [`selected`]), one at a time, and hands each
/// to `each`; it is dropped before the next is built (the fan-out ones hold 1 000 connections
/// per library). Order: receive, send, fan-out, limits.
pub fn build<'a>(rt: &'a Runtime, filters: &[String], each: &mut dyn FnMut(Workload<'a>)) {
    for kind in [Kind::Binary, Kind::Ascii, Kind::Mixed] {
        let group = match kind {
            Kind::Binary => "receive/binary",
            Kind::Ascii => "receive/text-ascii",
            Kind::Mixed => "receive/text-mixed",
        };
        for size in SIZES {
            if (kind == Kind::Mixed && size < 1024) || !selected(filters, group, size) {
                continue;
            }
            each(receive(rt, group, kind, size));
        }
    }
    for (group, client) in [("send/server", false), ("send/client", true)] {
        for size in SIZES {
            if selected(filters, group, size) {
                each(send(rt, group, client, size));
            }
        }
    }
    for size in [125usize, 1024, 16 << 10] {
        if selected(filters, "fanout-1000", size) {
            each(fanout(rt, size));
        }
    }
    for size in SIZES {
        if selected(filters, "limits", size) {
            each(limits(size));
        }
    }
}

// ----- receive ------------------------------------------------------------------------------

fn receive<'a>(rt: &'a Runtime, group: &'static str, kind: Kind, size: usize) -> Workload<'a> {
    let count = count_for(size);
    let input = client_stream(size, count, kind);
    let mut runs: Vec<(&'static str, Run<'a>)> = Vec::new();

    // wsframe's two runs read one copy of the input between them.
    let shared = std::rc::Rc::new(input.clone());
    let mut server = Connection::server(config(), Instant::ZERO);
    let bytes = shared.clone();
    runs.push((
        "wsframe",
        run(move || {
            black_box(wsframe_receive(&mut server, &bytes));
        }),
    ));

    let mut server = Connection::server(config(), Instant::ZERO);
    runs.push((
        "wsframe-lent",
        run(move || {
            black_box(wsframe_receive_lent(&mut server, &shared));
        }),
    ));

    let mut ws = tungstenite_ws(tungstenite::protocol::Role::Server, input.clone());
    runs.push((
        "tungstenite",
        run(move || {
            for _ in 0..count {
                black_box(ws.read().expect("message"));
            }
        }),
    ));

    let mut ws = tokio_ws_server(input.clone());
    runs.push((
        "tokio-websockets",
        run(move || {
            rt.block_on(async {
                for _ in 0..count {
                    black_box(ws.next().await.expect("open").expect("message"));
                }
            })
        }),
    ));

    let mut ws = fast_ws(fastwebsockets::Role::Server, input);
    runs.push((
        "fastwebsockets",
        run(move || {
            rt.block_on(async {
                for _ in 0..count {
                    let frame = ws.read_frame().await.expect("frame");
                    black_box(&frame.payload[..]);
                }
            })
        }),
    ));

    Workload {
        group,
        size,
        throughput: Throughput::Bytes((size * count) as u64),
        runs,
    }
}

// ----- send ---------------------------------------------------------------------------------

fn send<'a>(rt: &'a Runtime, group: &'static str, client: bool, size: usize) -> Workload<'a> {
    let count = count_for(size);
    let data = payload(size, Kind::Binary, 1);
    // Static `Bytes` for the libraries that take `Bytes` (see `static_bytes`); fastwebsockets
    // borrows the slice.
    let bytes = static_bytes(data.clone());
    let mut runs: Vec<(&'static str, Run<'a>)> = Vec::new();

    let mut conn = if client {
        client_engine()
    } else {
        Connection::server(config(), Instant::ZERO)
    };
    let payload = bytes.clone();
    runs.push((
        "wsframe",
        run(move || {
            black_box(wsframe_send(&mut conn, &payload, count));
        }),
    ));

    let t_role = if client {
        tungstenite::protocol::Role::Client
    } else {
        tungstenite::protocol::Role::Server
    };
    let mut ws = tungstenite_ws(t_role, Vec::new());
    let payload = bytes.clone();
    runs.push((
        "tungstenite",
        run(move || {
            for _ in 0..count {
                ws.write(tungstenite::Message::Binary(payload.clone()))
                    .unwrap();
                ws.flush().unwrap();
            }
        }),
    ));

    let mut ws = if client {
        tokio_ws_client(Vec::new())
    } else {
        tokio_ws_server(Vec::new())
    };
    let payload = bytes.clone();
    runs.push((
        "tokio-websockets",
        run(move || {
            rt.block_on(async {
                for _ in 0..count {
                    ws.send(tokio_websockets::Message::binary(payload.clone()))
                        .await
                        .unwrap();
                }
            })
        }),
    ));

    let f_role = if client {
        fastwebsockets::Role::Client
    } else {
        fastwebsockets::Role::Server
    };
    let mut ws = fast_ws(f_role, Vec::new());
    let borrowed = data.clone();
    runs.push((
        "fastwebsockets",
        run(move || {
            rt.block_on(async {
                for _ in 0..count {
                    let frame =
                        fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(&borrowed));
                    ws.write_frame(frame).await.unwrap();
                }
            })
        }),
    ));

    if client {
        // The floor of a masked send where the caller keeps its payload: every byte read once
        // and written once, into the same reused buffer, with no masking, framing or key.
        let mut out = vec![0u8; size];
        runs.push((
            "memcpy",
            run(move || {
                for _ in 0..count {
                    limit_memcpy(&mut out, &data);
                    black_box(&out);
                }
            }),
        ));
    }

    Workload {
        group,
        size,
        throughput: Throughput::Bytes((size * count) as u64),
        runs,
    }
}

// ----- fan-out: one message to 1 000 server connections ------------------------------------

fn fanout(rt: &Runtime, size: usize) -> Workload<'_> {
    const N: usize = 1000;
    let data = payload(size, Kind::Binary, 2);
    let bytes = Bytes::from(data.clone());
    let mut runs: Vec<(&'static str, Run<'_>)> = Vec::new();

    let servers = || -> Vec<Connection> {
        (0..N)
            .map(|_| Connection::server(config(), Instant::ZERO))
            .collect()
    };
    let mut engines = servers();
    let payload = bytes.clone();
    runs.push((
        "wsframe",
        run(move || wsframe_fan_out(&mut engines, &payload)),
    ));

    // The same through the queue (`send_prepared`, `poll_transmit`): each engine's queue holds
    // a clone of the payload until it is written, two atomic operations per engine.
    let mut engines = servers();
    let payload = bytes.clone();
    runs.push((
        "wsframe-queued",
        run(move || wsframe_fan_out_queued(&mut engines, &payload)),
    ));

    let mut socks: Vec<_> = (0..N)
        .map(|_| tungstenite_ws(tungstenite::protocol::Role::Server, Vec::new()))
        .collect();
    let payload = bytes.clone();
    runs.push((
        "tungstenite",
        run(move || {
            for ws in socks.iter_mut() {
                ws.write(tungstenite::Message::Binary(payload.clone()))
                    .unwrap();
                ws.flush().unwrap();
            }
        }),
    ));

    let mut socks: Vec<_> = (0..N).map(|_| tokio_ws_server(Vec::new())).collect();
    runs.push((
        "tokio-websockets",
        run(move || {
            rt.block_on(async {
                for ws in socks.iter_mut() {
                    ws.send(tokio_websockets::Message::binary(bytes.clone()))
                        .await
                        .unwrap();
                }
            })
        }),
    ));

    let mut socks: Vec<_> = (0..N)
        .map(|_| fast_ws(fastwebsockets::Role::Server, Vec::new()))
        .collect();
    runs.push((
        "fastwebsockets",
        run(move || {
            rt.block_on(async {
                for ws in socks.iter_mut() {
                    let frame =
                        fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(&data));
                    ws.write_frame(frame).await.unwrap();
                }
            })
        }),
    ));

    Workload {
        group: "fanout-1000",
        size,
        throughput: Throughput::Elements(N as u64),
        runs,
    }
}

// ----- the physical limits ------------------------------------------------------------------

fn limits(size: usize) -> Workload<'static> {
    let count = count_for(size);
    let input = client_stream(size, count, Kind::Binary);
    let mut runs: Vec<(&'static str, Run<'static>)> = Vec::new();

    let mut dst = vec![0u8; input.len()];
    let src = input.clone();
    runs.push(("memcpy", run(move || limit_memcpy(&mut dst, &src))));

    let mut buf = input.clone();
    runs.push((
        "xor",
        run(move || limit_xor(&mut buf, black_box([1, 2, 3, 4]))),
    ));

    let mut out = vec![0u8; input.len()];
    runs.push((
        "fused",
        run(move || {
            black_box(limit_fused(&input, &mut out));
        }),
    ));

    Workload {
        group: "limits",
        size,
        throughput: Throughput::Bytes((size * count) as u64),
        runs,
    }
}
