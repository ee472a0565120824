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

use alloc::collections::VecDeque;
use bytes::{Bytes, BytesMut};

use crate::error::Unsent;
use crate::frame::{encode_header, EncodedHeader, OpCode};
use crate::mask::copy_masked_uninit;
use crate::random::MaskKeys;

/// The client role masks small frames into blocks of this size, split per frame, so that an
/// allocation serves many frames (performance). At most one block is held beyond what is
/// queued.
const STAGING_BLOCK: usize = 8 << 10;

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

#[derive(Debug)]
struct WireFrame {
    header: EncodedHeader,
    payload: Bytes,
    kind: FrameKind,
}

impl WireFrame {
    fn len(&self) -> usize {
        self.header.as_slice().len() + self.payload.len()
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

#[derive(Debug)]
pub(crate) struct Outbound {
    /// Frames committed to the wire, in order. Only the first may be partly written.
    wire: VecDeque<WireFrame>,
    /// Bytes of `wire[0]` already written.
    wire_offset: usize,
    pong: Option<Bytes>,
    ping: Option<Bytes>,
    data: VecDeque<QueuedMessage>,
    close: Option<Bytes>,
    close_committed: bool,
    /// The last frame committed was a PING or PONG (see the fairness rule).
    last_was_control: bool,
    /// Data payload bytes queued and not yet written (pending and on the wire).
    queued_bytes: usize,
    /// Messages queued and not yet fully written.
    queued_messages: usize,
    budget: usize,
    low_water: usize,
    refused_since_drain: bool,
    max_fragment: usize,
    /// Client role: where mask keys come from, and where masked copies are staged.
    masking: Option<(MaskKeys, BytesMut)>,
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
            masking: masking.map(|keys| (keys, BytesMut::new())),
        }
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Checks the budget for `len` more bytes; `true` means it fits.
    #[inline]
    pub(crate) fn has_room(&mut self, len: usize) -> bool {
        // An empty queue takes any one message, so a message larger than the budget is not
        // refused forever; it still cannot pile up behind others.
        let fits = self.queued_bytes == 0 || self.queued_bytes.saturating_add(len) <= self.budget;
        if !fits {
            self.refused_since_drain = true;
        }
        fits
    }

    #[inline]
    pub(crate) fn push_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        header: Option<EncodedHeader>,
    ) {
        self.queued_bytes += payload.len();
        self.queued_messages += 1;
        self.data.push_back(QueuedMessage {
            opcode,
            payload,
            cut: 0,
            header,
        });
    }

    /// Owes a PONG with this payload, replacing any PONG not yet started (section 5.5.3).
    pub(crate) fn set_pong(&mut self, payload: Bytes) {
        if !self.close_committed {
            self.pong = Some(payload);
        }
    }

    /// Queues a PING, replacing one not yet started.
    pub(crate) fn set_ping(&mut self, payload: Bytes) {
        if !self.close_committed {
            self.ping = Some(payload);
        }
    }

    /// Queues our Close after all data queued so far.
    pub(crate) fn set_close(&mut self, body: Bytes) {
        if !self.close_committed && self.close.is_none() {
            self.close = Some(body);
        }
    }

    /// Abandons the queue (a failed connection, or `close_now`): drops everything not yet
    /// started (reported as unsent), keeps the frame in flight so the byte stream stays
    /// parseable, then queues `body` as the last frame.
    pub(crate) fn abandon_with_close(&mut self, body: Bytes) -> Unsent {
        let dropped = self.drop_unstarted();
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
        let keep = usize::from(self.wire_offset > 0);
        while self.wire.len() > keep {
            let frame = self.wire.pop_back().expect("len checked");
            match frame.kind {
                FrameKind::Data { last } => {
                    self.queued_bytes -= frame.payload.len();
                    lost.bytes += frame.payload.len();
                    if last {
                        self.queued_messages -= 1;
                        lost.messages += 1;
                    }
                }
                FrameKind::Close => self.close_committed = false,
                FrameKind::Ping | FrameKind::Pong => {}
            }
        }
        self.pong = None;
        self.ping = None;
        for m in self.data.drain(..) {
            let left = m.payload.len() - m.cut;
            self.queued_bytes -= left;
            self.queued_messages -= 1;
            lost.bytes += left;
            lost.messages += 1;
        }
        lost
    }

    /// What is queued and not yet completely written.
    pub(crate) fn unsent_now(&self) -> Unsent {
        Unsent {
            messages: self.queued_messages,
            bytes: self.queued_bytes,
        }
    }

    /// True when nothing is queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.wire.is_empty()
            && self.pong.is_none()
            && self.ping.is_none()
            && self.data.is_empty()
            && self.close.is_none()
    }

    /// Chooses the next frame by the ordering rule (see the module docs).
    #[inline]
    fn next_frame(&mut self) -> Option<WireFrame> {
        if self.close_committed {
            return None;
        }
        // Fairness: after a control frame, one data frame goes before the next control frame,
        // so a peer pinging once per PONG cannot starve our data.
        if !self.last_was_control || self.data.is_empty() {
            if let Some(payload) = self.pong.take() {
                self.last_was_control = true;
                return Some(self.control(OpCode::Pong, payload, FrameKind::Pong));
            }
            if let Some(payload) = self.ping.take() {
                self.last_was_control = true;
                return Some(self.control(OpCode::Ping, payload, FrameKind::Ping));
            }
        }
        self.last_was_control = false;
        if let Some(front) = self.data.front_mut() {
            if front.cut == 0 && front.payload.len() <= self.max_fragment {
                // A whole message in one frame, the common case: move it out of the queue in
                // one piece (performance: no `mem::take` of the payload, no second lookup).
                let message = self.data.pop_front().expect("front exists");
                let kind = FrameKind::Data { last: true };
                return Some(match (message.header, &self.masking) {
                    (Some(header), None) => WireFrame {
                        header,
                        payload: message.payload,
                        kind,
                    },
                    _ => self.encode(true, message.opcode, message.payload, kind),
                });
            }
            let total = front.payload.len();
            let start = front.cut;
            let end = total.min(start + self.max_fragment);
            let last = end == total;
            let opcode = if start == 0 {
                front.opcode
            } else {
                OpCode::Continuation
            };
            let whole = start == 0 && last;
            let prepared = if whole { front.header.take() } else { None };
            let payload = if whole {
                core::mem::take(&mut front.payload)
            } else {
                front.payload.slice(start..end)
            };
            front.cut = end;
            if last {
                self.data.pop_front();
            }
            let kind = FrameKind::Data { last };
            return Some(match (prepared, &self.masking) {
                (Some(header), None) => WireFrame {
                    header,
                    payload,
                    kind,
                },
                _ => self.encode(last, opcode, payload, kind),
            });
        }
        if let Some(body) = self.close.take() {
            self.close_committed = true;
            return Some(self.control(OpCode::Close, body, FrameKind::Close));
        }
        None
    }

    #[inline]
    fn control(&mut self, opcode: OpCode, payload: Bytes, kind: FrameKind) -> WireFrame {
        self.encode(true, opcode, payload, kind)
    }

    #[inline(always)]
    fn encode(&mut self, fin: bool, opcode: OpCode, payload: Bytes, kind: FrameKind) -> WireFrame {
        match &mut self.masking {
            None => WireFrame {
                header: encode_header(fin, opcode, None, payload.len() as u64),
                payload,
                kind,
            },
            Some((keys, staging)) => {
                let key = keys.next_key();
                // The payload may be shared (fan-out, the caller's own copy), so the masked
                // bytes go into the connection's staging buffer, which is reused once the
                // frames cut from it have been written and dropped.
                // One fused copy-and-mask pass into the spare capacity (performance: not a
                // memcpy and then an in-place XOR).
                let len = payload.len();
                if staging.capacity() - staging.len() < len {
                    // A fresh block rather than `reserve` (performance: the old block is still
                    // shared with frames on the wire, and `reserve` looks into reclaiming it
                    // first, ~75 instructions per frame). Small frames share one block.
                    *staging = BytesMut::with_capacity(len.max(STAGING_BLOCK));
                }
                let start = staging.len();
                copy_masked_uninit(&mut staging.spare_capacity_mut()[..len], &payload, key);
                // SAFETY: the `len` spare bytes after `start` were just written by
                // `copy_masked_uninit`.
                unsafe { staging.set_len(start + len) };
                WireFrame {
                    header: encode_header(fin, opcode, Some(key), payload.len() as u64),
                    payload: staging.split().freeze(),
                    kind,
                }
            }
        }
    }

    /// The rest of the frame in flight, committing the next frame if none is.
    #[inline]
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if self.wire.is_empty() {
            let frame = self.next_frame()?;
            self.wire.push_back(frame);
        }
        let frame = self.wire.front().expect("just ensured");
        let header = frame.header.as_slice();
        let offset = self.wire_offset;
        Some(if offset < header.len() {
            Transmit {
                header: &header[offset..],
                payload: &frame.payload,
                starts_frame: offset == 0,
            }
        } else {
            Transmit {
                header: &[],
                payload: &frame.payload[offset - header.len()..],
                starts_frame: false,
            }
        })
    }

    /// Fills `out` with slices of whole frames (the first possibly partly written), committing
    /// frames until `out` is full or about `max_bytes` are gathered. Returns the slices used.
    pub(crate) fn transmit_chunks<'a>(
        &'a mut self,
        out: &mut [&'a [u8]],
        max_bytes: usize,
    ) -> usize {
        let mut gathered: usize =
            self.wire.iter().map(WireFrame::len).sum::<usize>() - self.wire_offset;
        // Commit more only while there is room for a frame's two slices, and only up to the
        // byte cap: frames committed here can no longer be overtaken by a PONG.
        while (self.wire.len() + 1) * 2 <= out.len() && gathered < max_bytes {
            match self.next_frame() {
                Some(frame) => {
                    gathered += frame.len();
                    self.wire.push_back(frame);
                }
                None => break,
            }
        }
        let this: &'a Self = self;
        let mut used = 0;
        let mut skip = this.wire_offset;
        for frame in this.wire.iter() {
            for part in [frame.header.as_slice(), &frame.payload[..]] {
                let part = if skip >= part.len() {
                    skip -= part.len();
                    continue;
                } else {
                    let p = &part[skip..];
                    skip = 0;
                    p
                };
                if used == out.len() {
                    return used;
                }
                out[used] = part;
                used += 1;
            }
        }
        used
    }

    /// Records that `n` bytes of the committed frames were written.
    #[inline]
    pub(crate) fn advance(&mut self, mut n: usize) -> Written {
        let mut done = Written::default();
        while n > 0 {
            let Some(front) = self.wire.front() else {
                panic!("advance_transmit: {n} more bytes reported written than were handed out");
            };
            let left = front.len() - self.wire_offset;
            if n < left {
                self.wire_offset += n;
                break;
            }
            n -= left;
            self.wire_offset = 0;
            let frame = self.wire.pop_front().expect("front exists");
            done.frames += 1;
            match frame.kind {
                FrameKind::Data { last } => {
                    self.queued_bytes -= frame.payload.len();
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
        done
    }

    /// True once our Close has been handed to the IO layer (nothing may follow it).
    pub(crate) fn close_committed(&self) -> bool {
        self.close_committed
    }

    /// True once after a refused send when the queue has drained to the low-water mark.
    #[inline]
    pub(crate) fn take_writable(&mut self) -> bool {
        if self.refused_since_drain && self.queued_bytes <= self.low_water {
            self.refused_since_drain = false;
            true
        } else {
            false
        }
    }
}

impl PreparedMessage {
    pub(crate) fn parts(&self) -> (OpCode, EncodedHeader, &Bytes) {
        (self.opcode, self.header, &self.payload)
    }
}
