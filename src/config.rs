//! Connection settings, with defaults chosen for relay servers.

use core::time::Duration;

/// Which end of the connection the engine plays. It decides the masking direction
/// (section 5.1: clients mask, servers must not) and who closes TCP first (section 7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection; sends unmasked frames and expects masked ones.
    Server,
    /// Opened the connection; masks every frame with a fresh key.
    Client,
}

/// How received data messages are handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Whole messages: fragments are reassembled up to `max_message_size`; a single-frame
    /// message is handed out without a copy.
    #[default]
    Messages,
    /// Each frame's payload as it arrives, in chunks, with first/last markers, so a relay can
    /// forward a message of any size without holding it whole. Text chunks are validated as
    /// they arrive but may split a code point.
    Streaming,
}

/// Engine settings. Start from [`Config::default`] and change what you need.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest accepted frame payload; a larger header is answered with 1009 before any of the
    /// payload is buffered. Default 16 MiB.
    pub max_frame_size: u64,
    /// Largest accepted message (all fragments together). Default 64 MiB.
    pub max_message_size: u64,
    /// Outgoing messages longer than this are sent as fragments of this size, so a PONG waits
    /// behind at most one fragment of data. Default 16 KiB: at 1 Mbit/s one fragment is on the
    /// wire for about 130 ms, well inside any keepalive budget, while the 4-10 byte header costs
    /// under 0.1 % of the bytes. Raise it on fast links if the per-frame cost shows up.
    pub max_send_fragment: usize,
    /// Budget for data queued and not yet written: its payload bytes, and 64 bytes for each
    /// message (so that it bounds the memory of many tiny messages as well). A send that would
    /// exceed it is refused and handed back; an empty queue takes any one message. Control
    /// frames do not count (coalescing bounds them). Default 4 MiB.
    pub max_outbound_bytes: usize,
    /// When the queued data, counted as for the budget, drops to this or below after a refused
    /// send, the engine emits [`Event::Writable`](crate::Event::Writable). Default 1 MiB.
    pub outbound_low_water: usize,
    /// When nothing has arrived for this long, queue a PING. `None` disables keepalive pings.
    /// Default 20 s.
    pub ping_interval: Option<Duration>,
    /// When nothing at all has arrived for this long, the peer is declared dead. `None`
    /// disables it. Default: 3 x the default ping interval (60 s).
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's Close after ours, and how long the application may take
    /// to read the peer's Close before the echo is sent anyway. Default 5 s.
    pub close_timeout: Duration,
    /// A fragmented message not finished within this long is failed with 1008. `None` (the
    /// default) means no limit.
    pub message_timeout: Option<Duration>,
    /// Whole messages or streamed chunks.
    pub delivery: Delivery,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_send_fragment: 16 << 10,
            max_outbound_bytes: 4 << 20,
            outbound_low_water: 1 << 20,
            ping_interval: Some(Duration::from_secs(20)),
            idle_timeout: Some(Duration::from_secs(60)),
            close_timeout: Duration::from_secs(5),
            message_timeout: None,
            delivery: Delivery::Messages,
        }
    }
}

impl Config {
    /// Sets the ping interval and the idle timeout to 3 x that interval (the usual pairing:
    /// two pings may be lost before the peer is declared dead).
    pub fn with_keepalive(mut self, ping_interval: Duration) -> Self {
        self.ping_interval = Some(ping_interval);
        self.idle_timeout = Some(ping_interval.saturating_mul(3));
        self
    }
}
