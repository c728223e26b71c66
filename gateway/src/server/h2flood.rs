//! The HTTP/2 flood scanner ([`H2Scanner`]), fed by [`super::scan::Scanner`] after the preface.
//!
//! It reads 9-byte frame headers and skips payloads, counting PING and SETTINGS frames without
//! ACK in a sliding one-second window; above the budget it reports a flood (hyper/h2 answer
//! those frames forever). `WINDOW_UPDATE` on stream 0 is deliberately not counted: a client
//! downloading fast sends many legitimately.
//!
//! It also follows header blocks (HEADERS and CONTINUATION payloads, HPACK-decoded with its
//! own copy of the connection's dynamic table) to spot pseudo-header fields in a trailer
//! section, which RFC 9113 §8.1 makes malformed. The h2 crate silently drops them, so the
//! request would otherwise go on; the scanner reports it before hyper reads those bytes, and
//! the connection is refused with nothing of that request forwarded. When it cannot follow
//! (an undecodable block, a block over the size bound) it stops following header blocks for
//! that connection and never rejects on its own what it could not read.

pub(super) const FRAME_SETTINGS: u8 = 0x4;
pub(super) const FRAME_PING: u8 = 0x6;
pub(super) const FLAG_ACK: u8 = 0x1;
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The HPACK table size the server advertises (hyper's h2 keeps the default).
const HEADER_TABLE_SIZE: usize = 4096;
/// Streams remembered as having sent their request head (more are forgotten oldest first).
const MAX_OPEN_STREAMS: usize = 4096;

/// What the header-block follower knows about a connection.
struct Fields {
    names: super::hpack::Names,
    /// The current frame's payload (HEADERS or CONTINUATION), while it arrives.
    frame: Vec<u8>,
    /// The header block being assembled: stream, whether it is a trailer section, whether it
    /// ends the stream, and its bytes.
    block: Option<(u32, bool, bool, Vec<u8>)>,
    /// Streams whose request head was seen and that have not ended.
    open: std::collections::BTreeSet<u32>,
    /// Largest header block followed.
    limit: usize,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fields")
            .field("open", &self.open.len())
            .finish()
    }
}

/// Why following header blocks stopped, or what it found.
enum Followed {
    Fine,
    Malformed,
    GiveUp,
}

impl Fields {
    /// One complete HEADERS or CONTINUATION frame.
    fn frame(&mut self, kind: u8, flags: u8, stream: u32) -> Followed {
        let payload = std::mem::take(&mut self.frame);
        let mut fragment = payload.as_slice();
        if kind == FRAME_HEADERS {
            if flags & FLAG_PADDED != 0 {
                let Some((&pad, rest)) = fragment.split_first() else {
                    return Followed::GiveUp;
                };
                let Some(end) = rest.len().checked_sub(usize::from(pad)) else {
                    return Followed::GiveUp;
                };
                fragment = &rest[..end];
            }
            if flags & FLAG_PRIORITY != 0 {
                let Some(rest) = fragment.get(5..) else {
                    return Followed::GiveUp;
                };
                fragment = rest;
            }
            if self.block.is_some() {
                return Followed::GiveUp;
            }
            let trailers = self.open.contains(&stream);
            self.block = Some((
                stream,
                trailers,
                flags & FLAG_END_STREAM != 0,
                fragment.to_vec(),
            ));
        } else {
            match &mut self.block {
                Some((s, _, _, bytes)) if *s == stream => bytes.extend_from_slice(fragment),
                _ => return Followed::GiveUp,
            }
        }
        if self.block.as_ref().is_some_and(|b| b.3.len() > self.limit) {
            return Followed::GiveUp;
        }
        if flags & FLAG_END_HEADERS == 0 {
            return Followed::Fine;
        }
        let Some((stream, trailers, ends, bytes)) = self.block.take() else {
            return Followed::GiveUp;
        };
        let Ok(pseudo) = self.names.block(&bytes) else {
            return Followed::GiveUp;
        };
        if trailers {
            self.open.remove(&stream);
            return if pseudo {
                Followed::Malformed
            } else {
                Followed::Fine
            };
        }
        if !ends {
            self.open.insert(stream);
            while self.open.len() > MAX_OPEN_STREAMS {
                self.open.pop_first();
            }
        }
        Followed::Fine
    }
}

/// Reads HTTP/2 frame headers (after the preface) and counts control frames.
#[derive(Debug)]
pub struct H2Scanner {
    header: [u8; 9],
    filled: usize,
    /// Payload bytes of the current frame left to skip.
    skip: u64,
    /// Payload bytes of the current header-block frame left to collect.
    collect: usize,
    /// Header-block follower; `None` once it stopped.
    fields: Option<Box<Fields>>,
    /// A trailer section carried a pseudo-header field.
    malformed: bool,
    budget: u32,
    /// The current one-second bucket (ms / 1000), its count, and the previous bucket's count.
    bucket: u64,
    current: u64,
    previous: u64,
    flooded: bool,
}

impl H2Scanner {
    /// A scanner positioned right after the preface; header blocks up to `block_limit` bytes
    /// are followed.
    pub fn new(budget: u32, block_limit: usize) -> H2Scanner {
        H2Scanner {
            header: [0; 9],
            filled: 0,
            skip: 0,
            collect: 0,
            fields: Some(Box::new(Fields {
                names: super::hpack::Names::new(HEADER_TABLE_SIZE),
                frame: Vec::new(),
                block: None,
                open: std::collections::BTreeSet::new(),
                limit: block_limit,
            })),
            malformed: false,
            budget,
            bucket: 0,
            current: 0,
            previous: 0,
            flooded: false,
        }
    }

    /// Whether a trailer section carried a pseudo-header field (RFC 9113 §8.1).
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// Feeds frame bytes; true once the control-frame budget is exceeded (and from then on).
    pub fn feed(&mut self, bytes: &[u8], now_ms: u64) -> bool {
        let mut rest = bytes;
        while !self.flooded && !self.malformed && !rest.is_empty() {
            if self.collect > 0 {
                let take = self.collect.min(rest.len());
                if let (Some(fields), Some(chunk)) = (self.fields.as_mut(), rest.get(..take)) {
                    fields.frame.extend_from_slice(chunk);
                }
                self.collect -= take;
                rest = rest.get(take..).unwrap_or_default();
                if self.collect == 0 {
                    self.header_frame_done();
                }
                continue;
            }
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
            let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = self.header;
            let length = u32::from_be_bytes([0, l0, l1, l2]);
            let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
            self.skip = u64::from(length);
            if matches!(kind, FRAME_PING | FRAME_SETTINGS) && flags & FLAG_ACK == 0 {
                self.flooded = self.count(now_ms);
            }
            if let Some(fields) = self.fields.as_mut() {
                match kind {
                    FRAME_HEADERS | FRAME_CONTINUATION => {
                        self.skip = 0;
                        self.collect = usize::try_from(length).unwrap_or(usize::MAX);
                        fields.frame.clear();
                        if self.collect == 0 {
                            self.header_frame_done();
                        }
                    }
                    FRAME_DATA if flags & FLAG_END_STREAM != 0 => {
                        fields.open.remove(&stream);
                    }
                    FRAME_RST_STREAM => {
                        fields.open.remove(&stream);
                    }
                    _ => {}
                }
            }
        }
        self.flooded
    }

    /// The current HEADERS or CONTINUATION frame's payload is complete.
    fn header_frame_done(&mut self) {
        let [_, _, _, kind, flags, s0, s1, s2, s3] = self.header;
        let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
        let Some(fields) = self.fields.as_mut() else {
            return;
        };
        match fields.frame(kind, flags, stream) {
            Followed::Fine => {}
            Followed::Malformed => self.malformed = true,
            Followed::GiveUp => self.fields = None,
        }
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
    use crate::server::scan::tests::config;
    use crate::server::scan::{Scanner, PREFACE};

    /// One frame: header and payload.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
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

    /// HPACK literal without indexing, new name.
    fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
        out.push(0x00);
        out.push(u8::try_from(name.len()).unwrap());
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value.as_bytes());
    }

    fn request(stream: u32) -> Vec<u8> {
        // :method POST (static 3), :scheme http (6), :path / (4); :authority with incremental
        // indexing (name: static 1), so the trailers below can refer to it in the dynamic
        // table (index 62).
        let mut block = vec![0x83, 0x86, 0x84, 0x41, 9];
        block.extend_from_slice(b"localhost");
        let mut out = frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, &block);
        out.extend(frame(FRAME_DATA, 0, stream, b"hi"));
        out
    }

    fn malformed(input: &[u8]) -> bool {
        let mut s = H2Scanner::new(100, 64 * 1024);
        // Byte by byte: frames and blocks split anywhere.
        for b in input {
            s.feed(std::slice::from_ref(b), 0);
        }
        let whole = {
            let mut w = H2Scanner::new(100, 64 * 1024);
            w.feed(input, 0);
            w.malformed()
        };
        assert_eq!(s.malformed(), whole);
        whole
    }

    #[test]
    fn pseudo_headers_in_trailers_are_spotted() {
        let end = FLAG_END_STREAM | FLAG_END_HEADERS;
        let mut fine = Vec::new();
        literal("x-checksum", "abc", &mut fine);
        let mut literal_pseudo = Vec::new();
        literal(":path", "/admin", &mut literal_pseudo);
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "regular trailer",
                frame(FRAME_HEADERS, end, 1, &fine),
                false,
            ),
            (
                "literal :path",
                frame(FRAME_HEADERS, end, 1, &literal_pseudo),
                true,
            ),
            ("static :path", frame(FRAME_HEADERS, end, 1, &[0x84]), true),
            (
                "dynamic :authority",
                frame(FRAME_HEADERS, end, 1, &[0xbe]),
                true,
            ),
            (
                "padded, with priority",
                {
                    let mut p = vec![3, 0, 0, 0, 0, 16];
                    p.push(0x84);
                    p.extend_from_slice(&[0, 0, 0]);
                    frame(FRAME_HEADERS, end | FLAG_PADDED | FLAG_PRIORITY, 1, &p)
                },
                true,
            ),
            (
                "in a continuation",
                {
                    let mut f = frame(FRAME_HEADERS, FLAG_END_STREAM, 1, &fine);
                    f.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[0x84]));
                    f
                },
                true,
            ),
        ];
        for (name, trailers, want) in cases {
            let mut input = request(1);
            input.extend(trailers);
            assert_eq!(malformed(&input), want, "{name}");
        }
        // A request head (not trailers) with pseudo-headers is fine; so is a second stream's
        // head, and the trailers of a stream that was reset are not judged as such.
        let mut input = request(1);
        input.extend(request(3));
        input.extend(frame(FRAME_RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        input.extend(frame(FRAME_HEADERS, end, 1, &fine));
        assert!(!malformed(&input));
        // A block that cannot be decoded stops the follower; nothing is reported.
        let mut input = request(1);
        input.extend(frame(
            FRAME_HEADERS,
            end,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        input.extend(request(5));
        input.extend(frame(FRAME_HEADERS, end, 5, &[0x84]));
        assert!(!malformed(&input));
    }
}
