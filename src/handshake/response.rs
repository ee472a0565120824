//! HTTP error responses for refused handshakes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::{reason_phrase, WEBSOCKET_VERSION};

/// A refused handshake: the status, a one-line reason, and the complete HTTP response to write to
/// the peer before closing the connection.
///
/// Every response carries `Connection: close`, a `text/plain` body holding the reason and a
/// `Content-Length` that matches it. A `405` also says `Allow: GET`; a `426` also says
/// `Sec-WebSocket-Version: 13` (section 4.4) and `Upgrade: websocket` (RFC 9110 section 15.5.22).
///
/// ```
/// use wsframe::handshake::Rejection;
/// let rejection = Rejection::new(403, "origin not allowed");
/// assert_eq!(rejection.status(), 403);
/// assert_eq!(rejection.to_string(), "403 Forbidden: origin not allowed");
/// assert_eq!(
///     rejection.response(),
///     b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
///       Content-Length: 19\r\n\r\norigin not allowed\n"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {reason}", reason_phrase(*.status))]
pub struct Rejection {
    status: u16,
    reason: String,
    response: Vec<u8>,
}

impl Rejection {
    /// A rejection with `status` and a one-line `reason`. Control characters in `reason` (line
    /// breaks included) become spaces, so it cannot break the response apart.
    ///
    /// # Panics
    ///
    /// If `status` is not an error status (400 to 599): anything else would tell the peer the
    /// request went through, or that it should follow a redirect this response does not name.
    pub fn new(status: u16, reason: &str) -> Self {
        assert!(
            (400..=599).contains(&status),
            "a handshake rejection needs a 4xx or 5xx status, not {status}"
        );
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut head = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {status} {}\r\nConnection: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            reason_phrase(status),
            if status == 426 { "close, Upgrade" } else { "close" },
            reason.len() + 1,
        );
        for (name, value) in extra_headers(status) {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut response = head.into_bytes();
        response.extend_from_slice(reason.as_bytes());
        response.push(b'\n');
        Rejection {
            status,
            reason,
            response,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why, in one line; also the response body (followed by a newline).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The response bytes to write before closing.
    pub fn response(&self) -> &[u8] {
        &self.response
    }

    /// The response bytes, without copying.
    pub fn into_response(self) -> Vec<u8> {
        self.response
    }

    /// Headers this status needs beyond the usual ones, for callers who build the response in
    /// their own HTTP stack instead of writing [`response`](Self::response): `Allow: GET` for
    /// 405, `Sec-WebSocket-Version: 13` and `Upgrade: websocket` for 426, none otherwise.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        extra_headers(self.status)
    }
}

fn extra_headers(status: u16) -> &'static [(&'static str, &'static str)] {
    match status {
        405 => &[("Allow", "GET")],
        426 => &[
            ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
            ("Upgrade", "websocket"),
        ],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn version_rejection_names_the_version() {
        let r = Rejection::new(426, "unsupported");
        assert_eq!(
            r.response(),
            b"HTTP/1.1 426 Upgrade Required\r\nConnection: close, Upgrade\r\n\
              Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\
              Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\nunsupported\n"
        );
    }

    #[test]
    fn method_rejection_says_allow_get() {
        let r = Rejection::new(405, "x");
        assert_eq!(r.headers(), &[("Allow", "GET")]);
        assert!(r.response().windows(14).any(|w| w == b"Allow: GET\r\n\r\n"));
    }

    #[test]
    fn reason_cannot_inject_headers() {
        let r = Rejection::new(400, "bad\r\nSet-Cookie: x=1");
        assert_eq!(r.reason(), "bad  Set-Cookie: x=1");
        assert!(r.response().ends_with(b"\r\n\r\nbad  Set-Cookie: x=1\n"));
    }

    #[test]
    fn unlisted_status_gets_class_phrase() {
        assert_eq!(Rejection::new(499, "x").to_string(), "499 Client Error: x");
        assert_eq!(Rejection::new(599, "x").to_string(), "599 Server Error: x");
    }

    #[test]
    #[should_panic(expected = "needs a 4xx or 5xx status, not 200")]
    fn success_status_is_refused() {
        Rejection::new(200, "ok");
    }
}
