//! The tokio adapter's handles: the `Receiver` as a `futures_core::Stream` (the same events as
//! `recv`, in order, ending with `Ended` and then `None`), and `Sender::send` waiting for the
//! byte budget when the peer reads slowly, then delivering everything in order.
#![cfg(feature = "tokio")]

use std::future::poll_fn;
use std::pin::Pin;

use futures_core::Stream;
use tokio::net::TcpListener;
use wsframe::io::tokio::{accept, connect};
use wsframe::io::{IoConfig, Message};
use wsframe::{Config, EndReason, Event};

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::test]
async fn receiver_is_a_stream_of_events_ending_after_ended() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (_tx, mut rx) = accept(stream, IoConfig::default()).await.unwrap();
        let mut seen = Vec::new();
        while let Some(event) = next(&mut rx).await {
            seen.push(event);
        }
        // Ended was the last item; the stream stays finished.
        assert!(next(&mut rx).await.is_none());
        seen
    });
    let (tx, mut rx) = connect(&url, IoConfig::default()).await.unwrap();
    for i in 0..3u8 {
        tx.send(Message::Binary(vec![i; 10].into())).await.unwrap();
    }
    tx.close(1000, "done").unwrap();
    while let Some(event) = rx.recv().await {
        if matches!(event, Event::Ended(_)) {
            break;
        }
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server finished")
        .unwrap();
    assert_eq!(seen.len(), 5, "three messages, the Close, Ended: {seen:?}");
    for (i, event) in seen[..3].iter().enumerate() {
        assert_eq!(event, &Event::Binary(vec![i as u8; 10].into()));
    }
    match &seen[3] {
        Event::Close(Some(close)) => {
            assert_eq!((close.code, close.reason.as_str()), (1000, "done"))
        }
        other => panic!("expected the peer's Close, got {other:?}"),
    }
    match &seen[4] {
        Event::Ended(ended) => assert!(
            matches!(ended.reason, EndReason::ClosedByPeer(_)),
            "{:?}",
            ended.reason
        ),
        other => panic!("expected Ended, got {other:?}"),
    }
}

#[tokio::test]
async fn send_waits_for_the_budget_while_the_peer_does_not_read_then_delivers_in_order() {
    const MESSAGES: usize = 300;
    const SIZE: usize = 64 << 10;
    const BUDGET: usize = 128 << 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0usize);
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let config = IoConfig::new(Config {
            max_outbound_bytes: BUDGET,
            ..Config::default()
        });
        let (tx, _rx) = accept(stream, config).await.unwrap();
        for i in 0..MESSAGES {
            let payload = vec![i as u8; SIZE];
            tx.send(Message::Binary(payload.into())).await.unwrap();
            // Bounded memory: what is queued never exceeds the budget plus one message.
            assert!(tx.queued_bytes() <= BUDGET + SIZE, "{}", tx.queued_bytes());
            progress_tx.send(i + 1).unwrap();
        }
        tx.close(1000, "").unwrap();
        tx.closed().await;
    });
    let (_tx, mut rx) = connect(&url, IoConfig::default()).await.unwrap();
    // Not reading: once the client's event channel and both sockets' buffers are full, the
    // server's `send` waits instead of queueing more.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stalled_at = *progress_rx.borrow_and_update();
    assert!(
        stalled_at < MESSAGES,
        "all {MESSAGES} sends finished with nobody reading"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        *progress_rx.borrow(),
        stalled_at,
        "sends went on with nobody reading"
    );
    // Reading again: every message arrives, in order, and the sender finishes.
    let read_all = async {
        let mut next_index = 0usize;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Binary(b) => {
                    assert_eq!(b.len(), SIZE);
                    assert!(
                        b.iter().all(|&x| x == next_index as u8),
                        "message {next_index}"
                    );
                    next_index += 1;
                }
                Event::Ended(_) => break,
                _ => {}
            }
        }
        next_index
    };
    let received = tokio::time::timeout(std::time::Duration::from_secs(20), read_all)
        .await
        .expect("a waiting sender was never woken");
    assert_eq!(received, MESSAGES);
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server finished")
        .unwrap();
}
