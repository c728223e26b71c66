//! Byte-level scanners that run below hyper, on every byte the connection reads.
//!
//! They never decide anything on their own and never hold request bytes: a few counters and a
//! small fixed state per connection, O(bytes) with bodies skipped in bulk.
//!
//! * **HTTP/1** ([`H1Scanner`]): hyper drops `Content-Length` when `Transfer-Encoding` is present
//!   (in either order), so the service never sees a request that carried both. The scanner
//!   follows message boundaries across pipelined requests exactly like hyper frames them (head
//!   up to the empty line, bare LF accepted like httparse; then `Content-Length` bytes, or a
//!   chunked body decoded like hyper's decoder) and reports the 0-based index of the first head
//!   that carried both field names. Anything it cannot follow makes it stop for good: hyper
//!   rejects such input itself, and the scanner must never be stricter than hyper.
//! * **HTTP/2** ([`H2Scanner`]): after the 24-byte preface it reads 9-byte frame headers and
//!   skips payloads, counting PING and SETTINGS frames without ACK in a sliding one-second
//!   window; above the budget it reports a flood (hyper/h2 answer those frames forever).
//!   `WINDOW_UPDATE` on stream 0 is deliberately not counted: a client downloading fast sends
//!   many legitimately.
//!
//! [`Scanner`] picks the protocol the way hyper-util's `auto` builder does: the connection is
//! HTTP/2 exactly when its first 24 bytes are the preface (also under ALPN `h2`, where the
//! client sends the preface too).
//!
//! Why the HTTP/1 verdict is always in time: [`super::io::TimedIo::poll_read`] feeds the scanner
//! the bytes it has just placed into hyper's read buffer, before returning them. hyper parses
//! only what an earlier `poll_read` returned, so every head hyper dispatches has been scanned in
//! full (a head split across reads is completed by the read that completes it for hyper too).

/// The HTTP/2 connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
const CHUNKED: &[u8] = b"chunked";

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
                    self.mode = Mode::H2(H2Scanner::new(self.config.h2_control_frames_per_sec));
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
            Mode::H2(h2) => findings.h2_flood = h2.feed(rest, now_ms),
            Mode::Detect(_) | Mode::Off => {}
        }
        findings
    }

    /// Whether the scanner has stopped for good (nothing more will be reported).
    pub fn is_off(&self) -> bool {
        matches!(self.mode, Mode::Off)
    }
}

/// Which framing field the current header line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    ContentLength,
    TransferEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H1State {
    /// Before a request line: empty lines are skipped (as httparse does).
    Start,
    /// After CR before a request line.
    StartLf,
    RequestLine,
    /// Start of a header line, or of the empty line that ends the head.
    LineStart,
    /// After the CR of the empty line.
    EndLf,
    Name,
    Value,
    /// After a CR inside a header line.
    ValueLf,
    /// `remaining` body bytes to skip.
    Body,
    ChunkStart,
    ChunkSize,
    ChunkLws,
    ChunkExt,
    ChunkSizeLf,
    ChunkData,
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk (and after each trailer line): CR ends the body, else a trailer.
    TrailersCr,
    Trailer,
    TrailerLf,
    TrailersLf,
    Off,
}

/// Follows HTTP/1 request framing and spots heads with both `Content-Length` and
/// `Transfer-Encoding`.
#[derive(Debug)]
pub struct H1Scanner {
    state: H1State,
    /// Complete heads seen so far (the index of the head being read).
    heads: u64,
    head_bytes: usize,
    head_limit: usize,
    /// Body bytes (or chunk bytes) left to skip; the chunk size while reading it.
    remaining: u64,
    // The current header line.
    name_len: usize,
    name_cl: bool,
    name_te: bool,
    field: Field,
    // Framing fields of the current head.
    saw_cl: bool,
    saw_te: bool,
    cl_bad: bool,
    cl: Option<u64>,
    te_chunked: bool,
    // The current Content-Length value.
    cl_acc: u64,
    cl_digits: bool,
    cl_trailing: bool,
    // The last comma-separated item of the current Transfer-Encoding value.
    te_len: usize,
    te_ok: bool,
    te_trailing: bool,
}

impl H1Scanner {
    /// A scanner at the start of a connection.
    pub fn new(head_limit: usize) -> H1Scanner {
        H1Scanner {
            state: H1State::Start,
            heads: 0,
            head_bytes: 0,
            head_limit,
            remaining: 0,
            name_len: 0,
            name_cl: false,
            name_te: false,
            field: Field::Other,
            saw_cl: false,
            saw_te: false,
            cl_bad: false,
            cl: None,
            te_chunked: false,
            cl_acc: 0,
            cl_digits: false,
            cl_trailing: false,
            te_len: 0,
            te_ok: true,
            te_trailing: false,
        }
    }

    /// Whether the scanner has stopped (input it cannot follow, or a CL+TE head was reported).
    pub fn is_off(&self) -> bool {
        self.state == H1State::Off
    }

    /// Feeds input; returns the index of a head that carried both CL and TE (then stops).
    pub fn feed(&mut self, bytes: &[u8]) -> Option<u64> {
        let mut i = 0;
        while let Some(rest) = bytes.get(i..) {
            let Some(&b) = rest.first() else {
                break;
            };
            match self.state {
                H1State::Off => break,
                H1State::Body | H1State::ChunkData => {
                    let take = u64::try_from(rest.len())
                        .unwrap_or(u64::MAX)
                        .min(self.remaining);
                    self.remaining -= take;
                    i += usize::try_from(take).unwrap_or(rest.len());
                    if self.remaining == 0 {
                        self.state = if self.state == H1State::Body {
                            H1State::Start
                        } else {
                            H1State::ChunkDataCr
                        };
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
            if let Some(index) = self.step(b) {
                self.state = H1State::Off;
                return Some(index);
            }
        }
        None
    }

    fn in_head(&mut self) -> bool {
        self.head_bytes += 1;
        if self.head_bytes > self.head_limit {
            self.state = H1State::Off;
            return false;
        }
        true
    }

    fn step(&mut self, b: u8) -> Option<u64> {
        use H1State as S;
        match self.state {
            S::Start => match b {
                b'\r' => self.state = S::StartLf,
                b'\n' => {}
                _ => {
                    self.begin_head();
                    if self.in_head() {
                        self.state = S::RequestLine;
                    }
                }
            },
            S::StartLf => {
                self.state = if b == b'\n' { S::Start } else { S::Off };
            }
            S::RequestLine => {
                if self.in_head() && b == b'\n' {
                    self.state = S::LineStart;
                }
            }
            S::LineStart => {
                if !self.in_head() {
                    return None;
                }
                match b {
                    b'\r' => self.state = S::EndLf,
                    b'\n' => return self.end_head(),
                    _ => {
                        self.name_len = 0;
                        self.name_cl = true;
                        self.name_te = true;
                        self.state = S::Name;
                        self.name_byte(b);
                    }
                }
            }
            S::EndLf => {
                if !self.in_head() {
                    return None;
                }
                if b == b'\n' {
                    return self.end_head();
                }
                self.state = S::Off;
            }
            S::Name => {
                if self.in_head() {
                    self.name_byte(b);
                }
            }
            S::Value => {
                if !self.in_head() {
                    return None;
                }
                match b {
                    b'\r' => self.state = S::ValueLf,
                    b'\n' => self.end_value(),
                    _ => self.value_byte(b),
                }
            }
            S::ValueLf => {
                if !self.in_head() {
                    return None;
                }
                if b == b'\n' {
                    self.end_value();
                } else {
                    self.state = S::Off;
                }
            }
            // Chunked body, byte for byte like hyper's decoder (strict CRLF there).
            S::ChunkStart => match hex(b) {
                Some(d) => {
                    self.remaining = u64::from(d);
                    self.state = S::ChunkSize;
                }
                None => self.state = S::Off,
            },
            S::ChunkSize => match (b, hex(b)) {
                (_, Some(d)) => {
                    match self
                        .remaining
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(d)))
                    {
                        Some(v) => self.remaining = v,
                        None => self.state = S::Off,
                    }
                }
                (b' ' | b'\t', _) => self.state = S::ChunkLws,
                (b';', _) => self.state = S::ChunkExt,
                (b'\r', _) => self.state = S::ChunkSizeLf,
                _ => self.state = S::Off,
            },
            S::ChunkLws => match b {
                b' ' | b'\t' => {}
                b';' => self.state = S::ChunkExt,
                b'\r' => self.state = S::ChunkSizeLf,
                _ => self.state = S::Off,
            },
            S::ChunkExt => match b {
                b'\r' => self.state = S::ChunkSizeLf,
                b'\n' => self.state = S::Off,
                _ => {}
            },
            S::ChunkSizeLf => {
                self.state = match (b, self.remaining) {
                    (b'\n', 0) => {
                        // Trailers have their own size budget in hyper.
                        self.head_bytes = 0;
                        S::TrailersCr
                    }
                    (b'\n', _) => S::ChunkData,
                    _ => S::Off,
                };
            }
            S::ChunkDataCr => {
                self.state = if b == b'\r' { S::ChunkDataLf } else { S::Off };
            }
            S::ChunkDataLf => {
                self.state = if b == b'\n' { S::ChunkStart } else { S::Off };
            }
            S::TrailersCr => {
                self.state = if b == b'\r' {
                    S::TrailersLf
                } else {
                    S::Trailer
                };
                self.trailer_byte();
            }
            S::Trailer => {
                if b == b'\r' {
                    self.state = S::TrailerLf;
                }
                self.trailer_byte();
            }
            S::TrailerLf => {
                self.state = if b == b'\n' { S::TrailersCr } else { S::Off };
                self.trailer_byte();
            }
            S::TrailersLf => {
                self.state = if b == b'\n' { S::Start } else { S::Off };
            }
            S::Body | S::ChunkData | S::Off => {}
        }
        None
    }

    /// Trailers are bounded by the head limit in hyper too.
    fn trailer_byte(&mut self) {
        self.head_bytes += 1;
        if self.head_bytes > self.head_limit {
            self.state = H1State::Off;
        }
    }

    fn begin_head(&mut self) {
        self.head_bytes = 0;
        self.saw_cl = false;
        self.saw_te = false;
        self.cl_bad = false;
        self.cl = None;
        self.te_chunked = false;
    }

    fn name_byte(&mut self, b: u8) {
        match b {
            b':' => {
                self.field = if self.name_cl && self.name_len == CONTENT_LENGTH.len() {
                    self.cl_acc = 0;
                    self.cl_digits = false;
                    self.cl_trailing = false;
                    Field::ContentLength
                } else if self.name_te && self.name_len == TRANSFER_ENCODING.len() {
                    self.te_len = 0;
                    self.te_ok = true;
                    self.te_trailing = false;
                    Field::TransferEncoding
                } else {
                    Field::Other
                };
                self.state = H1State::Value;
            }
            // A line without a colon: hyper refuses the head.
            b'\r' | b'\n' => self.state = H1State::Off,
            _ => {
                let lower = b.to_ascii_lowercase();
                self.name_cl &= CONTENT_LENGTH.get(self.name_len) == Some(&lower);
                self.name_te &= TRANSFER_ENCODING.get(self.name_len) == Some(&lower);
                self.name_len = self.name_len.saturating_add(1);
            }
        }
    }

    fn value_byte(&mut self, b: u8) {
        match self.field {
            Field::Other => {}
            Field::ContentLength => match b {
                b' ' | b'\t' => self.cl_trailing = self.cl_digits,
                b'0'..=b'9' if !self.cl_trailing => {
                    match self
                        .cl_acc
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    {
                        Some(v) => self.cl_acc = v,
                        None => self.cl_bad = true,
                    }
                    self.cl_digits = true;
                }
                _ => self.cl_bad = true,
            },
            Field::TransferEncoding => match b {
                b',' => {
                    self.te_len = 0;
                    self.te_ok = true;
                    self.te_trailing = false;
                }
                b' ' | b'\t' => self.te_trailing = self.te_len > 0,
                _ => {
                    let lower = b.to_ascii_lowercase();
                    if self.te_trailing || CHUNKED.get(self.te_len) != Some(&lower) {
                        self.te_ok = false;
                    }
                    self.te_len = self.te_len.saturating_add(1);
                }
            },
        }
    }

    fn end_value(&mut self) {
        match self.field {
            Field::Other => {}
            Field::ContentLength => {
                self.saw_cl = true;
                if !self.cl_digits || self.cl.is_some_and(|prev| prev != self.cl_acc) {
                    self.cl_bad = true;
                } else {
                    self.cl = Some(self.cl_acc);
                }
            }
            Field::TransferEncoding => {
                self.saw_te = true;
                // Like hyper: the last Transfer-Encoding line decides.
                self.te_chunked = self.te_ok && self.te_len == CHUNKED.len();
            }
        }
        self.field = Field::Other;
        self.state = H1State::LineStart;
    }

    fn end_head(&mut self) -> Option<u64> {
        let index = self.heads;
        self.heads += 1;
        if self.saw_cl && self.saw_te {
            return Some(index);
        }
        self.state = if self.saw_te {
            // hyper refuses a request whose last coding is not chunked.
            if self.te_chunked {
                H1State::ChunkStart
            } else {
                H1State::Off
            }
        } else if self.saw_cl {
            match (self.cl_bad, self.cl) {
                (false, Some(0)) => H1State::Start,
                (false, Some(n)) => {
                    self.remaining = n;
                    H1State::Body
                }
                _ => H1State::Off,
            }
        } else {
            H1State::Start
        };
        None
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;

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
#[path = "h1scan_tests.rs"]
mod tests;
