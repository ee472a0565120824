//! Both tokio adapters over byte streams other than a `TcpStream`: what a relay behind TLS or
//! an HTTP stack (hyper's upgraded connection) hands them.
//!
//! The buffering stream here is `tokio::io::BufWriter`, which, as `AsyncWrite` allows, keeps
//! what it is given until it is flushed: every test over it hangs (and fails on its time
//! limit) if an adapter writes a frame without flushing it, the Close included. (tokio-rustls
//! writes its records at once, so tests/tls.rs would not notice a missing flush.) The flush is
//! under the write deadline too: a flush the peer never lets finish ends the connection with a
//! write timeout, like a frame it never reads.
#![cfg(feature = "tokio")]

#[path = "support/echo_pair.rs"]
mod echo_pair;

use std::time::{Duration, Instant};

use echo_pair::{
    accept_and_echo_in_task, accept_and_echo_on_task, echo_on_task, ended_reason,
    exchange_and_close, Client, LIMIT,
};
use tokio::io::{duplex, BufWriter, DuplexStream};
use tokio::net::UnixStream;
use tokio::time::timeout;
use wsframe::handshake::{ClientOptions, RequestError};
use wsframe::io::tokio::{self as ws_tokio, WebSocket};
use wsframe::io::{Error, IoConfig};
use wsframe::{CloseFrame, EndReason, Role};

/// Sizes around each header length boundary (section 5.2), and larger than the in-memory
/// pipe, so that writes block and go on in pieces.
const SIZES: [usize; 7] = [0, 16, 125, 126, 65_535, 65_536, 1 << 20];

type Buffered = BufWriter<DuplexStream>;

/// Two ends of an in-memory connection that hold what is written until it is flushed.
fn buffered_pair() -> (Buffered, Buffered) {
    let (a, b) = duplex(64 << 10);
    (BufWriter::new(a), BufWriter::new(b))
}

#[tokio::test]
async fn in_task_adapter_over_a_buffering_stream_flushes_every_frame_and_the_close() {
    let (server_io, client_io) = buffered_pair();
    let server = tokio::spawn(accept_and_echo_in_task(server_io));
    // A wss:// URL over a stream the caller opened: the request is the same bytes as ws://.
    let (client, response) = timeout(
        LIMIT,
        WebSocket::connect_over(
            client_io,
            "wss://relay.test/echo",
            ClientOptions::new(),
            IoConfig::default(),
        ),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    assert!(response.protocol().is_none());
    exchange_and_close(Client::InTask(client), server, &SIZES).await;
}

#[tokio::test]
async fn task_adapter_over_a_buffering_stream_flushes_every_frame_and_the_close() {
    let (server_io, client_io) = buffered_pair();
    let server = tokio::spawn(accept_and_echo_on_task(server_io));
    let (client, _) = WebSocket::connect_over(
        client_io,
        "ws://relay.test/",
        ClientOptions::new(),
        IoConfig::default(),
    )
    .await
    .unwrap();
    exchange_and_close(Client::InTask(client), server, &SIZES).await;
}

#[tokio::test]
async fn task_adapter_client_over_a_buffering_stream() {
    let (server_io, client_io) = buffered_pair();
    let server = tokio::spawn(accept_and_echo_in_task(server_io));
    let (tx, rx, _) = ws_tokio::connect_over(
        client_io,
        "wss://relay.test/",
        ClientOptions::new(),
        IoConfig::default(),
    )
    .await
    .unwrap();
    exchange_and_close(Client::<Buffered>::Task(tx, rx), server, &SIZES).await;
}

/// A Unix socket, with the opening handshake done elsewhere (`start` and `new` on a stream
/// that already speaks WebSocket, as after an HTTP stack's upgrade).
#[tokio::test]
async fn both_adapters_over_a_unix_socket_after_an_upgrade_done_elsewhere() {
    let (server_io, client_io) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let (tx, rx) = ws_tokio::start(server_io, Role::Server, IoConfig::default(), &[]).unwrap();
        echo_on_task(tx, rx).await
    });
    let client = WebSocket::new(client_io, Role::Client, IoConfig::default(), &[]).unwrap();
    exchange_and_close(Client::InTask(client), server, &SIZES).await;
}

/// A write timeout of 300 ms ends the connection well before this.
const TIMED_OUT_BY: Duration = Duration::from_secs(5);

fn quick_write_timeout() -> IoConfig {
    IoConfig {
        write_timeout: Duration::from_millis(300),
        ..IoConfig::default()
    }
}

/// The peer takes one byte and never reads again: the frame goes into the buffering stream
/// whole, and its flush can never finish.
fn stuck_flush() -> (Buffered, DuplexStream) {
    let (ours, theirs) = duplex(1);
    (BufWriter::new(ours), theirs)
}

#[tokio::test]
async fn in_task_adapter_a_flush_that_never_finishes_is_a_write_timeout() {
    let (ours, _theirs) = stuck_flush();
    let mut ws = WebSocket::new(ours, Role::Server, quick_write_timeout(), &[]).unwrap();
    let started = Instant::now();
    // Written whole into the stream's buffer; `send` returns once the flush timed out.
    timeout(LIMIT, ws.send(vec![1u8; 100]))
        .await
        .expect("send ends in time")
        .unwrap();
    let event = timeout(LIMIT, ws.recv())
        .await
        .expect("end in time")
        .unwrap();
    assert_eq!(ended_reason(&event), &EndReason::WriteTimeout);
    assert_eq!(
        timeout(LIMIT, ws.recv()).await.expect("teardown in time"),
        None
    );
    // Ended by the write deadline itself, not by a test limit waking the task.
    assert!(started.elapsed() < TIMED_OUT_BY, "{:?}", started.elapsed());
}

#[tokio::test]
async fn task_adapter_a_flush_that_never_finishes_is_a_write_timeout() {
    let (ours, _theirs) = stuck_flush();
    let (tx, mut rx) = ws_tokio::start(ours, Role::Server, quick_write_timeout(), &[]).unwrap();
    let started = Instant::now();
    tx.send(vec![1u8; 100]).await.unwrap();
    let event = timeout(LIMIT, rx.recv())
        .await
        .expect("end in time")
        .unwrap();
    assert_eq!(ended_reason(&event), &EndReason::WriteTimeout);
    assert_eq!(timeout(LIMIT, rx.recv()).await.expect("no more"), None);
    assert!(started.elapsed() < TIMED_OUT_BY, "{:?}", started.elapsed());
}

/// The adapters' `connect` opens plain TCP only: a wss:// URL is refused before any
/// connection is made, with an error that says where TLS goes.
#[tokio::test]
async fn tcp_connect_refuses_wss_and_names_connect_over() {
    // Port 1 on loopback: nothing listens there; the refusal must come before connecting.
    let url = "wss://127.0.0.1:1/";
    let direct = WebSocket::connect(url, IoConfig::default())
        .await
        .unwrap_err();
    let task = ws_tokio::connect(url, IoConfig::default())
        .await
        .unwrap_err();
    let blocking = wsframe::io::blocking::WebSocket::connect(url, IoConfig::default()).unwrap_err();
    for error in [direct, task, blocking] {
        assert!(
            matches!(error, Error::Request(RequestError::Tls)),
            "{error:?}"
        );
        assert!(error.to_string().contains("connect_over"), "{error}");
    }
}

/// The server closes; the client's echo of the Close goes into its buffering stream whole,
/// which ends the client's engine, but the pipe takes two bytes at a time, so the flush is
/// still waiting when the teardown starts. The teardown flushes before it waits for the
/// server: without that, the server never gets the echo and ends with a close timeout.
async fn close_echo_flushed_by_the_teardown(client_on_task: bool) {
    let (server_io, client_io) = duplex(2);
    let server = tokio::spawn(async move {
        let mut ws = WebSocket::new(server_io, Role::Server, IoConfig::default(), &[]).unwrap();
        ws.close(1001, "going away").await.unwrap();
        let mut seen = Vec::new();
        while let Some(event) = ws.recv().await {
            seen.push(event);
        }
        seen
    });
    let client_io = BufWriter::new(client_io);
    let started = Instant::now();
    let client_seen = if client_on_task {
        let (_tx, mut rx) =
            ws_tokio::start(client_io, Role::Client, IoConfig::default(), &[]).unwrap();
        let mut seen = Vec::new();
        while let Some(event) = timeout(LIMIT, rx.recv()).await.expect("end in time") {
            seen.push(event);
        }
        seen
    } else {
        let mut ws = WebSocket::new(client_io, Role::Client, IoConfig::default(), &[]).unwrap();
        let mut seen = Vec::new();
        while let Some(event) = timeout(LIMIT, ws.recv()).await.expect("end in time") {
            seen.push(event);
        }
        seen
    };
    assert!(
        matches!(
            ended_reason(client_seen.last().unwrap()),
            EndReason::ClosedByPeer(Some(CloseFrame { code: 1001, .. }))
        ),
        "{client_seen:?}"
    );
    let seen = timeout(LIMIT, server).await.expect("server ended").unwrap();
    assert!(
        matches!(
            ended_reason(seen.last().unwrap()),
            EndReason::ClosedLocally { .. }
        ),
        "the server got the echo: {seen:?}"
    );
    // Well inside the close timeout (default 10 s), which would end a server left waiting.
    assert!(started.elapsed() < TIMED_OUT_BY, "{:?}", started.elapsed());
}

#[tokio::test]
async fn in_task_adapter_teardown_flushes_the_close_echo_first() {
    close_echo_flushed_by_the_teardown(false).await;
}

#[tokio::test]
async fn task_adapter_teardown_flushes_the_close_echo_first() {
    close_echo_flushed_by_the_teardown(true).await;
}
