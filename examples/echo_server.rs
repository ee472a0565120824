//! An echo server: every text and binary message comes back with the same opcode.
//!
//! ```text
//! cargo run --release --features tokio --example echo_server -- --addr 127.0.0.1:9001
//!     [--runtime tokio|tokio-direct|std] [--ping-interval-ms N] [--idle-timeout-ms N]
//!     [--close-timeout-ms N] [--write-timeout-ms N] [--max-message-size BYTES]
//!     [--tls-cert CERT.pem --tls-key KEY.pem]
//! ```
//!
//! It prints `listening on <addr>` to stderr once bound, then one line per connection that
//! ends: `conn <id> ended: <reason>` (the [`wsframe::Ended`] one-line form). A value of 0
//! disables the ping interval or the idle timeout; setting only the ping interval sets the idle
//! timeout to three intervals.
//!
//! Ctrl-C shuts down gracefully: no new connections, every open one gets Close 1001, and the
//! server waits for the close handshakes up to the close timeout before exiting. A second
//! Ctrl-C exits at once.
//!
//! `--runtime tokio` (the default) runs each connection as a task of the async adapter, with a
//! `Sender` and a `Receiver`; `--runtime tokio-direct` runs the async adapter in the
//! connection's own task (`wsframe::io::tokio::WebSocket`, no second task); `--runtime std`
//! runs each on its own thread with the blocking adapter.
//!
//! With `--tls-cert` and `--tls-key` (PEM files; tokio runtimes only) it serves `wss://`:
//! each connection's TLS handshake is done with rustls (tokio-rustls), and the TLS stream is
//! handed to the same adapters, which take any byte stream. wsframe itself opens no TLS.
//! `tests/fixtures/tls` has a self-signed certificate for `localhost` and 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use wsframe::io::{blocking, tokio as ws_tokio, IoConfig};
use wsframe::{Config, Event};

const GOING_AWAY: u16 = 1001;
const SHUTDOWN_REASON: &str = "server shutting down";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Tokio,
    TokioDirect,
    Std,
}

struct Args {
    addr: SocketAddr,
    runtime: Runtime,
    config: IoConfig,
    /// `wss://`: the TLS server side, from `--tls-cert` and `--tls-key`.
    tls: Option<TlsAcceptor>,
}

fn usage() -> ! {
    eprintln!(
        "usage: echo_server [--addr 127.0.0.1:9001] [--runtime tokio|tokio-direct|std]\n\
         \x20                  [--ping-interval-ms N] [--idle-timeout-ms N] [--close-timeout-ms N]\n\
         \x20                  [--write-timeout-ms N] [--max-message-size BYTES]\n\
         \x20                  [--tls-cert CERT.pem --tls-key KEY.pem]"
    );
    std::process::exit(64)
}

fn parse_args() -> Args {
    let mut addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let mut runtime = Runtime::Tokio;
    let mut engine = Config::default();
    let mut config = IoConfig::default();
    let mut idle_set = false;
    // Conformance suites send messages up to 16 MiB in one frame, and limit cases beyond.
    let mut max_message: u64 = 64 << 20;
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        let mut millis = || -> u64 { value().parse().unwrap_or_else(|_| usage()) };
        match flag.as_str() {
            "--addr" => addr = value().parse().unwrap_or_else(|_| usage()),
            "--runtime" => {
                runtime = match value().as_str() {
                    "tokio" => Runtime::Tokio,
                    "tokio-direct" => Runtime::TokioDirect,
                    "std" => Runtime::Std,
                    _ => usage(),
                }
            }
            "--ping-interval-ms" => {
                let ms = millis();
                engine.ping_interval = (ms > 0).then(|| Duration::from_millis(ms));
                if !idle_set {
                    engine.idle_timeout = engine.ping_interval.map(|p| p * 3);
                }
            }
            "--idle-timeout-ms" => {
                let ms = millis();
                engine.idle_timeout = (ms > 0).then(|| Duration::from_millis(ms));
                idle_set = true;
            }
            "--close-timeout-ms" => engine.close_timeout = Duration::from_millis(millis()),
            "--write-timeout-ms" => config.write_timeout = Duration::from_millis(millis()),
            "--max-message-size" => max_message = value().parse().unwrap_or_else(|_| usage()),
            "--tls-cert" => tls_cert = Some(value()),
            "--tls-key" => tls_key = Some(value()),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    engine.max_message_size = max_message;
    engine.max_frame_size = max_message;
    config.engine = engine;
    let tls = match (tls_cert, tls_key) {
        (None, None) => None,
        (Some(_), Some(_)) if runtime == Runtime::Std => {
            eprintln!("--tls-cert and --tls-key need --runtime tokio or tokio-direct");
            usage()
        }
        (Some(cert), Some(key)) => Some(tls_acceptor(&cert, &key)),
        _ => {
            eprintln!("--tls-cert and --tls-key go together");
            usage()
        }
    };
    Args {
        addr,
        runtime,
        config,
        tls,
    }
}

/// The TLS server side for a certificate chain and its key (PEM files).
fn tls_acceptor(cert: &str, key: &str) -> TlsAcceptor {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("cannot load {what}: {e}");
        std::process::exit(1)
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .unwrap_or_else(|e| fail(cert, &e));
    let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| fail(key, &e));
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .unwrap_or_else(|e| fail("the TLS configuration", &e));
    TlsAcceptor::from(Arc::new(config))
}

fn main() {
    let args = parse_args();
    match args.runtime {
        Runtime::Tokio | Runtime::TokioDirect => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(serve_tokio(args));
        }
        Runtime::Std => serve_std(args),
    }
}

// ----- tokio ----------------------------------------------------------------------------------

async fn serve_tokio(args: Args) {
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    announce(listener.local_addr().unwrap());
    let open: Open = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    // One listener for the whole loop, so a Ctrl-C between two iterations is not missed.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                let (id, config, open) = (next_id, args.config.clone(), Arc::clone(&open));
                let (runtime, tls) = (args.runtime, args.tls.clone());
                tasks.spawn(async move {
                    let Some(tls) = tls else {
                        return echo_tokio(runtime, id, stream, config, open).await;
                    };
                    // Under TLS the adapter cannot reach the socket to turn Nagle off.
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout(config.handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => echo_tokio(runtime, id, stream, config, open).await,
                        Ok(Err(e)) => eprintln!("conn {id} TLS handshake failed: {e}"),
                        Err(_) => eprintln!("conn {id} TLS handshake failed: timed out"),
                    }
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut ctrl_c => break,
        }
    }
    drop(listener);
    let second_ctrl_c = tokio::signal::ctrl_c();
    let handles: Vec<_> = open.lock().unwrap().values().cloned().collect();
    eprintln!("shutting down: closing {} connections", handles.len());
    for handle in &handles {
        handle.close();
    }
    // The close handshakes get the close timeout (plus a moment for the last log lines).
    let grace = args.config.engine.close_timeout + Duration::from_millis(200);
    let drained = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = tokio::time::timeout(grace, drained) => {}
        _ = second_ctrl_c => eprintln!("second Ctrl-C: exiting now"),
    }
    std::process::exit(0);
}

/// What closes an open connection at shutdown, per adapter.
#[derive(Clone)]
enum CloseHandle {
    Task(ws_tokio::Sender),
    Direct(ws_tokio::Closer),
}

impl CloseHandle {
    fn close(&self) {
        let _ = match self {
            CloseHandle::Task(tx) => tx.close(GOING_AWAY, SHUTDOWN_REASON),
            CloseHandle::Direct(closer) => closer.close(GOING_AWAY, SHUTDOWN_REASON),
        };
    }
}

type Open = Arc<Mutex<HashMap<u64, CloseHandle>>>;

/// One connection on either tokio adapter, over TCP or TLS.
async fn echo_tokio<S>(runtime: Runtime, id: u64, stream: S, config: IoConfig, open: Open)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if runtime == Runtime::TokioDirect {
        echo_tokio_direct(id, stream, config, open).await
    } else {
        echo_tokio_task(id, stream, config, open).await
    }
}

async fn echo_tokio_task<S>(id: u64, stream: S, config: IoConfig, open: Open)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = match ws_tokio::accept(stream, config).await {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("conn {id} handshake failed: {e}");
            return;
        }
    };
    open.lock()
        .unwrap()
        .insert(id, CloseHandle::Task(tx.clone()));
    while let Some(event) = rx.recv().await {
        match event {
            // Waits while the peer is not reading (the outbound budget is full); meanwhile
            // nothing more is read from it either.
            Event::Text(text) => {
                let _ = tx.send(text).await;
            }
            Event::Binary(bytes) => {
                let _ = tx.send(bytes).await;
            }
            Event::Ended(ended) => eprintln!("conn {id} ended: {ended}"),
            // PINGs are answered and the peer's Close echoed by the engine.
            _ => {}
        }
    }
    open.lock().unwrap().remove(&id);
}

async fn echo_tokio_direct<S>(id: u64, stream: S, config: IoConfig, open: Open)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws = match ws_tokio::WebSocket::accept(stream, config).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("conn {id} handshake failed: {e}");
            return;
        }
    };
    // The closer wakes this task at shutdown while it waits in `recv`.
    open.lock()
        .unwrap()
        .insert(id, CloseHandle::Direct(ws.closer()));
    while let Some(event) = ws.recv().await {
        match event {
            // Writes before it returns, waiting (under the write deadline) while the peer is
            // not reading; meanwhile nothing more is read from it either.
            Event::Text(text) => {
                let _ = ws.send(text).await;
            }
            Event::Binary(bytes) => {
                let _ = ws.send(bytes).await;
            }
            Event::Ended(ended) => eprintln!("conn {id} ended: {ended}"),
            _ => {}
        }
    }
    open.lock().unwrap().remove(&id);
}

// ----- std ------------------------------------------------------------------------------------

fn serve_std(args: Args) {
    let listener = match std::net::TcpListener::bind(args.addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap();
    announce(local);
    let open: Arc<Mutex<HashMap<u64, blocking::Closer>>> = Arc::default();
    let active = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(Arc::clone(&stopping), local);
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        next_id += 1;
        let (id, config) = (next_id, args.config.clone());
        let (open, active) = (Arc::clone(&open), Arc::clone(&active));
        active.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            echo_std(id, stream, config, &open);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    let closers: Vec<_> = open.lock().unwrap().values().cloned().collect();
    eprintln!("shutting down: closing {} connections", closers.len());
    for closer in &closers {
        let _ = closer.close(GOING_AWAY, SHUTDOWN_REASON);
    }
    let until = Instant::now() + args.config.engine.close_timeout + Duration::from_millis(200);
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::exit(0);
}

fn echo_std(
    id: u64,
    stream: std::net::TcpStream,
    config: IoConfig,
    open: &Mutex<HashMap<u64, blocking::Closer>>,
) {
    let mut ws = match blocking::WebSocket::accept(stream, config) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("conn {id} handshake failed: {e}");
            return;
        }
    };
    // The closer lets shutdown reach this thread while it is blocked reading.
    open.lock().unwrap().insert(id, ws.closer());
    while let Some(event) = ws.read() {
        match event {
            Event::Text(text) => {
                let _ = ws.send(text);
            }
            Event::Binary(bytes) => {
                let _ = ws.send(bytes);
            }
            Event::Ended(ended) => eprintln!("conn {id} ended: {ended}"),
            _ => {}
        }
    }
    open.lock().unwrap().remove(&id);
}

/// SIGINT handling for the std runtime, borrowed from tokio on a helper thread: the first
/// Ctrl-C sets `stopping` and wakes the accept loop (by connecting to it), the second exits.
fn watch_ctrl_c(stopping: Arc<AtomicBool>, local: SocketAddr) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            stopping.store(true, Ordering::SeqCst);
            let _ = std::net::TcpStream::connect(local);
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("second Ctrl-C: exiting now");
            std::process::exit(0);
        });
    });
}

/// Prints `listening on <addr>` in one write: stderr is unbuffered and `eprintln!` writes the
/// address in pieces, so a script watching for the line could read half an address.
fn announce(addr: std::net::SocketAddr) {
    let line = format!("listening on {addr}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}
