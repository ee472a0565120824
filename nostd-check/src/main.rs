//! A no_std program that runs a server engine through one message, built against libc only.
#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use wsframe::{Config, Connection, Event, Instant};

#[link(name = "c")]
extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
    fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32;
    fn abort() -> !;
}

struct LibcAlloc;

unsafe impl GlobalAlloc for LibcAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: malloc returns 16-byte aligned memory or null, as GlobalAlloc allows.
            unsafe { malloc(layout.size()) }
        } else {
            let mut out = core::ptr::null_mut();
            // SAFETY: align is a power of two and a multiple of the pointer size here.
            if unsafe { posix_memalign(&mut out, layout.align(), layout.size()) } != 0 {
                return core::ptr::null_mut();
            }
            out
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from malloc or posix_memalign above.
        unsafe { free(ptr) }
    }
}

#[global_allocator]
static ALLOC: LibcAlloc = LibcAlloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort never returns and has no preconditions.
    unsafe { abort() }
}

/// The precompiled `core` refers to the unwinding personality even when this program aborts on
/// panic; nothing ever unwinds, so it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let mut server = Connection::server(Config::default(), Instant::ZERO);
    // RFC 6455 section 5.7: a masked "Hello" from a client.
    let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    if server.receive(Instant::ZERO, &hello).is_err() {
        return 1;
    }
    match server.poll_event() {
        Some(Event::Text(t)) if t.as_str() == "Hello" => 0,
        _ => 2,
    }
}
