//! Heap held per idle server connection, for wsframe's Tokio adapter and the peers: every
//! allocation in the process goes through a counting allocator; N clients (plain blocking
//! sockets, no library, so only the servers' memory moves) connect, shake hands, exchange
//! 16-byte messages and go idle; the heap growth divided by N is what one idle connection costs
//! its server: the library's buffers and state plus Tokio's per-task and per-socket share,
//! which "raw-tcp" (an echo task with no WebSocket, holding no buffer while idle) shows alone.
//!
//! Two columns: after one echo (a subscriber that sent one request and now only waits), and
//! after 16 (a connection that was busy and went quiet, with no timer firing since: what a
//! library keeps between messages is still held).
//!
//!   cargo bench --manifest-path benches/peers/Cargo.toml --bench idle_heap

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

mod loopback;
use loopback::{raw_client, raw_round_trip, spawn_server, LIBRARIES};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `realloc` is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 200;

/// The echoes before going idle, one measurement each.
const ECHOES: [usize; 2] = [1, 16];

fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn main() {
    // Library names among the arguments select those libraries (`cargo bench` adds `--bench`).
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| LIBRARIES.contains(&a.as_str()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "heap held per idle server connection ({CONNECTIONS} connections each), after 16 B echoes"
    );
    println!("{:>23}  {:>22}  {:>22}", "", "after 1", "after 16");
    for library in LIBRARIES {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == library) {
            continue;
        }
        let port = runtime.block_on(spawn_server(library));
        // Warm-up connection: lazily created runtime structures are not billed to the library.
        let mut warm = raw_client(port);
        raw_round_trip(&mut warm, library != "raw-tcp");
        settle();
        let mut row = format!("{library:>23}:");
        for echoes in ECHOES {
            let before = HELD.load(Ordering::Relaxed);
            let mut clients = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                let mut client = raw_client(port);
                for _ in 0..echoes {
                    raw_round_trip(&mut client, library != "raw-tcp");
                }
                clients.push(client);
            }
            settle();
            let per = (HELD.load(Ordering::Relaxed) - before) as f64 / CONNECTIONS as f64;
            row += &format!(" {:>9.0} bytes ({:>5.1} KiB)", per, per / 1024.0);
            drop(clients);
            settle();
        }
        println!("{row}");
        drop(warm);
        settle();
    }
}
