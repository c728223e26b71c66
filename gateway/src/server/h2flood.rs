//! The HTTP/2 flood scanner ([`H2Scanner`]), fed by [`super::scan::Scanner`] after the preface.
//!
//! It reads 9-byte frame headers and skips payloads, counting PING and SETTINGS frames without
//! ACK in a sliding one-second window; above the budget it reports a flood (hyper/h2 answer
//! those frames forever). `WINDOW_UPDATE` on stream 0 is deliberately not counted: a client
//! downloading fast sends many legitimately.

pub(super) const FRAME_SETTINGS: u8 = 0x4;
pub(super) const FRAME_PING: u8 = 0x6;
pub(super) const FLAG_ACK: u8 = 0x1;

/// Reads HTTP/2 frame headers (after the preface) and counts control frames.
#[derive(Debug)]
pub struct H2Scanner {
    header: [u8; 9],
    filled: usize,
    /// Payload bytes of the current frame left to skip.
    skip: u64,
    budget: u32,
    /// The current one-second bucket (ms / 1000), its count, and the previous bucket's count.
    bucket: u64,
    current: u64,
    previous: u64,
    flooded: bool,
}

impl H2Scanner {
    /// A scanner positioned right after the preface.
    pub fn new(budget: u32) -> H2Scanner {
        H2Scanner {
            header: [0; 9],
            filled: 0,
            skip: 0,
            budget,
            bucket: 0,
            current: 0,
            previous: 0,
            flooded: false,
        }
    }

    /// Feeds frame bytes; true once the control-frame budget is exceeded (and from then on).
    pub fn feed(&mut self, bytes: &[u8], now_ms: u64) -> bool {
        let mut rest = bytes;
        while !self.flooded && !rest.is_empty() {
            if self.skip > 0 {
                let take = u64::try_from(rest.len()).unwrap_or(u64::MAX).min(self.skip);
                self.skip -= take;
                rest = rest
                    .get(usize::try_from(take).unwrap_or(rest.len())..)
                    .unwrap_or_default();
                continue;
            }
            let want = self.header.len() - self.filled;
            let take = want.min(rest.len());
            if let (Some(dst), Some(src)) = (
                self.header.get_mut(self.filled..self.filled + take),
                rest.get(..take),
            ) {
                dst.copy_from_slice(src);
            }
            self.filled += take;
            rest = rest.get(take..).unwrap_or_default();
            if self.filled < self.header.len() {
                break;
            }
            self.filled = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            self.skip = u64::from(u32::from_be_bytes([0, l0, l1, l2]));
            if matches!(kind, FRAME_PING | FRAME_SETTINGS) && flags & FLAG_ACK == 0 {
                self.flooded = self.count(now_ms);
            }
        }
        self.flooded
    }

    /// Counts one control frame; true when the sliding one-second estimate exceeds the budget.
    fn count(&mut self, now_ms: u64) -> bool {
        let bucket = now_ms / 1000;
        if bucket == self.bucket {
            self.current += 1;
        } else {
            self.previous = if bucket == self.bucket + 1 {
                self.current
            } else {
                0
            };
            self.current = 1;
            self.bucket = bucket;
        }
        let into = now_ms % 1000;
        let estimate = self.current + self.previous * (1000 - into) / 1000;
        estimate > u64::from(self.budget)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::server::scan::{ScanConfig, Scanner, PREFACE};

    /// One frame: header and payload.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn config(h2: bool) -> ScanConfig {
        ScanConfig {
            h2,
            head_limit: 64 * 1024,
            h2_control_frames_per_sec: 100,
        }
    }

    #[test]
    fn control_frames_at_a_normal_rate_are_fine() {
        let mut s = Scanner::new(config(true));
        s.feed(PREFACE, 0);
        let ping = frame(FRAME_PING, 0, 0, &[1; 8]);
        let settings = frame(FRAME_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        // About 83 control frames per second, for a minute, spread evenly.
        for ms in (0..60_000u64).step_by(12) {
            let unit = if ms % 24 == 0 { &ping } else { &settings };
            assert!(!s.feed(unit, ms).h2_flood, "at {ms} ms");
        }
        // A burst above the budget within one second is not.
        let burst = ping.repeat(200);
        assert!(s.feed(&burst, 70_000).h2_flood);
    }
}
