//! The engine's notion of time: a point on a clock the caller owns.
//!
//! The engine never reads a clock (it must run under `no_std`, in simulations and in tests that
//! step virtual time), so every input that needs time carries an [`Instant`]: a [`Duration`]
//! since an epoch the caller picks once per connection (process start, the connection's start,
//! or zero in a test). Instants given to one engine must never go backwards.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, as the distance from an epoch chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `since_epoch` after the caller's epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Instant(since_epoch)
    }

    /// Shorthand for tests and simulations: `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(Duration::from_millis(ms))
    }

    /// The distance from the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this instant is; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        // Saturate rather than panic: a caller-supplied "never" (Duration::MAX) must not crash.
        Instant(self.0.saturating_add(rhs))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}
