//! Room in the engine's own receive buffer, lent to the transport for one read, so that the
//! payload of a large frame lands where the engine keeps it and is unmasked there, instead of
//! being read into a transport buffer and copied (see
//! [`Connection::receive_buffer`](crate::Connection::receive_buffer)).

use bytes::buf::UninitSlice;
use bytes::{BufMut, BytesMut};

/// Room for one read, at the end of the engine's receive buffer: the bytes the frame in
/// progress still needs, at most the `max` asked for. Fill it through [`BufMut`] (a socket
/// read into [`chunk_mut`](BufMut::chunk_mut), then [`advance_mut`](BufMut::advance_mut) by
/// the count read; or [`put_slice`](BufMut::put_slice)), and hand it back with
/// [`Connection::receive_filled`](crate::Connection::receive_filled).
///
/// Dropping it instead loses nothing that was received, only the room: the engine takes a
/// new allocation when it next needs one.
#[derive(Debug)]
pub struct ReceiveBuffer {
    /// Split off the end of the engine's buffer: empty, its capacity the room (the engine's
    /// `unsplit` joins it back without a copy).
    pub(crate) bytes: BytesMut,
    /// How many bytes the room takes in all (`bytes.len()` of them are filled).
    pub(crate) limit: usize,
    /// Split off the message being joined (`assembly`), not the receive buffer.
    pub(crate) assembled: bool,
}

impl ReceiveBuffer {
    /// Bytes filled so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True while nothing has been filled.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

// SAFETY: `chunk_mut` hands out only spare capacity of `bytes` below `limit`, which
// `receive_buffer` made no larger than that capacity; `advance_mut` extends `bytes` over bytes
// the caller promises it initialized, within the same bound.
unsafe impl BufMut for ReceiveBuffer {
    fn remaining_mut(&self) -> usize {
        self.limit - self.bytes.len()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        assert!(
            cnt <= self.remaining_mut(),
            "advance_mut past the receive buffer's room ({cnt} > {})",
            self.remaining_mut()
        );
        // SAFETY: within the room (asserted), which is spare capacity of `bytes`; the caller
        // of `advance_mut` promises the bytes were written.
        unsafe { self.bytes.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        let room = self.limit - self.bytes.len();
        UninitSlice::uninit(&mut self.bytes.spare_capacity_mut()[..room])
    }
}
