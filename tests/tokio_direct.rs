//! The tokio adapter in the caller's task (`io::tokio::WebSocket`): the same events as the
//! other adapters, as a `futures_core::Stream` too; a close handshake that finishes and closes
//! the socket; a `Closer` that reaches a task waiting in `recv`; and cancelled `recv` and
//! `flush` calls that lose or duplicate nothing. The production failures run against it in
//! tests/production_failures.rs.
#![cfg(feature = "tokio")]

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use tokio::net::TcpListener;
use wsframe::io::tokio::WebSocket;
use wsframe::io::{IoConfig, Message};
use wsframe::{CloseFrame, Config, EndReason, Event, SendError};

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (listener, url)
}

fn ended_reason(event: &Event) -> &EndReason {
    match event {
        Event::Ended(ended) => &ended.reason,
        other => panic!("expected Ended, got {other:?}"),
    }
}

#[tokio::test]
async fn stream_of_events_ends_after_ended_and_the_socket_is_closed() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = WebSocket::accept(stream, IoConfig::default())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(event) = next(&mut ws).await {
            seen.push(event);
        }
        // Ended was the last item; the stream stays finished and the socket is gone.
        assert!(next(&mut ws).await.is_none());
        assert!(ws.get_ref().is_none(), "socket still open after the end");
        seen
    });
    let mut client = WebSocket::connect(&url, IoConfig::default()).await.unwrap();
    client.send("text first").await.unwrap();
    for i in 0..3u8 {
        client.send(vec![i; 10]).await.unwrap();
    }
    client.close(1000, "done").await.unwrap();
    let mut client_seen = Vec::new();
    while let Some(event) = client.recv().await {
        client_seen.push(event);
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server finished")
        .unwrap();
    assert_eq!(seen.len(), 6, "four messages, the Close, Ended: {seen:?}");
    assert_eq!(seen[0], Event::Text("text first".into()));
    for (i, event) in seen[1..4].iter().enumerate() {
        assert_eq!(event, &Event::Binary(vec![i as u8; 10].into()));
    }
    let done = CloseFrame {
        code: 1000,
        reason: "done".into(),
    };
    assert_eq!(seen[4], Event::Close(Some(done.clone())));
    assert_eq!(ended_reason(&seen[5]), &EndReason::ClosedByPeer(Some(done)));
    // The client saw the echo of its Close, then its own end.
    assert!(
        matches!(client_seen.as_slice(), [Event::Close(Some(c)), Event::Ended(_)] if c.code == 1000),
        "{client_seen:?}"
    );
    assert!(
        matches!(
            ended_reason(&client_seen[1]),
            EndReason::ClosedLocally { .. }
        ),
        "{client_seen:?}"
    );
    assert!(client.get_ref().is_none());
}

#[tokio::test]
async fn a_closer_reaches_a_task_waiting_in_recv() {
    let (listener, url) = listener().await;
    let (closer_tx, closer_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = WebSocket::accept(stream, IoConfig::default())
            .await
            .unwrap();
        closer_tx.send(ws.closer()).unwrap();
        let mut last = None;
        // Nothing arrives: the task sleeps in `recv` until the Closer wakes it.
        while let Some(event) = ws.recv().await {
            last = Some(event);
        }
        last.expect("Ended")
    });
    let mut client = WebSocket::connect(&url, IoConfig::default()).await.unwrap();
    let closer = closer_rx.await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        closer.close(999, ""),
        Err(SendError::InvalidCloseCode(999))
    ));
    closer.close(1001, "shutting down").unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .expect("the server's Close in time");
    assert_eq!(
        close,
        Some(Event::Close(Some(CloseFrame {
            code: 1001,
            reason: "shutting down".into()
        })))
    );
    // Taking the Close queues our echo; the next call writes it.
    while client.recv().await.is_some() {}
    let last = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .unwrap();
    assert!(
        matches!(ended_reason(&last), EndReason::ClosedLocally { .. }),
        "{last:?}"
    );
}

/// The server queues with `try_feed` (which says at once whether the message was taken) and
/// writes with `flush`; the client reads with `recv`; both calls are cancelled by timers over
/// and over while the client reads slowly. Every message must arrive exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_recv_and_flush_lose_or_duplicate_nothing() {
    const MESSAGES: usize = 200;
    const SIZE: usize = 64 << 10;
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let config = IoConfig::new(Config {
            max_outbound_bytes: 128 << 10,
            ..Config::default()
        });
        let mut ws = WebSocket::accept(stream, config).await.unwrap();
        let mut cancelled = 0usize;
        for i in 0..MESSAGES {
            if i % 20 == 0 {
                // Pauses (everything written first), so the client also waits in `recv` and
                // has it cancelled.
                ws.flush().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let payload = bytes::Bytes::from(vec![i as u8; SIZE]);
            loop {
                match ws.try_feed(payload.clone()) {
                    Ok(()) => break,
                    Err(SendError::Backpressure { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                tokio::select! {
                    () = ws.flush() => {}
                    () = tokio::time::sleep(Duration::from_micros(300)) => cancelled += 1,
                }
            }
        }
        ws.close(1000, "").await.unwrap();
        while ws.recv().await.is_some() {}
        cancelled
    });
    let mut client = WebSocket::connect(&url, IoConfig::default()).await.unwrap();
    let mut received = Vec::new();
    let mut recv_cancelled = 0usize;
    let read_all = async {
        loop {
            tokio::select! {
                event = client.recv() => match event {
                    Some(Event::Binary(b)) => {
                        assert_eq!(b.len(), SIZE);
                        assert!(b.iter().all(|&x| x == b[0]), "a frame was mixed up");
                        received.push(b[0] as usize);
                        if received.len() % 10 == 0 {
                            // Read slowly now and then, so the server's flushes wait.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    None => break,
                    Some(_) => {}
                },
                () = tokio::time::sleep(Duration::from_micros(200)) => recv_cancelled += 1,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("finished");
    let flush_cancelled = server.await.unwrap();
    assert_eq!(
        received,
        (0..MESSAGES).collect::<Vec<_>>(),
        "lost, duplicated or reordered"
    );
    assert!(
        flush_cancelled > 0,
        "no flush was cancelled: the test proved nothing"
    );
    assert!(
        recv_cancelled > 0,
        "no recv was cancelled: the test proved nothing"
    );
}

/// Messages to a peer that does not read: `send` waits (writing) for room in the budget, and
/// once the peer reads, everything arrives in order. The task adapter is the peer here, so the
/// two adapters also talk to each other.
#[tokio::test]
async fn send_waits_for_room_and_delivers_in_order_to_the_task_adapter() {
    const MESSAGES: usize = 300;
    const SIZE: usize = 64 << 10;
    let (listener, url) = listener().await;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let config = IoConfig {
            event_capacity: 1,
            ..IoConfig::default()
        };
        let (_tx, mut rx) = wsframe::io::tokio::accept(stream, config).await.unwrap();
        // Not reading until told: the client's sends back up into its budget.
        go_rx.await.unwrap();
        let mut received = Vec::new();
        while let Some(event) = rx.recv().await {
            if let Event::Binary(b) = event {
                received.push(b[0] as usize);
            }
        }
        received
    });
    let config = IoConfig::new(Config {
        max_outbound_bytes: 64 << 10,
        ..Config::default()
    });
    let mut client = WebSocket::connect(&url, config).await.unwrap();
    let sent = std::cell::Cell::new(0usize);
    let sending = async {
        for i in 0..MESSAGES {
            client
                .send(Message::Binary(vec![i as u8; SIZE].into()))
                .await
                .unwrap();
            sent.set(i + 1);
            // `send` returns once its message is written: nothing stays queued behind it.
            assert_eq!(client.connection().queued_bytes(), 0);
        }
        client.close(1000, "").await.unwrap();
        while client.recv().await.is_some() {}
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // 19 MiB cannot all fit in the socket buffers: the sends are waiting now.
        assert!(sent.get() < MESSAGES, "send did not wait for the peer");
        go_tx.send(()).unwrap();
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(sending, release)
    })
    .await
    .expect("finished");
    let received = server.await.unwrap();
    assert_eq!(received, (0..MESSAGES).map(|i| i % 256).collect::<Vec<_>>());
}
