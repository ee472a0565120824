//! What a connection holds between messages. `trim_memory` (an adapter about to wait while the
//! connection is busy) keeps the small queues the next message reuses and frees what a burst
//! grew; `release_idle_memory` (the connection went quiet) frees everything empty. Counted by
//! an allocator that keeps each thread's own tally, so tests running side by side do not mix.

mod sim;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sim::client_frame;
use wsframe::{Config, Connection, Event, Instant};

struct PerThread;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: isize, allocations: usize) {
    // `try_with`: a thread being torn down has no tally left, and needs none.
    let _ = HELD.try_with(|held| held.set(held.get() + bytes));
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + allocations));
}

// SAFETY: every call goes to the system allocator unchanged; the tallies are bookkeeping.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, 1);
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize), 0);
        // SAFETY: the caller's contract for `dealloc` is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize, 1);
        // SAFETY: the caller's contract for `realloc` is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

fn held() -> isize {
    HELD.with(Cell::get)
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn quiet() -> Config {
    Config {
        ping_interval: None,
        idle_timeout: None,
        ..Config::default()
    }
}

/// Every message in `input` back to the peer, as a busy echo server handles them (allocating
/// nothing of its own, so that the tallies are the engine's).
fn echo(server: &mut Connection, input: &[u8]) {
    server.receive(Instant::ZERO, input).unwrap();
    while let Some(event) = server.poll_event() {
        let Event::Binary(payload) = event else {
            panic!("unexpected {event:?}")
        };
        server.send_binary(payload).unwrap();
    }
    while let Some(transmit) = server.poll_transmit() {
        let n = transmit.len();
        server.advance_transmit(n);
    }
}

/// Allocations per echoed message, in steady state, with `between` called after each.
fn allocations_per_echo(between: fn(&mut Connection)) -> f64 {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let frame = client_frame(true, 2, &[7; 16]);
    for _ in 0..10 {
        echo(&mut server, &frame);
        between(&mut server);
    }
    let before = allocations();
    for _ in 0..100 {
        echo(&mut server, &frame);
        between(&mut server);
    }
    (allocations() - before) as f64 / 100.0
}

#[test]
fn trim_keeps_what_the_next_small_message_reuses() {
    let trimmed = allocations_per_echo(Connection::trim_memory);
    let released = allocations_per_echo(Connection::release_idle_memory);
    // Left: the receive buffer, reserved for each read's bytes, and the header that shares it
    // with the message.
    assert!(
        trimmed <= 2.0,
        "{trimmed} allocations per message with trim_memory"
    );
    assert!(
        trimmed < released,
        "trim_memory {trimmed} against release_idle_memory {released} allocations per message"
    );
}

#[test]
fn trim_frees_what_a_burst_grew() {
    let mut server = Connection::server(quiet(), Instant::ZERO);
    let frame = client_frame(true, 2, &[7; 16]);
    echo(&mut server, &frame);
    server.trim_memory();
    let settled = held();
    // 2 000 messages in one read, answered all at once: the queues grow to thousands of
    // entries, tens of KiB.
    let burst = frame.repeat(2000);
    echo(&mut server, &burst);
    drop(burst);
    let grown = held() - settled;
    assert!(
        grown > 16 << 10,
        "the burst grew the queues by {grown} bytes only"
    );
    server.trim_memory();
    let kept = held() - settled;
    assert!(
        kept <= 2 << 10,
        "trim_memory kept {kept} bytes of the {grown} the burst grew"
    );
    server.release_idle_memory();
    let after_release = held();
    echo(&mut server, &frame);
    server.release_idle_memory();
    assert_eq!(held(), after_release, "release_idle_memory kept storage");
}

/// Once every message is taken and dropped, `release_idle_memory` leaves the connection holding
/// what it held when new, and `trim_memory` at most a few small queues more, however the
/// messages were cut into frames and the frames into reads: no emptied buffer keeps the
/// allocation its payloads came from.
#[test]
fn release_leaves_nothing_behind_whatever_the_reads() {
    for size in [0, 1, 16, 125, 126, 1000, 4096, 5000, 70_000] {
        let payload = vec![3; size];
        for fragments in [1, 3] {
            // The message in `fragments` frames (the last one takes what is left).
            let step = (size / fragments).max(1);
            let mut message = Vec::new();
            let pieces: Vec<&[u8]> = if size == 0 {
                vec![&[]]
            } else {
                payload.chunks(step).collect()
            };
            for (i, piece) in pieces.iter().enumerate() {
                let opcode = if i == 0 { 2 } else { 0 };
                message.extend(client_frame(i + 1 == pieces.len(), opcode, piece));
            }
            let input = message.repeat(3);
            for read in [1, 7, 100, 4096, 65_536] {
                for trim in [false, true] {
                    let case = format!(
                        "{size}-byte messages in {fragments} fragment(s), {read}-byte reads"
                    );
                    let before = held();
                    let mut server = Connection::server(quiet(), Instant::ZERO);
                    let fresh = held();
                    for chunk in input.chunks(read) {
                        server.receive(Instant::ZERO, chunk).unwrap();
                        while let Some(event) = server.poll_event() {
                            assert!(matches!(event, Event::Binary(ref b) if b.len() == size));
                        }
                    }
                    if trim {
                        server.trim_memory();
                        let kept = held() - fresh;
                        assert!(kept <= 1024, "{case}: {kept} bytes kept after trim_memory");
                    } else {
                        server.release_idle_memory();
                        let kept = held() - fresh;
                        assert_eq!(kept, 0, "{case}: {kept} bytes kept after the release");
                    }
                    drop(server);
                    assert_eq!(held(), before);
                }
            }
        }
    }
}
