//! Both tokio adapters over a stream that behaves as badly as `AsyncRead`/`AsyncWrite` allow:
//! writes that take a few bytes at a time, reads that return a few, spurious `Pending`s (with
//! the waker woken, as a stream may), and, in one mode, a writer that keeps everything until it
//! is flushed and whose flushes themselves stall now and then. Whatever the schedule (from a
//! proptest seed), every message comes back whole and in order, and the close handshake
//! finishes with the right ends on both sides: no lost wake-up, no frame cut into another, no
//! frame left unflushed.
#![cfg(feature = "tokio")]

#[path = "support/echo_pair.rs"]
mod echo_pair;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use echo_pair::{echo_in_task, echo_on_task, exchange_and_close, Client};
use proptest::prelude::*;
use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use wsframe::io::tokio::{self as ws_tokio, WebSocket};
use wsframe::io::IoConfig;
use wsframe::Role;

/// A small deterministic generator (xorshift), one per stream, seeded by the test case.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// A stream over an in-memory pipe that takes and gives at most a few bytes per call and
/// sometimes answers `Pending` for no reason (waking the task at once, as it must). With
/// `hold`, written bytes stay in the stream until a flush moves them on.
struct Chaos {
    inner: DuplexStream,
    dice: Dice,
    /// Bytes taken but not yet passed on (`hold` mode).
    held: Vec<u8>,
    hold: bool,
}

impl Chaos {
    fn new(inner: DuplexStream, seed: u64, hold: bool) -> Self {
        Chaos {
            inner,
            dice: Dice(seed | 1),
            held: Vec::new(),
            hold,
        }
    }

    /// One time in `n`: `Pending`, with the waker woken (a spurious wake-up is allowed; a
    /// `Pending` that never wakes is not).
    fn stall(&mut self, cx: &mut Context<'_>, n: u64) -> bool {
        if self.dice.roll(n) == 0 {
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }

    fn poll_pass_on(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let most = 1 + self.dice.roll(512) as usize;
            let n =
                std::task::ready!(Pin::new(&mut self.inner)
                    .poll_write(cx, &self.held[..most.min(self.held.len())]))?;
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Chaos {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stall(cx, 4) {
            return Poll::Pending;
        }
        let most = 1 + this.dice.roll(300) as usize;
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(most.min(buf.remaining())));
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut small))?;
        let n = small.filled().len();
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chaos {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stall(cx, 4) {
            return Poll::Pending;
        }
        let most = (1 + this.dice.roll(200) as usize).min(data.len());
        if this.hold {
            // Taken, and kept until a flush (up to 64 KiB; beyond, passed on first).
            if this.held.len() > 64 << 10 {
                std::task::ready!(this.poll_pass_on(cx))?;
            }
            this.held.extend_from_slice(&data[..most]);
            return Poll::Ready(Ok(most));
        }
        Pin::new(&mut this.inner).poll_write(cx, &data[..most])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stall(cx, 3) {
            return Poll::Pending;
        }
        std::task::ready!(this.poll_pass_on(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pass_on(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Which adapter runs each end.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Server on the task adapter, client in the caller's task.
    TaskServer,
    /// Server in the caller's task, client on the task adapter.
    TaskClient,
}

fn converse(shape: Shape, seed: u64, hold: bool, sizes: Vec<usize>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (a, b) = duplex(4096);
        let server_io = Chaos::new(a, seed, hold);
        let client_io = Chaos::new(b, seed.rotate_left(17), hold);
        let config = IoConfig::default();
        match shape {
            Shape::TaskServer => {
                let (tx, rx) =
                    ws_tokio::start(server_io, Role::Server, config.clone(), &[]).unwrap();
                let server = tokio::spawn(echo_on_task(tx, rx));
                let client = WebSocket::new(client_io, Role::Client, config, &[]).unwrap();
                exchange_and_close(Client::InTask(client), server, &sizes).await;
            }
            Shape::TaskClient => {
                let ws = WebSocket::new(server_io, Role::Server, config.clone(), &[]).unwrap();
                let server = tokio::spawn(echo_in_task(ws));
                let (tx, rx) = ws_tokio::start(client_io, Role::Client, config, &[]).unwrap();
                exchange_and_close(Client::<Chaos>::Task(tx, rx), server, &sizes).await;
            }
        }
    });
}

proptest! {
    // 48 schedules by default (about a second); PROPTEST_CASES asks for more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_message_and_the_close_get_through_a_chaotic_stream(
        seed in any::<u64>(),
        hold in any::<bool>(),
        task_server in any::<bool>(),
        sizes in prop::collection::vec(
            prop_oneof![0usize..=130, 65_530usize..=65_540, Just(200_000usize)],
            1..6,
        ),
    ) {
        let shape = if task_server { Shape::TaskServer } else { Shape::TaskClient };
        converse(shape, seed, hold, sizes);
    }
}
