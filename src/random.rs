//! Where unpredictable bytes come from: client mask keys (RFC 6455 section 5.3) and handshake
//! nonces (section 4.1). The engine never picks a source itself under `no_std`; the caller
//! supplies one. With `std`, [`OsRandom`] reads the operating system's generator.

/// A source of unpredictable bytes.
///
/// Section 5.3 requires mask keys that an attacker cannot predict from earlier frames, so an
/// implementation should be a cryptographically strong generator (the OS source, or a CSPRNG
/// seeded from it).
pub trait RandomSource: Send {
    /// Fills `buf` entirely with unpredictable bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8]) + Send> RandomSource for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf)
    }
}

/// The operating system's random source (via the `getrandom` crate).
#[cfg(feature = "std")]
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

#[cfg(feature = "std")]
impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        // A machine whose OS cannot supply randomness cannot speak the client role safely:
        // continuing with predictable keys would defeat section 5.3's purpose, so stop loudly.
        getrandom::fill(buf).expect("the operating system random source failed");
    }
}

/// Hands out 4-byte mask keys drawn from a [`RandomSource`] in batches, so the source (often a
/// system call) is asked once per 64 frames, not once per frame.
pub(crate) struct MaskKeys {
    source: alloc::boxed::Box<dyn RandomSource>,
    pool: [[u8; 4]; 64],
    next: usize,
}

impl MaskKeys {
    pub(crate) fn new(source: alloc::boxed::Box<dyn RandomSource>) -> Self {
        MaskKeys {
            source,
            pool: [[0; 4]; 64],
            next: 64,
        }
    }

    // Inlined, with whole keys as array elements (performance: one load per frame, not four
    // bounds-checked byte loads behind a call).
    #[inline]
    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        if self.next >= self.pool.len() {
            self.refill();
        }
        let key = self.pool[self.next];
        self.next += 1;
        key
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self) {
        self.source.fill(self.pool.as_flattened_mut());
        self.next = 0;
    }

    /// Fills `buf` straight from the source (handshake nonces).
    #[allow(dead_code)]
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        self.source.fill(buf);
    }
}

impl core::fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MaskKeys")
    }
}
