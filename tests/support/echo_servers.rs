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
    Tokio,
    Std,
}

pub const BOTH: [Runtime; 2] = [Runtime::Tokio, Runtime::Std];

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
            Runtime::Tokio => {
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(serve_tokio(listener, config, report_tx, st));
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

async fn serve_tokio(
    listener: TcpListener,
    config: IoConfig,
    reports: mpsc::Sender<Report>,
    state: State,
) {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let mut next_id = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        next_id += 1;
        let (id, config, reports, state) =
            (next_id, config.clone(), reports.clone(), state.clone());
        state.active.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Ok((tx, mut rx)) = wsframe::io::tokio::accept(stream, config).await {
                state
                    .handles
                    .lock()
                    .unwrap()
                    .insert(id, Handle::Tokio(tx.clone()));
                while let Some(event) = rx.recv().await {
                    match event {
                        Event::Text(text) if text.starts_with("!close") => {
                            let _ = tx.close(1000, "bye");
                        }
                        Event::Text(text) if text.starts_with("!burst") => {
                            let (n, size) = parse_burst(&text).expect("!burst N SIZE");
                            for i in 0..n {
                                if tx.send(burst_message(i, size)).await.is_err() {
                                    break;
                                }
                            }
                            let _ = tx.close(1000, "burst done");
                        }
                        Event::Text(text) => {
                            let _ = tx.send(text).await;
                        }
                        Event::Binary(bytes) => {
                            let _ = tx.send(bytes).await;
                        }
                        Event::Ended(ended) => {
                            let _ = reports.send(Report {
                                ended: *ended,
                                at: Instant::now(),
                                stats: rx.stats(),
                            });
                        }
                        _ => {}
                    }
                }
                state.handles.lock().unwrap().remove(&id);
            }
            state.active.fetch_sub(1, Ordering::SeqCst);
        });
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
                    state
                        .handles
                        .lock()
                        .unwrap()
                        .insert(id, Handle::Std(ws.closer()));
                }
                while let Some(event) = ws.read() {
                    match event {
                        Event::Text(text) if text.starts_with("!close") => {
                            let _ = ws.close(1000, "bye");
                        }
                        Event::Text(text) if text.starts_with("!burst") => {
                            let (n, size) = parse_burst(&text).expect("!burst N SIZE");
                            // Queued, not written one by one: the close goes behind them all.
                            for i in 0..n {
                                if ws.feed(burst_message(i, size)).is_err() {
                                    break;
                                }
                            }
                            let _ = ws.close(1000, "burst done");
                        }
                        Event::Text(text) => {
                            let _ = ws.send(text);
                        }
                        Event::Binary(bytes) => {
                            let _ = ws.send(bytes);
                        }
                        Event::Ended(ended) => {
                            let _ = reports.send(Report {
                                ended: *ended,
                                at: Instant::now(),
                                stats: ws.stats(),
                            });
                        }
                        _ => {}
                    }
                }
                state.handles.lock().unwrap().remove(&id);
            }
            state.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
