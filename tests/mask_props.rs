//! Property tests for payload masking: every fast path must agree with the byte-at-a-time
//! reference whatever the length, alignment, key or split.

use proptest::prelude::*;
use wsframe::mask::{
    apply_mask, apply_mask_reference, apply_mask_via, copy_masked, copy_masked_via, rotate_key,
    MaskPath,
};

/// Paths this CPU can run; on an AVX2 machine that still includes SSE2 and u64 words.
fn paths() -> Vec<MaskPath> {
    MaskPath::ALL
        .iter()
        .copied()
        .filter(|p| p.is_available())
        .collect()
}

/// Cheap deterministic filler, so large buffers do not go through proptest's per-element
/// generation and shrinking.
fn filled(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Lengths up to 1100 most of the time (every SIMD head/body/tail split), sometimes large.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..=1100, 1 => 1101usize..=300_000]
}

/// Checks `apply_mask` and every path against the reference on `len` bytes starting `offset`
/// bytes into `original`, including that nothing outside the slice is touched.
fn check_in_place(original: &[u8], offset: usize, len: usize, key: [u8; 4]) {
    let mut expected = original.to_vec();
    apply_mask_reference(&mut expected[offset..offset + len], key);

    let mut got = original.to_vec();
    apply_mask(&mut got[offset..offset + len], key);
    assert!(
        got == expected,
        "apply_mask: len {len} offset {offset} key {key:x?}"
    );

    for path in paths() {
        let mut got = original.to_vec();
        apply_mask_via(path, &mut got[offset..offset + len], key);
        assert!(
            got == expected,
            "{path:?}: len {len} offset {offset} key {key:x?}"
        );
    }
}

#[test]
fn every_length_to_1100_at_every_alignment() {
    let original = filled(1100 + 64, 0x5eed);
    for len in 0..=1100 {
        for offset in 0..64 {
            // Vary the key too, so no length is only ever seen with one key phase pattern.
            let k = (len * 64 + offset) as u32;
            let key = k.wrapping_mul(0x9e37_79b9).to_le_bytes();
            check_in_place(&original[..offset + len], offset, len, key);
        }
    }
}

#[test]
fn every_value_in_every_key_lane() {
    // 2^32 keys are too many, but each key byte only ever meets its own lane, so trying every
    // value in every lane (with the other lanes distinct) covers what could go wrong.
    let original = filled(300 + 7, 42);
    for lane in 0..4 {
        for value in 0..=255u8 {
            let mut key = [0x11, 0x22, 0x33, 0x44];
            key[lane] = value;
            for &(offset, len) in &[(0, 300), (7, 300), (3, 31), (5, 129)] {
                check_in_place(&original[..offset + len], offset, len, key);
            }
        }
    }
}

proptest! {
    #[test]
    fn fast_path_equals_reference(
        len in length(),
        offset in 0usize..64,
        key in any::<[u8; 4]>(),
        seed in any::<u64>(),
    ) {
        let original = filled(offset + len + 64, seed);
        check_in_place(&original[..offset + len + 64], offset, len, key);
    }

    #[test]
    fn copy_masked_equals_copy_then_reference(
        len in length(),
        src_offset in 0usize..64,
        dst_offset in 0usize..64,
        key in any::<[u8; 4]>(),
        seed in any::<u64>(),
    ) {
        let src_buf = filled(src_offset + len, seed);
        let src = &src_buf[src_offset..];
        let mut expected = src.to_vec();
        apply_mask_reference(&mut expected, key);

        let original_dst = filled(dst_offset + len + 64, !seed);
        let range = dst_offset..dst_offset + len;

        let mut dst = original_dst.clone();
        copy_masked(&mut dst[range.clone()], src, key);
        prop_assert!(dst[range.clone()] == expected[..], "copy_masked");
        prop_assert!(dst[..dst_offset] == original_dst[..dst_offset], "wrote before dst");
        prop_assert!(dst[range.end..] == original_dst[range.end..], "wrote after dst");

        for path in paths() {
            let mut dst = original_dst.clone();
            copy_masked_via(path, &mut dst[range.clone()], src, key);
            prop_assert!(dst[range.clone()] == expected[..], "{:?}", path);
            prop_assert!(dst[..dst_offset] == original_dst[..dst_offset], "{:?} before", path);
            prop_assert!(dst[range.end..] == original_dst[range.end..], "{:?} after", path);
        }
    }

    #[test]
    fn masking_twice_restores(
        len in length(),
        offset in 0usize..64,
        key in any::<[u8; 4]>(),
        seed in any::<u64>(),
    ) {
        let original = filled(offset + len, seed);
        let mut buf = original.clone();
        apply_mask(&mut buf[offset..], key);
        apply_mask(&mut buf[offset..], key);
        prop_assert!(buf == original);

        let mut masked = vec![0; len];
        copy_masked(&mut masked, &original[offset..], key);
        apply_mask(&mut masked, key);
        prop_assert!(masked[..] == original[offset..]);
    }

    #[test]
    fn two_pieces_with_rotated_key_equal_whole(
        len in length(),
        split_frac in 0.0f64..=1.0,
        offset in 0usize..64,
        key in any::<[u8; 4]>(),
        seed in any::<u64>(),
    ) {
        let split = ((len as f64 * split_frac) as usize).min(len);
        let original = filled(offset + len, seed);

        let mut whole = original.clone();
        apply_mask_reference(&mut whole[offset..], key);

        let mut pieces = original.clone();
        let (first, second) = pieces[offset..].split_at_mut(split);
        apply_mask(first, key);
        apply_mask(second, rotate_key(key, first.len()));
        prop_assert!(pieces == whole);

        let mut copied = vec![0; len];
        let (dst_first, dst_second) = copied.split_at_mut(split);
        let (src_first, src_second) = original[offset..].split_at(split);
        copy_masked(dst_first, src_first, key);
        copy_masked(dst_second, src_second, rotate_key(key, split));
        prop_assert!(copied[..] == whole[offset..]);
    }

    #[test]
    fn many_pieces_with_running_rotation_equal_whole(
        cuts in proptest::collection::vec(0usize..200, 0..20),
        key in any::<[u8; 4]>(),
        seed in any::<u64>(),
    ) {
        // A payload arriving in many reads: each piece masked with the key rotated by the
        // total masked so far.
        let len: usize = cuts.iter().sum::<usize>() + 17;
        let original = filled(len, seed);
        let mut whole = original.clone();
        apply_mask_reference(&mut whole, key);

        let mut buf = original;
        let mut done = 0;
        for cut in cuts.iter().copied().chain([17]) {
            apply_mask(&mut buf[done..done + cut], rotate_key(key, done));
            done += cut;
        }
        prop_assert!(buf == whole);
    }

    #[test]
    fn rotate_key_composes(key in any::<[u8; 4]>(), a in any::<u32>(), b in any::<u32>()) {
        let (a, b) = (a as usize, b as usize);
        prop_assert_eq!(rotate_key(rotate_key(key, a), b), rotate_key(key, a.wrapping_add(b)));
        prop_assert_eq!(rotate_key(key, a), rotate_key(key, a % 4));
        let n = a % 4;
        prop_assert_eq!(rotate_key(key, a), [key[n], key[(n + 1) % 4], key[(n + 2) % 4], key[(n + 3) % 4]]);
    }
}
