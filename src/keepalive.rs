//! Liveness: keepalive pings, the dead-peer (idle) deadline, and ping round-trip times.
//!
//! Proof of life is any inbound byte, not only a PONG: a peer busy sending a large message may
//! answer late, and its data says it is alive just as well. A successful write proves nothing
//! (on a half-open TCP connection writes succeed into the kernel buffer for minutes), so only
//! inbound silence counts. Deadlines are derived from two timestamps instead of being re-armed
//! on every read, which keeps the receive path free of timer work.

use bytes::Bytes;
use core::time::Duration;

use crate::time::Instant;

#[derive(Debug)]
pub(crate) struct Liveness {
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    last_rx: Instant,
    last_ping: Instant,
    sequence: u64,
    outstanding: Option<(Bytes, Instant)>,
    rtt: Option<Duration>,
}

impl Liveness {
    pub(crate) fn new(
        ping_interval: Option<Duration>,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> Self {
        Liveness {
            ping_interval,
            idle_timeout,
            last_rx: now,
            last_ping: now,
            sequence: 0,
            outstanding: None,
            rtt: None,
        }
    }

    #[inline]
    pub(crate) fn on_receive(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// When the next keepalive PING is due: an interval after the later of the last inbound
    /// byte and the last PING, so a silent peer gets one PING per interval until it is declared
    /// dead.
    pub(crate) fn ping_due(&self) -> Option<Instant> {
        self.ping_interval
            .map(|interval| self.last_rx.max(self.last_ping) + interval)
    }

    /// Whether keepalive PINGs or the idle timeout are configured at all.
    #[inline]
    pub(crate) fn has_timers(&self) -> bool {
        self.ping_interval.is_some() || self.idle_timeout.is_some()
    }

    /// When the peer is declared dead if nothing more arrives.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        self.idle_timeout.map(|timeout| self.last_rx + timeout)
    }

    pub(crate) fn silent_for(&self, now: Instant) -> Duration {
        now - self.last_rx
    }

    /// A fresh keepalive payload (a sequence number, so a late PONG for an earlier PING is not
    /// mistaken for the answer to the latest).
    pub(crate) fn next_keepalive(&mut self, now: Instant) -> Bytes {
        self.sequence += 1;
        let payload = Bytes::copy_from_slice(&self.sequence.to_be_bytes());
        self.on_ping_sent(payload.clone(), now);
        payload
    }

    /// Records a PING (keepalive or application) whose PONG will give a round-trip time.
    pub(crate) fn on_ping_sent(&mut self, payload: Bytes, now: Instant) {
        self.last_ping = now;
        self.outstanding = Some((payload, now));
    }

    pub(crate) fn on_pong(&mut self, payload: &[u8], now: Instant) {
        if let Some((expected, sent)) = &self.outstanding {
            if expected[..] == *payload {
                self.rtt = Some(now - *sent);
                self.outstanding = None;
            }
        }
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}
