//! A publish/subscribe relay.
//!
//! ```text
//! cargo run --release --features tokio --example relay -- --addr 127.0.0.1:9002
//!     [--subscriber-limit BYTES] [--max-message-size BYTES]
//! ```
//!
//! Publishers connect to `/pub/<topic>`, subscribers to `/sub/<topic>`. Every message a
//! publisher sends goes to every current subscriber of that topic, encoded once
//! ([`PreparedMessage`]) and shared by all of them without copying. A subscriber that cannot
//! keep up (more than `--subscriber-limit` bytes queued for it, default 4 MiB) is disconnected
//! with close code 1013 and a logged reason, so memory stays bounded whatever subscribers do;
//! a publisher faster than the relay is slowed by backpressure (its socket is not read while
//! its messages wait).
//!
//! `GET /` serves a small page (`examples/relay.html`) to watch and publish a topic from a
//! browser. Logs go to stderr: `listening on <addr>`, `conn <id> ended: <reason>`, and
//! `conn <id> disconnected: <why>` for slow subscribers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsframe::handshake::{Accept, Rejection};
use wsframe::io::tokio::{accept_with, Sender, TrySendError};
use wsframe::io::IoConfig;
use wsframe::{Config, Event, PreparedMessage};

const PAGE: &str = include_str!("relay.html");

/// Close code for a subscriber that fell behind: "try again later".
const TRY_AGAIN_LATER: u16 = 1013;

struct Args {
    addr: SocketAddr,
    subscriber_limit: usize,
    max_message: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: relay [--addr 127.0.0.1:9002] [--subscriber-limit BYTES] [--max-message-size BYTES]"
    );
    std::process::exit(64)
}

fn parse_args() -> Args {
    let mut args = Args {
        addr: "127.0.0.1:9002".parse().unwrap(),
        subscriber_limit: 4 << 20,
        max_message: 16 << 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => args.addr = value().parse().unwrap_or_else(|_| usage()),
            "--subscriber-limit" => {
                args.subscriber_limit = value().parse().unwrap_or_else(|_| usage())
            }
            "--max-message-size" => args.max_message = value().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    args
}

/// The subscribers of each topic, by connection id.
type Topics = Arc<Mutex<HashMap<String, HashMap<u64, Sender>>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Subscriber,
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    // One write, so a script watching stderr never reads half the address.
    let line = format!("listening on {}\n", listener.local_addr().unwrap());
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    let engine = Config {
        max_message_size: args.max_message,
        max_frame_size: args.max_message,
        // A subscriber's budget is the relay's limit: a refused send means it fell behind.
        max_outbound_bytes: args.subscriber_limit,
        outbound_low_water: args.subscriber_limit / 4,
        ..Config::default()
    };
    let config = IoConfig::new(engine);
    let topics: Topics = Arc::default();
    let mut next_id = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        next_id += 1;
        let (id, config, topics) = (next_id, config.clone(), Arc::clone(&topics));
        tokio::spawn(async move {
            match is_websocket_upgrade(&stream).await {
                Some(true) => serve_websocket(id, stream, config, &topics).await,
                Some(false) => serve_http(stream).await,
                None => {}
            }
        });
    }
}

/// Looks at the request head without consuming it: a WebSocket upgrade goes to the adapter's
/// handshake, anything else is plain HTTP (the page). `None`: no complete head in time.
async fn is_websocket_upgrade(stream: &TcpStream) -> Option<bool> {
    let mut buf = vec![0u8; 8 << 10];
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout_at(give_up, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(_)) => {
                return Some(request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("upgrade")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("websocket")
                }))
            }
            // Let the handshake answer malformed or oversized requests properly.
            Err(_) => return Some(true),
            Ok(httparse::Status::Partial) if n == buf.len() => return Some(true),
            // Peeking again returns the same bytes at once: wait a little for more.
            Ok(httparse::Status::Partial) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// `GET /` answers with the page; anything else with 404.
async fn serve_http(mut stream: TcpStream) {
    let mut buf = vec![0u8; 8 << 10];
    let Ok(n) = stream.peek(&mut buf).await else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = request.parse(&buf[..n]) else {
        return;
    };
    let is_page = request.method == Some("GET") && request.path == Some("/");
    // Consume the head, so closing does not turn into a reset that loses the response.
    let mut head = vec![0u8; head_len];
    if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head)
        .await
        .is_err()
    {
        return;
    }
    let (status, kind, body) = if is_page {
        ("200 OK", "text/html; charset=utf-8", PAGE)
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "not found\n")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `/pub/<topic>` or `/sub/<topic>`; a topic is 1 to 64 letters, digits, `-`, `_` or `.`.
fn route(path: &str) -> Result<(Role, String), Rejection> {
    let (role, topic) = if let Some(topic) = path.strip_prefix("/pub/") {
        (Role::Publisher, topic)
    } else if let Some(topic) = path.strip_prefix("/sub/") {
        (Role::Subscriber, topic)
    } else {
        return Err(Rejection::new(
            404,
            "connect to /pub/<topic> or /sub/<topic>",
        ));
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if topic.is_empty() || topic.len() > 64 || !topic.chars().all(valid) {
        return Err(Rejection::new(
            400,
            "a topic is 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok((role, topic.to_string()))
}

async fn serve_websocket(id: u64, stream: TcpStream, config: IoConfig, topics: &Topics) {
    let mut routed = None;
    let accepted = accept_with(stream, config, |request| {
        routed = Some(route(request.path())?);
        Ok(Accept::new())
    })
    .await;
    let (tx, mut rx) = match accepted {
        Ok((tx, rx, _)) => (tx, rx),
        Err(e) => {
            eprintln!("conn {id} handshake failed: {e}");
            return;
        }
    };
    let Some((role, topic)) = routed else {
        return;
    };
    if role == Role::Subscriber {
        topics
            .lock()
            .unwrap()
            .entry(topic.clone())
            .or_default()
            .insert(id, tx.clone());
    }
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(text) if role == Role::Publisher => {
                publish(topics, &topic, &PreparedMessage::text(text))
            }
            Event::Binary(bytes) if role == Role::Publisher => {
                publish(topics, &topic, &PreparedMessage::binary(bytes))
            }
            Event::Ended(ended) => eprintln!("conn {id} ended: {ended}"),
            // Subscribers' own messages are ignored; PINGs and Close are the engine's.
            _ => {}
        }
    }
    if role == Role::Subscriber {
        let mut topics = topics.lock().unwrap();
        if let Some(subscribers) = topics.get_mut(&topic) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(&topic);
            }
        }
    }
}

/// Queues one prepared message on every subscriber of `topic`. Never waits: a subscriber whose
/// queue is full has fallen behind and is disconnected with 1013.
fn publish(topics: &Topics, topic: &str, message: &PreparedMessage) {
    let mut topics = topics.lock().unwrap();
    let Some(subscribers) = topics.get_mut(topic) else {
        return;
    };
    subscribers.retain(|id, tx| match tx.try_send(message) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            let queued = tx.queued_bytes();
            eprintln!(
                "conn {id} disconnected: subscriber too slow ({queued} bytes queued, a {} byte \
                 message would not fit)",
                message.len()
            );
            // Its backlog is dropped, not delivered first: waiting behind megabytes the
            // subscriber is not reading would hold the slot until a timeout.
            let _ = tx.close_now(TRY_AGAIN_LATER, "subscriber too slow");
            false
        }
        // Closing or gone: its own task logs the end.
        Err(TrySendError::Closed(_)) => false,
    });
}
