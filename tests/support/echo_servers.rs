//! An in-process scripted echo server on either adapter, for end-to-end tests.
//!
//! It echoes text and binary messages with the same opcode, and obeys two commands sent as
//! text: `!close` (close with 1000) and `!burst N SIZE` (queue N text messages of SIZE bytes,
//! `burst <i> ...`, then close with 1000). Every connection's end is reported with the time it
//! was seen and the connection's final counters.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use wsframe::io::blocking::{Closer, WebSocket};
use wsframe::io::IoConfig;
use wsframe::{Ended, Event, Stats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The tokio adapter with a task per connection (`Sender` / `Receiver`).
    Tokio,
    /// The tokio adapter in the caller's task (`io::tokio::WebSocket`).
    TokioDirect,
    /// The blocking adapter, a thread per connection.
    Std,
}

/// Every adapter.
pub const ALL: [Runtime; 3] = [Runtime::Tokio, Runtime::TokioDirect, Runtime::Std];

/// How one connection ended, as the server saw it.
#[derive(Debug)]
pub struct Report {
    pub ended: Ended,
    pub at: Instant,
    pub stats: Stats,
}

/// What the server needs to close every connection at shutdown.
enum Handle {
    Tokio(wsframe::io::tokio::Sender),
    TokioDirect(wsframe::io::tokio::Closer),
    Std(Closer),
}

#[derive(Clone, Default)]
struct State {
    active: Arc<AtomicUsize>,
    handles: Arc<Mutex<HashMap<u64, Handle>>>,
    /// Keep a handle per connection for [`TestServer::shutdown`]. Off by default: on the
    /// blocking adapter a `Closer` makes the reading thread wake every few milliseconds,
    /// which would hide a missing read timeout (timers not fired while blocked in `read`).
    shutdown_capable: bool,
}

impl State {
    /// Keeps what [`TestServer::shutdown`] closes this connection with, until it ends.
    fn register(&self, id: u64, handle: Handle) {
        self.handles.lock().unwrap().insert(id, handle);
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub runtime: Runtime,
    ends: mpsc::Receiver<Report>,
    state: State,
}

fn burst_message(i: usize, size: usize) -> String {
    let mut text = format!("burst {i} ");
    let fill = size.saturating_sub(text.len());
    text.push_str(&"x".repeat(fill));
    text
}

fn parse_burst(text: &str) -> Option<(usize, usize)> {
    let mut words = text.strip_prefix("!burst ")?.split(' ');
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// What the script does with an event, the same on every adapter.
enum Action {
    Echo(wsframe::io::Message),
    /// `!close`: close with 1000.
    Close,
    /// `!burst N SIZE`: queue N messages of SIZE bytes, then close with 1000.
    Burst(usize, usize),
    Report(Ended),
    Nothing,
}

fn script(event: Event) -> Action {
    match event {
        Event::Text(text) if text.starts_with("!close") => Action::Close,
        Event::Text(text) if text.starts_with("!burst") => {
            let (n, size) = parse_burst(&text).expect("!burst N SIZE");
            Action::Burst(n, size)
        }
        Event::Text(text) => Action::Echo(text.into()),
        Event::Binary(bytes) => Action::Echo(bytes.into()),
        Event::Ended(ended) => Action::Report(*ended),
        _ => Action::Nothing,
    }
}

fn report(reports: &mpsc::Sender<Report>, ended: Ended, stats: Stats) {
    let _ = reports.send(Report {
        ended,
        at: Instant::now(),
        stats,
    });
}

impl TestServer {
    pub fn start(runtime: Runtime, config: IoConfig) -> TestServer {
        Self::launch(runtime, config, false)
    }

    /// A server whose [`shutdown`](Self::shutdown) works.
    pub fn start_with_shutdown(runtime: Runtime, config: IoConfig) -> TestServer {
        Self::launch(runtime, config, true)
    }

    fn launch(runtime: Runtime, config: IoConfig, shutdown_capable: bool) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let (report_tx, ends) = mpsc::channel();
        let state = State {
            shutdown_capable,
            ..State::default()
        };
        let st = state.clone();
        match runtime {
            Runtime::Tokio | Runtime::TokioDirect => {
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    if runtime == Runtime::Tokio {
                        rt.block_on(accept_tokio(listener, config, report_tx, st, echo_tokio));
                    } else {
                        rt.block_on(accept_tokio(
                            listener,
                            config,
                            report_tx,
                            st,
                            echo_tokio_direct,
                        ));
                    }
                });
            }
            Runtime::Std => {
                std::thread::spawn(move || serve_std(listener, config, report_tx, st));
            }
        }
        TestServer {
            addr,
            runtime,
            ends,
            state,
        }
    }

    /// Connections whose handler has not finished.
    pub fn active(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }

    /// Waits until no connection is active; false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.active() == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.active() == 0
    }

    /// Closes every open connection with 1001, as at shutdown.
    pub fn shutdown(&self) {
        assert!(
            self.state.shutdown_capable,
            "start the server with start_with_shutdown"
        );
        for handle in self.state.handles.lock().unwrap().values() {
            let _ = match handle {
                Handle::Tokio(tx) => tx.close(1001, "server shutting down"),
                Handle::TokioDirect(closer) => closer.close(1001, "server shutting down"),
                Handle::Std(closer) => closer.close(1001, "server shutting down"),
            };
        }
    }

    /// The next connection end, within `timeout`.
    pub fn next_end(&self, timeout: Duration) -> Report {
        self.ends.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!("{:?}: no connection ended within {timeout:?}", self.runtime)
        })
    }

    /// True if no connection ends within `wait`.
    pub fn no_end_within(&self, wait: Duration) -> bool {
        match self.ends.recv_timeout(wait) {
            Ok(report) => panic!("{:?}: unexpected end: {}", self.runtime, report.ended),
            Err(_) => true,
        }
    }
}

/// One accepted connection of a Tokio server, with what its handler needs.
struct Accepted {
    stream: tokio::net::TcpStream,
    id: u64,
    config: IoConfig,
    reports: mpsc::Sender<Report>,
    state: State,
}

/// Accepts connections, each handled by `serve` in its own task, counted in `state.active`
/// (and its shutdown handle kept) while it runs.
async fn accept_tokio<F, Fut>(
    listener: TcpListener,
    config: IoConfig,
    reports: mpsc::Sender<Report>,
    state: State,
    serve: F,
) where
    F: Fn(Accepted) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let mut next_id = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        next_id += 1;
        state.active.fetch_add(1, Ordering::SeqCst);
        let (id, state) = (next_id, state.clone());
        let handler = serve(Accepted {
            stream,
            id,
            config: config.clone(),
            reports: reports.clone(),
            state: state.clone(),
        });
        tokio::spawn(async move {
            handler.await;
            state.handles.lock().unwrap().remove(&id);
            state.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// The task adapter's handler: `Sender` and `Receiver`.
async fn echo_tokio(accepted: Accepted) {
    let Ok((tx, mut rx)) = wsframe::io::tokio::accept(accepted.stream, accepted.config).await
    else {
        return;
    };
    accepted
        .state
        .register(accepted.id, Handle::Tokio(tx.clone()));
    while let Some(event) = rx.recv().await {
        match script(event) {
            Action::Echo(message) => {
                let _ = tx.send(message).await;
            }
            Action::Close => {
                let _ = tx.close(1000, "bye");
            }
            Action::Burst(n, size) => {
                for i in 0..n {
                    if tx.send(burst_message(i, size)).await.is_err() {
                        break;
                    }
                }
                let _ = tx.close(1000, "burst done");
            }
            Action::Report(ended) => report(&accepted.reports, ended, rx.stats()),
            Action::Nothing => {}
        }
    }
}

/// The in-task adapter's handler: `WebSocket`.
async fn echo_tokio_direct(accepted: Accepted) {
    let Ok(mut ws) = wsframe::io::tokio::WebSocket::accept(accepted.stream, accepted.config).await
    else {
        return;
    };
    accepted
        .state
        .register(accepted.id, Handle::TokioDirect(ws.closer()));
    while let Some(event) = ws.recv().await {
        match script(event) {
            Action::Echo(message) => {
                let _ = ws.send(message).await;
            }
            Action::Close => {
                let _ = ws.close(1000, "bye").await;
            }
            Action::Burst(n, size) => {
                // Queued, not written one by one: the close goes behind them all.
                for i in 0..n {
                    if ws.feed(burst_message(i, size)).await.is_err() {
                        break;
                    }
                }
                let _ = ws.close(1000, "burst done").await;
            }
            Action::Report(ended) => report(&accepted.reports, ended, ws.stats()),
            Action::Nothing => {}
        }
    }
}

fn serve_std(listener: TcpListener, config: IoConfig, reports: mpsc::Sender<Report>, state: State) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        next_id += 1;
        let (id, config, reports, state) =
            (next_id, config.clone(), reports.clone(), state.clone());
        state.active.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            if let Ok(mut ws) = WebSocket::accept(stream, config) {
                if state.shutdown_capable {
                    state.register(id, Handle::Std(ws.closer()));
                }
                while let Some(event) = ws.read() {
                    match script(event) {
                        Action::Echo(message) => {
                            let _ = ws.send(message);
                        }
                        Action::Close => {
                            let _ = ws.close(1000, "bye");
                        }
                        Action::Burst(n, size) => {
                            // Queued, not written one by one: the close goes behind them all.
                            for i in 0..n {
                                if ws.feed(burst_message(i, size)).is_err() {
                                    break;
                                }
                            }
                            let _ = ws.close(1000, "burst done");
                        }
                        Action::Report(ended) => report(&reports, ended, ws.stats()),
                        Action::Nothing => {}
                    }
                }
                state.handles.lock().unwrap().remove(&id);
            }
            state.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
