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

/// Issue 4: dropping a `send` or `recv` future at its await point loses or duplicates nothing.
/// The server retries each message whose `send` it cancelled (a timeout while the budget is
/// full) and pauses now and then; the client cancels `recv` on a timer and reads slowly. Every message must arrive
/// exactly once, in order: a cancelled send that had queued its message would show up twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sends_and_receives_lose_or_duplicate_nothing() {
    const MESSAGES: usize = 200;
    const SIZE: usize = 64 << 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let config = IoConfig::new(Config {
            max_outbound_bytes: 128 << 10,
            ..Config::default()
        });
        let (tx, _rx) = accept(stream, config).await.unwrap();
        let mut cancelled = 0usize;
        for i in 0..MESSAGES {
            if i % 20 == 0 {
                // Pauses, so the client also waits in `recv` and has it cancelled.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let payload = bytes::Bytes::from(vec![i as u8; SIZE]);
            loop {
                tokio::select! {
                    sent = tx.send(Message::Binary(payload.clone())) => {
                        sent.unwrap();
                        break;
                    }
                    () = tokio::time::sleep(std::time::Duration::from_micros(300)) => cancelled += 1,
                }
            }
        }
        tx.close(1000, "").unwrap();
        tx.closed().await;
        cancelled
    });
    // A short event channel, so a slow reader soon leaves the socket unread.
    let client_config = IoConfig {
        event_capacity: 2,
        ..IoConfig::default()
    };
    let (_tx, mut rx) = connect(&url, client_config).await.unwrap();
    let mut received = Vec::new();
    let mut recv_cancelled = 0usize;
    let read_all = async {
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Event::Binary(b)) => {
                        assert_eq!(b.len(), SIZE);
                        received.push(b[0] as usize);
                        if received.len() % 10 == 0 {
                            // Read slowly now and then, so the server's sends wait and time out.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    }
                    Some(Event::Ended(_)) | None => break,
                    Some(_) => {}
                },
                () = tokio::time::sleep(std::time::Duration::from_micros(200)) => recv_cancelled += 1,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read_all)
        .await
        .expect("finished");
    let send_cancelled = server.await.unwrap();
    assert_eq!(
        received,
        (0..MESSAGES).collect::<Vec<_>>(),
        "lost, duplicated or reordered"
    );
    assert!(
        send_cancelled > 0,
        "no send was cancelled: the test proved nothing"
    );
    assert!(
        recv_cancelled > 0,
        "no recv was cancelled: the test proved nothing"
    );
}
