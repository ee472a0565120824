//! The engine: one WebSocket connection, driven by bytes and time, producing events and bytes.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::{Buf, Bytes, BytesMut};
use core::cell::{Cell, OnceCell};
use core::mem::MaybeUninit;
use core::time::Duration;

use crate::close::{self, encode_close_body, parse_close_body, truncate_reason, CloseFrame};
use crate::config::{Config, Delivery, Role};
use crate::error::{
    EndReason, Ended, ProtocolError, ReceiveError, SendError, TransportError, Unsent, Violation,
};
use crate::event::{Chunk, DataKind, Event, EventRef, Text};
use crate::frame::{
    parse_header, FrameHeader, OpCode, Status, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use crate::keepalive::Liveness;
use crate::mask::{apply_mask, rotate_key, unmask_payload};
use crate::outbound::{Outbound, PreparedMessage, Transmit};
use crate::random::{MaskKeys, RandomSource};
use crate::receive_buffer::ReceiveBuffer;
use crate::time::Instant;
use crate::utf8::{InvalidUtf8, Utf8Validator};

/// The storage an empty queue may keep through `Connection::trim_memory`: a few dozen
/// entries, what a connection exchanging small messages reuses on every one.
const TRIM_KEEPS_UP_TO: usize = 1024;

/// Receive buffers above this capacity are released when they empty, so an idle connection
/// does not keep the memory of its largest message.
const SHRINK_ABOVE: usize = 64 << 10;

/// A fresh receive buffer has room for at least this much, so that the reads of a
/// conversation (a small message per read) share one allocation, each message split off as a
/// `Bytes`, instead of an allocation and a free per read (performance: measured 566
/// instructions per loopback echo round trip, about a sixth of the engine's share). The cost:
/// a message kept by the application keeps its block alive (see [`Event::Binary`]).
const RECEIVE_BLOCK: usize = 4 << 10;
/// The most room [`Connection::receive_buffer`] lends past the end of the frame in progress
/// (where there is room: see `receive_direct`).
const READ_AHEAD: usize = 64 << 10;

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes given to `receive`.
    pub bytes_in: u64,
    /// Bytes reported written with `advance_transmit`.
    pub bytes_out: u64,
    /// Frames parsed.
    pub frames_in: u64,
    /// Frames completely written.
    pub frames_out: u64,
    /// Data messages delivered (streamed messages count at their last chunk).
    pub messages_in: u64,
    /// Data messages completely written.
    pub messages_out: u64,
    /// Data bytes queued and not yet written.
    pub queued_bytes: usize,
    /// The last measured PING to PONG round trip.
    pub last_rtt: Option<Duration>,
}

/// Whole single-frame messages taken by `receive_run` whose events are not made yet
/// (performance: a 4-byte record per message rather than a 40-byte `Event` moved in and out of
/// the `VecDeque`, and each message's `Bytes` split off only when it is polled). They come right
/// after the first `before` events in `events`: records are kept here only when no other ready
/// message is waiting (see `add`), and whatever is pushed to `events` later happened later.
///
/// Once the last record is taken, the run stays (records and payloads) until the next call
/// that `settle`s it: the next poll that finds no record, the next run, or
/// `release_idle_memory` (performance: taking a record checks nothing but `takeable`, and the
/// payloads of a lent message outlive the loan without a second `Bytes`).
#[derive(Default)]
struct Ready {
    /// The payloads of the messages from `next` on, back to back: the records from `next`
    /// describe `data[offset..]` exactly (their lengths add up to its length), which `pop`
    /// relies on.
    data: Bytes,
    /// One record per message (see `record`): its length and whether it is text.
    records: Vec<u32>,
    /// The first record not yet taken.
    next: usize,
    /// Where record `next`'s payload starts in `data` (the payloads before it were taken).
    offset: usize,
    /// `poll_event` takes the records from `next` up to this one directly: `records.len()`
    /// while `before` is 0, else 0 (so that one compare decides the fast path). Never above
    /// `records.len()`. A `Cell` because `peek_event` only borrows.
    takeable: Cell<usize>,
    /// The event of record `next`, when `peek_event` (which only borrows) had to make it.
    peeked: OnceCell<Event>,
    /// How many events at the front of `events` are older than these messages (meaningful
    /// while there are records), or `PEEKED` when there are none and `peeked` holds the next
    /// message's event: `poll_event` takes the next record directly exactly when it is 0. A
    /// `Cell` because `peek_event` only borrows.
    before: Cell<usize>,
}

impl Ready {
    const PEEKED: usize = usize::MAX;

    /// A message's record from its first header byte (0x81 Text, 0x82 Binary) and length:
    /// `len << 1`, bit 0 set for text (performance: an `and` and a `lea` in `receive_run`).
    /// `receive_run` takes 7- and 16-bit lengths only, so the length fits.
    #[inline(always)]
    fn record(b0: u8, len: usize) -> u32 {
        debug_assert!(b0 == 0x81 || b0 == 0x82);
        debug_assert!(len <= usize::from(u16::MAX));
        (len as u32) << 1 | u32::from(b0 & 1)
    }

    #[inline(always)]
    fn is_text(record: u32) -> bool {
        record & 1 != 0
    }

    /// Some message waits here.
    #[inline(always)]
    fn has_waiting(&self) -> bool {
        self.next < self.records.len()
    }

    #[inline(always)]
    fn event(record: u32, payload: Bytes) -> Event {
        if Self::is_text(record) {
            Event::Text(Text::from_validated(payload))
        } else {
            Event::Binary(payload)
        }
    }

    #[inline(always)]
    fn len_of(record: u32) -> usize {
        (record >> 1) as usize
    }

    /// The next record, if `poll_event` may take it directly.
    #[inline(always)]
    fn takeable_record(&self) -> Option<u32> {
        let next = self.next;
        if next < self.takeable.get() {
            debug_assert!(next < self.records.len());
            // SAFETY: `next < takeable <= records.len()` (performance: the bounds check was
            // two of the fast path's instructions).
            Some(unsafe { *self.records.get_unchecked(next) })
        } else {
            None
        }
    }

    /// Makes `before` (just set) decide `takeable`.
    #[inline(always)]
    fn set_takeable(&self) {
        let all = if self.before.get() == 0 {
            self.records.len()
        } else {
            0
        };
        self.takeable.set(all);
    }

    /// Takes the records from `first` on, whose payloads are `payloads` back to back. They stay
    /// lazy if no other ready message is waiting (they go after every queued event); otherwise
    /// their events are made now and queued, since the waiting ones' payloads are another
    /// `Bytes`. The run before must be `settle`d.
    fn add(&mut self, first: usize, mut payloads: Bytes, events: &mut VecDeque<Event>) {
        if first == 0 {
            debug_assert!(self.data.is_empty() && self.next == 0 && self.offset == 0);
            self.data = payloads;
            self.before.set(events.len());
            self.set_takeable();
            return;
        }
        for &record in &self.records[first..] {
            let payload = payloads.split_to(Self::len_of(record));
            events.push_back(Self::event(record, payload));
        }
        self.records.truncate(first);
    }

    /// Takes `record`, the oldest message's (`records[next]`): where its payload lies in
    /// `data`.
    #[inline(always)]
    fn take_range(&mut self, record: u32) -> (usize, usize) {
        self.next += 1;
        let (start, len) = (self.offset, Self::len_of(record));
        let end = start + len;
        debug_assert!(start <= end && end <= self.data.len());
        // SAFETY: the records from `next` describe `data[offset..]` exactly (see `data`), so
        // this payload lies inside `data` (performance: the caller's `slice` or index then
        // checks nothing that can fail, and keeps no values for its panic messages).
        unsafe { core::hint::assert_unchecked(start <= end && end <= self.data.len()) };
        self.offset = end;
        (start, end)
    }

    /// The event of `record`, the oldest message's (`records[next]`), when `peek_event` has
    /// not made it.
    #[inline(always)]
    fn pop(&mut self, record: u32) -> Event {
        // `split_to` by hand (performance): its parts inline, without the call.
        let (start, end) = self.take_range(record);
        Self::event(record, self.data.slice(start..end))
    }

    /// `pop`, lending the payload instead of handing out a `Bytes` (performance: no reference
    /// count taken and released per message, which measured about 13 ns of a 16-byte
    /// message's 26). The payloads stay in `data` until the run is settled, by a later call.
    #[inline(always)]
    fn pop_ref(&mut self, record: u32) -> &[u8] {
        let (start, end) = self.take_range(record);
        &self.data[start..end]
    }

    /// Forgets a run whose last message was taken: its records, and its payloads (releasing
    /// the receive buffer they share once the application has dropped its messages).
    #[inline]
    fn settle(&mut self) {
        if !self.records.is_empty() && !self.has_waiting() {
            self.clear();
        }
    }

    /// Forgets the records and the payloads (see `settle`). Out of line: once per run.
    #[inline(never)]
    fn clear(&mut self) {
        debug_assert_eq!(self.before.get(), 0);
        self.records.clear();
        self.next = 0;
        self.offset = 0;
        self.takeable.set(0);
        if self.records.capacity() > SHRINK_ABOVE / 4 {
            self.records = Vec::new();
        }
        self.data = Bytes::new();
    }

    /// The oldest message's event when `peek_event` has made it.
    #[cold]
    fn pop_peeked(&mut self) -> Event {
        self.before.set(0);
        self.set_takeable();
        let record = self.records[self.next];
        self.next += 1;
        self.offset += Self::len_of(record);
        self.peeked.take().expect("made by peek")
    }

    /// The oldest message's event, made (once) if it was not yet.
    fn peek(&self) -> Option<&Event> {
        let &record = self.records.get(self.next)?;
        // `poll_event`'s fast path must leave this message to `pop_peeked` now.
        self.before.set(Self::PEEKED);
        self.set_takeable();
        Some(self.peeked.get_or_init(|| {
            let start = self.offset;
            Self::event(record, self.data.slice(start..start + Self::len_of(record)))
        }))
    }
}

/// The address just past the end of `buf`'s room: the end of the allocation it views.
fn inbuf_end(buf: &BytesMut) -> usize {
    buf.as_ptr() as usize + buf.capacity()
}

/// `dst = src` into memory that need not be initialized (the receive buffer's spare capacity),
/// returning `dst` initialized: the unmasked counterpart of `copy_masked_uninit`.
///
/// # Panics
///
/// Panics if `dst` and `src` differ in length.
#[inline(always)]
fn copy_uninit<'a>(dst: &'a mut [core::mem::MaybeUninit<u8>], src: &[u8]) -> &'a mut [u8] {
    assert_eq!(dst.len(), src.len(), "copy_uninit: lengths differ");
    let d = dst.as_mut_ptr().cast::<u8>();
    // SAFETY: `src` is valid for reads and `d` for writes of `src.len()` bytes (equal lengths),
    // and a `&[u8]` and a `&mut [MaybeUninit<u8>]` cannot overlap. After the copy all of `dst`
    // is initialized, and it stays borrowed for `'a`.
    unsafe {
        core::ptr::copy_nonoverlapping(src.as_ptr(), d, src.len());
        core::slice::from_raw_parts_mut(d, src.len())
    }
}

/// `dst = src ^ key` for exactly 16 bytes (four whole keys), `key` read little-endian from
/// the mask key's bytes, for `receive_run`'s small payloads: one SSE2 XOR (x86_64), two word
/// XORs elsewhere.
///
/// Returns the high bit of each unmasked byte, for [`block_is_ascii`].
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of 16 bytes (any alignment), and the two
/// must not overlap.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn unmask_block(dst: *mut u8, src: *const u8, key: u32) -> u32 {
    use core::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi32, _mm_storeu_si128,
        _mm_xor_si128,
    };
    // SAFETY: SSE2 is part of x86_64; the caller's promises cover the unaligned load and
    // store. set1_epi32 lays the key out in memory order (little-endian lanes).
    unsafe {
        let v = _mm_xor_si128(
            _mm_loadu_si128(src.cast::<__m128i>()),
            _mm_set1_epi32(key as i32),
        );
        _mm_storeu_si128(dst.cast::<__m128i>(), v);
        _mm_movemask_epi8(v) as u32
    }
}

/// `dst = src ^ key` for exactly 16 bytes: the portable form of the x86_64 block above.
///
/// # Safety
///
/// As for the x86_64 form.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn unmask_block(dst: *mut u8, src: *const u8, key: u32) -> u32 {
    let k = u64::from(key) | u64::from(key) << 32;
    // SAFETY: the caller's promises; the accesses are unaligned ones.
    let (lo, hi) = unsafe {
        let lo = u64::from_le(src.cast::<u64>().read_unaligned()) ^ k;
        let hi = u64::from_le(src.add(8).cast::<u64>().read_unaligned()) ^ k;
        dst.cast::<u64>().write_unaligned(lo.to_le());
        dst.add(8).cast::<u64>().write_unaligned(hi.to_le());
        (lo, hi)
    };
    // Gathers the high bit of each byte into bit i for byte i, as movemask does.
    let gather = |w: u64| {
        let high = (w & 0x8080_8080_8080_8080) >> 7;
        (high.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    };
    gather(lo) | gather(hi) << 8
}

/// Whether the first `len` (at most 16) bytes of a block from [`unmask_block`] are ASCII, from
/// its high bits: a text payload that small then needs no UTF-8 pass (performance: no high
/// bit before byte `len`, found with a bit scan that bit 16 stops).
#[inline(always)]
fn block_is_ascii(high_bits: u32, len: usize) -> bool {
    debug_assert!(len <= 16 && high_bits < 1 << 16);
    (high_bits | 1 << 16).trailing_zeros() as usize >= len
}

/// The frame being received: its header is parsed, its payload is arriving.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    fin: bool,
    opcode: OpCode,
    key: Option<[u8; 4]>,
    /// Payload bytes not yet taken out of the receive buffer.
    remaining: usize,
    /// Payload bytes already taken out (streaming), for the mask key's phase.
    taken: usize,
    /// Bytes at the front of the receive buffer already unmasked (and UTF-8 checked).
    unmasked: usize,
    /// The payload is text (a Text frame, or a continuation of a text message).
    text: bool,
    /// A chunk of this frame was already delivered (streaming).
    delivered: bool,
    /// A fragment of a message delivered whole: its payload goes straight into `assembly`
    /// (unmasked on the way, or read there in place), never into the receive buffer, so the
    /// message is joined without a second copy. `unmasked` then counts the bytes of this
    /// frame already there.
    assembled: bool,
}

impl InFrame {
    /// Unmasks `fresh`, the frame's payload bytes that follow the `unmasked` ones, where they
    /// lie, and checks them as UTF-8 if the frame is text.
    fn unmask_in_place(
        &self,
        fresh: &mut [u8],
        utf8: &mut Utf8Validator,
    ) -> Result<(), InvalidUtf8> {
        if let Some(key) = self.key {
            apply_mask(fresh, rotate_key(key, self.taken + self.unmasked));
        }
        if self.text {
            utf8.feed(fresh)?;
        }
        Ok(())
    }
}

/// A fragmented message in progress.
#[derive(Debug, Clone, Copy)]
struct InMessage {
    kind: DataKind,
    declared: u64,
    deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct Closing {
    /// The Close we sent or queued, and whether we sent it first.
    ours: Option<CloseFrame>,
    we_initiated: bool,
    ours_written: bool,
    /// The peer's Close, once received.
    peers: Option<Option<CloseFrame>>,
    /// The peer closed first and the application has not taken its Close event yet: the echo
    /// goes out then, or at this instant at the latest.
    echo_due: Option<Instant>,
    /// The close handshake must be over by then.
    deadline: Option<Instant>,
}

/// One WebSocket connection (RFC 6455), sans IO.
///
/// See the [crate documentation](crate) for the calling contract.
pub struct Connection {
    role: Role,
    config: Config,
    now: Instant,
    inbuf: BytesMut,
    /// No read has taken a receive buffer since the connection started or since the last one
    /// was released or trimmed (`release_empty_storage`): the next read reserves only what it
    /// needs, so that a connection that goes quiet after a message or two holds no 4 KiB
    /// block.
    inbuf_released: bool,
    /// Where the allocation ends that `renew_inbuf` last made for `inbuf`, when it
    /// was small enough for `trim_memory` to keep (at most `TRIM_KEEPS_UP_TO`); 0 otherwise.
    /// While `inbuf` still views that allocation, its end is exactly this address (see
    /// `inbuf_is_small_block`).
    inbuf_small_end: usize,
    /// The payload length of the last data frame that arrived across reads (0 before the
    /// first): the first reservation for the next such frame (see `receive_direct`).
    last_spanning_frame: usize,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    utf8: Utf8Validator,
    assembly: BytesMut,
    /// Messages older than every event in `events`, their events not made yet.
    ready: Ready,
    events: VecDeque<Event>,
    out: Outbound,
    liveness: Liveness,
    closing: Closing,
    failed: Option<ProtocolError>,
    ended: bool,
    lost: Unsent,
    stats: Stats,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("now", &self.now)
            .field("buffered", &self.inbuf.len())
            .field(
                "events",
                &(self.events.len() + self.ready.records.len() - self.ready.next),
            )
            .field("failed", &self.failed)
            .field("ended", &self.ended)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server-side engine for a connection whose opening handshake is done, at time `now`.
    pub fn server(config: Config, now: Instant) -> Self {
        Self::new(Role::Server, config, None, now)
    }

    /// A client-side engine; every frame is masked with a fresh key from `random`
    /// (section 5.3).
    pub fn client(config: Config, random: Box<dyn RandomSource>, now: Instant) -> Self {
        Self::new(Role::Client, config, Some(MaskKeys::new(random)), now)
    }

    /// A client-side engine drawing mask keys from a ChaCha12 stream keyed by the operating
    /// system ([`OsSeededRandom`](crate::random::OsSeededRandom)).
    #[cfg(feature = "std")]
    pub fn client_os_random(config: Config, now: Instant) -> Self {
        Self::client(config, Box::new(crate::random::OsSeededRandom::new()), now)
    }

    fn new(role: Role, config: Config, keys: Option<MaskKeys>, now: Instant) -> Self {
        Connection {
            role,
            out: Outbound::new(
                config.max_outbound_bytes,
                config.outbound_low_water,
                config.max_send_fragment,
                keys,
            ),
            liveness: Liveness::new(config.ping_interval, config.idle_timeout, now),
            config,
            now,
            inbuf: BytesMut::new(),
            inbuf_released: true,
            inbuf_small_end: 0,
            last_spanning_frame: 0,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            assembly: BytesMut::new(),
            ready: Ready::default(),
            events: VecDeque::new(),
            closing: Closing::default(),
            failed: None,
            ended: false,
            lost: Unsent::default(),
            stats: Stats::default(),
        }
    }

    /// This engine's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings it runs with.
    #[inline]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters: bytes and frames in and out, queued bytes, last round-trip time.
    pub fn stats(&self) -> Stats {
        Stats {
            queued_bytes: self.out.queued_bytes(),
            last_rtt: self.liveness.rtt(),
            ..self.stats
        }
    }

    /// Data bytes queued and not yet written.
    #[inline]
    pub fn queued_bytes(&self) -> usize {
        self.out.queued_bytes()
    }

    /// What the queued data counts against [`Config::max_outbound_bytes`]: its payload bytes
    /// and 64 bytes for each message (its bookkeeping), so that the budget bounds the memory
    /// of many small messages too.
    #[inline]
    pub fn outbound_charge(&self) -> usize {
        self.out.charged()
    }

    /// Bytes of receive buffer the engine holds (for memory accounting per connection).
    pub fn receive_buffer_capacity(&self) -> usize {
        self.inbuf.capacity() + self.assembly.capacity()
    }

    /// Frees the storage of queues and buffers that are empty now, so that a connection
    /// waiting for its peer holds only its state (performance: an idle connection's memory).
    /// Call it when the transport has nothing more to read for now and the connection has gone
    /// quiet; a busy connection that calls it on every wait pays a few small allocations per
    /// message to get them back (see [`trim_memory`](Self::trim_memory)). Anything still
    /// queued or partly received is kept.
    pub fn release_idle_memory(&mut self) {
        self.release_empty_storage(0);
    }

    /// [`release_idle_memory`](Self::release_idle_memory) for a connection that is busy but
    /// about to wait: frees the empty payload buffers (receive, fragment assembly) unless the
    /// receive buffer's allocation is at most 1 KiB, and every empty queue whose storage has
    /// grown past 1 KiB (after a burst), and keeps the smaller queues and receive buffer, which
    /// the next message would otherwise allocate again. So an adapter can call it before every
    /// wait and hold at most 1 KiB per queue above the idle minimum, whether or not a timer
    /// ever tells it that the connection went quiet (measured, 16-byte echo through the Tokio
    /// task adapter: 610 fewer instructions a round trip than releasing everything, for 16
    /// more bytes held while idle; keeping the small receive buffer, which each message
    /// otherwise allocated and freed twice, 558 fewer again).
    pub fn trim_memory(&mut self) {
        self.release_empty_storage(TRIM_KEEPS_UP_TO);
    }

    /// Frees the storage of every empty queue holding more than `keep` bytes, and the empty
    /// payload buffers whatever their size (the next read reserves only what it needs).
    fn release_empty_storage(&mut self, keep: usize) {
        if self.events.is_empty() && self.events.capacity() * size_of::<Event>() > keep {
            self.events = VecDeque::new();
        }
        self.ready.settle();
        let records = &self.ready.records;
        if records.is_empty() && records.capacity() * size_of::<u32>() > keep {
            self.ready.records = Vec::new();
        }
        // The two payload buffers go whenever they are empty, whatever room they have left:
        // an emptied one still shares the allocation that the last payloads (a whole message,
        // for `assembly`) were split from, and would keep it alive after them. Except, for
        // `trim_memory`, a receive buffer whose whole allocation is small (what the first read
        // after a release or trim took): the next read takes it back in place once its message
        // is dropped (performance: through the Tokio task adapter, which trims before every
        // wait, each 16-byte message cost two allocations and two frees, about 280
        // instructions a side).
        if self.inbuf.is_empty() && self.frame.is_none() {
            if !(keep > 0 && self.inbuf_is_small_block()) {
                self.release_inbuf();
            }
            self.inbuf_released = true;
        }
        if self.assembly.is_empty() {
            self.assembly = BytesMut::new();
        }
        self.out.release_empty_storage(keep);
    }

    /// True once the `Ended` event has been produced.
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True when data may still be sent (no Close queued, not failed, not ended).
    #[inline]
    pub fn can_send(&self) -> bool {
        !self.ended && self.failed.is_none() && self.closing.ours.is_none()
    }

    // ----- input: bytes --------------------------------------------------------------------

    /// Feeds bytes read from the transport at time `now`. Frames may be split anywhere.
    ///
    /// Returns the protocol error if these bytes made the engine fail the connection (a Close
    /// with the error's code is then queued, and the `Ended` event follows once it is written).
    /// Bytes after the peer's Close are discarded (section 5.5.1).
    pub fn receive(&mut self, now: Instant, data: &[u8]) -> Result<(), ReceiveError> {
        if !self.admit_input(now, data.len())? {
            return Ok(());
        }
        let mut data = data;
        // A frame left partial by an earlier read is finished through the buffer first, taking
        // from `data` only the bytes it still needs, so that the frames after it can take the
        // direct path (performance; the events are the same as buffering all of `data`).
        while !(self.inbuf.is_empty() && self.frame.is_none()) {
            let need = match self.frame {
                Some(frame) if frame.assembled => frame.remaining - frame.unmasked,
                Some(frame) => frame.remaining - self.inbuf.len(),
                // Only part of a header is buffered.
                None => MAX_HEADER_LEN.saturating_sub(self.inbuf.len()),
            };
            let take = need.clamp(1, data.len());
            match self.frame {
                // More payload of the frame in progress: appended already unmasked (to the
                // message being joined, for a fragment).
                Some(frame) if frame.assembled || self.inbuf.len() == frame.unmasked => {
                    self.absorb_payload(&data[..take])
                        .map_err(ReceiveError::Protocol)?;
                }
                _ => self.inbuf.extend_from_slice(&data[..take]),
            }
            data = &data[take..];
            self.process().map_err(ReceiveError::Protocol)?;
            if data.is_empty() || self.closing.peers.is_some() {
                return Ok(());
            }
        }
        // Nothing buffered: whole frames go straight from `data`.
        let used = self.receive_direct(data).map_err(ReceiveError::Protocol)?;
        data = &data[used..];
        if data.is_empty() || self.closing.peers.is_some() {
            // All taken, or the rest follows the peer's Close and is discarded (5.5.1).
            self.shrink_inbuf();
            return Ok(());
        }
        // A partial frame at the end of `data`.
        self.inbuf.extend_from_slice(data);
        self.process().map_err(ReceiveError::Protocol)
    }

    /// What every input goes through first, however it arrived: the clock, refusal once failed
    /// or ended, the counters and the liveness timer. Returns whether the `len` bytes are to be
    /// parsed: not when there are none, nor after the peer's Close (section 5.5.1).
    fn admit_input(&mut self, now: Instant, len: usize) -> Result<bool, ReceiveError> {
        self.advance_clock(now);
        if self.ended || self.failed.is_some() {
            return Err(ReceiveError::NotAccepting);
        }
        if len == 0 {
            return Ok(false);
        }
        self.stats.bytes_in += len as u64;
        self.liveness.on_receive(now);
        Ok(self.closing.peers.is_none())
    }

    /// Room at the end of the receive buffer for the rest of a frame that spans reads and a
    /// little more (at most `max` bytes), or `None` when no frame is in progress or no input is
    /// accepted: then read into a buffer of your own and call [`receive`](Self::receive).
    ///
    /// Read into it and hand it back with [`receive_filled`](Self::receive_filled): the bytes
    /// land where the engine keeps the payload (for a fragment, right after the message's
    /// earlier fragments) and are unmasked there, so a large frame is not copied from a
    /// transport buffer (performance). It grows the buffer at most to twice what has arrived
    /// of the frame or message, never by a declared length alone.
    #[inline]
    pub fn receive_buffer(&mut self, max: usize) -> Option<ReceiveBuffer> {
        // Asked before every read: the common answer (no frame in progress) stays inline
        // (performance: measured 17 instructions a read out of line).
        let frame = self.frame?;
        self.lend_room(frame, max)
    }

    /// [`receive_buffer`](Self::receive_buffer) with a frame in progress.
    fn lend_room(&mut self, frame: InFrame, max: usize) -> Option<ReceiveBuffer> {
        if self.ended || self.failed.is_some() || self.closing.peers.is_some() || max == 0 {
            return None;
        }
        // The rest of the frame, and up to `READ_AHEAD` bytes more: a read that takes all the
        // peer has sent then comes back short of the room, which tells the transport that it
        // is drained (tokio clears its readiness), instead of a second read that fails with
        // WouldBlock (measured: a system call per message per side on a 64 KiB echo). What
        // follows the frame is taken as in `receive`'s buffered path. The receive buffer
        // holds the frame's payload from its start (or from its last streamed chunk); a
        // fragment's is in `assembly`, and the receive buffer is empty meanwhile.
        let (sink, have) = if frame.assembled {
            debug_assert!(self.inbuf.is_empty());
            (&mut self.assembly, frame.unmasked)
        } else {
            let have = self.inbuf.len();
            (&mut self.inbuf, have)
        };
        let need = frame.remaining.checked_sub(have).filter(|&n| n > 0)?;
        let want = need.saturating_add(READ_AHEAD).min(max);
        if sink.capacity() - sink.len() < want.min(RECEIVE_BLOCK) {
            sink.reserve(want.min(sink.len().max(RECEIVE_BLOCK)));
        }
        let bytes = sink.split_off(sink.len());
        let limit = want.min(bytes.capacity());
        Some(ReceiveBuffer {
            bytes,
            limit,
            assembled: frame.assembled,
        })
    }

    /// Takes the bytes read into a [`ReceiveBuffer`] at time `now`, exactly as
    /// [`receive`](Self::receive) takes the same bytes (the same events, errors and limits).
    /// An empty buffer gives its room back and has no other effect (`now` is not looked at).
    pub fn receive_filled(
        &mut self,
        now: Instant,
        buffer: ReceiveBuffer,
    ) -> Result<(), ReceiveError> {
        let ReceiveBuffer {
            bytes, assembled, ..
        } = buffer;
        let sink = if assembled {
            &mut self.assembly
        } else {
            &mut self.inbuf
        };
        if bytes.is_empty() {
            sink.unsplit(bytes);
            return Ok(());
        }
        // Lent for the frame in progress: anything else since (say a `receive` in between)
        // makes them ordinary input.
        if self.frame.is_none_or(|f| f.assembled != assembled) {
            return self.receive(now, &bytes);
        }
        if !self.admit_input(now, bytes.len())? {
            return Ok(());
        }
        // Joined without a copy when it is still the end of the buffer it was split from
        // (`unsplit` copies otherwise, which is only slower).
        if !assembled {
            // Then exactly the buffered path of `receive`: `process` unmasks and checks in
            // place what follows `frame.unmasked`.
            self.inbuf.unsplit(bytes);
            return self.process().map_err(ReceiveError::Protocol);
        }
        self.fill_assembled(bytes).map_err(ReceiveError::Protocol)
    }

    /// Appends `bytes`, the next of the fragment in progress, to `assembly`, then unmasks and
    /// checks them there. What follows the fragment goes the buffered way.
    fn fill_assembled(&mut self, bytes: BytesMut) -> Result<(), ProtocolError> {
        let Some(mut frame) = self.frame else {
            unreachable!("fill_assembled without a frame in progress");
        };
        let n = bytes.len().min(frame.remaining - frame.unmasked);
        let start = self.assembly.len();
        self.assembly.unsplit(bytes);
        let after = (self.assembly.len() > start + n).then(|| self.assembly.split_off(start + n));
        if let Err(e) = frame.unmask_in_place(&mut self.assembly[start..], &mut self.utf8) {
            return Err(self.fail(e.into()));
        }
        frame.unmasked += n;
        self.frame = Some(frame);
        self.finish_assembled(true)?;
        if let Some(after) = after {
            // The fragment is complete; the receive buffer is empty while a fragment is in
            // progress, so this is all it holds.
            debug_assert!(self.inbuf.is_empty());
            self.inbuf.unsplit(after);
            self.process()?;
        }
        Ok(())
    }

    /// The fast path of `receive` (performance): with nothing buffered, parses whole frames
    /// straight from the caller's bytes and copies only their payloads into the receive buffer,
    /// so headers are never copied and never `advance`d over. Runs of whole single-frame
    /// messages go through `receive_run`; any other frame goes through `take_payload`'s steps
    /// exactly as in the buffered path (unmask, UTF-8, dispatch). Stops at the first frame that
    /// is not wholly in `data` (its header is parsed again by `process`, which has no side
    /// effects before it is accepted), at the peer's Close, or on an error. Returns the bytes of
    /// `data` it consumed.
    #[inline]
    fn receive_direct(&mut self, data: &[u8]) -> Result<usize, ProtocolError> {
        // One reservation for every payload of this read (they are split off in runs and share
        // the allocation), not one per frame. Bounded by what arrived.
        self.reserve_empty_inbuf(data.len());
        let mut pos = 0;
        let outcome = loop {
            if self.closing.peers.is_some() {
                break Ok(());
            }
            let (used, run) = if self.role == Role::Server {
                self.receive_run::<true>(&data[pos..])
            } else {
                self.receive_run::<false>(&data[pos..])
            };
            pos += used;
            if let Err(violation) = run {
                break Err(violation);
            }
            // The frame the run stopped at, if any, the general way.
            let rest = &data[pos..];
            let (header, header_len) = match parse_header(rest) {
                Ok(Status::Complete(header, header_len)) => (header, header_len),
                Ok(Status::Partial) => break Ok(()),
                Err(e) => break Err(Violation::from(e)),
            };
            if let Err(violation) = self.check_header(&header) {
                break Err(violation);
            }
            let payload = &rest[header_len..];
            let Ok(len) = usize::try_from(header.payload_len) else {
                break Ok(());
            };
            if len > payload.len() {
                // The frame goes on in a later read: start it here and take what arrived,
                // unmasked in the same pass as the copy, as `process` + `take_payload` would.
                self.stats.frames_in += 1;
                self.start_frame(&header);
                pos = data.len();
                // Room for twice this read, or for as much as the last frame that spanned
                // reads if that was more, never more than the frame needs. Bounded by bytes
                // that arrived (this read, or that earlier frame), never by the declared
                // length alone. Twice the read: a frame that spans two reads is not copied
                // when the buffer grows, and from a power-of-two read size the doublings land
                // on power-of-two payloads exactly. The earlier frame: a peer that sends large
                // messages back to back gets one allocation per message, not a reallocation
                // per doubling, which copies whenever the allocator cannot grow in place
                // (measured, 1 MiB messages in 64 KiB reads: four reallocations per message,
                // two of them moved, 640 KiB copied per message in the peer benchmark's
                // process, none moved in the engine benchmark's; in that process, receive 1 MiB
                // against the fused floor went from 0.86x to 0.98x).
                // What this may hold for a peer that stalls mid-frame is what its last such
                // frame made the engine hold anyway.
                let room = len.min((2 * data.len()).max(self.last_spanning_frame));
                // Twice that for a frame of more than a receive block and at most
                // `SHRINK_ABOVE`: the rest is room past the frame, which `receive_buffer` lends
                // so that the read finishing the frame also takes what follows it. Bounded like
                // the frame's own room, by bytes that arrived (the fuzzer caught a version
                // sized by the declared length: 22 bytes declaring 64 KiB reserved 64 KiB).
                // Not for smaller frames (their few missing bytes are not worth a larger
                // allocation; measured, 1 KiB frames in 64 KiB reads: 4.7 instructions more
                // per message), nor larger ones (their allocation would stay pinned by the
                // buffer's tail after the message is gone).
                let room = if (RECEIVE_BLOCK + 1..=SHRINK_ABOVE).contains(&len) {
                    2 * room
                } else {
                    room
                };
                if self.frame.is_some_and(|f| f.assembled) {
                    self.assembly.reserve(room);
                } else {
                    self.reserve_empty_inbuf(room);
                }
                self.absorb_payload(payload)?;
                let frame = self.frame.expect("started above");
                self.take_payload(frame)?;
                return Ok(pos);
            }
            self.stats.frames_in += 1;
            let whole = &rest[..header_len + len];
            pos += header_len + len;
            let frame = self.start_frame(&header);
            if frame.assembled {
                // A fragment: its payload joins the message in one copy.
                self.absorb_payload(&whole[header_len..])?;
                self.finish_assembled(false)?;
                continue;
            }
            let ascii = self.unmask_into_inbuf(whole, header_len, frame.key, frame.text);
            // From here exactly `take_payload` on a complete frame whose bytes are unmasked.
            if frame.text {
                if let Err(e) = self.utf8.feed_checked(&self.inbuf[header_len..], ascii) {
                    break Err(e.into());
                }
            }
            self.frame = None;
            let mut payload = self.inbuf.split_to(header_len + len).freeze();
            payload.advance(header_len);
            self.dispatch(frame, payload)?;
        };
        match outcome {
            Ok(()) => Ok(pos),
            Err(violation) => Err(self.fail(violation)),
        }
    }

    /// Takes the run of whole single-frame Text and Binary messages at the start of `data`,
    /// the common case (performance): each header is decided from its first two bytes (FIN,
    /// no RSV, data opcode, the masking our role expects, a 7- or 16-bit length within the
    /// limits), the payload is copy-unmasked into the receive buffer back to back with the
    /// previous one, and the message is recorded in `ready` as a length, its event made only
    /// when it is polled. Anything else (control frames, fragments, 64-bit lengths, a frame
    /// not wholly in `data`, a limit exceeded, streaming delivery) ends the run untouched, for
    /// the general path, which also reports its errors. The exception is invalid UTF-8, which
    /// the run reports itself (fail-fast). Returns the bytes taken, and the violation that
    /// ended the run if any; the messages before it are delivered either way.
    ///
    /// `MASKED` is the role's masking direction (server: frames arrive masked), a constant so
    /// that each role's loop has no branch on it.
    #[inline(never)]
    fn receive_run<const MASKED: bool>(&mut self, data: &[u8]) -> (usize, Result<(), Violation>) {
        // Whole messages only; a message in progress makes any data frame but a continuation
        // an error, which the general path reports. A limit below 125 bytes (a test's) leaves
        // everything to the general path, so that only 16-bit lengths need a check against it.
        let limit = self.config.max_frame_size.min(self.config.max_message_size);
        if self.config.delivery != Delivery::Messages || self.message.is_some() || limit < 125 {
            return (0, Ok(()));
        }
        debug_assert_eq!(self.role == Role::Server, MASKED);
        let mask_bit = if MASKED { 0x80 } else { 0 };
        let key_len = if MASKED { 4 } else { 0 };
        self.ready.settle();
        let first = self.ready.records.len();
        // The run's payloads are split off from the front of the buffer as one `Bytes`.
        debug_assert!(self.inbuf.is_empty());
        let spare = self.inbuf.spare_capacity_mut();
        // No payload is longer than its frame, so while `data` fits in `spare`, each payload's
        // place (`out`, never further into `spare` than its frame's start is into `data`) is
        // inside `spare`, and so is a 16-byte block written there whenever 16 bytes of `data`
        // are readable from the payload's start: one check per run instead of two per frame
        // (performance). `reserve_empty_inbuf` makes room for all of `data`; with less, the
        // run only ends sooner.
        let data = &data[..data.len().min(spare.len())];
        // Raw pointers (performance: no bounds checks, and fewer live values than indices and
        // bases); each access is justified by the checks above and in the loop. Everything
        // written goes through `out`.
        let end = data.as_ptr_range().end;
        let mut at = data.as_ptr();
        let dst = spare.as_mut_ptr().cast::<u8>();
        let mut out = dst;
        // Records collect here and go to `ready.records` in batches (performance: a store and
        // an increment per message instead of a `Vec::push` through `self`).
        let mut batch = [0u32; 64];
        let mut batched = 0;
        // Invalid UTF-8 ends the run at the frame that has it, untaken.
        let mut invalid = None;
        'run: loop {
            if MASKED {
                // Small messages, the common case, in a loop of their own (performance: few
                // values to keep and no call but the UTF-8 check of non-ASCII text; measured
                // 35 instructions a message, against 44 through the step below): a 7-bit
                // length of at most 16 with 22 bytes readable from the frame's start (the
                // header and a 16-byte block from the payload's), and room in the batch. The
                // step below takes anything else.
                while batched < batch.len() && end.addr() - at.addr() >= 22 {
                    // SAFETY: 22 bytes from `at` are inside `data`; unaligned reads are
                    // allowed.
                    let w = u64::from_le(unsafe { at.cast::<u64>().read_unaligned() });
                    let b0 = w as u8;
                    let len = (w >> 8) as u8 ^ 0x80;
                    if b0.wrapping_sub(0x81) > 1 || len > 16 {
                        break;
                    }
                    let len = usize::from(len);
                    // SAFETY: the payload starts 6 bytes in, and 16 bytes from there are inside
                    // `data`; 16 from `out` are inside `spare` (see above), which does not
                    // overlap `data`.
                    let high_bits = unsafe { unmask_block(out, at.add(6), (w >> 16) as u32) };
                    let record = Ready::record(b0, len);
                    if Ready::is_text(record) && !block_is_ascii(high_bits, len) {
                        // SAFETY: these `len` bytes at `out` were just written, by the block
                        // (16 bytes, and `len <= 16`).
                        let written = unsafe { core::slice::from_raw_parts(out, len) };
                        if let Err(e) = crate::utf8::validate_message(written) {
                            invalid = Some(e);
                            break 'run;
                        }
                    }
                    // SAFETY: `batched < 64` (the loop's condition).
                    unsafe { *batch.get_unchecked_mut(batched) = record };
                    batched += 1;
                    // SAFETY: the frame's `6 + len` bytes are inside `data` and the payload's
                    // `len` (written) inside `spare`: both stay inside or one past the end.
                    unsafe {
                        at = at.add(6 + len);
                        out = out.add(len);
                    }
                }
            }
            // One frame at a time of any form the run takes, until a small one sends the run
            // back to the loop above (so that a stream of larger messages does not try it on
            // every frame), or the end of the run.
            loop {
                // `at` is the start of a frame in `data`, or its end.
                let left = end.addr() - at.addr();
                // The first 8 bytes hold every header this loop takes (2 + 2 + 4 at most). A frame
                // in the last 7 bytes of `data` is left to the general path.
                if left < 8 {
                    break 'run;
                }
                // SAFETY: the 8 bytes from `at` are inside `data`; unaligned reads are allowed.
                let w = u64::from_le(unsafe { at.cast::<u64>().read_unaligned() });
                let b0 = w as u8;
                // 0x81 or 0x82 (FIN, no RSV, Text or Binary); the expected MASK bit with a 7-bit
                // length or the 16-bit form. A subtraction and a compare each.
                let short = (w >> 8) as u8 ^ mask_bit;
                if b0.wrapping_sub(0x81) > 1 || short > 126 {
                    break 'run;
                }
                let (len, header) = if short < 126 {
                    (usize::from(short), 2 + key_len)
                } else {
                    let len = usize::from(((w >> 16) as u16).swap_bytes());
                    if len as u64 > limit {
                        // Over a limit: the general path reports it.
                        break 'run;
                    }
                    (len, 4 + key_len)
                };
                let record = Ready::record(b0, len);
                let text = Ready::is_text(record);
                // SAFETY: `header <= 8 <= left`: inside `data` or its end.
                let body = unsafe { at.add(header) };
                let left = left - header;
                let key = if MASKED {
                    // SAFETY: the key is the header's last 4 bytes, inside `data`.
                    u32::from_le(unsafe { body.sub(4).cast::<u32>().read_unaligned() })
                } else {
                    0
                };
                if left < len {
                    // Not wholly in `data`: the general path takes it.
                    break 'run;
                }
                // SAFETY: the `len` bytes from `body` are inside `data`, and those from `out`
                // inside `spare` (see above), not overlapping `data` and borrowed only here.
                let (payload, place) = unsafe {
                    (
                        core::slice::from_raw_parts(body, len),
                        core::slice::from_raw_parts_mut(out.cast::<MaybeUninit<u8>>(), len),
                    )
                };
                // The payload needs no UTF-8 pass: binary, or seen to be ASCII while unmasked.
                let checked = if MASKED {
                    unmask_payload(place, payload, key.to_le_bytes(), text) || !text
                } else {
                    copy_uninit(place, payload);
                    !text
                };
                if !checked {
                    // SAFETY: these `len` bytes at `out` were all just written, by the copy.
                    let written = unsafe { core::slice::from_raw_parts(out, len) };
                    if let Err(e) = crate::utf8::validate_message(written) {
                        invalid = Some(e);
                        break 'run;
                    }
                }
                if batched == batch.len() {
                    self.ready.records.extend_from_slice(&batch);
                    batched = 0;
                }
                // SAFETY: `batched < 64`: it went back to 0 when it reached 64, just above.
                unsafe { *batch.get_unchecked_mut(batched) = record };
                batched += 1;
                // SAFETY: the payload's `len` bytes are inside `data` and (written) inside
                // `spare`: both stay inside or one past the end.
                unsafe {
                    at = body.add(len);
                    out = out.add(len);
                }
                if MASKED && len <= 16 {
                    break;
                }
            }
        }
        self.ready.records.extend_from_slice(&batch[..batched]);
        let filled = out.addr() - dst.addr();
        // SAFETY: the first `filled` spare bytes were written by `unmask_block`,
        // `unmask_payload` or `copy_uninit` above (payloads back to back from the start).
        unsafe { self.inbuf.set_len(filled) };
        let n = self.ready.records.len() - first;
        if n > 0 {
            self.stats.frames_in += n as u64;
            self.stats.messages_in += n as u64;
            let payloads = self.inbuf.split_to(filled).freeze();
            self.ready.add(first, payloads, &mut self.events);
        }
        let outcome = invalid.map_or(Ok(()), |e: InvalidUtf8| Err(e.into()));
        (at.addr() - data.as_ptr().addr(), outcome)
    }

    /// Appends bytes of the payload of the frame in progress (`self.frame`) to the receive
    /// buffer, unmasked in the same pass as the copy and, for text, UTF-8 checked: what
    /// `take_payload` would do to them after a plain copy (performance: one pass instead of a
    /// memcpy and an in-place XOR). Every byte of the frame already buffered must be unmasked.
    fn absorb_payload(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let Some(frame) = self.frame.as_mut() else {
            unreachable!("absorb_payload without a frame in progress");
        };
        let sink = if frame.assembled {
            &mut self.assembly
        } else {
            &mut self.inbuf
        };
        debug_assert!(frame.assembled || sink.len() == frame.unmasked);
        let start = sink.len();
        let n = bytes.len();
        let ascii = match frame.key {
            Some(key) => {
                let key = rotate_key(key, frame.taken + frame.unmasked);
                sink.reserve(n);
                let spare = &mut sink.spare_capacity_mut()[..n];
                let ascii = unmask_payload(spare, bytes, key, frame.text);
                // SAFETY: the `n` spare bytes after `start` were just written.
                unsafe { sink.set_len(start + n) };
                ascii
            }
            None => {
                sink.extend_from_slice(bytes);
                false
            }
        };
        frame.unmasked += n;
        let checked = if frame.text {
            self.utf8.feed_checked(&sink[start..], ascii)
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            return Err(self.fail(e.into()));
        }
        Ok(())
    }

    /// Appends a whole frame to the receive buffer, its payload unmasked: the payload in one
    /// fused copy-and-XOR pass instead of a memcpy and an in-place XOR (performance). The header
    /// bytes are kept in front of the payload, so the buffer holds what the buffered path would
    /// hold (each payload where it arrived), only unmasked already.
    ///
    /// For a text frame, returns whether the payload is known to be ASCII (see
    /// `copy_masked_uninit_ascii`); false otherwise.
    #[inline(always)]
    fn unmask_into_inbuf(
        &mut self,
        frame: &[u8],
        header_len: usize,
        key: Option<[u8; 4]>,
        text: bool,
    ) -> bool {
        let Some(key) = key else {
            self.inbuf.extend_from_slice(frame);
            return false;
        };
        let total = frame.len();
        self.inbuf.reserve(total);
        let old = self.inbuf.len();
        let spare = &mut self.inbuf.spare_capacity_mut()[..total];
        if let (Some(head), Some(dst)) = (frame.first_chunk::<16>(), spare.first_chunk_mut::<16>())
        {
            // A fixed 16-byte move covers every header (at most 14 bytes); what it writes past
            // the header is overwritten with the payload just below.
            *dst = head.map(core::mem::MaybeUninit::new);
        } else {
            for (d, s) in spare.iter_mut().zip(&frame[..header_len]) {
                d.write(*s);
            }
        }
        let ascii = unmask_payload(&mut spare[header_len..], &frame[header_len..], key, text);
        // SAFETY: the `total` spare bytes were just written: the header by the move or loop
        // above, the payload by `unmask_payload`.
        unsafe { self.inbuf.set_len(old + total) };
        ascii
    }

    /// Makes room for `n` bytes in the receive buffer, which is empty here (at least
    /// `RECEIVE_BLOCK` when it takes a new allocation). Too small, it is replaced by a fresh
    /// allocation rather than `reserve`d: `BytesMut::reserve` on a buffer
    /// whose front was split off may grow the whole allocation, copying the dead front along
    /// (measured: a 64 KiB copy per frame with 64 KiB frames).
    #[inline]
    fn reserve_empty_inbuf(&mut self, n: usize) {
        debug_assert!(self.inbuf.is_empty());
        if self.inbuf.capacity() < n {
            self.renew_inbuf(n);
        }
    }

    /// `reserve_empty_inbuf` when the buffer has less room than `n` (out of line, so that the
    /// common case, a read into the room a block still has, stays a compare in the caller).
    #[inline(never)]
    fn renew_inbuf(&mut self, n: usize) {
        // After a trim that kept a small buffer (see `release_empty_storage`), the buffer is
        // taken back in place if its message is gone. Only then: a busy connection's reads
        // otherwise share a block, which costs nothing per read.
        if self.inbuf_released && self.inbuf_is_small_block() && self.inbuf.try_reclaim(n) {
            return;
        }
        // The first read after `release_idle_memory` gets only the room it needs: an adapter
        // that releases at every wait would otherwise allocate and free a whole block per
        // message, outside the allocator's small-size cache (measured, 16-byte echo through
        // the task adapter: 18 602 to 18 294 instructions a round trip).
        let block = if core::mem::take(&mut self.inbuf_released) {
            n
        } else {
            n.max(RECEIVE_BLOCK)
        };
        self.inbuf = BytesMut::with_capacity(block);
        self.inbuf_small_end = if block <= TRIM_KEEPS_UP_TO {
            inbuf_end(&self.inbuf)
        } else {
            0
        };
    }

    /// `inbuf` views the small allocation `renew_inbuf` made for it (`inbuf_small_end`), not
    /// one that a larger read grew it into: a new allocation is made while the old one is
    /// still held (and freed after), so it cannot end at the same address, and the record is
    /// forgotten whenever `inbuf` lets go of its allocation (`release_inbuf`).
    fn inbuf_is_small_block(&self) -> bool {
        self.inbuf_small_end != 0 && inbuf_end(&self.inbuf) == self.inbuf_small_end
    }

    /// Lets go of the receive buffer's allocation (freed once its messages are dropped).
    fn release_inbuf(&mut self) {
        self.inbuf = BytesMut::new();
        self.inbuf_small_end = 0;
    }

    /// Releases a large, empty receive buffer (see `SHRINK_ABOVE`).
    #[inline]
    fn shrink_inbuf(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > SHRINK_ABOVE {
            self.release_inbuf();
        }
    }

    /// Parses every complete frame (and every available part of a partial one) in the buffer.
    fn process(&mut self) -> Result<(), ProtocolError> {
        loop {
            let frame = match self.frame {
                Some(frame) => frame,
                None => match parse_header(&self.inbuf) {
                    Ok(Status::Complete(header, header_len)) => {
                        if let Err(violation) = self.check_header(&header) {
                            return Err(self.fail(violation));
                        }
                        self.inbuf.advance(header_len);
                        self.stats.frames_in += 1;
                        self.start_frame(&header)
                    }
                    Ok(Status::Partial) => break,
                    Err(e) => return Err(self.fail(e.into())),
                },
            };
            if !self.take_payload(frame)? {
                break;
            }
            if self.closing.peers.is_some() {
                // Whatever follows the peer's Close is discarded (section 5.5.1).
                self.inbuf.clear();
                break;
            }
        }
        self.shrink_inbuf();
        Ok(())
    }

    /// The checks a header alone decides (sections 5.1, 5.2, 5.4, 5.5) and the size limits,
    /// before any of the payload is buffered.
    fn check_header(&self, h: &FrameHeader) -> Result<(), Violation> {
        if h.rsv != 0 {
            return Err(Violation::ReservedBits(h.rsv));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(Violation::UnmaskedFrame),
            (Role::Client, true) => return Err(Violation::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            if !h.fin {
                return Err(Violation::FragmentedControl);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Violation::ControlTooLong(h.payload_len));
            }
            return Ok(());
        }
        if h.payload_len > self.config.max_frame_size {
            return Err(Violation::FrameTooBig {
                len: h.payload_len,
                limit: self.config.max_frame_size,
            });
        }
        let declared = match (h.opcode, &self.message) {
            (OpCode::Continuation, None) => return Err(Violation::UnexpectedContinuation),
            (OpCode::Continuation, Some(m)) => m.declared.saturating_add(h.payload_len),
            (_, Some(_)) => return Err(Violation::MessageUnfinished),
            (_, None) => h.payload_len,
        };
        if declared > self.config.max_message_size {
            return Err(Violation::MessageTooBig {
                len: declared,
                limit: self.config.max_message_size,
            });
        }
        Ok(())
    }

    /// Sets up the state for a frame whose header passed `check_header`.
    fn start_frame(&mut self, h: &FrameHeader) -> InFrame {
        let text = match h.opcode {
            OpCode::Text => {
                self.utf8.reset();
                true
            }
            OpCode::Continuation => self.message.is_some_and(|m| m.kind == DataKind::Text),
            _ => false,
        };
        match h.opcode {
            OpCode::Text | OpCode::Binary if !h.fin => {
                self.message = Some(InMessage {
                    kind: if text {
                        DataKind::Text
                    } else {
                        DataKind::Binary
                    },
                    declared: h.payload_len,
                    deadline: self.config.message_timeout.map(|t| self.now + t),
                });
            }
            OpCode::Continuation => {
                if let Some(m) = &mut self.message {
                    m.declared += h.payload_len;
                }
            }
            _ => {}
        }
        // Fits: check_header bounded it by max_frame_size or 125, and a length that does not
        // fit usize cannot pass a limit that does (limits above usize::MAX are clamped here).
        let remaining = usize::try_from(h.payload_len).unwrap_or(usize::MAX);
        let assembled = self.config.delivery == Delivery::Messages
            && !h.opcode.is_control()
            && (h.opcode == OpCode::Continuation || !h.fin);
        let frame = InFrame {
            fin: h.fin,
            opcode: h.opcode,
            key: h.mask,
            remaining,
            taken: 0,
            unmasked: 0,
            text,
            delivered: false,
            assembled,
        };
        self.frame = Some(frame);
        frame
    }

    /// [`take_payload`](Self::take_payload) for a fragment joined in `assembly`: what the
    /// receive buffer holds of it (it arrived with the header, on the buffered path) moves
    /// there, unmasked on the way; complete, the frame is dispatched.
    fn take_assembled(&mut self, frame: InFrame) -> Result<bool, ProtocolError> {
        let n = self.inbuf.len().min(frame.remaining - frame.unmasked);
        if n > 0 {
            let raw = self.inbuf.split_to(n);
            self.absorb_payload(&raw)?;
        }
        self.finish_assembled(true)
    }

    /// Dispatches the fragment in progress if all of it is in `assembly` (`spanned`: it came
    /// in more than one read). Returns whether it was complete.
    fn finish_assembled(&mut self, spanned: bool) -> Result<bool, ProtocolError> {
        let Some(frame) = self.frame.filter(|f| f.unmasked == f.remaining) else {
            return Ok(false);
        };
        self.frame = None;
        if spanned {
            // What the next frame that spans reads reserves, as in `take_payload`.
            self.last_spanning_frame = frame.remaining;
        }
        // The payload is in `assembly` already.
        self.dispatch(frame, Bytes::new())?;
        Ok(true)
    }

    /// Unmasks and checks what has arrived of the frame's payload; dispatches the frame when
    /// it is complete. Returns whether the frame completed (so parsing can go on).
    #[inline]
    fn take_payload(&mut self, mut frame: InFrame) -> Result<bool, ProtocolError> {
        if frame.assembled {
            return self.take_assembled(frame);
        }
        let available = self.inbuf.len().min(frame.remaining);
        if available > frame.unmasked {
            let fresh = &mut self.inbuf[frame.unmasked..available];
            if let Err(e) = frame.unmask_in_place(fresh, &mut self.utf8) {
                return Err(self.fail(e.into()));
            }
            frame.unmasked = available;
        }
        let complete = available == frame.remaining;
        if complete {
            self.frame = None;
            if !frame.opcode.is_control() && self.config.delivery == Delivery::Messages {
                // Every data frame completing here spanned reads (`receive_direct` takes the
                // frames wholly in one read); its length is what the next one reserves.
                self.last_spanning_frame = available;
            }
            let payload = self.inbuf.split_to(available).freeze();
            self.dispatch(frame, payload)?;
        } else {
            if self.config.delivery == Delivery::Streaming
                && !frame.opcode.is_control()
                && available > 0
            {
                let data = self.inbuf.split_to(available).freeze();
                self.deliver_chunk(&mut frame, data, false);
                frame.taken += available;
                frame.remaining -= available;
                frame.unmasked = 0;
            }
            self.frame = Some(frame);
        }
        Ok(complete)
    }

    fn deliver_chunk(&mut self, frame: &mut InFrame, data: Bytes, last: bool) {
        // `frame.text` was fixed when the frame started. Not `self.message`: `dispatch` clears
        // it before delivering a final continuation, which made the last chunk of a streamed
        // text message say Binary (found by the frame_parse fuzz target).
        let kind = if frame.text {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        let first = frame.opcode != OpCode::Continuation && !frame.delivered;
        frame.delivered = true;
        if last {
            self.stats.messages_in += 1;
        }
        self.events.push_back(Event::Chunk(Chunk {
            kind,
            first,
            last,
            data,
        }));
    }

    /// A complete frame.
    fn dispatch(&mut self, mut frame: InFrame, payload: Bytes) -> Result<(), ProtocolError> {
        match frame.opcode {
            OpCode::Ping => {
                // Answered even while our Close waits behind data (section 5.5.2: until a
                // Close is received); the queue itself refuses once our Close is committed.
                self.out.set_pong(payload.clone());
                self.events.push_back(Event::Ping(payload));
            }
            OpCode::Pong => {
                self.liveness.on_pong(&payload, self.now);
                self.events.push_back(Event::Pong(payload));
            }
            OpCode::Close => match parse_close_body(&payload) {
                Ok(body) => self.on_peer_close(body),
                Err(e) => return Err(self.fail(e.into())),
            },
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if frame.fin && frame.text {
                    if let Err(e) = self.utf8.finish() {
                        return Err(self.fail(e.into()));
                    }
                }
                if frame.fin {
                    self.message = None;
                }
                if self.config.delivery == Delivery::Streaming {
                    let last = frame.fin;
                    if !payload.is_empty() || last || !frame.delivered {
                        self.deliver_chunk(&mut frame, payload, last);
                    }
                    return Ok(());
                }
                let whole = if !frame.assembled {
                    // A single-frame message: the unmasked receive buffer itself, no copy.
                    payload
                } else if frame.fin {
                    // The last fragment: its payload, like the others', is in `assembly`.
                    self.assembly.split().freeze()
                } else {
                    return Ok(());
                };
                self.stats.messages_in += 1;
                self.events.push_back(if frame.text {
                    Event::Text(Text::from_validated(whole))
                } else {
                    Event::Binary(whole)
                });
            }
        }
        Ok(())
    }

    fn on_peer_close(&mut self, body: Option<CloseFrame>) {
        self.closing.peers = Some(body.clone());
        self.message = None;
        self.assembly = BytesMut::new();
        self.events.push_back(Event::Close(body));
        if self.closing.ours.is_some() {
            if self.closing.ours_written {
                self.finish_handshake();
            }
        } else {
            self.closing.echo_due = Some(self.now + self.config.close_timeout);
        }
    }

    /// Queues the echo of the peer's Close: its code, or an empty body if it had none.
    fn queue_echo(&mut self) {
        self.closing.echo_due = None;
        if self.closing.ours.is_some() || self.ended {
            return;
        }
        let echo = self.closing.peers.clone().flatten().map(|c| CloseFrame {
            code: c.code,
            reason: String::new(),
        });
        self.out.set_close(encode_close_body(echo.as_ref()));
        self.closing.ours = Some(echo.unwrap_or(CloseFrame {
            code: close::NO_STATUS,
            reason: String::new(),
        }));
        self.closing.deadline = Some(self.now + self.config.close_timeout);
    }

    /// Fails the connection (section 7.1.7): queue a Close with the violation's code, drop
    /// everything else not yet started, accept no more input.
    fn fail(&mut self, violation: Violation) -> ProtocolError {
        let mut code = violation.close_code();
        if self.out.close_committed() {
            // Our Close is already on the wire: it is the only one the peer will get, so the
            // error reports its code rather than one that is never sent.
            code = self.closing.ours.as_ref().map_or(code, |c| c.code);
        }
        let err = ProtocolError { violation, code };
        if self.failed.is_some() || self.ended {
            return err;
        }
        self.failed = Some(err.clone());
        let reason = err.violation.to_string();
        let body = CloseFrame {
            code,
            reason: String::from(truncate_reason(&reason)),
        };
        let lost = self.out.abandon_with_close(encode_close_body(Some(&body)));
        self.lost.messages += lost.messages;
        self.lost.bytes += lost.bytes;
        if self.closing.ours.is_none() {
            self.closing.ours = Some(body);
        }
        self.closing.echo_due = None;
        self.closing.deadline = Some(self.now + self.config.close_timeout);
        self.release_inbuf();
        self.frame = None;
        self.message = None;
        self.assembly = BytesMut::new();
        if self.closing.ours_written {
            self.end(EndReason::ProtocolError(err.clone()));
        }
        err
    }

    fn finish_handshake(&mut self) {
        let reply = self.closing.peers.clone().flatten();
        let reason = if self.closing.we_initiated {
            EndReason::ClosedLocally {
                sent: self.closing.ours.clone().expect("we initiated"),
                reply,
            }
        } else {
            EndReason::ClosedByPeer(reply)
        };
        self.end(reason);
    }

    fn end(&mut self, reason: EndReason) {
        if self.ended {
            return;
        }
        self.ended = true;
        let queued = self.out.unsent_now();
        let unsent = Unsent {
            messages: self.lost.messages + queued.messages,
            bytes: self.lost.bytes + queued.bytes,
        };
        self.events
            .push_back(Event::Ended(Box::new(Ended { reason, unsent })));
    }

    // ----- input: the transport's end ------------------------------------------------------

    /// The transport's read side ended (EOF) at `now`. Ends the connection: cleanly if the
    /// peer's Close had arrived, otherwise as abnormal (no close code is invented).
    pub fn transport_closed(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.ended {
            return;
        }
        if let Some(err) = self.failed.clone() {
            self.end(EndReason::ProtocolError(err));
        } else if self.closing.peers.is_some() {
            self.finish_handshake();
        } else {
            self.end(EndReason::Abnormal(String::from(
                "transport closed without a Close frame",
            )));
        }
    }

    /// The transport failed at `now` (write deadline missed, reset, broken pipe). Ends the
    /// connection; a protocol error already being reported stays the reason.
    pub fn transport_failed(&mut self, now: Instant, error: TransportError) {
        self.advance_clock(now);
        if self.ended {
            return;
        }
        if let Some(err) = self.failed.clone() {
            self.end(EndReason::ProtocolError(err));
            return;
        }
        self.end(match error {
            TransportError::WriteTimeout => EndReason::WriteTimeout,
            TransportError::Io(detail) => EndReason::Abnormal(detail),
        });
    }

    // ----- input: time ---------------------------------------------------------------------

    fn advance_clock(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// When the engine next needs [`handle_timeout`](Self::handle_timeout), if ever.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Nothing armed and no keepalive configured, as between the messages of a connection
        // without keepalive: answered without gathering deadlines (performance: adapters ask
        // on every step; measured: 7 743 to 7 529 instructions per echo round trip in the in-task
        // adapter without keepalive, callgrind).
        if self.ended
            || (self.closing.deadline.is_none()
                && self.closing.echo_due.is_none()
                && self.message.is_none()
                && !self.liveness.has_timers())
        {
            // The fast path's list of what can be armed is `next_deadline`'s, written twice:
            // a deadline added there and not here would be lost, and this says so in tests.
            debug_assert!(self.ended || self.next_deadline().is_none());
            return None;
        }
        self.next_deadline()
    }

    /// The earliest deadline armed (see [`poll_timeout`](Self::poll_timeout)).
    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.closing.deadline);
        consider(self.closing.echo_due);
        consider(self.message.and_then(|m| m.deadline));
        consider(self.liveness.idle_deadline());
        if self.keepalive_active() {
            consider(self.liveness.ping_due());
        }
        next
    }

    fn keepalive_active(&self) -> bool {
        self.closing.ours.is_none() && self.closing.peers.is_none() && self.failed.is_none()
    }

    /// Fires every timer that is due at `now`: keepalive PING, idle (dead peer) deadline,
    /// close-handshake deadline, the overdue echo of the peer's Close, message timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.ended {
            return;
        }
        if self.closing.deadline.is_some_and(|t| t <= now) {
            let reason = match self.failed.clone() {
                Some(err) => EndReason::ProtocolError(err),
                None => EndReason::CloseTimeout,
            };
            self.end(reason);
            return;
        }
        if self.liveness.idle_deadline().is_some_and(|t| t <= now) {
            // A connection already failed (say by the message timeout, which no input
            // refreshes) keeps its protocol error as the reason: it came first.
            let reason = match self.failed.clone() {
                Some(err) => EndReason::ProtocolError(err),
                None => EndReason::IdleTimeout(self.liveness.silent_for(now)),
            };
            self.end(reason);
            return;
        }
        if self.closing.echo_due.is_some_and(|t| t <= now) {
            self.queue_echo();
        }
        if let Some(limit) = self.config.message_timeout {
            if self
                .message
                .and_then(|m| m.deadline)
                .is_some_and(|t| t <= now)
            {
                self.fail(Violation::MessageTimeout(limit));
                return;
            }
        }
        if self.keepalive_active() && self.liveness.ping_due().is_some_and(|t| t <= now) {
            let payload = self.liveness.next_keepalive(now);
            self.out.set_ping(payload);
        }
    }

    // ----- output: events ------------------------------------------------------------------

    /// The next event, in the order things happened. `Ended` is always the last.
    ///
    /// A message's payload is a slice of the buffer its read landed in, shared with the other
    /// messages of that read: keeping the `Bytes` keeps that whole buffer (up to the size of
    /// the read, 64 KiB with the Tokio adapter's default). An application that holds many small
    /// messages for long, such as a relay queueing them for a slow subscriber, should keep
    /// copies (`Bytes::copy_from_slice`) so that its memory is what the messages weigh; the
    /// engine does not copy them itself because a copy costs an allocation per message
    /// (measured: about 220 more instructions per 16-byte message).
    // Inline across crates (performance): it runs once per message, and out of line the event
    // is moved through memory twice more.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(record) = self.ready.takeable_record() {
            return Some(self.ready.pop(record));
        }
        self.poll_queued()
    }

    /// [`poll_event`](Self::poll_event), lending the payload of a whole message instead of
    /// handing out a `Bytes`: the same events in the same order, for an application that reads
    /// each message where it lies (parses it, copies what it keeps) and has no use for owning
    /// it. Saves taking and releasing a reference count per message, about half the cost of
    /// receiving a 16-byte message. The loan ends at the next call on the connection. Events
    /// other than small whole messages, and messages already made into events (by
    /// [`peek_event`](Self::peek_event), or queued behind other events), come as
    /// [`EventRef::Event`].
    #[inline]
    pub fn poll_event_ref(&mut self) -> Option<EventRef<'_>> {
        if let Some(record) = self.ready.takeable_record() {
            let text = Ready::is_text(record);
            let payload = self.ready.pop_ref(record);
            return Some(if text {
                // SAFETY: `receive_run` validated every text payload it recorded (or saw it is
                // ASCII while unmasking it) before recording it.
                EventRef::Text(unsafe { core::str::from_utf8_unchecked(payload) })
            } else {
                EventRef::Binary(payload)
            });
        }
        self.poll_queued().map(EventRef::Event)
    }

    /// `poll_event` when the next event is in `events`, out of line so that the inlined part
    /// is only the ready messages' path (performance). Cold: with small messages arriving in
    /// runs it is the rare path, and marked so the ready path is laid out straight (measured:
    /// 4 instructions per message).
    #[cold]
    #[inline(never)]
    fn poll_queued(&mut self) -> Option<Event> {
        if self.ready.has_waiting() {
            match self.ready.before.get() {
                Ready::PEEKED => return Some(self.ready.pop_peeked()),
                before => {
                    self.ready.before.set(before - 1);
                    self.ready.set_takeable();
                }
            }
        } else {
            self.ready.settle();
        }
        let event = self.events.pop_front()?;
        if matches!(event, Event::Close(_)) && self.closing.echo_due.is_some() {
            // The application has now seen every message before the peer's Close, and had the
            // chance to queue its replies: they go out before the echo.
            self.queue_echo();
        }
        Some(event)
    }

    /// The next event, without taking it. An adapter that hands events to the application
    /// through a channel uses it to leave the peer's [`Event::Close`] here until the
    /// application has caught up with the events before it, since taking the Close is what
    /// queues the echo.
    #[inline]
    pub fn peek_event(&self) -> Option<&Event> {
        match self.ready.before.get() {
            0 | Ready::PEEKED => self.ready.peek().or_else(|| self.events.front()),
            _ => self.events.front(),
        }
    }

    // ----- output: bytes -------------------------------------------------------------------

    /// The rest of the frame in flight, committing the next frame (by the ordering rule) if
    /// none is. Write it, then report how much was written with
    /// [`advance_transmit`](Self::advance_transmit); until the frame is finished, this keeps
    /// returning the rest of the same frame.
    // Inlined (performance): once per frame sent, from the IO adapter's crate.
    #[inline]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if self.ended {
            return None;
        }
        self.out.poll_transmit()
    }

    /// Fills `out` with slices of whole frames for one vectored write (the first slice may
    /// continue a partly written frame), committing frames up to about `max_bytes`. Frames
    /// committed here keep their order: a later PONG cannot overtake them, so keep `max_bytes`
    /// modest (a few fragments). Returns the number of slices filled.
    #[inline]
    pub fn transmit_chunks<'a>(&'a mut self, out: &mut [&'a [u8]], max_bytes: usize) -> usize {
        if self.ended {
            return 0;
        }
        self.out.transmit_chunks(out, max_bytes)
    }

    /// True when one message sent into an idle queue is all there is to write, the common
    /// case of a request/response loop: the adapters then write the frame `poll_transmit`
    /// hands out instead of gathering slices for a vectored write (performance: 276
    /// instructions per 16-byte echo round trip, callgrind). Only a shortcut: the frames and
    /// their order are `poll_transmit`'s either way.
    #[cfg(feature = "tokio")]
    #[inline]
    pub(crate) fn transmit_is_one_frame(&self) -> bool {
        !self.ended && self.out.lane_alone()
    }

    /// Reports that `n` bytes of what `poll_transmit`/`transmit_chunks` handed out were
    /// written. Returns how many frames that completed (each completion is the moment to arm
    /// the next frame's write deadline).
    ///
    /// # Panics
    /// If `n` exceeds the bytes handed out and not yet reported.
    // Inlined (performance): once per frame sent, from the IO adapter's crate.
    #[inline]
    pub fn advance_transmit(&mut self, n: usize) -> usize {
        if n == 0 || self.ended {
            return 0;
        }
        self.stats.bytes_out += n as u64;
        let done = self.out.advance(n);
        self.stats.frames_out += done.frames as u64;
        self.stats.messages_out += done.messages as u64;
        if self.out.take_writable() {
            self.events.push_back(Event::Writable);
        }
        if done.close {
            self.closing.ours_written = true;
            if let Some(err) = self.failed.clone() {
                self.end(EndReason::ProtocolError(err));
            } else if self.closing.peers.is_some() {
                self.finish_handshake();
            }
        }
        done.frames
    }

    /// True when nothing is waiting to be written.
    #[inline]
    pub fn is_transmit_idle(&self) -> bool {
        self.ended || self.out.is_idle()
    }

    // ----- application calls ---------------------------------------------------------------

    #[inline]
    fn check_can_send(&mut self, len: usize) -> Result<(), fn(Bytes) -> SendError> {
        // `can_send` by two flags (performance): failing and every way of closing queue a
        // Close, which marks the outbound queue closed.
        let can_send = !self.ended && !self.out.closed();
        debug_assert_eq!(can_send, self.can_send());
        if !can_send {
            return Err(|payload| SendError::Closing { payload });
        }
        if !self.out.has_room(len) {
            return Err(|payload| SendError::Backpressure {
                payload,
                queued: 0,
                budget: 0,
            });
        }
        Ok(())
    }

    fn refuse(&self, make: fn(Bytes) -> SendError, payload: Bytes) -> SendError {
        match make(payload) {
            SendError::Backpressure { payload, .. } => SendError::Backpressure {
                payload,
                queued: self.out.charged(),
                budget: self.config.max_outbound_bytes,
            },
            other => other,
        }
    }

    /// Queues a text message (fragmented if longer than `max_send_fragment`).
    pub fn send_text(&mut self, text: impl Into<Text>) -> Result<(), SendError> {
        self.send_data(OpCode::Text, text.into().into_bytes(), None)
    }

    /// Queues a binary message (fragmented if longer than `max_send_fragment`).
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_data(OpCode::Binary, data.into(), None)
    }

    /// Queues a message prepared once for many connections (see [`PreparedMessage`]). On a
    /// server engine the payload is shared and the header reused; a client engine masks its
    /// own copy, as it must.
    // Inlined (performance): once per connection in a fan-out loop, from the caller's crate.
    #[inline]
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        // The prepared header is the unmasked one-frame header: the queue uses it only for a
        // message that goes out as one frame, and masks it in the client role.
        let (opcode, header, payload) = message.parts();
        self.send_data(opcode, payload.clone(), Some(header))
    }

    /// [`send_prepared`](Self::send_prepared) for fan-out: when nothing is queued or in
    /// flight, the frame is written straight through `write` instead of being queued and
    /// handed out by [`poll_transmit`](Self::poll_transmit).
    ///
    /// A queued message holds a clone of the payload until it is written: a reference count
    /// taken and released per connection, two atomic operations on the one counter that every
    /// connection of a fan-out shares (about half the cost of queueing and writing a message
    /// to an idle connection, measured: `benches/RESULTS.md`). Written straight through, the
    /// payload is only lent to `write`.
    ///
    /// `write` gets the frame's header and payload, must put them on the transport in that
    /// order as one stream (a vectored write), and returns how many bytes it wrote: 0 when the
    /// transport would block, or failed (then report it with
    /// [`transport_failed`](Self::transport_failed)). Whatever it did not write is queued as
    /// the frame in flight, behind which replies wait: write it out as usual. A client (it
    /// masks into its own buffer), a connection with anything queued or in flight, and a
    /// message longer than `max_send_fragment` take the ordinary path, without calling
    /// `write`. Errors are those of `send_prepared`, and `write` is then not called either.
    pub fn send_prepared_through(
        &mut self,
        message: &PreparedMessage,
        write: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<(), SendError> {
        let (opcode, header, payload) = message.parts();
        if !self.out.can_write_through(payload.len()) {
            return self.send_prepared(message);
        }
        if let Err(make) = self.check_can_send(payload.len()) {
            return Err(self.refuse(make, payload.clone()));
        }
        let total = header.as_slice().len() + payload.len();
        let written = write(header.as_slice(), payload).min(total);
        if written == total {
            // What `advance_transmit` counts for a frame written whole.
            self.stats.bytes_out += total as u64;
            self.stats.frames_out += 1;
            self.stats.messages_out += 1;
        } else {
            // The frame in flight, then the part written, as any partly written frame.
            self.out
                .commit_written_through(opcode, payload.clone(), header);
            self.advance_transmit(written);
        }
        Ok(())
    }

    // Always inlined (performance): the body of every send call, small, in the caller's loop.
    #[inline(always)]
    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        header: Option<crate::frame::EncodedHeader>,
    ) -> Result<(), SendError> {
        if let Err(make) = self.check_can_send(payload.len()) {
            return Err(self.refuse(make, payload));
        }
        self.out.push_data(opcode, payload, header);
        Ok(())
    }

    /// Queues a PING (payload at most 125 bytes). It overtakes queued data; a PING not yet
    /// started is replaced. The matching PONG gives [`Stats::last_rtt`].
    pub fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        let payload = payload.into();
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        if !self.can_send() {
            return Err(SendError::Closing { payload });
        }
        self.liveness.on_ping_sent(payload.clone(), self.now);
        self.out.set_ping(payload);
        Ok(())
    }

    /// Starts the close handshake: queues a Close behind every data message already queued.
    /// No data can be sent after it. The connection ends when the peer's Close arrives and
    /// ours is written, or at `close_timeout`. Calling it again does nothing.
    ///
    /// If the peer closed first and its Close event has not been taken yet, this Close is the
    /// answer (with this code instead of the echoed one).
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        let frame = CloseFrame::checked(code, reason)?;
        if self.ended || self.failed.is_some() || self.closing.ours.is_some() {
            return Ok(());
        }
        self.out.set_close(encode_close_body(Some(&frame)));
        self.start_closing(frame);
        Ok(())
    }

    /// Closes without waiting for queued data: every message not yet started is dropped
    /// (reported in [`Ended::unsent`](crate::Ended)) and the Close goes out right after the
    /// frame in flight. For peers that have fallen too far behind (a relay's slow subscriber,
    /// closed with 1013). Does nothing once our Close is on the wire.
    pub fn close_now(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        let frame = CloseFrame::checked(code, reason)?;
        if self.ended || self.failed.is_some() || self.out.close_committed() {
            return Ok(());
        }
        let lost = self.out.abandon_with_close(encode_close_body(Some(&frame)));
        self.lost.messages += lost.messages;
        self.lost.bytes += lost.bytes;
        self.start_closing(frame);
        Ok(())
    }

    fn start_closing(&mut self, frame: CloseFrame) {
        self.closing.we_initiated = self.closing.peers.is_none();
        self.closing.echo_due = None;
        self.closing.ours = Some(frame);
        self.closing.deadline = Some(self.now + self.config.close_timeout);
    }
}

#[cfg(test)]
mod tests {
    //! The receive fast path's private helpers (its lazy events, lengths, roles and read
    //! splits are checked through the public API in `tests/receive_run.rs`).

    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn block_is_ascii_looks_at_exactly_the_payload() {
        // One high byte at every position, inside and outside the first `len` bytes, through
        // `unmask_block` with a key that flips it in: the block's high bits and the test.
        let key = [0x01, 0x80, 0x7f, 0xff];
        for len in 0..=16 {
            for high_at in 0..17 {
                let mut block = [b'a'; 16];
                if high_at < 16 {
                    block[high_at] = 0xC3;
                }
                let masked: Vec<u8> = block
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[i % 4])
                    .collect();
                let mut out = [0u8; 16];
                // SAFETY: 16 bytes each, separate arrays.
                let high = unsafe {
                    unmask_block(out.as_mut_ptr(), masked.as_ptr(), u32::from_le_bytes(key))
                };
                assert_eq!(out, block);
                assert_eq!(
                    block_is_ascii(high, len),
                    block[..len].is_ascii(),
                    "len {len} high byte at {high_at}"
                );
            }
        }
    }

    /// A client frame (FIN, masked) with `payload`, encoded here by hand.
    fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x12, 0x34, 0x56, 0x78];
        assert!(payload.len() < 126);
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    fn server() -> Connection {
        let config = Config {
            ping_interval: None,
            idle_timeout: None,
            ..Config::default()
        };
        Connection::server(config, Instant::ZERO)
    }

    fn binary(event: Option<Event>) -> Vec<u8> {
        match event {
            Some(Event::Binary(b)) => b.to_vec(),
            e => panic!("expected a binary message, got {e:?}"),
        }
    }

    #[test]
    fn a_run_taken_to_its_end_is_settled_by_the_next_call() {
        let mut conn = server();
        let mut wire = Vec::new();
        for i in 0..3u8 {
            wire.extend(masked_frame(2, &[i; 5]));
        }
        // The Ping's 7 bytes let the run take the third message too (it leaves a frame in
        // the last 7 bytes of a read to the general path).
        wire.extend(masked_frame(9, b"p"));
        conn.receive(Instant::ZERO, &wire).unwrap();
        assert_eq!(conn.ready.records.len(), 3);
        for i in 0..3u8 {
            assert_eq!(binary(conn.poll_event()), [i; 5]);
        }
        // Taken, not yet forgotten: the last payload's storage stays until the next call.
        assert!(!conn.ready.has_waiting());
        assert_eq!(conn.ready.records.len(), 3);
        // Peeking (which only borrows) sees past the taken run.
        assert!(matches!(conn.peek_event(), Some(Event::Ping(_))));
        assert!(matches!(conn.poll_event(), Some(Event::Ping(_))));
        assert!(conn.ready.records.is_empty() && conn.ready.data.is_empty());
        assert_eq!(conn.ready.takeable.get(), 0);
        assert!(conn.poll_event().is_none());
    }

    #[test]
    fn a_new_run_after_a_taken_one_keeps_its_place_behind_queued_events() {
        let mut conn = server();
        let mut wire = Vec::new();
        for i in 0..2u8 {
            wire.extend(masked_frame(2, &[i; 3]));
        }
        wire.extend(masked_frame(9, b"p"));
        conn.receive(Instant::ZERO, &wire).unwrap();
        assert_eq!(binary(conn.poll_event()), [0; 3]);
        assert_eq!(binary(conn.poll_event()), [1; 3]);
        // The run is taken but not settled, and the Ping still waits: the next run goes
        // behind it.
        let mut more = Vec::new();
        for i in 2..4u8 {
            more.extend(masked_frame(2, &[i; 3]));
        }
        conn.receive(Instant::ZERO, &more).unwrap();
        assert!(matches!(conn.poll_event(), Some(Event::Ping(_))));
        assert_eq!(binary(conn.poll_event()), [2; 3]);
        assert!(matches!(conn.peek_event(), Some(Event::Binary(b)) if b[..] == [3; 3]));
        assert_eq!(binary(conn.poll_event()), [3; 3]);
        assert!(conn.poll_event().is_none());
        assert!(conn.ready.records.is_empty());
    }

    #[test]
    fn release_idle_memory_forgets_a_taken_run() {
        let mut conn = server();
        let mut wire = Vec::new();
        for i in 0..2u8 {
            wire.extend(masked_frame(2, &[i; 3]));
        }
        // Past the run's last 7 bytes, so both messages are taken by the run.
        wire.extend(masked_frame(9, b"padding"));
        conn.receive(Instant::ZERO, &wire).unwrap();
        assert_eq!(binary(conn.poll_event()), [0; 3]);
        assert_eq!(binary(conn.poll_event()), [1; 3]);
        conn.release_idle_memory();
        assert!(conn.ready.records.is_empty() && conn.ready.records.capacity() == 0);
        assert!(conn.ready.data.is_empty());
        assert!(matches!(conn.poll_event(), Some(Event::Ping(_))));
    }

    /// Hundreds of small messages (every length to 20, binary, ASCII and non-ASCII text) in
    /// one read and split at every few bytes: the small-message loop, its batches of records
    /// and its hand-over to the one-frame step, checked message by message.
    #[test]
    fn small_messages_in_long_runs_arrive_whole_and_in_order() {
        let words = ["", "a", "hé", "€uro", "日本語", "x😀y", "plain ascii text"];
        let mut sent: Vec<(bool, Vec<u8>)> = Vec::new();
        for i in 0..300usize {
            match i % 3 {
                0 => sent.push((false, (0..i % 21).map(|b| (b * 7 + i) as u8).collect())),
                1 => sent.push((true, b"abcdefghijklmnopqrst"[..i % 21].to_vec())),
                _ => sent.push((true, words[i % words.len()].as_bytes().to_vec())),
            }
        }
        let mut wire = Vec::new();
        for (text, payload) in &sent {
            wire.extend(masked_frame(if *text { 1 } else { 2 }, payload));
        }
        for split in [usize::MAX, 1000, 97, 13] {
            let mut conn = server();
            let mut got = Vec::new();
            for read in wire.chunks(split.min(wire.len())) {
                conn.receive(Instant::ZERO, read).unwrap();
                while let Some(event) = conn.poll_event() {
                    got.push(match event {
                        Event::Text(t) => (true, t.as_bytes().to_vec()),
                        Event::Binary(b) => (false, b.to_vec()),
                        e => panic!("{e:?}"),
                    });
                }
            }
            assert_eq!(got, sent, "reads of {split} bytes");
        }
    }

    #[test]
    fn invalid_utf8_deep_in_a_run_of_small_messages_fails_after_the_ones_before_it() {
        let mut wire = Vec::new();
        for i in 0..150u8 {
            wire.extend(masked_frame(1 + (i % 2), &[b'a' + i % 26; 9]));
        }
        wire.extend(masked_frame(1, b"bad \xff"));
        wire.extend(masked_frame(2, b"never seen"));
        wire.extend([0; 32]);
        let mut conn = server();
        let err = conn.receive(Instant::ZERO, &wire).unwrap_err();
        assert!(matches!(err, ReceiveError::Protocol(e) if e.code == close::INVALID_PAYLOAD));
        for i in 0..150u8 {
            let payload = match conn.poll_event() {
                Some(Event::Text(t)) if i % 2 == 0 => t.into_bytes(),
                Some(Event::Binary(b)) if i % 2 == 1 => b,
                e => panic!("message {i}: {e:?}"),
            };
            assert_eq!(payload[..], [b'a' + i % 26; 9]);
        }
        assert!(!matches!(
            conn.poll_event(),
            Some(Event::Text(_) | Event::Binary(_))
        ));
    }

    #[test]
    fn copy_uninit_copies_every_length() {
        for len in 0..40 {
            let src: Vec<u8> = (0..len as u8).collect();
            let mut dst = vec![MaybeUninit::uninit(); len];
            assert_eq!(copy_uninit(&mut dst, &src), &src[..]);
        }
    }
}
