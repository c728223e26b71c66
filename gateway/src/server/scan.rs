//! Byte-level scanners that run below hyper, on every byte the connection reads.
//!
//! They never decide anything on their own and never hold request bytes: a few counters and a
//! small fixed state per connection, O(bytes) with bodies skipped in bulk. The HTTP/1 framing
//! scanner is [`super::h1frame`], the HTTP/2 flood scanner [`super::h2flood`].
//!
//! [`Scanner`] picks the protocol the way hyper-util's `auto` builder does: the connection is
//! HTTP/2 exactly when its first 24 bytes are the preface (also under ALPN `h2`, where the
//! client sends the preface too).

use super::h1frame::H1Scanner;
use super::h2flood::H2Scanner;

/// The HTTP/2 connection preface.
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's scanner needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanConfig {
    /// HTTP/2 may be served (prior knowledge or ALPN): watch for the preface.
    pub h2: bool,
    /// Longest request head hyper accepts; a longer one stops the HTTP/1 scanner.
    pub head_limit: usize,
    /// HTTP/2 PING + SETTINGS frames (without ACK) tolerated per second.
    pub h2_control_frames_per_sec: u32,
}

/// What a chunk of input revealed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Findings {
    /// Index of the first HTTP/1 request head carrying both `Content-Length` and
    /// `Transfer-Encoding` (reported once).
    pub cl_te_head: Option<u64>,
    /// The HTTP/2 control-frame budget was exceeded.
    pub h2_flood: bool,
    /// An HTTP/2 trailer section carried a pseudo-header field (malformed, RFC 9113 §8.1).
    pub h2_malformed: bool,
}

/// The per-connection scanner: protocol detection, then the HTTP/1 or HTTP/2 scanner.
#[derive(Debug)]
pub struct Scanner {
    mode: Mode,
    config: ScanConfig,
}

#[derive(Debug)]
enum Mode {
    /// Comparing the first bytes with the HTTP/2 preface; `usize` bytes matched so far.
    Detect(usize),
    H1(H1Scanner),
    H2(H2Scanner),
    Off,
}

impl Scanner {
    /// A scanner for a new connection.
    pub fn new(config: ScanConfig) -> Scanner {
        let mode = if config.h2 {
            Mode::Detect(0)
        } else {
            Mode::H1(H1Scanner::new(config.head_limit))
        };
        Scanner { mode, config }
    }

    /// Feeds the bytes just read; `now_ms` is the current monotonic time in milliseconds.
    pub fn feed(&mut self, bytes: &[u8], now_ms: u64) -> Findings {
        let mut findings = Findings::default();
        let mut rest = bytes;
        if let Mode::Detect(matched) = &mut self.mode {
            let mut used = 0;
            let mut is_h2 = None;
            for &b in rest {
                if PREFACE.get(*matched) == Some(&b) {
                    *matched += 1;
                    used += 1;
                    if *matched == PREFACE.len() {
                        is_h2 = Some(true);
                        break;
                    }
                } else {
                    is_h2 = Some(false);
                    break;
                }
            }
            let matched = *matched;
            rest = rest.get(used..).unwrap_or_default();
            match is_h2 {
                None => return findings,
                Some(true) => {
                    self.mode = Mode::H2(H2Scanner::new(
                        self.config.h2_control_frames_per_sec,
                        self.config.head_limit,
                    ));
                }
                Some(false) => {
                    // Not HTTP/2: what matched the preface so far is the start of HTTP/1 input.
                    let mut h1 = H1Scanner::new(self.config.head_limit);
                    findings.cl_te_head = h1.feed(PREFACE.get(..matched).unwrap_or_default());
                    self.mode = Mode::H1(h1);
                }
            }
        }
        match &mut self.mode {
            Mode::H1(h1) => {
                if findings.cl_te_head.is_none() {
                    findings.cl_te_head = h1.feed(rest);
                }
                if h1.is_off() {
                    self.mode = Mode::Off;
                }
            }
            Mode::H2(h2) => {
                findings.h2_flood = h2.feed(rest, now_ms);
                findings.h2_malformed = h2.malformed();
            }
            Mode::Detect(_) | Mode::Off => {}
        }
        findings
    }

    /// Whether the scanner has stopped for good (nothing more will be reported).
    pub fn is_off(&self) -> bool {
        matches!(self.mode, Mode::Off)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::server::h2flood::tests::frame;
    use crate::server::h2flood::{FLAG_ACK, FRAME_PING, FRAME_SETTINGS};

    /// The scanner settings of these tests (64 KiB heads, 100 control frames a second).
    pub(crate) fn config(h2: bool) -> ScanConfig {
        ScanConfig {
            h2,
            head_limit: 64 * 1024,
            h2_control_frames_per_sec: 100,
        }
    }

    #[test]
    fn preface_switches_to_h2_and_floods_are_spotted() {
        let ping = frame(FRAME_PING, 0, 0, &[7; 8]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
        // The preface split at every position, then 100 PINGs within one second: tolerated.
        for split in 0..input.len() {
            let mut s = Scanner::new(config(true));
            let (a, b) = input.split_at(split);
            assert_eq!(s.feed(a, 5_000), Findings::default());
            assert_eq!(s.feed(b, 5_000), Findings::default());
            assert!(matches!(s.mode, Mode::H2(_)));
        }
        let mut s = Scanner::new(config(true));
        s.feed(&input, 5_000);
        for _ in 0..99 {
            assert!(!s.feed(&ping, 5_100).h2_flood);
        }
        // ACKs, DATA and HEADERS are not counted; payloads are skipped (even ones that look
        // like PING headers).
        let mut other = frame(FRAME_PING, FLAG_ACK, 0, &[0; 8]);
        other.extend(frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]));
        other.extend(frame(0x0, 0, 1, &ping.repeat(50)));
        other.extend(frame(0x1, 0x4, 3, &[0x82; 20]));
        for b in &other {
            assert!(!s.feed(std::slice::from_ref(b), 5_200).h2_flood);
        }
        assert!(s.feed(&ping, 5_300).h2_flood);
    }
}
