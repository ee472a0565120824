//! Payload masking (RFC 6455 section 5.3).
//!
//! Every byte a client sends and every byte a server receives passes through here once, so this
//! is the crate's hottest per-byte code. Masking is a plain XOR with a repeating 4-byte key; the
//! work is in doing it wide (SIMD where the CPU has it) without making the tiny payloads that
//! dominate real traffic pay for the machinery.

#[cfg(all(target_arch = "x86_64", feature = "std"))]
use core::sync::atomic::{AtomicU8, Ordering};

/// Below this length the SIMD paths are skipped entirely: no feature detection, no alignment,
/// just u64 words. One AVX2 vector is 32 bytes, so shorter buffers could not use it anyway.
const SIMD_MIN: usize = 32;

/// XOR `buf` in place with the repeating 4-byte `key`, key byte 0 applying to `buf[0]`.
///
/// Masking and unmasking are the same operation, so this serves both the client's send path and
/// the server's receive path. To mask a payload that arrives in pieces, pass
/// [`rotate_key`]`(key, bytes_already_masked)` for each later piece.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    if buf.len() < SIMD_MIN {
        mask_short(buf, key);
    } else {
        mask_long(buf, key);
    }
}

/// Out of line so that the inlined [`apply_mask`] stays a compare and a few word XORs for
/// short buffers, without the detection call's register saves.
#[inline(never)]
fn mask_long(buf: &mut [u8], key: [u8; 4]) {
    // SAFETY: `path_for` only returns paths whose instructions this CPU has.
    unsafe { mask_with(path_for::<false>(buf.len()), buf, key) }
}

/// The plain byte-at-a-time reference the fast path is tested against.
///
/// Kept deliberately naive so that it is obviously RFC 6455's
/// `transformed[i] = original[i] ^ key[i % 4]`.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// `dst[i] = src[i] ^ key[i % 4]`: fused copy-and-mask for the client role's send path (one
/// pass, no separate memcpy).
///
/// # Panics
///
/// Panics if `dst` and `src` differ in length: a silent partial copy would put a frame on the
/// wire whose payload disagrees with its header's length.
#[inline]
pub fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_masked: destination and source lengths differ"
    );
    if src.len() < SIMD_MIN {
        copy_short(dst, src, key);
    } else {
        copy_long(dst, src, key);
    }
}

/// Out of line for the same reason as [`mask_long`].
#[inline(never)]
fn copy_long(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    // SAFETY: `path_for` only returns paths whose instructions this CPU has, and the caller
    // checked the lengths are equal.
    unsafe { copy_with(path_for::<true>(src.len()), dst, src, key) }
}

/// [`copy_masked`] into memory that need not be initialized (a buffer's spare capacity), so a
/// client's send path masks each payload into its send buffer in one pass rather than a memcpy
/// and then an XOR (performance). Returns `dst`, now initialized. Takes the AVX-512 kernel
/// where [`path_for`] allows it; the receive path's counterpart is [`unmask_payload`].
///
/// # Panics
///
/// Panics if `dst` and `src` differ in length.
#[inline(always)]
pub(crate) fn copy_masked_uninit<'a>(
    dst: &'a mut [core::mem::MaybeUninit<u8>],
    src: &[u8],
    key: [u8; 4],
) -> &'a mut [u8] {
    copy_uninit::<true>(dst, src, key)
}

/// [`copy_masked_uninit`], taking the AVX-512 kernel only if `AVX512` (see [`path_for`]).
/// Always inlined: below [`SIMD_MIN`] it is a few word moves, the vector part is out of line.
#[inline(always)]
fn copy_uninit<'a, const AVX512: bool>(
    dst: &'a mut [core::mem::MaybeUninit<u8>],
    src: &[u8],
    key: [u8; 4],
) -> &'a mut [u8] {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_masked: destination and source lengths differ"
    );
    let len = src.len();
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr().cast::<u8>());
    if len < SIMD_MIN {
        // SAFETY: `s` is valid for reads and `d` for writes of `len` bytes (equal lengths), and
        // a `&[u8]` and a `&mut [MaybeUninit<u8>]` cannot overlap.
        unsafe { copy_words_raw(s, d, len, key) }
    } else {
        // The vector kernels called from here rather than through `copy_long_raw`'s
        // dispatch (performance: the extra frame cost about 15 instructions per payload).
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, `len >= SIMD_MIN` (32, one AVX2 vector), and `path_for` returns
        // only paths this CPU has, AVX-512 only from 64 bytes.
        if unsafe { xor_wide::<false>(path_for::<AVX512>(len), s, d, len, key) }.is_some() {
            // SAFETY: all `len` bytes at `d` were just written, and `dst` is borrowed for `'a`.
            return unsafe { core::slice::from_raw_parts_mut(d, len) };
        }
        // SAFETY: as above, and `len >= SIMD_MIN`, at least one vector of any path.
        unsafe { copy_long_raw(s, d, len, key) }
    }
    // SAFETY: all `len` bytes at `d` were just written, and `dst` is borrowed for `'a`.
    unsafe { core::slice::from_raw_parts_mut(d, len) }
}

/// [`copy_masked_uninit`] that also says whether the unmasked bytes are all ASCII, when that
/// comes for free: from the AVX2 kernel's pass over the bytes, or a word scan of a short
/// payload. `false` means "not known to be ASCII" (validate them), never "not ASCII". Lets a
/// text payload skip UTF-8 validation, its second pass over the bytes. (Performance.)
///
/// # Panics
///
/// Panics if `dst` and `src` differ in length.
#[inline(always)]
pub(crate) fn copy_masked_uninit_ascii<'a>(
    dst: &'a mut [core::mem::MaybeUninit<u8>],
    src: &[u8],
    key: [u8; 4],
) -> (&'a mut [u8], bool) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= 32 && dst.len() == src.len() {
        let (s, d, len) = (src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len());
        // SAFETY: `path_for` returns only paths this CPU has (never AVX-512 here); `len >= 32`;
        // `s` is valid for reads and `d` for writes of `len` bytes (equal lengths, checked),
        // and a `&[u8]` and a `&mut [MaybeUninit<u8>]` cannot overlap.
        if let Some(ascii) = unsafe { xor_wide::<true>(path_for::<false>(len), s, d, len, key) } {
            // SAFETY: all `len` bytes at `d` were just written; `dst` is borrowed for `'a`.
            return (unsafe { core::slice::from_raw_parts_mut(d, len) }, ascii);
        }
    }
    let out = copy_uninit::<false>(dst, src, key);
    let ascii = out.len() < SIMD_MIN && out.is_ascii();
    (out, ascii)
}

/// The receive path's copy-unmask of a payload: [`copy_masked_uninit_ascii`] for text (is it
/// known to be ASCII?), a plain copy-unmask otherwise (then `false`: binary needs no verdict
/// and skips the tracking). Never on the AVX-512 kernel (see [`path_for`]).
#[inline(always)]
pub(crate) fn unmask_payload(
    dst: &mut [core::mem::MaybeUninit<u8>],
    src: &[u8],
    key: [u8; 4],
    text: bool,
) -> bool {
    if text {
        copy_masked_uninit_ascii(dst, src, key).1
    } else {
        copy_uninit::<false>(dst, src, key);
        false
    }
}

/// The vector part of [`copy_masked_uninit`], out of line like [`copy_long`].
///
/// # Safety
///
/// `len >= SIMD_MIN`; `s` valid for reads and `d` for writes of `len` bytes, not overlapping.
#[inline(never)]
unsafe fn copy_long_raw(s: *const u8, d: *mut u8, len: usize, key: [u8; 4]) {
    match path_for::<false>(len) {
        // SAFETY: the caller's promises; `path_for` only returns paths this CPU has.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx2 => unsafe { xor_avx2(s, d, len, key) },
        // SAFETY: as for AVX2; SSE2 is part of x86_64.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Sse2 => unsafe { xor_sse2(s, d, len, key) },
        // SAFETY: as for AVX2; NEON is enabled at compile time.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        MaskPath::Neon => unsafe { xor_neon(s, d, len, key) },
        // SAFETY: the caller's promises.
        #[allow(unreachable_patterns)]
        _ => unsafe { copy_words_raw(s, d, len, key) },
    }
}

/// [`copy_words`] through raw pointers, for a destination that is not initialized yet: u64
/// words (each a whole number of keys), then single bytes.
///
/// # Safety
///
/// `s` valid for reads and `d` for writes of `len` bytes, not overlapping.
#[inline(always)]
unsafe fn copy_words_raw(s: *const u8, d: *mut u8, len: usize, key: [u8; 4]) {
    let k64 = key64(key);
    let mut i = 0;
    // A 16-byte step first: the headline small payloads (16 to 31 bytes) take no loop.
    if len >= 16 {
        // SAFETY: bytes 0..16 are inside both ranges; unaligned accesses are allowed.
        unsafe {
            let a = s.cast::<u64>().read_unaligned();
            let b = s.add(8).cast::<u64>().read_unaligned();
            d.cast::<u64>().write_unaligned(a ^ k64);
            d.add(8).cast::<u64>().write_unaligned(b ^ k64);
        }
        i = 16;
    }
    while len - i >= 8 {
        // SAFETY: bytes i..i + 8 are inside both ranges; unaligned accesses are allowed.
        unsafe {
            let v = s.add(i).cast::<u64>().read_unaligned();
            d.add(i).cast::<u64>().write_unaligned(v ^ k64);
        }
        i += 8;
    }
    // Under 8 bytes left, at key phase 0 (8 is a whole number of keys): 4, 2, 1-byte steps.
    if len - i >= 4 {
        // SAFETY: bytes i..i + 4 are inside both ranges.
        unsafe {
            let v = s.add(i).cast::<u32>().read_unaligned();
            d.add(i)
                .cast::<u32>()
                .write_unaligned(v ^ u32::from_ne_bytes(key));
        }
        i += 4;
    }
    let mut k = 0;
    while i < len {
        // SAFETY: byte i is inside both ranges.
        unsafe { d.add(i).write(*s.add(i) ^ key[k]) };
        i += 1;
        k += 1;
    }
}

#[cfg(test)]
mod uninit_tests {
    use super::*;
    use alloc::vec::Vec;
    use core::mem::MaybeUninit;

    #[test]
    fn copy_masked_uninit_matches_reference_at_every_length_and_offset() {
        // Distinct key bytes, so that a word masked at the wrong key phase shows.
        for key in [[0x9e, 0x37, 0x79, 0xb9], [0x01, 0x80, 0xff, 0x00]] {
            for len in 0..300 {
                let src: Vec<u8> = (0..len + 7).map(|i| (i * 37 + len) as u8).collect();
                for offset in 0..7 {
                    let src = &src[offset..offset + len];
                    let mut expected = src.to_vec();
                    apply_mask_reference(&mut expected, key);
                    let mut dst: Vec<MaybeUninit<u8>> = Vec::with_capacity(len + 3);
                    dst.resize(len + 3, MaybeUninit::uninit());
                    let got = copy_masked_uninit(&mut dst[3..], src, key);
                    assert_eq!(got, &expected[..], "len {len} offset {offset} key {key:x?}");
                }
            }
        }
    }

    #[test]
    fn copy_masked_uninit_ascii_copies_like_the_reference_and_never_calls_non_ascii_ascii() {
        let avx2 = MaskPath::Avx2.is_available();
        for key in [
            [0x9e, 0x37, 0x79, 0xb9],
            [0, 0, 0, 0],
            [0x80, 0x01, 0x7f, 0xff],
        ] {
            for len in (0..300usize).chain([511, 1024, 4099, 16 << 10, (16 << 10) + 1]) {
                // The plain text is ASCII, or has one non-ASCII byte at a position that moves
                // through the first vector, the body and the last vector.
                for bad in [
                    None,
                    Some(0),
                    Some(len / 3),
                    Some(len / 2),
                    Some(len.saturating_sub(1)),
                ] {
                    let mut plain: Vec<u8> =
                        (0..len).map(|i| (i * 37 + len) as u8 & 0x7f).collect();
                    if let Some(at) = bad.filter(|_| len > 0) {
                        plain[at] |= 0x80;
                    }
                    let mut masked = plain.clone();
                    apply_mask_reference(&mut masked, key);
                    for offset in 0..5 {
                        let mut padded = alloc::vec![0u8; offset];
                        padded.extend_from_slice(&masked);
                        let src = &padded[offset..];
                        let mut dst: Vec<MaybeUninit<u8>> = Vec::new();
                        dst.resize(len + offset, MaybeUninit::uninit());
                        let (got, ascii) = copy_masked_uninit_ascii(&mut dst[offset..], src, key);
                        assert_eq!(got, &plain[..], "len {len} offset {offset} key {key:?}");
                        let is_ascii = plain.is_ascii();
                        // Never claims ASCII wrongly; claims it whenever it is cheap to know.
                        assert!(!ascii || is_ascii, "len {len} bad {bad:?} key {key:?}");
                        if is_ascii && (len < SIMD_MIN || avx2) {
                            assert!(ascii, "len {len} offset {offset} key {key:?}");
                        }
                    }
                }
            }
        }
    }

    /// Lengths from `PREFETCH_MIN` take the AVX2 kernel's prefetching loop: copies, with and
    /// without the ASCII verdict, at source and destination alignments of every kind against
    /// the reference, nothing written outside the destination.
    #[test]
    fn long_copies_match_the_reference() {
        let avx2 = MaskPath::Avx2.is_available();
        for (i, len) in [PREFETCH_MIN - 1, PREFETCH_MIN, PREFETCH_MIN + 4093, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let key = [0x80 | i as u8, 0x37, 0x79, 0xb9];
            for bad in [None, Some(len / 2), Some(len - 1)] {
                let mut plain: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8 & 0x7f).collect();
                if let Some(at) = bad {
                    plain[at] |= 0x80;
                }
                let mut masked = plain.clone();
                apply_mask_reference(&mut masked, key);
                masked.extend_from_slice(&[0; 64]);
                for (src_offset, dst_offset) in [(0, 0), (3, 17), (32, 14), (63, 1)] {
                    masked.rotate_right(src_offset);
                    let src = &masked[src_offset..src_offset + len];
                    let mut dst = alloc::vec![MaybeUninit::new(0xa5u8); len + 64];
                    let got = copy_masked_uninit(&mut dst[dst_offset..dst_offset + len], src, key);
                    assert!(got == &plain[..], "len {len} at {src_offset}/{dst_offset}");
                    let (got, ascii) =
                        copy_masked_uninit_ascii(&mut dst[dst_offset..dst_offset + len], src, key);
                    assert!(got == &plain[..], "len {len} at {src_offset}/{dst_offset}");
                    assert_eq!(ascii, avx2 && bad.is_none(), "len {len} bad {bad:?}");
                    let mut outside = dst[..dst_offset].iter().chain(&dst[dst_offset + len..]);
                    // SAFETY: every byte of `dst` was initialized to 0xa5 by `vec!`.
                    assert!(outside.all(|b| unsafe { b.assume_init() } == 0xa5));
                    masked.rotate_left(src_offset);
                }
            }
        }
    }
}

/// The key to use for the rest of a payload once `offset` bytes of it were already masked (key
/// rotated left by `offset % 4`).
///
/// Lets a payload be masked in pieces of any size (as it arrives from the socket, or as it is
/// split across buffers) with the same result as masking it whole.
#[inline]
pub fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    // Read as little-endian, key[0] is the low byte, so moving key[n] to the front is a right
    // rotation by n bytes; fixing the byte order keeps this independent of the target's.
    let shift = 8 * (offset % 4) as u32;
    u32::from_le_bytes(key).rotate_right(shift).to_le_bytes()
}

/// One way of masking. Exposed only so that tests can run every path this CPU supports, not
/// just the one [`apply_mask`] would pick (a machine with AVX2 must still check SSE2).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskPath {
    /// Portable u64 words; what targets without a SIMD path use.
    Words,
    /// 16-byte SSE2 vectors, baseline on every x86_64 CPU.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// 32-byte AVX2 vectors, when the CPU has them.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 64-byte AVX-512 vectors, on the CPUs `has_avx512` admits; payloads under 64 bytes take
    /// the AVX2 kernel.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// 16-byte NEON vectors.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    Neon,
}

impl MaskPath {
    /// Every path compiled into this build, whether or not this CPU can run it.
    pub const ALL: &'static [MaskPath] = &[
        MaskPath::Words,
        #[cfg(target_arch = "x86_64")]
        MaskPath::Sse2,
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx2,
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx512,
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        MaskPath::Neon,
    ];

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            MaskPath::Words => true,
            #[cfg(target_arch = "x86_64")]
            MaskPath::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            MaskPath::Avx2 => has_avx2(),
            #[cfg(target_arch = "x86_64")]
            MaskPath::Avx512 => has_avx512(),
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            MaskPath::Neon => true,
        }
    }
}

/// [`apply_mask`] forced onto `path`, whatever the length. For tests.
///
/// # Panics
///
/// Panics if this CPU cannot run `path` (see [`MaskPath::is_available`]).
#[doc(hidden)]
pub fn apply_mask_via(path: MaskPath, buf: &mut [u8], key: [u8; 4]) {
    assert!(path.is_available(), "{path:?} is not available on this CPU");
    // SAFETY: checked just above.
    unsafe { mask_with(path, buf, key) }
}

/// [`copy_masked`] forced onto `path`, whatever the length. For tests.
///
/// # Panics
///
/// Panics if this CPU cannot run `path`, or if the lengths differ.
#[doc(hidden)]
pub fn copy_masked_via(path: MaskPath, dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    assert!(path.is_available(), "{path:?} is not available on this CPU");
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_masked: destination and source lengths differ"
    );
    // SAFETY: checked just above.
    unsafe { copy_with(path, dst, src, key) }
}

/// The path for a `len`-byte payload: the widest this CPU has, except that AVX-512 is kept to
/// payloads that stay in L1 (see `AVX512_MAX`) and to callers that allow it (`AVX512`): the
/// copies of the send path. The receive path's sources come from a read that landed in L2,
/// where the AVX-512 kernel measured 2-3 % slower than the AVX2 one (1 and 16 KiB receives,
/// three interleaved runs each), while a client's send took 8-23 % less time from 1 to 16 KiB
/// (benches/RESULTS.md).
#[inline(always)]
fn path_for<const AVX512: bool>(len: usize) -> MaskPath {
    #[cfg(target_arch = "x86_64")]
    {
        match simd_level() {
            LEVEL_AVX512 if AVX512 && (64..=AVX512_MAX).contains(&len) => MaskPath::Avx512,
            LEVEL_AVX512 | LEVEL_AVX2 => MaskPath::Avx2,
            _ => MaskPath::Sse2,
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        let _ = len;
        MaskPath::Neon
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    {
        let _ = len;
        MaskPath::Words
    }
}

/// Up to this payload length the AVX-512 kernel is used where the CPU has it; above it, the
/// AVX2 kernel. Measured on Zen 5 (48 KiB L1 data cache), copying a payload into a reused
/// buffer: AVX-512 takes 0.55-0.69x the AVX2 kernel's time from 1 to 24 KiB, where source and
/// destination fit in L1 together; from 32 KiB both wait on L2 and AVX-512 is 1-4 % slower
/// (and the AVX2 kernel prefetches from `PREFETCH_MIN`). 16 KiB keeps a copy's two buffers
/// inside a 32 KiB L1 (Zen 4, older Intel) too.
#[cfg(target_arch = "x86_64")]
const AVX512_MAX: usize = 16 << 10;

/// The AVX2 or AVX-512 kernel, as `path` says; `None` (nothing done) for a narrower path. The
/// AVX-512 kernel has no ASCII tracking (only the receive path asks for it, and it never takes
/// AVX-512): with `ASCII` it is not used.
///
/// # Safety
///
/// The CPU must have `path`'s instructions; `len >= 32`, and `len >= 64` for AVX-512; `src`
/// and `dst` as for [`xor_avx2_tracking`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn xor_wide<const ASCII: bool>(
    path: MaskPath,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    key: [u8; 4],
) -> Option<bool> {
    match path {
        MaskPath::Avx512 if !ASCII => {
            // SAFETY: the caller's promises.
            unsafe { xor_avx512(src, dst, len, key) };
            Some(false)
        }
        // SAFETY: the caller's promises.
        MaskPath::Avx2 => Some(unsafe { xor_avx2_tracking::<ASCII>(src, dst, len, key) }),
        _ => None,
    }
}

/// Levels of [`simd_level`]: SSE2 only (every x86_64), AVX2, AVX2 and AVX-512.
#[cfg(target_arch = "x86_64")]
const LEVEL_SSE2: u8 = 1;
#[cfg(target_arch = "x86_64")]
const LEVEL_AVX2: u8 = 2;
#[cfg(target_arch = "x86_64")]
const LEVEL_AVX512: u8 = 3;

/// What runtime detection found: 0 not asked yet, else a `LEVEL_*`. Cached here so that every
/// call above [`SIMD_MIN`] pays one relaxed load and a compare, whatever std's detection costs.
#[cfg(all(target_arch = "x86_64", feature = "std"))]
static SIMD_STATE: AtomicU8 = AtomicU8::new(0);

/// The widest x86 kernel this CPU can run, as a `LEVEL_*`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn simd_level() -> u8 {
    if cfg!(all(
        target_feature = "avx512f",
        target_feature = "avx512vbmi2"
    )) {
        // Built for such CPUs (`-C target-cpu=...`): no need to ask.
        return LEVEL_AVX512;
    }
    #[cfg(feature = "std")]
    {
        match SIMD_STATE.load(Ordering::Relaxed) {
            0 => detect_simd(),
            level => level,
        }
    }
    #[cfg(not(feature = "std"))]
    {
        // Runtime detection lives in std; without it, only what the build targets counts.
        if cfg!(target_feature = "avx2") {
            LEVEL_AVX2
        } else {
            LEVEL_SSE2
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    simd_level() >= LEVEL_AVX2
}

/// Whether the AVX-512 kernel runs here: AVX-512 F, plus VBMI2 as the mark of a core whose
/// 512-bit integer work does not lower its clock (Intel from Ice Lake, AMD from Zen 4;
/// Skylake-X and Cascade Lake, which do slow down, lack VBMI2 and keep the AVX2 kernel). The
/// kernel itself needs only AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx512() -> bool {
    simd_level() == LEVEL_AVX512
}

/// Kept out of line so the cached check in [`simd_level`] stays a load and a compare.
#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[cold]
#[inline(never)]
fn detect_simd() -> u8 {
    let avx2 = cfg!(target_feature = "avx2") || std::is_x86_feature_detected!("avx2");
    let level = if avx2
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vbmi2")
    {
        LEVEL_AVX512
    } else if avx2 {
        LEVEL_AVX2
    } else {
        LEVEL_SSE2
    };
    // Racing threads all compute the same answer, so a relaxed store is enough.
    SIMD_STATE.store(level, Ordering::Relaxed);
    level
}

/// Masks `buf` using `path`.
///
/// # Safety
///
/// `path.is_available()` must be true.
#[inline]
unsafe fn mask_with(path: MaskPath, buf: &mut [u8], key: [u8; 4]) {
    let len = buf.len();
    let ptr = buf.as_mut_ptr();
    match path {
        // SAFETY: `ptr` is valid for reads and writes of `len` bytes, which is at least one
        // vector; source and destination are the same place, which the kernels allow; and the
        // caller promised this CPU has the path's instructions.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx512 if len >= 64 => unsafe { xor_avx512(ptr, ptr, len, key) },
        // SAFETY: as above; a CPU with AVX-512 (as detected) has AVX2.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx2 | MaskPath::Avx512 if len >= 32 => unsafe { xor_avx2(ptr, ptr, len, key) },
        // SAFETY: as above; SSE2 is part of x86_64.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Sse2 if len >= 16 => unsafe { xor_sse2(ptr, ptr, len, key) },
        // SAFETY: as for AVX2; NEON is enabled at compile time.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        MaskPath::Neon if len >= 16 => unsafe { xor_neon(ptr, ptr, len, key) },
        // The portable path, and vector paths handed less than one vector (only tests do).
        _ => mask_words(buf, key),
    }
}

/// Copies `src` masked into `dst` using `path`.
///
/// # Safety
///
/// `path.is_available()` must be true, and `dst.len() == src.len()`.
#[inline]
unsafe fn copy_with(path: MaskPath, dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    let len = src.len();
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    match path {
        // SAFETY: `s` is valid for reads and `d` for writes of `len` bytes (the caller promised
        // equal lengths), which is at least one vector; a `&[u8]` and a `&mut [u8]` cannot
        // overlap; and the caller promised this CPU has the path's instructions.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx512 if len >= 64 => unsafe { xor_avx512(s, d, len, key) },
        // SAFETY: as above; a CPU with AVX-512 (as detected) has AVX2.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Avx2 | MaskPath::Avx512 if len >= 32 => unsafe { xor_avx2(s, d, len, key) },
        // SAFETY: as above; SSE2 is part of x86_64.
        #[cfg(target_arch = "x86_64")]
        MaskPath::Sse2 if len >= 16 => unsafe { xor_sse2(s, d, len, key) },
        // SAFETY: as for AVX2; NEON is enabled at compile time.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        MaskPath::Neon if len >= 16 => unsafe { xor_neon(s, d, len, key) },
        _ => copy_words(dst, src, key),
    }
}

/// The key repeated to fill a u64. Both halves are the key in native order, so the bytes land
/// in memory order whatever the target's endianness; built from a u32 rather than eight bytes
/// because LLVM turns the byte version into a chain of two dozen shifts and ors.
#[inline(always)]
fn key64(key: [u8; 4]) -> u64 {
    let k = u64::from(u32::from_ne_bytes(key));
    k | (k << 32)
}

/// XORs one 8-byte word. Native byte order both ways, so no byte ever moves.
#[inline(always)]
fn xor_word(word: &mut [u8], k64: u64) {
    let v = u64::from_ne_bytes([
        word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
    ]);
    word.copy_from_slice(&(v ^ k64).to_ne_bytes());
}

/// [`xor_word`] fused with the copy.
#[inline(always)]
fn copy_word(dst: &mut [u8], src: &[u8], k64: u64) {
    let v = u64::from_ne_bytes([
        src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
    ]);
    dst.copy_from_slice(&(v ^ k64).to_ne_bytes());
}

/// The portable path: u64 words, then the under-8-byte rest.
#[inline]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    let k64 = key64(key);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, k64);
    }
    // Each word is a whole number of keys, so the rest starts at key phase 0.
    mask_short(words.into_remainder(), key);
}

/// [`mask_words`] fused with the copy. `dst.len() == src.len()`.
#[inline]
fn copy_words(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    let k64 = key64(key);
    let mut dst_words = dst.chunks_exact_mut(8);
    let mut src_words = src.chunks_exact(8);
    for (d, s) in (&mut dst_words).zip(&mut src_words) {
        copy_word(d, s, k64);
    }
    copy_short(dst_words.into_remainder(), src_words.remainder(), key);
}

/// Buffers under 32 bytes (the headline small payloads, and the rest after the u64 loop) as a
/// fixed ladder of 16, 8, 4, 2 and 1-byte steps: a handful of predictable branches and no loop.
/// The 16, 8 and 4-byte steps are whole keys, so the key phase only matters for the last three
/// bytes, which take their key bytes by position.
#[inline(always)]
fn mask_short(buf: &mut [u8], key: [u8; 4]) {
    debug_assert!(buf.len() < 32);
    let k64 = key64(key);
    let mut rest = buf;
    if rest.len() >= 16 {
        let (pair, tail) = rest.split_at_mut(16);
        let (a, b) = pair.split_at_mut(8);
        xor_word(a, k64);
        xor_word(b, k64);
        rest = tail;
    }
    if rest.len() >= 8 {
        let (word, tail) = rest.split_at_mut(8);
        xor_word(word, k64);
        rest = tail;
    }
    if rest.len() >= 4 {
        let (word, tail) = rest.split_at_mut(4);
        let v = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        word.copy_from_slice(&(v ^ u32::from_ne_bytes(key)).to_ne_bytes());
        rest = tail;
    }
    if rest.len() >= 2 {
        let (pair, tail) = rest.split_at_mut(2);
        let v = u16::from_ne_bytes([pair[0], pair[1]]);
        pair.copy_from_slice(&(v ^ u16::from_ne_bytes([key[0], key[1]])).to_ne_bytes());
        if let Some(last) = tail.first_mut() {
            *last ^= key[2];
        }
    } else if let Some(last) = rest.first_mut() {
        *last ^= key[0];
    }
}

/// [`mask_short`] fused with the copy. `dst.len() == src.len()`.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    debug_assert!(dst.len() == src.len() && src.len() < 32);
    let k64 = key64(key);
    let (mut dst, mut src) = (dst, src);
    if src.len() >= 16 {
        let (d, dst_tail) = dst.split_at_mut(16);
        let (s, src_tail) = src.split_at(16);
        copy_word(&mut d[..8], &s[..8], k64);
        copy_word(&mut d[8..], &s[8..], k64);
        (dst, src) = (dst_tail, src_tail);
    }
    if src.len() >= 8 {
        let (d, dst_tail) = dst.split_at_mut(8);
        let (s, src_tail) = src.split_at(8);
        copy_word(d, s, k64);
        (dst, src) = (dst_tail, src_tail);
    }
    if src.len() >= 4 {
        let (d, dst_tail) = dst.split_at_mut(4);
        let (s, src_tail) = src.split_at(4);
        let v = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
        d.copy_from_slice(&(v ^ u32::from_ne_bytes(key)).to_ne_bytes());
        (dst, src) = (dst_tail, src_tail);
    }
    for ((d, s), k) in dst.iter_mut().zip(src).zip(key) {
        *d = s ^ k;
    }
}

// The vector kernels below share one shape, which replaces the usual byte-at-a-time head and
// tail loops:
//
// 1. Load one vector from the very start and one from the very end of the buffer, before
//    anything is written.
// 2. XOR the body in vectors whose stores are aligned (stores that straddle cache lines cost
//    extra, and a payload following a 2 to 14 byte frame header is rarely aligned), with the key
//    rotated for where the body starts. (The AVX2 kernel aligns its loads instead; see there.) The body stops at the last whole vector; the end vector
//    covers what is left.
// 3. Store the start and end vectors, XORed with the key as rotated for their own offsets.
//
// The start and end vectors overlap bytes the body also wrote, and may overlap each other. That
// is harmless: every store of a given byte writes the same value, original ^ key[i % 4], because
// every load of that byte happened before any store to it. This holds in place too (source and
// destination the same), which is why both end vectors are loaded first.
//
// Measured on an AVX2 machine at the headline 125-byte payload: about 7 ns this way, against
// 12 to 14 ns when peeling the unaligned head in scalar steps and 10 ns when not aligning at
// all; and not aligning costs about a third of the throughput from 2 KiB up.

/// The key rotated for each part of a `len`-byte buffer whose body starts at `body`: (start,
/// body, end vector of `width` bytes).
#[inline(always)]
fn kernel_keys(key: [u8; 4], body: usize, len: usize, width: usize) -> (i32, i32, i32) {
    let k = |offset| i32::from_ne_bytes(rotate_key(key, offset));
    (k(0), k(body), k(len - width))
}

/// Bytes from `p` to the first `width`-aligned address after it, in `1..=width`: never 0, so
/// an already aligned buffer does not XOR its first vector twice.
#[inline(always)]
fn body_start(p: *const u8, width: usize) -> usize {
    width - (p.addr() & (width - 1))
}

/// The SSE2 kernel: 16-byte vectors, 64 bytes per loop iteration.
///
/// # Safety
///
/// `len >= 16`. `src` must be valid for reads and `dst` for writes of `len` bytes, and the two
/// ranges must be either identical (in-place masking) or disjoint.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn xor_sse2(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
    use core::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
    };
    debug_assert!(len >= 16);
    let start = body_start(dst, 16);
    let (k_first, k_body, k_last) = kernel_keys(key, start, len, 16);
    // SAFETY: SSE2 is part of x86_64. The loads read the first and last 16 of the `len >= 16`
    // readable bytes; loadu accepts any alignment.
    let (first, last, k) = unsafe {
        (
            _mm_loadu_si128(src.cast::<__m128i>()),
            _mm_loadu_si128(src.add(len - 16).cast::<__m128i>()),
            // set1_epi32 lays its lanes out in memory order (x86_64 is little-endian), so the
            // vector's bytes are the key repeated.
            _mm_set1_epi32(k_body),
        )
    };
    let mut i = start;
    while len - i >= 64 {
        // SAFETY: bytes i..i + 64 lie inside both ranges (loop condition); loadu and storeu
        // accept any alignment; all four loads precede the stores (see above).
        unsafe {
            let s = src.add(i).cast::<__m128i>();
            let d = dst.add(i).cast::<__m128i>();
            let a = _mm_loadu_si128(s);
            let b = _mm_loadu_si128(s.add(1));
            let c = _mm_loadu_si128(s.add(2));
            let e = _mm_loadu_si128(s.add(3));
            _mm_storeu_si128(d, _mm_xor_si128(a, k));
            _mm_storeu_si128(d.add(1), _mm_xor_si128(b, k));
            _mm_storeu_si128(d.add(2), _mm_xor_si128(c, k));
            _mm_storeu_si128(d.add(3), _mm_xor_si128(e, k));
        }
        i += 64;
    }
    while len - i >= 16 {
        // SAFETY: bytes i..i + 16 lie inside both ranges; loadu and storeu accept any alignment.
        unsafe {
            let v = _mm_loadu_si128(src.add(i).cast::<__m128i>());
            _mm_storeu_si128(dst.add(i).cast::<__m128i>(), _mm_xor_si128(v, k));
        }
        i += 16;
    }
    // SAFETY: the first and last 16 of the `len >= 16` writable bytes; storeu accepts any
    // alignment; the values are right even where they overlap the body (see above).
    unsafe {
        _mm_storeu_si128(
            dst.cast::<__m128i>(),
            _mm_xor_si128(first, _mm_set1_epi32(k_first)),
        );
        _mm_storeu_si128(
            dst.add(len - 16).cast::<__m128i>(),
            _mm_xor_si128(last, _mm_set1_epi32(k_last)),
        );
    }
}

/// From this length the AVX2 kernel prefetches the destination ahead of its stores
/// (performance). Measured on Zen 5 (1 MiB L2 per core), copying with source and destination
/// out of L2: 1 MiB 17.5 -> 16.0 us, 4 MiB 80 -> 65 us, 512 KiB 1% faster; from L2 (256 KiB
/// and less) the prefetches only cost load slots, 1 to 3% slower.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_MIN: usize = 512 << 10;

/// How far ahead of the stores the destination is prefetched: at 256 bytes it did not help,
/// from 512 to 2048 equally well (measured as for [`PREFETCH_MIN`]).
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 1024;

/// The AVX2 kernel: 32-byte vectors, 256 bytes per loop iteration.
///
/// # Safety
///
/// The CPU must have AVX2. `len >= 32`. `src` must be valid for reads and `dst` for writes of
/// `len` bytes, and the two ranges must be either identical (in-place masking) or disjoint.
///
/// With `ASCII`, also returns whether every byte written is below 0x80 (one OR per vector, so
/// that ASCII text needs no second pass for UTF-8 validation); without, returns false.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn xor_avx2_tracking<const ASCII: bool>(
    src: *const u8,
    dst: *mut u8,
    len: usize,
    key: [u8; 4],
) -> bool {
    // Two instances of the kernel rather than a test of `len` in every iteration of one
    // (which LLVM kept in the ASCII variant: 2 instructions per 256 bytes).
    if len >= PREFETCH_MIN {
        // SAFETY: the caller's promises.
        unsafe { xor_avx2_body::<ASCII, true>(src, dst, len, key) }
    } else {
        // SAFETY: the caller's promises.
        unsafe { xor_avx2_body::<ASCII, false>(src, dst, len, key) }
    }
}

/// [`xor_avx2_tracking`], prefetching the destination with `PREFETCH`.
///
/// # Safety
///
/// As for [`xor_avx2_tracking`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn xor_avx2_body<const ASCII: bool, const PREFETCH: bool>(
    src: *const u8,
    dst: *mut u8,
    len: usize,
    key: [u8; 4],
) -> bool {
    use core::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi32,
        _mm256_setzero_si256, _mm256_storeu_si256, _mm256_xor_si256, _mm_prefetch, _MM_HINT_T0,
    };
    let mut seen = _mm256_setzero_si256();
    debug_assert!(len >= 32);
    // Unlike the SSE2 and NEON kernels (the AVX-512 one does the same), the body's loads are
    // aligned rather than its stores: measured on Zen 5, a load that straddles cache lines
    // costs more than a store that does (64 KiB from L2, source and destination at unrelated
    // alignments: 0.73 -> 0.68 us).
    let start = body_start(src, 32);
    let (k_first, k_body, k_last) = kernel_keys(key, start, len, 32);
    // As in `xor_sse2`, set1 lays the key out in memory order.
    let k = _mm256_set1_epi32(k_body);
    // SAFETY: AVX2 is present (the caller's promise). The loads read the first and last 32 of
    // the `len >= 32` readable bytes; loadu accepts any alignment.
    let (first, last) = unsafe {
        (
            _mm256_loadu_si256(src.cast::<__m256i>()),
            _mm256_loadu_si256(src.add(len - 32).cast::<__m256i>()),
        )
    };
    let mut i = start;
    while len - i >= 256 {
        if PREFETCH {
            // The four lines of the block PREFETCH_AHEAD bytes on, so that its stores find
            // their lines already fetched. Up to PREFETCH_AHEAD + 256 bytes past the end:
            // harmless, a prefetch never faults; `wrapping_add` because it may leave the
            // allocation.
            let ahead = dst
                .wrapping_add(i + PREFETCH_AHEAD)
                .cast_const()
                .cast::<i8>();
            for line in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
            }
        }
        // SAFETY: bytes i..i + 256 lie inside both ranges (loop condition); loadu and storeu
        // accept any alignment; all loads precede the stores (see above).
        unsafe {
            let s = src.add(i).cast::<__m256i>();
            let d = dst.add(i).cast::<__m256i>();
            let v: [__m256i; 8] =
                core::array::from_fn(|j| _mm256_xor_si256(_mm256_loadu_si256(s.add(j)), k));
            for (j, x) in v.iter().enumerate() {
                _mm256_storeu_si256(d.add(j), *x);
            }
            if ASCII {
                let ab = _mm256_or_si256(_mm256_or_si256(v[0], v[1]), _mm256_or_si256(v[2], v[3]));
                let cd = _mm256_or_si256(_mm256_or_si256(v[4], v[5]), _mm256_or_si256(v[6], v[7]));
                seen = _mm256_or_si256(seen, _mm256_or_si256(ab, cd));
            }
        }
        i += 256;
    }
    while len - i >= 128 {
        // SAFETY: bytes i..i + 128 lie inside both ranges (loop condition); loadu and storeu
        // accept any alignment; all four loads precede the stores (see above).
        unsafe {
            let s = src.add(i).cast::<__m256i>();
            let d = dst.add(i).cast::<__m256i>();
            let a = _mm256_xor_si256(_mm256_loadu_si256(s), k);
            let b = _mm256_xor_si256(_mm256_loadu_si256(s.add(1)), k);
            let c = _mm256_xor_si256(_mm256_loadu_si256(s.add(2)), k);
            let e = _mm256_xor_si256(_mm256_loadu_si256(s.add(3)), k);
            _mm256_storeu_si256(d, a);
            _mm256_storeu_si256(d.add(1), b);
            _mm256_storeu_si256(d.add(2), c);
            _mm256_storeu_si256(d.add(3), e);
            if ASCII {
                seen = _mm256_or_si256(
                    seen,
                    _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, e)),
                );
            }
        }
        i += 128;
    }
    while len - i >= 32 {
        // SAFETY: bytes i..i + 32 lie inside both ranges; loadu and storeu accept any alignment.
        unsafe {
            let v = _mm256_xor_si256(_mm256_loadu_si256(src.add(i).cast::<__m256i>()), k);
            _mm256_storeu_si256(dst.add(i).cast::<__m256i>(), v);
            if ASCII {
                seen = _mm256_or_si256(seen, v);
            }
        }
        i += 32;
    }
    let first = _mm256_xor_si256(first, _mm256_set1_epi32(k_first));
    let last = _mm256_xor_si256(last, _mm256_set1_epi32(k_last));
    // SAFETY: the first and last 32 of the `len >= 32` writable bytes; storeu accepts any
    // alignment; the values are right even where they overlap the body (see above).
    unsafe {
        _mm256_storeu_si256(dst.cast::<__m256i>(), first);
        _mm256_storeu_si256(dst.add(len - 32).cast::<__m256i>(), last);
    }
    // Every byte was written by the body, the first or the last vector, and the values agree
    // where they overlap: the OR of all of them has a high bit iff some byte is not ASCII.
    ASCII && _mm256_movemask_epi8(_mm256_or_si256(seen, _mm256_or_si256(first, last))) == 0
}

/// [`xor_avx2_tracking`] without the tracking.
///
/// # Safety
///
/// As for [`xor_avx2_tracking`].
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn xor_avx2(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
    // SAFETY: the caller's promises are the tracking kernel's.
    unsafe { xor_avx2_tracking::<false>(src, dst, len, key) };
}

/// The AVX-512 kernel: [`xor_avx2`]'s scheme with 64-byte vectors, 256 bytes per loop
/// iteration, without the ASCII tracking. Used up to [`AVX512_MAX`] only, so it has no
/// prefetching variant.
///
/// # Safety
///
/// The CPU must have AVX-512 F. `len >= 64`. `src` must be valid for reads and `dst` for
/// writes of `len` bytes, and the two ranges must be either identical (in-place masking) or
/// disjoint.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn xor_avx512(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
    use core::arch::x86_64::{
        __m512i, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_storeu_si512, _mm512_xor_si512,
    };
    debug_assert!(len >= 64);
    // As in the AVX2 kernel: the body's loads are aligned, the first and last vectors are
    // loaded before any store and stored after the body.
    let start = body_start(src, 64);
    let (k_first, k_body, k_last) = kernel_keys(key, start, len, 64);
    let k = _mm512_set1_epi32(k_body);
    // SAFETY: AVX-512 F is present (the caller's promise). The loads read the first and last
    // 64 of the `len >= 64` readable bytes; loadu accepts any alignment.
    let (first, last) = unsafe {
        (
            _mm512_loadu_si512(src.cast::<__m512i>()),
            _mm512_loadu_si512(src.add(len - 64).cast::<__m512i>()),
        )
    };
    let mut i = start;
    while len - i >= 256 {
        // SAFETY: bytes i..i + 256 lie inside both ranges (loop condition); loadu and storeu
        // accept any alignment; all four loads precede the stores.
        unsafe {
            let s = src.add(i).cast::<__m512i>();
            let d = dst.add(i).cast::<__m512i>();
            let a = _mm512_xor_si512(_mm512_loadu_si512(s), k);
            let b = _mm512_xor_si512(_mm512_loadu_si512(s.add(1)), k);
            let c = _mm512_xor_si512(_mm512_loadu_si512(s.add(2)), k);
            let e = _mm512_xor_si512(_mm512_loadu_si512(s.add(3)), k);
            _mm512_storeu_si512(d, a);
            _mm512_storeu_si512(d.add(1), b);
            _mm512_storeu_si512(d.add(2), c);
            _mm512_storeu_si512(d.add(3), e);
        }
        i += 256;
    }
    while len - i >= 64 {
        // SAFETY: bytes i..i + 64 lie inside both ranges; loadu and storeu accept any
        // alignment.
        unsafe {
            let v = _mm512_xor_si512(_mm512_loadu_si512(src.add(i).cast::<__m512i>()), k);
            _mm512_storeu_si512(dst.add(i).cast::<__m512i>(), v);
        }
        i += 64;
    }
    // SAFETY: the first and last 64 of the `len >= 64` writable bytes; storeu accepts any
    // alignment; the values are right even where they overlap the body.
    unsafe {
        _mm512_storeu_si512(
            dst.cast::<__m512i>(),
            _mm512_xor_si512(first, _mm512_set1_epi32(k_first)),
        );
        _mm512_storeu_si512(
            dst.add(len - 64).cast::<__m512i>(),
            _mm512_xor_si512(last, _mm512_set1_epi32(k_last)),
        );
    }
}

/// The NEON kernel: 16-byte vectors, 64 bytes per loop iteration.
///
/// # Safety
///
/// `len >= 16`. `src` must be valid for reads and `dst` for writes of `len` bytes, and the two
/// ranges must be either identical (in-place masking) or disjoint.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[inline]
unsafe fn xor_neon(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
    use core::arch::aarch64::{veorq_u8, vld1q_u8, vst1q_u8};
    debug_assert!(len >= 16);
    let start = body_start(dst, 16);
    let (k_first, k_body, k_last) = kernel_keys(key, start, len, 16);
    // Built from a byte array rather than a u32 splat so that big-endian aarch64 gets the same
    // memory order.
    let splat = |k: i32| -> [u8; 16] {
        let k = k.to_ne_bytes();
        core::array::from_fn(|i| k[i % 4])
    };
    let (p_first, p_body, p_last) = (splat(k_first), splat(k_body), splat(k_last));
    // SAFETY: NEON is enabled at compile time. The patterns are 16 readable bytes each, and the
    // other loads read the first and last 16 of the `len >= 16` readable bytes; vld1q_u8 needs
    // only byte alignment.
    let (first, last, k, k_first, k_last) = unsafe {
        (
            vld1q_u8(src),
            vld1q_u8(src.add(len - 16)),
            vld1q_u8(p_body.as_ptr()),
            vld1q_u8(p_first.as_ptr()),
            vld1q_u8(p_last.as_ptr()),
        )
    };
    let mut i = start;
    while len - i >= 64 {
        // SAFETY: bytes i..i + 64 lie inside both ranges (loop condition); vld1q/vst1q need
        // only byte alignment; all four loads precede the stores (see above).
        unsafe {
            let a = vld1q_u8(src.add(i));
            let b = vld1q_u8(src.add(i + 16));
            let c = vld1q_u8(src.add(i + 32));
            let e = vld1q_u8(src.add(i + 48));
            vst1q_u8(dst.add(i), veorq_u8(a, k));
            vst1q_u8(dst.add(i + 16), veorq_u8(b, k));
            vst1q_u8(dst.add(i + 32), veorq_u8(c, k));
            vst1q_u8(dst.add(i + 48), veorq_u8(e, k));
        }
        i += 64;
    }
    while len - i >= 16 {
        // SAFETY: bytes i..i + 16 lie inside both ranges; vld1q/vst1q need only byte alignment.
        unsafe {
            let v = vld1q_u8(src.add(i));
            vst1q_u8(dst.add(i), veorq_u8(v, k));
        }
        i += 16;
    }
    // SAFETY: the first and last 16 of the `len >= 16` writable bytes; vst1q needs only byte
    // alignment; the values are right even where they overlap the body (see above).
    unsafe {
        vst1q_u8(dst, veorq_u8(first, k_first));
        vst1q_u8(dst.add(len - 16), veorq_u8(last, k_last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Deterministic, non-repeating-looking bytes so that a wrong key phase cannot hide.
    fn data(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn available() -> Vec<MaskPath> {
        MaskPath::ALL
            .iter()
            .copied()
            .filter(|p| p.is_available())
            .collect()
    }

    #[test]
    fn rfc_6455_example() {
        // Section 5.7: a masked "Hello" from client to server.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut buf = *b"Hello";
        apply_mask(&mut buf, key);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut buf, key);
        assert_eq!(&buf, b"Hello");
    }

    #[test]
    fn rotate_key_examples() {
        let key = [1, 2, 3, 4];
        assert_eq!(rotate_key(key, 0), [1, 2, 3, 4]);
        assert_eq!(rotate_key(key, 1), [2, 3, 4, 1]);
        assert_eq!(rotate_key(key, 2), [3, 4, 1, 2]);
        assert_eq!(rotate_key(key, 3), [4, 1, 2, 3]);
        assert_eq!(rotate_key(key, 4), key);
        assert_eq!(rotate_key(key, 4001), [2, 3, 4, 1]);
        assert_eq!(rotate_key(key, usize::MAX), [4, 1, 2, 3]);
    }

    #[test]
    fn every_path_matches_reference_at_every_length_and_alignment() {
        let key = [0x9e, 0x37, 0x79, 0xb9];
        let paths = available();
        for len in 0..=300 {
            let original = data(len + 64, len as u32);
            for offset in 0..64 {
                let mut expected = original.clone();
                apply_mask_reference(&mut expected[offset..offset + len], key);
                for &path in &paths {
                    let mut got = original.clone();
                    apply_mask_via(path, &mut got[offset..offset + len], key);
                    assert_eq!(got, expected, "{path:?} len {len} offset {offset}");
                }
                let mut got = original.clone();
                apply_mask(&mut got[offset..offset + len], key);
                assert_eq!(got, expected, "apply_mask len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn every_path_copies_at_every_length_and_alignment() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let paths = available();
        for len in 0..=300 {
            let src_buf = data(len + 64, !(len as u32));
            for offset in 0..64 {
                // Misalign source and destination differently, so the kernels see loads and
                // stores at unrelated alignments.
                let src = &src_buf[(offset * 7) % 64..][..len];
                let mut expected = Vec::from(src);
                apply_mask_reference(&mut expected, key);
                for &path in &paths {
                    let mut dst_buf = data(len + 64, 7);
                    let before = dst_buf.clone();
                    copy_masked_via(path, &mut dst_buf[offset..offset + len], src, key);
                    assert_eq!(&dst_buf[offset..offset + len], &expected[..], "{path:?}");
                    assert_eq!(dst_buf[..offset], before[..offset], "{path:?} wrote before");
                    assert_eq!(
                        dst_buf[offset + len..],
                        before[offset + len..],
                        "{path:?} wrote after"
                    );
                }
                let mut dst = data(len, 9);
                copy_masked(&mut dst, src, key);
                assert_eq!(dst, expected);
            }
        }
    }

    #[test]
    fn large_buffers_on_every_path() {
        let paths = available();
        for (i, &len) in [4096usize, 65_536, 65_536 + 13, 1 << 20].iter().enumerate() {
            let key = [i as u8, 0x55, 0xaa, 0xff];
            let original = data(len + 3, len as u32);
            let mut expected = original.clone();
            apply_mask_reference(&mut expected[3..], key);
            for &path in &paths {
                let mut got = original.clone();
                apply_mask_via(path, &mut got[3..], key);
                assert!(got == expected, "{path:?} len {len}");
            }
        }
    }

    #[test]
    fn sse2_and_words_are_always_available() {
        assert!(MaskPath::Words.is_available());
        #[cfg(target_arch = "x86_64")]
        assert!(MaskPath::Sse2.is_available());
    }

    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    #[test]
    fn simd_detection_is_cached_and_agrees_with_std() {
        let avx2 = std::is_x86_feature_detected!("avx2") || cfg!(target_feature = "avx2");
        let avx512 = avx2
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vbmi2");
        assert_eq!(has_avx2(), avx2);
        assert_eq!(has_avx512(), avx512);
        if !cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512vbmi2"
        )) {
            let level = match (avx2, avx512) {
                (_, true) => LEVEL_AVX512,
                (true, false) => LEVEL_AVX2,
                _ => LEVEL_SSE2,
            };
            assert_eq!(SIMD_STATE.load(Ordering::Relaxed), level);
        }
        assert_eq!(has_avx2(), MaskPath::Avx2.is_available());
        assert_eq!(has_avx512(), MaskPath::Avx512.is_available());
    }

    /// Production dispatch by length: AVX-512 only from 64 bytes to `AVX512_MAX`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_is_chosen_only_for_payloads_that_stay_in_l1() {
        let wide = if has_avx2() {
            MaskPath::Avx2
        } else {
            MaskPath::Sse2
        };
        let widest = if has_avx512() { MaskPath::Avx512 } else { wide };
        for (len, path) in [
            (32, wide),
            (63, wide),
            (64, widest),
            (AVX512_MAX, widest),
            (AVX512_MAX + 1, wide),
        ] {
            assert_eq!(path_for::<true>(len), path, "len {len}");
            // The receive path's copies never take AVX-512.
            let capped = if path == MaskPath::Avx512 { wide } else { path };
            assert_eq!(path_for::<false>(len), capped, "len {len}");
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn copy_masked_rejects_mismatched_lengths() {
        let mut dst = [0u8; 40];
        copy_masked(&mut dst, &[0u8; 41], [1, 2, 3, 4]);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn copy_masked_rejects_mismatched_short_lengths() {
        let mut dst = [0u8; 3];
        copy_masked(&mut dst, &[0u8; 2], [1, 2, 3, 4]);
    }
}
