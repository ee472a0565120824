//! The tokio adapter's `Receiver` as a `futures_core::Stream`: the same events as `recv`, in
//! order, ending with `Ended` and then `None`.
#![cfg(feature = "tokio")]

use std::future::poll_fn;
use std::pin::Pin;

use futures_core::Stream;
use tokio::net::TcpListener;
use wsframe::io::tokio::{accept, connect};
use wsframe::io::{IoConfig, Message};
use wsframe::{EndReason, Event};

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
