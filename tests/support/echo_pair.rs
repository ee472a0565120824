//! An echo conversation between the tokio adapters over any stream, for the tests that run
//! them over streams other than TCP (tests/tokio_streams.rs, tests/tls.rs): echo servers on
//! either adapter, a client on either, and one exchange (messages of given sizes and a text,
//! then a close handshake) whose every step is checked on both ends.
// Each test crate that includes this uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wsframe::io::tokio::{Receiver, Sender, WebSocket};
use wsframe::io::{IoConfig, Message};
use wsframe::{CloseFrame, EndReason, Event};

/// Generous: each step takes milliseconds; the limit turns a hang into a failure.
pub const LIMIT: Duration = Duration::from_secs(20);

/// What an echo server sends back for `event`: data messages only.
pub fn echo_of(event: &Event) -> Option<Message> {
    match event {
        Event::Binary(bytes) => Some(Message::Binary(bytes.clone())),
        Event::Text(text) => Some(Message::Text(text.clone())),
        _ => None,
    }
}

/// An echo server in the caller's task; returns every event it saw.
pub async fn echo_in_task<S>(mut ws: WebSocket<S>) -> Vec<Event>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut seen = Vec::new();
    while let Some(event) = ws.recv().await {
        if let Some(echo) = echo_of(&event) {
            ws.send(echo).await.unwrap();
        }
        seen.push(event);
    }
    assert!(ws.get_ref().is_none(), "stream still open after the end");
    seen
}

/// An echo server on the task adapter; returns every event it saw.
pub async fn echo_on_task(tx: Sender, mut rx: Receiver) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(event) = rx.recv().await {
        if let Some(echo) = echo_of(&event) {
            tx.send(echo).await.unwrap();
        }
        seen.push(event);
    }
    seen
}

/// [`echo_in_task`] after the server side of the opening handshake on `stream`.
pub async fn accept_and_echo_in_task<S>(stream: S) -> Vec<Event>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let ws = WebSocket::accept(stream, IoConfig::default())
        .await
        .unwrap();
    echo_in_task(ws).await
}

/// [`echo_on_task`] after the server side of the opening handshake on `stream`.
pub async fn accept_and_echo_on_task<S>(stream: S) -> Vec<Event>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = wsframe::io::tokio::accept(stream, IoConfig::default())
        .await
        .unwrap();
    echo_on_task(tx, rx).await
}

/// The client end, on either adapter (one per test: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Client<S> {
    InTask(WebSocket<S>),
    Task(Sender, Receiver),
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Client<S> {
    async fn send(&mut self, message: Message) {
        let sent = async {
            match self {
                Client::InTask(ws) => ws.send(message).await.unwrap(),
                Client::Task(tx, _) => tx.send(message).await.unwrap(),
            }
        };
        timeout(LIMIT, sent).await.expect("sent in time")
    }

    async fn recv(&mut self) -> Option<Event> {
        let next = async {
            match self {
                Client::InTask(ws) => ws.recv().await,
                Client::Task(_, rx) => rx.recv().await,
            }
        };
        timeout(LIMIT, next).await.expect("an event in time")
    }

    async fn close(&mut self, code: u16, reason: &str) {
        match self {
            Client::InTask(ws) => ws.close(code, reason).await.unwrap(),
            Client::Task(tx, _) => tx.close(code, reason).unwrap(),
        }
    }
}

pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + size) as u8).collect()
}

pub fn ended_reason(event: &Event) -> &EndReason {
    match event {
        Event::Ended(ended) => &ended.reason,
        other => panic!("expected Ended, got {other:?}"),
    }
}

/// One message of each size and a text through `client`, each echo checked, then the
/// client's close handshake (1000 "bye"); checks both ends' last events: the client sees the
/// Close's echo (its code; the engine echoes no reason, section 5.5.1) and ends closed
/// locally, the server sees the Close and ends closed by the peer.
pub async fn exchange_and_close<S>(
    mut client: Client<S>,
    server: JoinHandle<Vec<Event>>,
    sizes: &[usize],
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    for &size in sizes {
        let sent = payload(size);
        client.send(Message::Binary(sent.clone().into())).await;
        let echo = client.recv().await;
        assert_eq!(echo, Some(Event::Binary(sent.into())), "{size} bytes");
    }
    let text = "text over any stream";
    client.send(Message::Text(text.into())).await;
    assert_eq!(client.recv().await, Some(Event::Text(text.into())));

    client.close(1000, "bye").await;
    let mut last = Vec::new();
    while let Some(event) = client.recv().await {
        last.push(event);
    }
    let bye = CloseFrame {
        code: 1000,
        reason: "bye".into(),
    };
    let echo_of_bye = CloseFrame {
        code: 1000,
        reason: "".into(),
    };
    assert_eq!(last.len(), 2, "the Close's echo, then the end: {last:?}");
    assert_eq!(last[0], Event::Close(Some(echo_of_bye)));
    assert!(
        matches!(ended_reason(&last[1]), EndReason::ClosedLocally { .. }),
        "{last:?}"
    );
    if let Client::InTask(ws) = &client {
        assert!(ws.get_ref().is_none(), "stream still open after the end");
    }

    let seen = timeout(LIMIT, server)
        .await
        .expect("server ended in time")
        .unwrap();
    assert_eq!(seen.len(), sizes.len() + 3, "{} events", seen.len());
    assert_eq!(seen[seen.len() - 2], Event::Close(Some(bye.clone())));
    assert_eq!(
        ended_reason(&seen[seen.len() - 1]),
        &EndReason::ClosedByPeer(Some(bye))
    );
}
