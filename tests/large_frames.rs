//! Frames larger than one read, on every adapter: after a frame's first read, the tokio
//! adapters read the rest of it straight into the engine's buffer and unmask it there
//! (`Connection::receive_buffer`). Whatever the split of the bytes on the wire, every payload
//! must come back exactly as sent: masked binary and text frames, single and fragmented, with a
//! control frame between fragments, the bytes dribbled in pieces so that reads end anywhere
//! inside a frame. The client is a raw socket with its own encoder and parser
//! (`support/wire.rs`).
#![cfg(feature = "tokio")]

#[path = "support/echo_servers.rs"]
mod echo_servers;
#[path = "support/wire.rs"]
mod wire;

use std::io::Write;
use std::thread;
use std::time::Duration;

use echo_servers::{TestServer, ALL};
use wire::{masked_frame, RawClient, BINARY, CONTINUATION, PING, PONG, TEXT};
use wsframe::io::IoConfig;

/// Bytes that differ from one position to the next (a payload read at the wrong offset, or
/// unmasked with the wrong key phase, cannot come back equal).
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

/// Text of `len` bytes or a little less, a third of it in 2- to 4-byte characters.
fn mixed_text(len: usize) -> String {
    let mut text = String::new();
    for (i, c) in "abcdé€𝄞xyz".chars().cycle().enumerate() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(if i % 97 == 0 { '\n' } else { c });
    }
    text
}

/// Writes `bytes` in pieces of varying size with short pauses, so that the server's reads end
/// inside frames, at different places each time.
fn dribble(client: &mut RawClient, bytes: &[u8]) {
    let mut rest = bytes;
    let mut step = 1;
    while !rest.is_empty() {
        let n = (step * 997 % 20_011 + 1).min(rest.len());
        client.stream.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
        step += 1;
        if step % 3 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Reads the echo of one message: data frames (possibly fragmented) joined, control frames
/// skipped. Returns the first frame's opcode and the joined payload.
fn read_message(client: &mut RawClient) -> (u8, Vec<u8>) {
    let mut opcode = None;
    let mut payload = Vec::new();
    loop {
        let frame = client
            .read_frame(Duration::from_secs(10))
            .expect("an echo frame");
        if frame.opcode >= 0x8 {
            continue;
        }
        opcode.get_or_insert(frame.opcode);
        payload.extend_from_slice(&frame.payload);
        if frame.fin {
            return (opcode.unwrap(), payload);
        }
    }
}

/// Asserts that the echo is `want` (opcode and bytes), naming the first byte that differs.
fn assert_echo(got: (u8, Vec<u8>), want: (u8, &[u8]), what: &str) {
    assert_eq!(got.0, want.0, "{what}: opcode");
    if let Some(at) = got.1.iter().zip(want.1).position(|(a, b)| a != b) {
        panic!("{what}: byte {at} differs");
    }
    assert_eq!(got.1.len(), want.1.len(), "{what}: length");
}

#[test]
fn large_frames_split_anywhere_come_back_intact_on_every_adapter() {
    for runtime in ALL {
        let server = TestServer::start(runtime, IoConfig::default());
        let mut client = RawClient::connect(server.addr);
        for (i, len) in [4_000, 4_097, 70_000, 300_001].into_iter().enumerate() {
            // One masked binary frame.
            let binary = pattern(len, i);
            let frame = client.frame(BINARY, &binary);
            dribble(&mut client, &frame);
            assert_echo(
                read_message(&mut client),
                (BINARY, &binary),
                &format!("{runtime:?}: binary {len}"),
            );
            // One text frame of multi-byte characters (checked as UTF-8 in place).
            let text = mixed_text(len);
            let frame = client.frame(TEXT, text.as_bytes());
            dribble(&mut client, &frame);
            assert_echo(
                read_message(&mut client),
                (TEXT, text.as_bytes()),
                &format!("{runtime:?}: text {len}"),
            );
            // The same binary in three fragments with a PING between the first two; the
            // fragments' keys differ, and the PING is answered, its payload intact.
            let binary = pattern(len, i + 100);
            let third = len / 3;
            let mut wire = Vec::new();
            wire.extend(masked_frame(
                false,
                BINARY,
                &binary[..third],
                client.next_key(),
            ));
            wire.extend(masked_frame(true, PING, b"mid-message", client.next_key()));
            wire.extend(masked_frame(
                false,
                CONTINUATION,
                &binary[third..2 * third],
                client.next_key(),
            ));
            wire.extend(masked_frame(
                true,
                CONTINUATION,
                &binary[2 * third..],
                client.next_key(),
            ));
            dribble(&mut client, &wire);
            let pong = client
                .read_frame(Duration::from_secs(10))
                .expect("the PONG");
            assert_eq!(
                (pong.opcode, pong.payload.as_slice()),
                (PONG, &b"mid-message"[..]),
                "{runtime:?}"
            );
            assert_echo(
                read_message(&mut client),
                (BINARY, &binary),
                &format!("{runtime:?}: fragmented {len}"),
            );
        }
    }
}
