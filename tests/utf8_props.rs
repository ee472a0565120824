//! The streaming UTF-8 validator (section 8.1) against `core::str::from_utf8`, the reference:
//! the SIMD validator underneath must accept and reject exactly what core does, for any split
//! of the text into fragments.

use proptest::prelude::*;
use wsframe::utf8::Utf8Validator;

/// Mostly-valid text with a few bytes overwritten, so both valid and invalid inputs (and errors
/// late in long inputs, where the SIMD blocks are) are common.
fn text_like() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<char>(), 0..400),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        0usize..3,
    )
        .prop_map(|(chars, edits, ascii_runs)| {
            let mut bytes = Vec::new();
            for (i, c) in chars.into_iter().enumerate() {
                if ascii_runs > 0 && i % 7 < ascii_runs {
                    bytes.extend_from_slice(b"{\"k\":1}");
                }
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            if !bytes.is_empty() {
                for (at, b) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
            }
            bytes
        })
}

fn feed_split(bytes: &[u8], cuts: &[usize]) -> bool {
    let mut v = Utf8Validator::new();
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, bytes.len());
        if v.feed(&bytes[at..cut]).is_err() {
            return false;
        }
        at = cut;
    }
    v.feed(&bytes[at..]).is_ok() && v.finish().is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn whole_input_agrees_with_core(bytes in text_like()) {
        let mut v = Utf8Validator::new();
        let streamed = v.feed(&bytes);
        match core::str::from_utf8(&bytes) {
            Ok(_) => prop_assert!(streamed.is_ok() && v.finish().is_ok()),
            Err(e) => match e.error_len() {
                // Invalid: fails fast, at the byte core names.
                Some(_) => prop_assert_eq!(streamed.unwrap_err().offset, e.valid_up_to() as u64),
                // Only cut short: acceptable so far, rejected at the end.
                None => {
                    prop_assert!(streamed.is_ok());
                    prop_assert_eq!(v.finish().unwrap_err().offset, e.valid_up_to() as u64);
                }
            },
        }
    }

    #[test]
    fn any_split_gives_the_same_verdict(
        bytes in text_like(),
        mut cuts in proptest::collection::vec(0usize..2000, 0..6),
    ) {
        cuts.sort_unstable();
        prop_assert_eq!(feed_split(&bytes, &cuts), core::str::from_utf8(&bytes).is_ok());
    }
}
