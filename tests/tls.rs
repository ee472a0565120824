//! Both tokio adapters over real TLS (`wss://`, rustls through tokio-rustls): wsframe opens no
//! TLS itself, so an application accepts or connects the TLS stream and hands it over
//! (`accept` on a server, `connect_over` on a client): the TLS handshake, the WebSocket
//! handshake over it, messages up to 1 MiB each way (many TLS records, writes that block), and
//! the close handshake, then each side's teardown over TLS. tokio-rustls writes its records as it is given bytes, so a missing flush
//! would not show here; tests/tokio_streams.rs checks that with a stream that needs one.
//!
//! The certificate (tests/fixtures/tls, self-signed for `localhost` and 127.0.0.1, valid until
//! 2126) was made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
//! -days 36500 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext
//! "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" -addext
//! "extendedKeyUsage=serverAuth"`.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use wsframe::handshake::ClientOptions;
use wsframe::io::tokio::{self as ws_tokio, WebSocket};
use wsframe::io::{IoConfig, Message};
use wsframe::{CloseFrame, EndReason, Event};

const CERT: &[u8] = include_bytes!("fixtures/tls/cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/tls/key.pem");

const LIMIT: Duration = Duration::from_secs(20);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn acceptor() -> TlsAcceptor {
    let cert = CertificateDer::from_pem_slice(CERT).unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

fn connector() -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CERT).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS listener on a loopback port: accepts one connection, hands the TLS stream to `serve`.
async fn tls_server<F, Fut>(serve: F) -> (String, tokio::task::JoinHandle<Vec<Event>>)
where
    F: FnOnce(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<Event>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // Under TLS the adapters cannot reach the socket: Nagle is the application's to turn off.
        tcp.set_nodelay(true).unwrap();
        let tls = acceptor().accept(tcp).await.unwrap();
        serve(tls).await
    });
    (format!("wss://localhost:{port}/echo"), server)
}

async fn tls_client(url: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/echo");
    let tcp = TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector().connect(name, tcp).await.unwrap()
}

fn echo_of(event: &Event) -> Option<Message> {
    match event {
        Event::Binary(bytes) => Some(Message::Binary(bytes.clone())),
        Event::Text(text) => Some(Message::Text(text.clone())),
        _ => None,
    }
}

fn ended_reason(event: &Event) -> &EndReason {
    match event {
        Event::Ended(ended) => &ended.reason,
        other => panic!("expected Ended, got {other:?}"),
    }
}

const SIZES: [usize; 5] = [16, 125, 16_384, 65_536, 1 << 20];

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 13 + size) as u8).collect()
}

/// The server's last events: the client's Close, then the end it reports.
fn assert_closed_by_client(seen: &[Event]) {
    let bye = CloseFrame {
        code: 1000,
        reason: "bye".into(),
    };
    assert_eq!(
        seen[seen.len() - 2],
        Event::Close(Some(bye.clone())),
        "{seen:?}"
    );
    assert_eq!(
        ended_reason(&seen[seen.len() - 1]),
        &EndReason::ClosedByPeer(Some(bye))
    );
}

#[tokio::test]
async fn task_adapter_server_and_in_task_client_over_tls() {
    let (url, server) = tls_server(|tls| async move {
        let (tx, mut rx) = ws_tokio::accept(tls, IoConfig::default()).await.unwrap();
        let mut seen = Vec::new();
        while let Some(event) = rx.recv().await {
            if let Some(echo) = echo_of(&event) {
                tx.send(echo).await.unwrap();
            }
            seen.push(event);
        }
        seen
    })
    .await;
    let tls = tls_client(&url).await;
    let (mut client, _) = timeout(
        LIMIT,
        WebSocket::connect_over(tls, &url, ClientOptions::new(), IoConfig::default()),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    for size in SIZES {
        let sent = payload(size);
        client.send(sent.clone()).await.unwrap();
        let echo = timeout(LIMIT, client.recv()).await.expect("echo in time");
        assert_eq!(echo, Some(Event::Binary(sent.into())), "{size} bytes");
    }
    client.close(1000, "bye").await.unwrap();
    let mut last = Vec::new();
    while let Some(event) = timeout(LIMIT, client.recv()).await.expect("close in time") {
        last.push(event);
    }
    assert!(
        matches!(
            ended_reason(last.last().unwrap()),
            EndReason::ClosedLocally { .. }
        ),
        "{last:?}"
    );
    let seen = timeout(LIMIT, server).await.expect("server ended").unwrap();
    assert_eq!(seen.len(), SIZES.len() + 2);
    assert_closed_by_client(&seen);
}

#[tokio::test]
async fn in_task_server_and_task_adapter_client_over_tls() {
    let (url, server) = tls_server(|tls| async move {
        let mut ws = WebSocket::accept(tls, IoConfig::default()).await.unwrap();
        let mut seen = Vec::new();
        while let Some(event) = ws.recv().await {
            if let Some(echo) = echo_of(&event) {
                ws.send(echo).await.unwrap();
            }
            seen.push(event);
        }
        seen
    })
    .await;
    let tls = tls_client(&url).await;
    let (tx, mut rx, _) = timeout(
        LIMIT,
        ws_tokio::connect_over(tls, &url, ClientOptions::new(), IoConfig::default()),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    for size in SIZES {
        let sent = payload(size);
        tx.send(sent.clone()).await.unwrap();
        let echo = timeout(LIMIT, rx.recv()).await.expect("echo in time");
        assert_eq!(echo, Some(Event::Binary(sent.into())), "{size} bytes");
    }
    tx.close(1000, "bye").unwrap();
    let mut last = Vec::new();
    while let Some(event) = timeout(LIMIT, rx.recv()).await.expect("close in time") {
        last.push(event);
    }
    assert!(
        matches!(
            ended_reason(last.last().unwrap()),
            EndReason::ClosedLocally { .. }
        ),
        "{last:?}"
    );
    let seen = timeout(LIMIT, server).await.expect("server ended").unwrap();
    assert_eq!(seen.len(), SIZES.len() + 2);
    assert_closed_by_client(&seen);
}
