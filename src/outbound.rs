//! The single outbound queue: every byte the connection writes leaves from here, one whole
//! frame at a time.
//!
//! # The ordering rule
//!
//! This is the only place that decides what goes on the wire next. When the frame in flight is
//! finished (never before: nothing is ever emitted between a frame's header and the end of its
//! payload), the next frame is chosen in this order:
//!
//! 1. the PONG answering the latest PING, if one is owed;
//! 2. our PING (keepalive or application), if one is waiting;
//! 3. the next data frame: the next fragment of the message at the head of the data queue;
//! 4. our Close, once every data frame queued before it has been written.
//!
//! So control frames overtake data frames that are queued but not started, never the frame in
//! flight; they may land between two fragments of one message, which section 5.4 allows. One
//! fairness exception: right after a PING or PONG, one data frame (if any is waiting) goes
//! before the next control frame, so a peer that pings once per PONG cannot starve our data;
//! a PONG therefore waits behind at most one data frame (one fragment). A
//! PONG is never refused, dropped or delayed by the data budget: PINGs that arrive before the
//! PONG goes out are answered once, with the latest payload (section 5.5.3), so a flood costs
//! one 125-byte slot. After a Close is committed nothing else is, ever (section 5.5.1).
//!
//! When the connection is failed (protocol error), or closed with `close_now`, the data queue and pending control frames
//! are dropped and counted as unsent; the frame in flight is finished so the stream stays
//! parseable, then the Close goes out.
//!
//! Messages longer than `max_send_fragment` are cut into fragments as they reach the head of
//! the queue (the payload is sliced, not copied), so a PONG waits behind at most one fragment.
//!
//! A server's one-frame message sent while nothing at all is queued or in flight may be written
//! straight through (`Connection::send_prepared_through`) without entering the queue: it is
//! then exactly the frame this rule would commit next. Whatever of it the transport did not
//! take is committed here as the frame in flight, so replies wait behind it as behind any
//! other.
//!
//! # Storage
//!
//! The rule above is the whole contract; the storage is shaped for the common case of one
//! message sent into an idle queue and written at once. Such a message (one frame; in the
//! client role, at most `STAGING_BLOCK`) goes into a fast lane: queued there it is first in
//! data order, and committed while nothing else is on the wire it stays there, so it is stored
//! once and never moved. Otherwise a message queued into an empty queue waits in a slot of its
//! own, the rest in a `VecDeque`, and committed frames in another. The client role masks the lane's
//! message into a lane buffer when it is committed, and every other frame into a staging
//! buffer at commit, in commit order (so mask keys are drawn in wire order); frames refer to
//! their masked bytes by position, and both buffers are reused.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::error::Unsent;
use crate::frame::{encode_header, EncodedHeader, OpCode};
use crate::mask::copy_masked_uninit;
use crate::random::MaskKeys;

/// The client role stages masked payloads in a buffer of at least this size, so that one
/// allocation serves many frames (performance). The fast lane's buffer takes messages up to
/// this size, and keeps at most this much.
const STAGING_BLOCK: usize = 8 << 10;

/// What each queued message counts against the outbound budget on top of its payload: about
/// what its queue entry and header hold. Without it the budget would not bound the memory of
/// many tiny messages (a 1-byte message holds some 80 bytes), nor at all that of empty ones,
/// which count no payload bytes (the frame_parse fuzzer found an echo of 1-byte streamed chunks
/// holding 36 bytes per byte received).
pub(crate) const MESSAGE_CHARGE: usize = 64;

/// What a message of `len` payload bytes counts against the outbound budget.
#[inline]
pub(crate) fn charge(len: usize) -> usize {
    len.saturating_add(MESSAGE_CHARGE)
}

/// The staging buffer keeps a capacity up to this much when its last frame is written, for the
/// next frames; more is given back at once. `release_empty_storage(0)` frees it whatever its
/// size, so an idle connection keeps nothing. (Performance: one allocation and free per large
/// frame avoided, which glibc makes dear from 64 KiB up by consolidating its heap on the free.
/// Measured with 64 KiB masked sends: 2.96 -> 2.81 us per four. At 1 MiB no difference could
/// be measured, the masking itself taking 16 us, so larger buffers are not kept.)
const STAGING_KEEP: usize = 64 << 10;

/// A message encoded once and queued on any number of server connections without copying or
/// re-encoding: the header is computed here, the payload is shared.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    opcode: OpCode,
    header: EncodedHeader,
    payload: Bytes,
}

impl PreparedMessage {
    /// Prepares a binary message.
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Binary, payload.into())
    }

    /// Prepares a text message.
    pub fn text(text: impl Into<crate::Text>) -> Self {
        Self::new(OpCode::Text, text.into().into_bytes())
    }

    fn new(opcode: OpCode, payload: Bytes) -> Self {
        PreparedMessage {
            opcode,
            header: encode_header(true, opcode, None, payload.len() as u64),
            payload,
        }
    }

    /// The payload's length.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// What a frame on the wire is, for the bookkeeping done when it has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A data frame carrying `payload` budget bytes; `last` ends its message.
    Data {
        last: bool,
    },
    Ping,
    Pong,
    Close,
}

/// Where a committed frame's payload lives.
#[derive(Debug)]
enum WirePayload {
    /// The caller's bytes, handed out without a copy (server role).
    Shared(Bytes),
    /// The masked copy at `start..start + len` of the staging buffer (client role).
    Staged { start: usize, len: usize },
}

#[derive(Debug)]
struct WireFrame {
    header: EncodedHeader,
    payload: WirePayload,
    kind: FrameKind,
}

impl WireFrame {
    #[inline]
    fn payload_len(&self) -> usize {
        match &self.payload {
            WirePayload::Shared(bytes) => bytes.len(),
            WirePayload::Staged { len, .. } => *len,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.header.as_slice().len() + self.payload_len()
    }

    #[inline]
    fn payload<'a>(&'a self, staging: &'a [u8]) -> &'a [u8] {
        match &self.payload {
            WirePayload::Shared(bytes) => bytes,
            WirePayload::Staged { start, len } => &staging[*start..*start + *len],
        }
    }
}

/// The fast lane's payload.
#[derive(Debug)]
enum LanePayload {
    /// The caller's bytes (server role).
    Shared(Bytes),
    /// The masked copy: the first this many bytes of `lane_buf` (client role).
    Masked(usize),
}

impl LanePayload {
    #[inline]
    fn len(&self) -> usize {
        match self {
            LanePayload::Shared(bytes) => bytes.len(),
            LanePayload::Masked(len) => *len,
        }
    }

    #[inline]
    fn as_slice<'a>(&'a self, lane_buf: &'a [u8]) -> &'a [u8] {
        match self {
            LanePayload::Shared(bytes) => bytes,
            LanePayload::Masked(len) => &lane_buf[..*len],
        }
    }
}

#[derive(Debug)]
struct QueuedMessage {
    opcode: OpCode,
    payload: Bytes,
    /// Bytes of `payload` already cut into frames.
    cut: usize,
    /// A header computed once for the whole message (prepared messages), usable when the
    /// message goes out as one unmasked frame.
    header: Option<EncodedHeader>,
}

/// The rest of the frame in flight, as two slices the IO layer writes in order (vectored or
/// not). Hand the count written back with `advance_transmit`.
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    /// What is left of the header (empty once it has been written).
    pub header: &'a [u8],
    /// What is left of the payload.
    pub payload: &'a [u8],
    /// True when none of this frame has been written yet: the moment an IO layer arms a fresh
    /// write deadline.
    pub starts_frame: bool,
}

impl Transmit<'_> {
    /// Bytes left in this frame.
    pub fn len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// True when nothing is left (never returned by the engine).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `advance` found finished, for the connection's bookkeeping.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    pub frames: usize,
    pub pings: usize,
    pub close: bool,
    pub messages: usize,
}

// The two queues (committed frames, data messages) each keep their first element in a slot of
// its own and only the rest in a `VecDeque` (performance: the common "send one message into an
// idle queue, write it" cycle never touches a `VecDeque`, which costs a capacity check, index
// wrapping and a 64-byte copy per push and per pop).
#[derive(Debug)]
// `repr(C)`, the fields one send touches first (performance: a fan-out loop over many
// connections touches few cache lines of each).
#[repr(C)]
pub(crate) struct Outbound {
    /// Fast lane: a message that goes out as one frame, queued when no other message was.
    /// While queued it is first in data order (before `next`); committed into an idle wire it
    /// stays here (`lane_committed`) as the first frame on the wire, before `wire`, its
    /// payload masked into `lane_buf` in the client role (performance: a message is stored
    /// once and never moved between queue, wire and stack).
    lane: Option<LanePayload>,
    lane_header: EncodedHeader,
    /// The lane's payload length (performance: no match on the payload to account for it).
    lane_payload_len: usize,
    /// Bytes of the first committed frame (the committed lane's, else `wire[0]`) already
    /// written.
    wire_offset: usize,
    /// Data payload bytes queued and not yet written (pending and on the wire).
    queued_bytes: usize,
    /// Messages queued and not yet fully written.
    queued_messages: usize,
    budget: usize,
    low_water: usize,
    max_fragment: usize,
    lane_opcode: OpCode,
    lane_committed: bool,
    /// Client role (`keys` is set), as a flag next to the others.
    masking: bool,
    /// `pong` or `ping` is set (performance: one test on the data path instead of two).
    control_pending: bool,
    /// A Close was asked for (`set_close` or `abandon_with_close`): no data may follow.
    closed: bool,
    close_committed: bool,
    /// The last frame committed was a PING or PONG (see the fairness rule).
    last_was_control: bool,
    refused_since_drain: bool,
    /// The oldest queued message (after the lane's) when it was queued into an empty queue
    /// or is being cut into fragments; else the oldest is the front of `data`. Older than
    /// everything in `data` (performance: a message into an empty queue and out again without
    /// a `VecDeque` round trip, and no refilling the slot from `data`).
    next: Option<QueuedMessage>,
    /// Frames committed (behind the lane's, when it is committed), in order; only the first
    /// committed frame may be partly written. `transmit_chunks` commits several.
    wire: VecDeque<WireFrame>,
    /// Messages queued behind `next`.
    data: VecDeque<QueuedMessage>,
    pong: Option<Bytes>,
    ping: Option<Bytes>,
    close: Option<Bytes>,
    /// Client role: the lane's masked payload. Kept for reuse, up to one staging block.
    lane_buf: Vec<u8>,
    /// Client role: the masked payloads of the committed frames, in commit order (frames are
    /// written in that order, so what precedes the first one's payload is dead). Emptied
    /// whenever the last committed frame is written, so it is reused without allocating;
    /// empty in the server role.
    staging: Vec<u8>,
    /// Client role: where mask keys come from.
    keys: Option<MaskKeys>,
}

impl Outbound {
    pub(crate) fn new(
        budget: usize,
        low_water: usize,
        max_fragment: usize,
        masking: Option<MaskKeys>,
    ) -> Self {
        Outbound {
            wire: VecDeque::new(),
            wire_offset: 0,
            pong: None,
            ping: None,
            control_pending: false,
            closed: false,
            lane: None,
            lane_header: encode_header(true, OpCode::Binary, None, 0),
            lane_opcode: OpCode::Binary,
            lane_payload_len: 0,
            lane_committed: false,
            lane_buf: Vec::new(),
            next: None,
            data: VecDeque::new(),
            close: None,
            close_committed: false,
            last_was_control: false,
            queued_bytes: 0,
            queued_messages: 0,
            budget,
            low_water,
            refused_since_drain: false,
            max_fragment: max_fragment.max(1),
            masking: masking.is_some(),
            keys: masking,
            staging: Vec::new(),
        }
    }

    /// Frees the storage of the empty queues and of the client's masking buffers while
    /// nothing is committed, where it holds more than `keep` bytes (see
    /// `Connection::release_empty_storage`).
    pub(crate) fn release_empty_storage(&mut self, keep: usize) {
        let nothing_committed = self.wire.is_empty() && !self.lane_committed;
        if nothing_committed && self.wire.capacity() * size_of::<WireFrame>() > keep {
            self.wire = VecDeque::new();
        }
        if self.data.is_empty() && self.data.capacity() * size_of::<QueuedMessage>() > keep {
            self.data = VecDeque::new();
        }
        if self.lane.is_none() && !self.lane_committed && self.lane_buf.capacity() > keep {
            self.lane_buf = Vec::new();
        }
        if nothing_committed && self.staging.is_empty() && self.staging.capacity() > keep {
            self.staging = Vec::new();
        }
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// What the queued data counts against the budget: its payload bytes, and
    /// [`MESSAGE_CHARGE`] for each message.
    #[inline]
    pub(crate) fn charged(&self) -> usize {
        self.queued_bytes + self.queued_messages * MESSAGE_CHARGE
    }

    /// Checks the budget for a message of `len` more bytes; `true` means it fits.
    #[inline]
    pub(crate) fn has_room(&mut self, len: usize) -> bool {
        // An empty queue takes any one message, so a message larger than the budget is not
        // refused forever; it still cannot pile up behind others.
        let fits =
            self.queued_messages == 0 || self.charged().saturating_add(charge(len)) <= self.budget;
        if !fits {
            self.refused_since_drain = true;
        }
        fits
    }

    // Always inlined (performance): once per message sent, the lane's path is a few stores.
    #[inline(always)]
    pub(crate) fn push_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        header: Option<EncodedHeader>,
    ) {
        let len = payload.len();
        self.queued_bytes += len;
        self.queued_messages += 1;
        // Client role: up to a block, so the lane buffer never holds more (a larger message
        // goes the ordinary way, through the staging buffer, which gives it back).
        if self.lane.is_none()
            && self.next.is_none()
            && self.data.is_empty()
            && len <= self.max_fragment
            && (!self.masking || len <= STAGING_BLOCK)
        {
            // Server role: the header now (its final form). Client role: encoded again at
            // commit, with the next mask key (keys are drawn in wire order).
            self.lane_header =
                header.unwrap_or_else(|| encode_header(true, opcode, None, len as u64));
            self.lane_opcode = opcode;
            self.lane_payload_len = len;
            self.lane = Some(LanePayload::Shared(payload));
            return;
        }
        let message = QueuedMessage {
            opcode,
            payload,
            cut: 0,
            header,
        };
        if self.next.is_none() && self.data.is_empty() {
            self.next = Some(message);
        } else {
            self.data.push_back(message);
        }
    }

    /// Client role, committing the lane in place: masks its payload with the next key into
    /// the lane buffer.
    #[inline]
    fn mask_lane(&mut self) {
        let (Some(keys), Some(LanePayload::Shared(payload))) = (&mut self.keys, &self.lane) else {
            return;
        };
        let key = keys.next_key();
        let len = payload.len();
        // The payload may be shared (fan-out, the caller's own copy): masked into the lane
        // buffer in one fused copy-and-mask pass. Exact, so the buffer never grows past the
        // largest lane message (at most a block).
        self.lane_buf.clear();
        self.lane_buf.reserve_exact(len);
        copy_masked_uninit(&mut self.lane_buf.spare_capacity_mut()[..len], payload, key);
        // SAFETY: the first `len` bytes were just written by `copy_masked_uninit`.
        unsafe { self.lane_buf.set_len(len) };
        // Encoded whole, in registers, and stored once (performance: setting the mask bit
        // and appending the key to the stored unmasked header, byte stores into a header
        // that is then loaded back in words, stalled on store forwarding: 16-byte client
        // sends took 21 ns, now 14).
        self.lane_header = encode_header(true, self.lane_opcode, Some(key), len as u64);
        self.lane = Some(LanePayload::Masked(len));
    }

    /// Owes a PONG with this payload, replacing any PONG not yet started (section 5.5.3).
    pub(crate) fn set_pong(&mut self, payload: Bytes) {
        if !self.close_committed {
            self.pong = Some(payload);
            self.control_pending = true;
        }
    }

    /// Queues a PING, replacing one not yet started.
    pub(crate) fn set_ping(&mut self, payload: Bytes) {
        if !self.close_committed {
            self.ping = Some(payload);
            self.control_pending = true;
        }
    }

    /// Queues our Close after all data queued so far.
    pub(crate) fn set_close(&mut self, body: Bytes) {
        self.closed = true;
        if !self.close_committed && self.close.is_none() {
            self.close = Some(body);
        }
    }

    /// Abandons the queue (a failed connection, or `close_now`): drops everything not yet
    /// started (reported as unsent), keeps the frame in flight so the byte stream stays
    /// parseable, then queues `body` as the last frame.
    pub(crate) fn abandon_with_close(&mut self, body: Bytes) -> Unsent {
        let dropped = self.drop_unstarted();
        self.closed = true;
        self.close = None;
        if !self.close_committed {
            self.close = Some(body);
        }
        dropped
    }

    /// Drops every frame not yet started and returns what was lost. Each message is counted
    /// once, by whichever part holds its last fragment.
    fn drop_unstarted(&mut self) -> Unsent {
        let mut lost = Unsent::default();
        // The first committed frame (the lane's, else the front of `wire`) is kept if started.
        let keep = usize::from(self.wire_offset > 0 && !self.lane_committed);
        while self.wire.len() > keep {
            let frame = self.wire.pop_back().expect("len checked");
            self.forget(frame, &mut lost);
        }
        if self.lane.is_some() && !(self.lane_committed && self.wire_offset > 0) {
            let payload = self.lane.take().expect("checked");
            self.lane_committed = false;
            self.queued_bytes -= payload.len();
            self.queued_messages -= 1;
            lost.bytes += payload.len();
            lost.messages += 1;
        }
        if self.wire.is_empty() {
            self.release_staging();
        }
        self.pong = None;
        self.ping = None;
        self.control_pending = false;
        for m in self.next.take().into_iter().chain(self.data.drain(..)) {
            let left = m.payload.len() - m.cut;
            self.queued_bytes -= left;
            self.queued_messages -= 1;
            lost.bytes += left;
            lost.messages += 1;
        }
        lost
    }

    /// Uncommits the last committed frame (`drop_unstarted`, newest first).
    fn forget(&mut self, frame: WireFrame, lost: &mut Unsent) {
        if let WirePayload::Staged { start, .. } = frame.payload {
            // Newest first, so its masked copy is the end of the staging buffer.
            self.staging.truncate(start);
        }
        match frame.kind {
            FrameKind::Data { last } => {
                let len = frame.payload_len();
                self.queued_bytes -= len;
                lost.bytes += len;
                if last {
                    self.queued_messages -= 1;
                    lost.messages += 1;
                }
            }
            FrameKind::Close => self.close_committed = false,
            FrameKind::Ping | FrameKind::Pong => {}
        }
    }

    /// What is queued and not yet completely written.
    pub(crate) fn unsent_now(&self) -> Unsent {
        Unsent {
            messages: self.queued_messages,
            bytes: self.queued_bytes,
        }
    }

    /// True once a Close was asked for: the connection takes no more data.
    #[inline]
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    /// True when a message of `len` bytes may be written straight through instead of queued
    /// (see the module docs): nothing queued or in flight, one frame, no masking (a client
    /// masks into its own buffer anyway).
    #[inline]
    pub(crate) fn can_write_through(&self, len: usize) -> bool {
        !self.masking && len <= self.max_fragment && self.is_idle()
    }

    /// Queues a message whose write straight through was cut short, committed as the frame in
    /// flight: the caller then `advance`s it by what was written, as any frame partly written.
    pub(crate) fn commit_written_through(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        header: EncodedHeader,
    ) {
        debug_assert!(self.can_write_through(payload.len()));
        self.push_data(opcode, payload, Some(header));
        let committed = self.commit_next();
        debug_assert!(committed && self.lane_committed);
    }

    /// True when nothing is queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.lane.is_none()
            && self.wire.is_empty()
            && self.pong.is_none()
            && self.ping.is_none()
            && self.next.is_none()
            && self.data.is_empty()
            && self.close.is_none()
    }

    /// Commits the next frame by the ordering rule (see the module docs): the fast lane's
    /// message in place when nothing else is committed, any other frame into `wire`.
    /// False when there is nothing to commit.
    #[inline]
    fn commit_next(&mut self) -> bool {
        // The lane's message is waiting, so a control frame goes first unless fairness gives
        // this turn to data (as in `next_frame`); a committed Close ends everything.
        if self.lane.is_some()
            && !self.lane_committed
            && self.wire.is_empty()
            && (!self.control_pending || self.last_was_control)
            && !self.close_committed
        {
            self.last_was_control = false;
            self.lane_committed = true;
            if self.masking {
                self.mask_lane();
            }
            return true;
        }
        let Some(frame) = self.next_frame() else {
            return false;
        };
        self.wire.push_back(frame);
        true
    }

    /// True when a data frame is waiting to be committed.
    #[inline]
    fn data_waiting(&self) -> bool {
        (self.lane.is_some() && !self.lane_committed)
            || self.next.is_some()
            || !self.data.is_empty()
    }

    /// Chooses the next frame by the ordering rule (see the module docs), taking a queued
    /// lane message out of the lane (`commit_next` commits it in place when it can).
    #[inline]
    fn next_frame(&mut self) -> Option<WireFrame> {
        if self.close_committed {
            return None;
        }
        // Fairness: after a control frame, one data frame goes before the next control frame,
        // so a peer pinging once per PONG cannot starve our data.
        if self.control_pending && (!self.last_was_control || !self.data_waiting()) {
            self.last_was_control = true;
            if let Some(payload) = self.pong.take() {
                self.control_pending = self.ping.is_some();
                return Some(self.encode(true, OpCode::Pong, payload, FrameKind::Pong));
            }
            if let Some(payload) = self.ping.take() {
                self.control_pending = false;
                return Some(self.encode(true, OpCode::Ping, payload, FrameKind::Ping));
            }
            unreachable!("control_pending with neither PONG nor PING");
        }
        self.last_was_control = false;
        if !self.lane_committed {
            if let Some(lane) = self.lane.take() {
                let LanePayload::Shared(payload) = lane else {
                    unreachable!("the lane is masked only when committed");
                };
                // An ordinary whole frame.
                let kind = FrameKind::Data { last: true };
                return Some(if self.keys.is_none() {
                    WireFrame {
                        header: self.lane_header,
                        payload: WirePayload::Shared(payload),
                        kind,
                    }
                } else {
                    self.encode(true, self.lane_opcode, payload, kind)
                });
            }
        }
        let Some(mut message) = self.next.take().or_else(|| self.data.pop_front()) else {
            let body = self.close.take()?;
            self.close_committed = true;
            return Some(self.encode(true, OpCode::Close, body, FrameKind::Close));
        };
        let total = message.payload.len();
        if message.cut == 0 && total <= self.max_fragment {
            // A whole message in one frame, the common case: the payload moves on as it is.
            let kind = FrameKind::Data { last: true };
            return Some(match (message.header, &self.keys) {
                (Some(header), None) => WireFrame {
                    header,
                    payload: WirePayload::Shared(message.payload),
                    kind,
                },
                _ => self.encode(true, message.opcode, message.payload, kind),
            });
        }
        // Fragments are sliced (not copied) as they reach the head of the queue. A whole
        // message never gets here, so a prepared header never applies.
        let start = message.cut;
        let end = total.min(start.saturating_add(self.max_fragment));
        let last = end == total;
        let opcode = if start == 0 {
            message.opcode
        } else {
            OpCode::Continuation
        };
        let payload = message.payload.slice(start..end);
        message.cut = end;
        if !last {
            // Still the oldest message: back into the slot ahead of `data`.
            self.next = Some(message);
        }
        Some(self.encode(last, opcode, payload, FrameKind::Data { last }))
    }

    #[inline(always)]
    fn encode(&mut self, fin: bool, opcode: OpCode, payload: Bytes, kind: FrameKind) -> WireFrame {
        let Some(keys) = &mut self.keys else {
            return WireFrame {
                header: encode_header(fin, opcode, None, payload.len() as u64),
                payload: WirePayload::Shared(payload),
                kind,
            };
        };
        let key = keys.next_key();
        // The payload may be shared (fan-out, the caller's own copy), so the masked bytes go
        // into the connection's staging buffer, in one fused copy-and-mask pass into its spare
        // capacity (performance: not a memcpy and then an in-place XOR). Frames refer to their
        // bytes by position (performance: no `BytesMut::split` and reference count per frame).
        let len = payload.len();
        if self.staging.capacity() - self.staging.len() < len {
            make_room(&mut self.staging, &mut self.wire, len);
        }
        let start = self.staging.len();
        copy_masked_uninit(&mut self.staging.spare_capacity_mut()[..len], &payload, key);
        // SAFETY: the `len` spare bytes after `start` were just written by
        // `copy_masked_uninit`.
        unsafe { self.staging.set_len(start + len) };
        WireFrame {
            header: encode_header(fin, opcode, Some(key), len as u64),
            payload: WirePayload::Staged { start, len },
            kind,
        }
    }

    /// The length of the lane's frame if it is committed, else 0.
    #[inline]
    fn lane_len(&self) -> usize {
        if self.lane_committed {
            self.lane_header.as_slice().len() + self.lane_payload_len
        } else {
            0
        }
    }

    /// Empties the staging buffer once no committed frame refers to it, and gives back a
    /// capacity that only a very large frame needed (see `STAGING_KEEP`).
    #[inline]
    fn release_staging(&mut self) {
        self.staging.clear();
        if self.staging.capacity() > STAGING_KEEP {
            self.staging = Vec::new();
        }
    }

    /// The rest of the frame in flight, committing the next frame if none is.
    #[inline]
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if !self.lane_committed && self.wire.is_empty() && !self.commit_next() {
            return None;
        }
        let (header, payload): (&[u8], &[u8]) = if self.lane_committed {
            let Some(payload) = &self.lane else {
                unreachable!("a committed lane holds its message");
            };
            (
                self.lane_header.as_slice(),
                payload.as_slice(&self.lane_buf),
            )
        } else {
            let Some(frame) = self.wire.front() else {
                unreachable!("a frame was just committed");
            };
            (frame.header.as_slice(), frame.payload(&self.staging))
        };
        let offset = self.wire_offset;
        Some(if offset < header.len() {
            Transmit {
                header: &header[offset..],
                payload,
                starts_frame: offset == 0,
            }
        } else {
            Transmit {
                header: &[],
                payload: &payload[offset - header.len()..],
                starts_frame: false,
            }
        })
    }

    /// Commits frames for one vectored write of at most `slots` slices: while there is room
    /// for a frame's two slices, and only up to about `max_bytes` (frames committed here can
    /// no longer be overtaken by a PONG).
    fn commit_for_write(&mut self, slots: usize, max_bytes: usize) {
        let mut committed = usize::from(self.lane_committed) + self.wire.len();
        let mut gathered: usize = self.lane_len()
            + self.wire.iter().map(WireFrame::len).sum::<usize>()
            - self.wire_offset;
        while (committed + 1) * 2 <= slots && gathered < max_bytes {
            if !self.commit_next() {
                break;
            }
            committed += 1;
            // The frame just committed is the last one on the wire.
            gathered += match self.wire.back() {
                Some(frame) => frame.len(),
                None => self.lane_len(),
            };
        }
    }

    /// The fast lane's message is all there is to write: nothing else queued, pending or
    /// committed, so it is the next frame by the ordering rule and nothing can be gathered
    /// with it.
    #[inline]
    pub(crate) fn lane_alone(&self) -> bool {
        self.lane.is_some()
            && self.wire.is_empty()
            && !self.control_pending
            && self.next.is_none()
            && self.data.is_empty()
            && self.close.is_none()
            && !self.close_committed
    }

    /// Fills `out` with slices of whole frames (the first possibly partly written), committing
    /// frames until `out` is full or about `max_bytes` are gathered. Returns the slices used.
    pub(crate) fn transmit_chunks<'a>(
        &'a mut self,
        out: &mut [&'a [u8]],
        max_bytes: usize,
    ) -> usize {
        // The common case (performance): the fast lane's message is all there is, with
        // nothing else queued or pending, so nothing else can be committed: commit it (if it
        // is not yet) and skip the walk below. The slices come from the same code either way.
        let lane_alone = self.lane_alone();
        if !(lane_alone && out.len() >= 2 && (self.lane_committed || self.commit_next())) {
            self.commit_for_write(out.len(), max_bytes);
        }
        let this: &'a Self = self;
        let mut used = 0;
        let mut skip = this.wire_offset;
        // Adds one part, minus what was already written; false once `out` is full.
        let mut add = |part: &'a [u8]| -> bool {
            if skip >= part.len() {
                skip -= part.len();
                return true;
            }
            if used == out.len() {
                return false;
            }
            out[used] = &part[skip..];
            skip = 0;
            used += 1;
            true
        };
        if let (Some(payload), true) = (&this.lane, this.lane_committed) {
            if !add(this.lane_header.as_slice()) || !add(payload.as_slice(&this.lane_buf)) {
                return used;
            }
        }
        for frame in this.wire.iter() {
            if !add(frame.header.as_slice()) || !add(frame.payload(&this.staging)) {
                break;
            }
        }
        used
    }

    /// Records that `n` bytes of the committed frames were written.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) -> Written {
        // The lane's frame written to its end and nothing more, the common case, here; the
        // rest out of line (performance: this stays small enough to inline into callers).
        if self.lane_committed && n == self.lane_len() - self.wire_offset {
            self.retire_lane();
            return Written {
                frames: 1,
                messages: 1,
                ..Written::default()
            };
        }
        self.advance_frames(n)
    }

    /// The committed lane's frame was written to its end: the message is done.
    #[inline(always)]
    fn retire_lane(&mut self) {
        self.wire_offset = 0;
        self.queued_bytes -= self.lane_payload_len;
        self.queued_messages -= 1;
        self.lane = None;
        self.lane_committed = false;
    }

    #[inline(never)]
    fn advance_frames(&mut self, mut n: usize) -> Written {
        let mut done = Written::default();
        while n > 0 {
            // The first committed frame: the lane's when it is committed, else `wire[0]`.
            let len = match (self.lane_committed, self.wire.front()) {
                (true, _) => self.lane_len(),
                (false, Some(front)) => front.len(),
                (false, None) => {
                    panic!("advance_transmit: {n} more bytes reported written than were handed out")
                }
            };
            let left = len - self.wire_offset;
            if n < left {
                self.wire_offset += n;
                break;
            }
            n -= left;
            done.frames += 1;
            if self.lane_committed {
                self.retire_lane();
                done.messages += 1;
                continue;
            }
            self.wire_offset = 0;
            let front = self.wire.pop_front().expect("checked above");
            // The common kind first (performance: a compare, not a jump table).
            if front.kind == (FrameKind::Data { last: true }) {
                self.queued_bytes -= front.payload_len();
                self.queued_messages -= 1;
                done.messages += 1;
            } else {
                match front.kind {
                    FrameKind::Data { last } => {
                        self.queued_bytes -= front.payload_len();
                        if last {
                            self.queued_messages -= 1;
                            done.messages += 1;
                        }
                    }
                    FrameKind::Ping => done.pings += 1,
                    FrameKind::Pong => {}
                    FrameKind::Close => done.close = true,
                }
            }
            if self.wire.is_empty() && !self.staging.is_empty() {
                self.release_staging();
            }
        }
        done
    }

    /// True once our Close has been handed to the IO layer (nothing may follow it).
    pub(crate) fn close_committed(&self) -> bool {
        self.close_committed
    }

    /// True once after a refused send when the queue has drained to the low-water mark.
    #[inline]
    pub(crate) fn take_writable(&mut self) -> bool {
        if self.refused_since_drain && self.charged() <= self.low_water {
            self.refused_since_drain = false;
            true
        } else {
            false
        }
    }
}

/// Makes room for `len` more bytes in the staging buffer: first by dropping the bytes before
/// the first committed frame's payload (written already; frames are written in commit
/// order), moving the live payloads down, then by growing. Out of line: it runs about once per
/// block of frames.
#[cold]
#[inline(never)]
fn make_room(staging: &mut Vec<u8>, wire: &mut VecDeque<WireFrame>, len: usize) {
    let live = match wire.front() {
        Some(WireFrame {
            payload: WirePayload::Staged { start, .. },
            ..
        }) => *start,
        _ => staging.len(),
    };
    if live > 0 {
        staging.drain(..live);
        for frame in wire.iter_mut() {
            if let WirePayload::Staged { start, .. } = &mut frame.payload {
                *start -= live;
            }
        }
    }
    // A block at least, so that small frames share one allocation.
    let want = (staging.len() + len).max(STAGING_BLOCK);
    staging.reserve(want - staging.len());
}

impl PreparedMessage {
    pub(crate) fn parts(&self) -> (OpCode, EncodedHeader, &Bytes) {
        (self.opcode, self.header, &self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parses a byte stream, masked (client) or not: (opcode, fin, unmasked payload) per frame.
    fn parse(mut wire: &[u8], masked: bool) -> Vec<(u8, bool, Vec<u8>)> {
        let mut frames = Vec::new();
        while !wire.is_empty() {
            let fin = wire[0] & 0x80 != 0;
            let opcode = wire[0] & 0x0f;
            assert_eq!(
                wire[1] & 0x80 != 0,
                masked,
                "client frames are masked, no others"
            );
            let (len, mut at) = match wire[1] & 0x7f {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            let mut key = [0; 4];
            if masked {
                key.copy_from_slice(&wire[at..at + 4]);
                at += 4;
            }
            let payload = wire[at..at + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            frames.push((opcode, fin, payload));
            wire = &wire[at + len..];
        }
        frames
    }

    fn server() -> Outbound {
        Outbound::new(1 << 20, 0, 1 << 10, None)
    }

    /// Writes the frame in flight whole; returns its bytes.
    fn write_frame(out: &mut Outbound) -> Vec<u8> {
        let t = out.poll_transmit().expect("a frame");
        let all = [t.header, t.payload].concat();
        out.advance(all.len());
        all
    }

    /// The fast lane keeps the ordering rule: a PONG overtakes a lane message not yet
    /// started, a Close waits for it, and abandoning drops it unless it is started.
    #[test]
    fn fast_lane_keeps_the_ordering_rule() {
        let mut out = server();
        out.push_data(OpCode::Binary, Bytes::from_static(b"data"), None);
        out.set_pong(Bytes::from_static(b"p"));
        out.set_close(Bytes::from_static(&[3, 232]));
        assert_eq!(write_frame(&mut out), b"\x8a\x01p");
        assert_eq!(write_frame(&mut out), b"\x82\x04data");
        assert_eq!(write_frame(&mut out), b"\x88\x02\x03\xe8");
        assert!(out.poll_transmit().is_none() && out.is_idle());

        // Committed in place but not started: dropped and counted.
        let mut out = server();
        out.push_data(OpCode::Text, Bytes::from_static(b"hi"), None);
        assert!(out.poll_transmit().unwrap().starts_frame);
        let lost = out.abandon_with_close(Bytes::from_static(&[3, 232]));
        assert_eq!((lost.messages, lost.bytes), (1, 2));
        assert_eq!(write_frame(&mut out), b"\x88\x02\x03\xe8");
        assert_eq!(out.unsent_now(), Unsent::default());

        // Started: finished before the Close, and the message queued behind it is dropped.
        let mut out = server();
        out.push_data(OpCode::Text, Bytes::from_static(b"hi"), None);
        out.push_data(OpCode::Text, Bytes::from_static(b"later"), None);
        assert_eq!(out.poll_transmit().unwrap().len(), 4);
        out.advance(1);
        let lost = out.abandon_with_close(Bytes::from_static(&[3, 232]));
        assert_eq!((lost.messages, lost.bytes), (1, 5));
        assert_eq!(write_frame(&mut out), b"\x02hi");
        assert_eq!(write_frame(&mut out), b"\x88\x02\x03\xe8");
        assert!(out.is_idle());
        assert_eq!(out.unsent_now(), Unsent::default());
    }

    /// The client's staging buffer keeps a capacity up to `STAGING_KEEP` from one large frame
    /// to the next (the second frame is masked into the same allocation), gives a larger one
    /// back once its frame is written, and `release_empty_storage` frees it.
    #[test]
    fn staging_keeps_up_to_a_limit_and_is_freed_when_idle() {
        let mut n = 0u8;
        let keys = MaskKeys::new(Box::new(move |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_add(1);
                *b = n;
            }
        }));
        let mut out = Outbound::new(1 << 30, 0, 1 << 30, Some(keys));
        let sent = |out: &mut Outbound, len: usize| {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            out.push_data(OpCode::Binary, Bytes::from(payload.clone()), None);
            let frame = write_frame(out);
            assert_eq!(parse(&frame, true), [(2, true, payload)]);
        };
        sent(&mut out, STAGING_KEEP);
        let (ptr, capacity) = (out.staging.as_ptr(), out.staging.capacity());
        assert!(capacity <= STAGING_KEEP, "{capacity}");
        sent(&mut out, STAGING_KEEP - 1000);
        assert_eq!(
            (out.staging.as_ptr(), out.staging.capacity()),
            (ptr, capacity)
        );
        out.release_empty_storage(0);
        assert_eq!(out.staging.capacity(), 0);

        sent(&mut out, STAGING_KEEP + 1);
        assert_eq!(
            out.staging.capacity(),
            0,
            "more than STAGING_KEEP is not kept"
        );
    }

    /// Random sends, control frames, vectored and partial writes and abandonment, in both
    /// roles: every frame arrives whole and in order, payloads intact, and a lane said to be
    /// alone is all there is to write. Client: the staging buffer is compacted and grown while
    /// frames are committed. Server: the fast lane is committed in place or taken out behind
    /// other frames.
    #[test]
    fn frames_survive_partial_and_vectored_writes() {
        for seed in 1..300u64 {
            let masked = seed % 2 == 1;
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut key_rng = Rng(seed);
            let keys = MaskKeys::new(Box::new(move |buf: &mut [u8]| {
                for b in buf {
                    *b = key_rng.next() as u8;
                }
            }));
            let max_fragment = 1 + rng.below(6000);
            let mut out = Outbound::new(1 << 30, 0, max_fragment, masked.then_some(keys));
            let mut sent: Vec<Vec<u8>> = Vec::new();
            let mut wire = Vec::new();
            let mut lost = None;
            // How much more often than the rest writes come: from a backlog to an idle queue.
            let write_bias = rng.below(4);
            for _ in 0..300 {
                let op = rng.below(10 + 6 * write_bias);
                let op = if op >= 10 { 6 + op % 3 } else { op };
                match op {
                    0..=3 if lost.is_none() => {
                        let len = [0, 1, 16, 125, 126, 1000, 5000, 9000][rng.below(8)];
                        let id = sent.len() as u8;
                        let payload: Vec<u8> =
                            (0..len).map(|i| id ^ (i as u8).wrapping_mul(7)).collect();
                        let header = (rng.below(2) == 0 && len <= max_fragment)
                            .then(|| encode_header(true, OpCode::Binary, None, len as u64));
                        out.push_data(OpCode::Binary, Bytes::from(payload.clone()), header);
                        sent.push(payload);
                    }
                    4 => out.set_pong(Bytes::from_static(b"pong")),
                    5 => out.set_ping(Bytes::from_static(b"ping")),
                    6..=8 => {
                        // What is handed out, through either API; then all of it, none of it
                        // or a part is written.
                        let alone = out.lane_alone();
                        let all: Vec<u8> = if op == 8 {
                            let Some(t) = out.poll_transmit() else {
                                continue;
                            };
                            [t.header, t.payload].concat()
                        } else {
                            let mut slices: Vec<&[u8]> = vec![&[]; 2 + rng.below(8)];
                            let max_bytes = 1 + rng.below(20000);
                            let used = out.transmit_chunks(&mut slices, max_bytes);
                            slices[..used].concat()
                        };
                        let n = match rng.below(3) {
                            0 => all.len(),
                            1 => 0,
                            _ => rng.below(all.len() + 1),
                        };
                        wire.extend_from_slice(&all[..n]);
                        out.advance(n);
                        // `lane_alone` lets the adapters write the one frame `poll_transmit`
                        // hands out instead of gathering: it must be all there was.
                        if alone && n == all.len() {
                            assert!(out.is_idle(), "seed {seed}: more than the lone frame");
                        }
                    }
                    _ if lost.is_none() && rng.below(20) == 0 => {
                        lost = Some(out.abandon_with_close(Bytes::from_static(&[3, 232])));
                        // Only a frame already started stays committed.
                        let committed = usize::from(out.lane_committed) + out.wire.len();
                        assert_eq!(committed, usize::from(out.wire_offset > 0), "seed {seed}");
                        assert!(out.lane_committed || out.lane.is_none());
                        assert!(out.next.is_none() && out.data.is_empty());
                    }
                    // Freeing idle storage (as the adapters do before they sleep) at any point
                    // must not change a byte of what goes out.
                    _ => out.release_empty_storage(0),
                }
            }
            while let Some(t) = out.poll_transmit() {
                let all = [t.header, t.payload].concat();
                wire.extend_from_slice(&all);
                out.advance(all.len());
            }
            assert!(out.is_idle() && out.staging.is_empty());
            assert_eq!(out.unsent_now(), Unsent::default());

            let mut messages = Vec::new();
            let mut partial: Option<Vec<u8>> = None;
            let mut closed = false;
            for (opcode, fin, payload) in parse(&wire, masked) {
                assert!(!closed, "nothing after the Close");
                match opcode {
                    0 | 2 => {
                        assert_eq!(opcode == 0, partial.is_some(), "seed {seed}");
                        let mut m = partial.take().unwrap_or_default();
                        m.extend_from_slice(&payload);
                        if fin {
                            messages.push(m);
                        } else {
                            partial = Some(m);
                        }
                    }
                    8 => closed = true,
                    9 => assert_eq!(payload, b"ping"),
                    10 => assert_eq!(payload, b"pong"),
                    _ => panic!("opcode {opcode}"),
                }
            }
            match lost {
                None => assert!(partial.is_none() && !closed, "seed {seed}"),
                Some(lost) => {
                    assert!(closed);
                    assert_eq!(messages.len() + lost.messages, sent.len(), "seed {seed}");
                }
            }
            assert_eq!(messages[..], sent[..messages.len()], "seed {seed}");
        }
    }
}
