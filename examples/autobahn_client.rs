//! A client for the Autobahn testsuite's fuzzing server, and an echo client for interop tests,
//! on the blocking adapter ([`wsframe::io::blocking::WebSocket`]).
//!
//! Autobahn mode (the default): asks the fuzzing server how many cases it has
//! (`/getCaseCount`), runs each (`/runCase?case=N&agent=AGENT`, echoing every message back
//! as it came, text as text and binary as binary), then asks it to write its reports
//! (`/updateReports?agent=AGENT`). See `tests/interop/README.md`.
//!
//! ```text
//! cargo run --release --example autobahn_client -- [--url ws://127.0.0.1:9001] [--agent wsframe] [--cases 1,2,3]
//! ```
//!
//! Echo mode: one connection to any URL, every data message echoed. Prints `connected` once
//! the handshake is done, then `ended: <how it ended>` (the one-line form of
//! [`wsframe::Ended`]); exits 0 when the close handshake completed, 1 when it did not, and 2
//! with `handshake failed: <why>` when the connection could not be opened. With
//! `--close-after N` the client starts the close itself (with `--close-code` and
//! `--close-reason`) once it has echoed N messages. The interop tests run the peers' servers
//! against this mode (`tests/interop/py_server.py`, `tests/interop/node_server.js`).
//!
//! ```text
//! cargo run --release --example autobahn_client -- --echo ws://127.0.0.1:8765/path [--close-after N --close-code C --close-reason R]
//! ```

use std::process::ExitCode;

use wsframe::io::blocking::WebSocket;
use wsframe::io::IoConfig;
use wsframe::{Config, Event};

struct Args {
    url: String,
    agent: String,
    cases: Option<Vec<u32>>,
    echo: Option<String>,
    close_after: Option<u64>,
    close_code: u16,
    close_reason: String,
    max_message_size: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: autobahn_client [--url ws://127.0.0.1:9001] [--agent wsframe] [--cases 1,2,3]\n\
         \x20      autobahn_client --echo URL [--close-after N] [--close-code C] [--close-reason R]\n\
         \x20      (both: [--max-message-size BYTES])"
    );
    std::process::exit(64)
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "ws://127.0.0.1:9001".into(),
        agent: "wsframe".into(),
        cases: None,
        echo: None,
        close_after: None,
        close_code: 1000,
        close_reason: String::new(),
        max_message_size: 64 << 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => args.url = value(),
            "--agent" => args.agent = value(),
            "--cases" => {
                let list = value()
                    .split(',')
                    .map(|n| n.trim().parse().unwrap_or_else(|_| usage()))
                    .collect();
                args.cases = Some(list);
            }
            "--echo" => args.echo = Some(value()),
            "--close-after" => args.close_after = Some(value().parse().unwrap_or_else(|_| usage())),
            "--close-code" => args.close_code = value().parse().unwrap_or_else(|_| usage()),
            "--close-reason" => args.close_reason = value(),
            "--max-message-size" => {
                args.max_message_size = value().parse().unwrap_or_else(|_| usage())
            }
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("unknown argument {flag:?}");
                usage()
            }
        }
    }
    args
}

fn config(args: &Args) -> IoConfig {
    // The fuzzing server's cases include 16 MiB messages and slow senders: no keepalive, no
    // idle timeout, limits above the largest case.
    IoConfig::new(Config {
        ping_interval: None,
        idle_timeout: None,
        max_message_size: args.max_message_size,
        max_frame_size: args.max_message_size,
        ..Config::default()
    })
}

/// Echoes every data message until the connection ends; returns how it ended. With
/// `close_after`, starts the close handshake once that many messages were echoed.
fn echo(ws: &mut WebSocket, args: &Args) -> Option<wsframe::Ended> {
    let mut echoed = 0u64;
    let mut ended = None;
    while let Some(event) = ws.read() {
        let sent = match event {
            Event::Text(text) => ws.send(text),
            Event::Binary(bytes) => ws.send(bytes),
            Event::Ended(e) => {
                ended = Some(*e);
                continue;
            }
            // PINGs are answered and the peer's Close is echoed by the engine.
            _ => continue,
        };
        match sent {
            Ok(()) => {
                echoed += 1;
                if args.close_after == Some(echoed) {
                    if let Err(e) = ws.close(args.close_code, &args.close_reason) {
                        eprintln!("close refused: {e}");
                    }
                }
            }
            // The peer closed or the connection failed while we echoed: the end follows.
            Err(e) => eprintln!("echo not sent: {e}"),
        }
    }
    ended
}

fn echo_mode(url: &str, args: &Args) -> ExitCode {
    let mut ws = match WebSocket::connect(url, config(args)) {
        Ok(ws) => ws,
        Err(e) => {
            let why = e.to_string();
            let why = why.strip_prefix("handshake failed: ").unwrap_or(&why);
            println!("handshake failed: {why}");
            return ExitCode::from(2);
        }
    };
    println!("connected");
    match echo(&mut ws, args) {
        Some(ended) => {
            println!("ended: {ended}");
            if ended.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => {
            println!("ended: (no end event)");
            ExitCode::FAILURE
        }
    }
}

fn autobahn_mode(args: &Args) -> ExitCode {
    let base = args.url.trim_end_matches('/');
    let count = match case_count(base, args) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("getCaseCount: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cases = args.cases.clone().unwrap_or_else(|| (1..=count).collect());
    println!("{count} cases; running {}", cases.len());
    for case in cases {
        let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
        match WebSocket::connect(&url, config(args)) {
            Ok(mut ws) => match echo(&mut ws, args) {
                Some(ended) => println!("case {case}/{count}: {ended}"),
                None => println!("case {case}/{count}: (no end event)"),
            },
            Err(e) => println!("case {case}/{count}: connect failed: {e}"),
        }
    }
    let url = format!("{base}/updateReports?agent={}", args.agent);
    match WebSocket::connect(&url, config(args)) {
        Ok(mut ws) => {
            while ws.read().is_some() {}
            println!("reports updated for agent {}", args.agent);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("updateReports: {e}");
            ExitCode::FAILURE
        }
    }
}

fn case_count(base: &str, args: &Args) -> Result<u32, String> {
    let mut ws = WebSocket::connect(&format!("{base}/getCaseCount"), config(args))
        .map_err(|e| e.to_string())?;
    let mut count = None;
    while let Some(event) = ws.read() {
        if let Event::Text(text) = event {
            count = Some(
                text.trim()
                    .parse::<u32>()
                    .map_err(|e| format!("{text:?}: {e}"))?,
            );
        }
    }
    count.ok_or_else(|| "no case count received".into())
}

fn main() -> ExitCode {
    let args = parse_args();
    match args.echo.clone() {
        Some(url) => echo_mode(&url, &args),
        None => autobahn_mode(&args),
    }
}
