//! Both tokio adapters over real TLS (`wss://`, rustls through tokio-rustls): wsframe opens no
//! TLS itself, so an application accepts or connects the TLS stream and hands it over
//! (`accept` on a server, `connect_over` on a client): the TLS handshake, the WebSocket
//! handshake over it, messages up to 1 MiB each way (many TLS records, writes that block), and
//! the close handshake, then each side's teardown over TLS. tokio-rustls writes its records as
//! it is given bytes, so a missing flush would not show here; tests/tokio_streams.rs checks
//! that with a stream that needs one.
//!
//! The certificate (tests/fixtures/tls, self-signed for `localhost` and 127.0.0.1, valid until
//! 2126) was made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
//! -days 36500 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext
//! "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" -addext
//! "extendedKeyUsage=serverAuth"`.
#![cfg(feature = "tokio")]

#[path = "support/echo_pair.rs"]
mod echo_pair;

use std::sync::Arc;

use echo_pair::{
    accept_and_echo_in_task, accept_and_echo_on_task, exchange_and_close, Client, LIMIT,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use wsframe::handshake::ClientOptions;
use wsframe::io::tokio::{self as ws_tokio, WebSocket};
use wsframe::io::IoConfig;
use wsframe::Event;

const CERT: &[u8] = include_bytes!("fixtures/tls/cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/tls/key.pem");

/// Small and large messages: a 1 MiB one is many TLS records, and writes that block.
const SIZES: [usize; 5] = [16, 125, 16_384, 65_536, 1 << 20];

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

type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;
type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS listener on a loopback port that accepts one connection and hands its TLS stream to
/// `serve`; returns the port, and the events the server saw.
async fn tls_server<F, Fut>(serve: F) -> (u16, tokio::task::JoinHandle<Vec<Event>>)
where
    F: FnOnce(ServerTls) -> Fut + Send + 'static,
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
    (port, server)
}

/// The `wss://` URL of the server on `port`.
fn url(port: u16) -> String {
    format!("wss://localhost:{port}/echo")
}

/// The client side's TLS stream to the server on `port`.
async fn tls_client(port: u16) -> ClientTls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector().connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn task_adapter_server_and_in_task_client_over_tls() {
    let (port, server) = tls_server(accept_and_echo_on_task).await;
    let tls = tls_client(port).await;
    let (client, _) = timeout(
        LIMIT,
        WebSocket::connect_over(tls, &url(port), ClientOptions::new(), IoConfig::default()),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    exchange_and_close(Client::InTask(client), server, &SIZES).await;
}

#[tokio::test]
async fn in_task_server_and_task_adapter_client_over_tls() {
    let (port, server) = tls_server(accept_and_echo_in_task).await;
    let tls = tls_client(port).await;
    let (tx, rx, _) = timeout(
        LIMIT,
        ws_tokio::connect_over(tls, &url(port), ClientOptions::new(), IoConfig::default()),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    exchange_and_close(Client::<ClientTls>::Task(tx, rx), server, &SIZES).await;
}
