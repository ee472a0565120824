//! A line client: connects to a `ws://` URL, sends each line of stdin as a text message, and
//! prints what comes back.
//!
//! ```text
//! cargo run --release --features tokio --example client -- ws://127.0.0.1:9001/
//! ```
//!
//! Text messages are printed to stdout as they are, one per line; binary messages as
//! `[binary N bytes]`. Status goes to stderr: `connected to <url>` once the handshake is done,
//! `ended: <how it ended>` at the end. At the end of stdin the client closes with 1000 and
//! waits for the server's answer. Exits 0 after a clean close, 1 after any other end, 2 when
//! the connection could not be opened (`handshake failed: <why>`).

use std::io::Write;

use tokio::io::{AsyncBufReadExt, BufReader};
use wsframe::io::tokio::connect;
use wsframe::io::IoConfig;
use wsframe::{Config, Event};

#[tokio::main]
async fn main() {
    // Exit without waiting for the runtime to wind down: its stdin reader may be blocked in a
    // read that only another line would end.
    std::process::exit(run().await);
}

async fn run() -> i32 {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client ws://HOST[:PORT][/PATH]");
        return 64;
    };
    // A chat-like client: keepalive on, so a dead server is noticed.
    let config = IoConfig::new(Config::default());
    let (tx, mut rx) = match connect(&url, config).await {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("handshake failed: {e}");
            return 2;
        }
    };
    eprintln!("connected to {url}");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if tx.send(line).await.is_err() {
                        // The connection is closing; its end is reported below.
                        stdin_open = false;
                    }
                }
                // End of input (or unreadable input): close and wait for the answer.
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    let _ = tx.close(1000, "");
                }
            },
            event = rx.recv() => match event {
                Some(Event::Text(text)) => {
                    let _ = writeln!(stdout, "{text}");
                    let _ = stdout.flush();
                }
                Some(Event::Binary(bytes)) => {
                    let _ = writeln!(stdout, "[binary {} bytes]", bytes.len());
                    let _ = stdout.flush();
                }
                Some(Event::Ended(ended)) => {
                    eprintln!("ended: {ended}");
                    return if ended.is_clean() { 0 } else { 1 };
                }
                // PINGs are answered and the server's Close echoed by the engine.
                Some(_) => {}
                None => return 1,
            },
        }
    }
}
