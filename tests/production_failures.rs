//! The production failures, replayed end to end over real loopback sockets against every
//! adapter (tokio with a task per connection, tokio in the caller's task, and blocking). The clients are raw sockets writing hand-built masked frames
//! and parsing what comes back with an independent parser (`support/wire.rs`), so they do not
//! depend on the crate's own encoder or parser.
//!
//! Every test binds 127.0.0.1 port 0 and is bounded in time. The harness needs the `tokio`
//! feature (`cargo test --all-features --test production_failures`).
#![cfg(feature = "tokio")]

#[path = "support/echo_servers.rs"]
mod echo_servers;
#[path = "support/wire.rs"]
mod wire;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use echo_servers::{Runtime, TestServer, ALL};
use wire::{masked_frame, RawClient, BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use wsframe::io::IoConfig;
use wsframe::{CloseFrame, Config, EndReason};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Scheduling slack allowed on top of a timer's nominal time: this machine has two noisy
/// cores and the tests run in parallel.
const SLACK: Duration = Duration::from_millis(400);

/// Runs `test` against every adapter at once (they are independent servers), so timing
/// tests cost their wall time once.
fn on_every_adapter(test: fn(Runtime)) {
    let handles: Vec<_> = ALL
        .into_iter()
        .map(|runtime| (runtime, thread::spawn(move || test(runtime))))
        .collect();
    for (runtime, handle) in handles {
        if let Err(panic) = handle.join() {
            eprintln!("failed on the {runtime:?} adapter");
            std::panic::resume_unwind(panic);
        }
    }
}

fn closes_cleanly(client: &mut RawClient, server: &TestServer) {
    client.send_close(1000, "done");
    let close = client.read_frame(ms(3000)).expect("close echo");
    assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1000)));
    let report = server.next_end(ms(3000));
    assert_eq!(
        report.ended.reason,
        EndReason::ClosedByPeer(Some(CloseFrame {
            code: 1000,
            reason: "done".into()
        })),
        "{:?}: {}",
        server.runtime,
        report.ended
    );
}

/// Failure 1: Stale write deadline: a connection with a 50 ms write timeout idles well past it; a PING
/// then must still get its PONG (the deadline is armed per frame, not once), cycle after cycle.
#[test]
fn stale_write_deadline_does_not_kill_an_idle_connection() {
    on_every_adapter(|runtime| {
        let engine = Config {
            ping_interval: None,
            idle_timeout: None,
            ..Config::default()
        };
        let config = IoConfig::new(engine).with_write_timeout(ms(50));
        let server = TestServer::start(runtime, config);
        let mut client = RawClient::connect(server.addr);
        for round in 0..4u8 {
            thread::sleep(ms(200));
            let payload = [b'p', round];
            client.send(PING, &payload);
            let pong = client
                .read_frame(ms(2000))
                .unwrap_or_else(|e| panic!("{runtime:?}: no PONG in round {round}: {e}"));
            assert_eq!(
                (pong.opcode, &pong.payload[..]),
                (PONG, &payload[..]),
                "{runtime:?}"
            );
        }
        client.send_text("still here");
        let echo = client.read_frame(ms(2000)).expect("echo");
        assert_eq!((echo.opcode, &echo.payload[..]), (TEXT, &b"still here"[..]));
        closes_cleanly(&mut client, &server);
    });
}

/// Failure 2: Interleaving: 200 text messages (many longer than one 16 KiB fragment) and 200 PINGs
/// written as fast as possible while the server echoes. Every frame must parse, every text
/// come back whole and in order, and the PONGs answer our PINGs in order, the last one last.
#[test]
fn interleaved_pings_and_messages_keep_framing_and_order() {
    on_every_adapter(|runtime| {
        let server = TestServer::start(runtime, IoConfig::default());
        let mut client = RawClient::connect(server.addr);
        let texts: Vec<Vec<u8>> = (0..200)
            .map(|i| {
                let mut t = format!("msg {i} \u{e9}\u{20ac} ");
                let len = (i * 7919) % 40_000;
                while t.len() < len {
                    t.push_str("abcdefghij");
                }
                t.into_bytes()
            })
            .collect();
        let mut frames = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            frames.push(client.frame(TEXT, text));
            frames.push(client.frame(PING, format!("ping {i}").as_bytes()));
        }
        let mut writer = client.stream.try_clone().unwrap();
        let writing = thread::spawn(move || {
            for frame in frames {
                writer.write_all(&frame).expect("write");
            }
        });

        let mut next_text = 0;
        let mut last_pong: Option<usize> = None;
        let mut partial: Option<Vec<u8>> = None;
        let deadline = Instant::now() + Duration::from_secs(8);
        while next_text < texts.len() || last_pong != Some(199) {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = client.read_frame(left).unwrap_or_else(|e| {
                panic!("{runtime:?}: stopped after {next_text} texts, last PONG {last_pong:?}: {e}")
            });
            let complete = match frame.opcode {
                TEXT => {
                    assert!(
                        partial.is_none(),
                        "{runtime:?}: new message inside a fragmented one"
                    );
                    if frame.fin {
                        Some(frame.payload)
                    } else {
                        partial = Some(frame.payload);
                        None
                    }
                }
                CONTINUATION => {
                    let message = partial.as_mut().expect("continuation with no message open");
                    message.extend_from_slice(&frame.payload);
                    if frame.fin {
                        partial.take()
                    } else {
                        None
                    }
                }
                PONG => {
                    let text = String::from_utf8(frame.payload).expect("PONG payload is ours");
                    let n: usize = text
                        .strip_prefix("ping ")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("PONG for a PING we never sent: {text:?}"));
                    assert!(
                        last_pong.is_none_or(|last| n > last),
                        "{runtime:?}: PONG {n} after PONG {last_pong:?}"
                    );
                    last_pong = Some(n);
                    None
                }
                other => panic!("{runtime:?}: unexpected frame opcode {other:#x}"),
            };
            if let Some(message) = complete {
                assert!(
                    message == texts[next_text],
                    "{runtime:?}: echo {next_text} differs ({} bytes, expected {})",
                    message.len(),
                    texts[next_text].len()
                );
                next_text += 1;
            }
        }
        writing.join().unwrap();
        closes_cleanly(&mut client, &server);
    });
}

/// Failure 3: Half-open peer: a client that neither reads nor answers PINGs (nor closes its socket) is
/// declared dead by a server pinging every 100 ms within 3 x the interval, and its slot freed.
#[test]
fn half_open_peer_is_declared_dead_and_its_slot_freed() {
    on_every_adapter(|runtime| {
        let config = IoConfig::new(Config::default().with_keepalive(ms(100)));
        let server = TestServer::start(runtime, config);
        let mut client = RawClient::connect(server.addr);
        let silent_since = Instant::now();
        let report = server.next_end(Duration::from_secs(3));
        let took = report.at - silent_since;
        assert!(
            matches!(report.ended.reason, EndReason::IdleTimeout(_)),
            "{runtime:?}: {}",
            report.ended
        );
        assert!(report.ended.to_string().starts_with("idle timeout"));
        assert!(
            took >= ms(250) && took <= ms(300) + SLACK,
            "{runtime:?}: declared dead after {took:?}"
        );
        assert!(server.wait_idle(ms(1000)), "{runtime:?}: slot not freed");
        // The server did ping meanwhile: the PINGs wait unread in our socket.
        let first = client.read_frame(ms(1000)).expect("a keepalive PING");
        assert_eq!(first.opcode, PING, "{runtime:?}");
    });
}

/// Failure 4: Close that never comes: the server closes (1000 from the application, then 1001 at
/// shutdown) to a client that never answers; the server ends at the close timeout, not later,
/// and says so.
#[test]
fn close_that_never_comes_ends_at_the_close_timeout() {
    on_every_adapter(|runtime| {
        let engine = Config {
            close_timeout: ms(300),
            ..Config::default()
        };
        let server = TestServer::start_with_shutdown(runtime, IoConfig::new(engine));

        let mut client = RawClient::connect(server.addr);
        client.send_text("!close");
        let asked = Instant::now();
        let close = client.read_frame(ms(2000)).expect("the server's Close");
        assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1000)));
        let report = server.next_end(Duration::from_secs(3));
        let took = report.at - asked;
        assert_eq!(
            report.ended.reason,
            EndReason::CloseTimeout,
            "{runtime:?}: {}",
            report.ended
        );
        assert!(report.ended.to_string().starts_with("close timeout"));
        assert!(
            took >= ms(280) && took <= ms(300) + SLACK,
            "{runtime:?}: close timeout after {took:?}"
        );

        // Shutdown: 1001 to every open connection, same deadline.
        let mut client = RawClient::connect(server.addr);
        client.send_text("registered?");
        client.read_frame(ms(2000)).expect("echo");
        // Idle a while first: the close timeout counts from the close, not from the last input.
        thread::sleep(ms(300));
        let asked = Instant::now();
        server.shutdown();
        let close = client.read_frame(ms(2000)).expect("the server's Close");
        assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1001)));
        let report = server.next_end(Duration::from_secs(3));
        let took = report.at - asked;
        assert_eq!(
            report.ended.reason,
            EndReason::CloseTimeout,
            "{runtime:?}: {}",
            report.ended
        );
        assert!(
            took >= ms(280) && took <= ms(300) + SLACK,
            "{runtime:?}: close timeout after {took:?}"
        );
        assert!(server.wait_idle(ms(1000)), "{runtime:?}: slot not freed");
    });
}

/// Failure 5a: Nothing lost at close: the server queues a burst and then closes; the client receives
/// every message, in order, before the Close.
#[test]
fn queued_burst_is_delivered_before_the_close() {
    on_every_adapter(|runtime| {
        let server = TestServer::start(runtime, IoConfig::default());
        let mut client = RawClient::connect(server.addr);
        client.send_text("!burst 300 2000");
        for i in 0..300 {
            let frame = client
                .read_frame(ms(3000))
                .unwrap_or_else(|e| panic!("{runtime:?}: message {i}: {e}"));
            assert_eq!(
                frame.opcode, TEXT,
                "{runtime:?}: frame {i} is not the burst"
            );
            assert!(frame.fin);
            let prefix = format!("burst {i} ");
            assert!(
                frame.payload.starts_with(prefix.as_bytes()),
                "{runtime:?}: message {i} out of order"
            );
            assert_eq!(frame.payload.len(), 2000);
        }
        let close = client
            .read_frame(ms(3000))
            .expect("the Close after the burst");
        assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1000)));
        client.send_close(1000, "");
        let report = server.next_end(ms(3000));
        assert!(
            matches!(&report.ended.reason, EndReason::ClosedLocally { sent, .. } if sent.code == 1000),
            "{runtime:?}: {}",
            report.ended
        );
        assert_eq!(report.ended.unsent.messages, 0, "{runtime:?}");
        assert_eq!(report.stats.messages_out, 300, "{runtime:?}");
    });
}

/// Failure 5b: A client writes 100 messages followed by a Close in one write: all 100 echoes come back
/// before the echo of its Close.
#[test]
fn messages_before_a_close_in_one_write_are_all_echoed_first() {
    on_every_adapter(|runtime| {
        let server = TestServer::start(runtime, IoConfig::default());
        let mut client = RawClient::connect(server.addr);
        let mut batch = Vec::new();
        for i in 0..100 {
            batch.extend(client.frame(TEXT, format!("message {i}").as_bytes()));
        }
        batch.extend(client.frame(CLOSE, &wire::close_body(1000, "bye")));
        client.stream.write_all(&batch).unwrap();
        for i in 0..100 {
            let frame = client
                .read_frame(ms(3000))
                .unwrap_or_else(|e| panic!("{runtime:?}: echo {i}: {e}"));
            assert_eq!(
                (
                    frame.opcode,
                    String::from_utf8_lossy(&frame.payload).into_owned()
                ),
                (TEXT, format!("message {i}")),
                "{runtime:?}"
            );
        }
        let close = client.read_frame(ms(3000)).expect("the Close echo");
        assert_eq!(
            (close.opcode, close.close_code()),
            (CLOSE, Some(1000)),
            "{runtime:?}"
        );
        let report = server.next_end(ms(3000));
        assert!(
            matches!(&report.ended.reason, EndReason::ClosedByPeer(Some(c)) if c.code == 1000),
            "{runtime:?}: {}",
            report.ended
        );
        assert_eq!(report.stats.messages_out, 100, "{runtime:?}");
        assert!(
            client.wait_eof(ms(3000)),
            "{runtime:?}: server did not close TCP"
        );
    });
}

/// Failure 6: Abnormal end: the TCP connection is cut with no Close frame (between frames, and in the
/// middle of one); the server reports an abnormal end, never a clean close code.
#[test]
fn cut_connection_is_reported_abnormal() {
    on_every_adapter(|runtime| {
        let server = TestServer::start(runtime, IoConfig::default());
        let mut client = RawClient::connect(server.addr);
        client.send_text("hello");
        client.read_frame(ms(2000)).expect("echo");
        drop(client);
        let report = server.next_end(ms(3000));
        assert!(
            matches!(report.ended.reason, EndReason::Abnormal(_)),
            "{runtime:?}: {}",
            report.ended
        );
        assert!(report.ended.to_string().starts_with("abnormal"));
        assert!(!report.ended.is_clean());

        let mut client = RawClient::connect(server.addr);
        let frame = client.frame(BINARY, &[7; 1000]);
        client.stream.write_all(&frame[..500]).unwrap();
        thread::sleep(ms(50));
        drop(client);
        let report = server.next_end(ms(3000));
        assert!(
            matches!(report.ended.reason, EndReason::Abnormal(_)),
            "{runtime:?}: {}",
            report.ended
        );
        assert!(server.wait_idle(ms(1000)));
    });
}

/// Failure 7: Ping flood: a client writes 200 000 PINGs without reading. PONGs coalesce (one owed at a
/// time, answering the latest), so the server's output stays small; it keeps serving another
/// connection meanwhile; and the last PING gets its PONG.
#[test]
fn ping_flood_coalesces_and_other_connections_are_served() {
    const PINGS: u32 = 200_000;
    on_every_adapter(|runtime| {
        let server = TestServer::start(runtime, IoConfig::default());
        let mut flooder = RawClient::connect(server.addr);
        let mut other = RawClient::connect(server.addr);

        // Hand-built frames, one mask key (the server must not care), 10 bytes each.
        let key = flooder.next_key();
        let mut flood = Vec::with_capacity(PINGS as usize * 10);
        for i in 0..PINGS {
            flood.extend(masked_frame(true, PING, &i.to_be_bytes(), key));
        }
        let mut writer = flooder.stream.try_clone().unwrap();
        let flooding = thread::spawn(move || {
            for chunk in flood.chunks(64 << 10) {
                writer.write_all(chunk).expect("flood write");
            }
        });

        // The other connection is served throughout.
        let mut worst = Duration::ZERO;
        while !flooding.is_finished() {
            let start = Instant::now();
            other.send_text("are you there");
            let echo = other.read_frame(ms(2000)).expect("echo during the flood");
            assert_eq!(echo.opcode, TEXT);
            worst = worst.max(start.elapsed());
            thread::sleep(ms(5));
        }
        flooding.join().unwrap();
        assert!(
            worst < ms(1000),
            "{runtime:?}: an echo took {worst:?} during the flood"
        );

        // Now read what the server sent: PONGs, few, the last answering the last PING.
        flooder.send_close(1000, "");
        let mut pongs = 0u32;
        let mut last = None;
        loop {
            let frame = flooder
                .read_frame(ms(5000))
                .unwrap_or_else(|e| panic!("{runtime:?}: after {pongs} PONGs: {e}"));
            match frame.opcode {
                PONG => {
                    pongs += 1;
                    last = Some(u32::from_be_bytes(frame.payload[..4].try_into().unwrap()));
                }
                CLOSE => break,
                other => panic!("{runtime:?}: unexpected opcode {other:#x}"),
            }
        }
        assert_eq!(
            last,
            Some(PINGS - 1),
            "{runtime:?}: the last PING was not answered"
        );
        assert!(
            pongs < PINGS / 10,
            "{runtime:?}: {pongs} PONGs for {PINGS} PINGs: not coalesced"
        );
        let report = server.next_end(ms(5000));
        assert!(report.ended.is_clean(), "{runtime:?}: {}", report.ended);
        assert!(report.stats.frames_in >= PINGS as u64, "{runtime:?}");
        assert!(report.stats.frames_out < (PINGS / 10) as u64, "{runtime:?}");
        closes_other(&mut other, &server);
    });
}

fn closes_other(client: &mut RawClient, server: &TestServer) {
    closes_cleanly(client, server);
}

/// The write deadline itself: a client that stops reading while the server has a lot to send
/// (a stuck or half-open peer) is ended with a write timeout once a frame cannot be written
/// within 200 ms, and the socket is closed.
#[test]
fn stuck_reader_is_ended_by_the_write_deadline() {
    on_every_adapter(|runtime| {
        let engine = Config {
            ping_interval: None,
            idle_timeout: None,
            ..Config::default()
        };
        let server = TestServer::start(runtime, IoConfig::new(engine).with_write_timeout(ms(200)));
        let mut client = RawClient::connect(server.addr);
        // 64 MiB in 16 KiB messages: far more than the socket buffers hold.
        client.send_text("!burst 4096 16384");
        let report = server.next_end(Duration::from_secs(5));
        assert_eq!(
            report.ended.reason,
            EndReason::WriteTimeout,
            "{runtime:?}: {}",
            report.ended
        );
        assert!(report.ended.to_string().starts_with("write timeout"));
        assert!(
            report.ended.unsent.messages > 0,
            "{runtime:?}: {}",
            report.ended
        );
        assert!(server.wait_idle(ms(2000)), "{runtime:?}: slot not freed");
        assert!(
            client.wait_eof(Duration::from_secs(5)),
            "{runtime:?}: socket not closed"
        );
    });
}
