//! The path a relay built on hyper (or axum, which is hyper underneath) takes: its HTTP stack
//! parses the request and writes the 101, wsframe checks the WebSocket rules
//! (`handshake::validate_request_headers`, `Offer::response_headers`), and the tokio adapter
//! runs on hyper's upgraded connection (`hyper_util::rt::TokioIo<Upgraded>`), which is not a
//! `TcpStream`. A client on plain TCP talks to it, and a refused request gets the status and
//! headers wsframe chose.
#![cfg(feature = "tokio")]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use wsframe::handshake::{validate_request_headers, ClientOptions};
use wsframe::io::tokio::{self as ws_tokio, WebSocket};
use wsframe::io::IoConfig;
use wsframe::{CloseFrame, EndReason, Event, Role};

const LIMIT: Duration = Duration::from_secs(20);

/// What the server's connections ended with, for the test to check.
type Ends = tokio::sync::mpsc::UnboundedSender<EndReason>;

/// A hyper service that upgrades valid WebSocket requests offering "chat", and echoes.
async fn upgrade(
    mut request: Request<Incoming>,
    ends: Ends,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let offer = match validate_request_headers(request.headers().iter()) {
        Ok(offer) => offer,
        Err(rejection) => {
            let mut response = Response::new(Full::new(Bytes::from(rejection.reason().to_owned())));
            *response.status_mut() = StatusCode::from_u16(rejection.status()).unwrap();
            for (name, value) in rejection.headers() {
                response.headers_mut().insert(*name, value.parse().unwrap());
            }
            return Ok(response);
        }
    };
    let protocol = offer
        .protocols()
        .iter()
        .any(|p| p == "chat")
        .then_some("chat");
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in offer.response_headers(protocol).unwrap() {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio::spawn(async move {
        let upgraded = hyper::upgrade::on(&mut request).await.unwrap();
        // hyper keeps any bytes read past the request inside `Upgraded`: nothing is left over.
        let (tx, mut rx) = ws_tokio::start(
            TokioIo::new(upgraded),
            Role::Server,
            IoConfig::default(),
            &[],
        )
        .unwrap();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Text(text) => tx.send(text).await.unwrap(),
                Event::Binary(bytes) => tx.send(bytes).await.unwrap(),
                Event::Ended(ended) => ends.send(ended.reason).unwrap(),
                _ => {}
            }
        }
    });
    Ok(response)
}

/// A hyper HTTP/1.1 server with upgrades on a loopback port; its connections' ends arrive on
/// the returned channel.
async fn hyper_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<EndReason>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ends_tx, ends_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let ends = ends_tx.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| upgrade(request, ends.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr.to_string(), ends_rx)
}

#[tokio::test]
async fn the_task_adapter_runs_on_hypers_upgraded_connection() {
    let (addr, mut ends) = hyper_server().await;
    let (mut client, response) = timeout(
        LIMIT,
        WebSocket::connect_with(
            &format!("ws://{addr}/chat"),
            ClientOptions::new().protocol("chat"),
            IoConfig::default(),
        ),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    assert_eq!(response.protocol(), Some("chat"));

    for size in [16usize, 70_000, 1 << 20] {
        let sent: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        client.send(sent.clone()).await.unwrap();
        let echo = timeout(LIMIT, client.recv()).await.expect("echo in time");
        assert_eq!(echo, Some(Event::Binary(sent.into())), "{size} bytes");
    }
    client.send("through hyper").await.unwrap();
    let echo = timeout(LIMIT, client.recv()).await.expect("echo in time");
    assert_eq!(echo, Some(Event::Text("through hyper".into())));

    client.close(1000, "done").await.unwrap();
    let mut last = Vec::new();
    while let Some(event) = timeout(LIMIT, client.recv()).await.expect("close in time") {
        last.push(event);
    }
    assert!(
        matches!(
            last.as_slice(),
            [
                Event::Close(Some(CloseFrame { code: 1000, .. })),
                Event::Ended(_)
            ]
        ),
        "{last:?}"
    );
    let end = timeout(LIMIT, ends.recv())
        .await
        .expect("server end")
        .unwrap();
    assert!(
        matches!(&end, EndReason::ClosedByPeer(Some(CloseFrame { code: 1000, reason })) if reason == "done"),
        "{end:?}"
    );
}

#[tokio::test]
async fn a_request_wsframe_refuses_gets_its_status_and_headers_through_hyper() {
    let (addr, _ends) = hyper_server().await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    // Section 4.4: a version the server does not speak gets 426 and the version it does.
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(LIMIT, stream.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 426 "), "{answer}");
    assert!(
        answer.contains("\r\nsec-websocket-version: 13\r\n"),
        "{answer}"
    );
}
