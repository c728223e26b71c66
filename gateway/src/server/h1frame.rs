//! The HTTP/1 framing scanner ([`H1Scanner`]), fed by [`super::scan::Scanner`].
//!
//! hyper drops `Content-Length` when `Transfer-Encoding` is present (in either order), so the
//! service never sees a request that carried both. The scanner follows message boundaries
//! across pipelined requests exactly like hyper frames them (head up to the empty line, bare LF
//! accepted like httparse; then `Content-Length` bytes, or a chunked body decoded like hyper's
//! decoder) and reports the 0-based index of the first head that carried both field names.
//! Anything it cannot follow makes it stop for good: hyper rejects such input itself, and the
//! scanner must never be stricter than hyper.
//!
//! Why the verdict is always in time: [`super::io::TimedIo::poll_read`] feeds the scanner the
//! bytes it has just placed into hyper's read buffer, before returning them. hyper parses only
//! what an earlier `poll_read` returned, so every head hyper dispatches has been scanned in full
//! (a head split across reads is completed by the read that completes it for hyper too).

const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
const CHUNKED: &[u8] = b"chunked";

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::server::scan::{Findings, ScanConfig, Scanner, PREFACE};

    const LIMIT: usize = 64 * 1024;

    fn config(h2: bool) -> ScanConfig {
        ScanConfig {
            h2,
            head_limit: LIMIT,
            h2_control_frames_per_sec: 100,
        }
    }

    /// Feeds `input` whole, then split at every position (two reads), then byte by byte; all
    /// must agree. Returns the finding and whether the scanner is still following the input.
    fn scan(input: &[u8]) -> (Option<u64>, bool) {
        let mut whole = Scanner::new(config(true));
        let expected = whole.feed(input, 1).cl_te_head;
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            let mut s = Scanner::new(config(true));
            let first = s.feed(a, 1).cl_te_head;
            let second = s.feed(b, 1).cl_te_head;
            assert_eq!(first.or(second), expected, "split at {split}");
            assert!(first.is_none() || second.is_none());
            assert_eq!(s.is_off(), whole.is_off(), "split at {split}");
        }
        let mut bytewise = Scanner::new(config(true));
        let mut found = None;
        for b in input {
            found = found.or(bytewise.feed(std::slice::from_ref(b), 1).cl_te_head);
        }
        assert_eq!(found, expected);
        (expected, !whole.is_off())
    }

    #[test]
    fn content_length_with_transfer_encoding_both_orders() {
        for headers in [
            "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
            "content-LENGTH: 5\r\ntransfer-encoding: gzip, chunked\r\n",
            "TRANSFER-ENCODING:chunked\r\ncontent-length:x\r\n",
        ] {
            let raw = format!(
                "POST /x HTTP/1.1\r\nHost: a\r\n{headers}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
            );
            assert_eq!(scan(raw.as_bytes()), (Some(0), false), "{headers}");
        }
    }

    #[test]
    fn bare_lf_heads_are_followed() {
        let raw = b"\r\n\nPOST /x HTTP/1.1\nHost: a\ncontent-length: 3\n\nabcGET / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 1\n\n";
        assert_eq!(scan(raw), (Some(1), false));
    }

    #[test]
    fn pipelined_requests_are_counted() {
        let mut raw = Vec::new();
        raw.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        raw.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwxyz");
        raw.extend_from_slice(b"POST /c HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        raw.extend_from_slice(
            b"POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(scan(&raw), (None, true));
        // A later request carries both.
        raw.extend_from_slice(
            b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(scan(&raw), (Some(4), false));
    }

    #[test]
    fn body_bytes_are_not_heads() {
        // The body looks like a CL+TE head; it is data.
        let body = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let raw = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET /y HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(scan(raw.as_bytes()), (None, true));
        let raw = format!(
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\nGET /y HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(scan(raw.as_bytes()), (None, true));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let raw = b"POST /x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
            A;name=value;x=\"q\"\r\n0123456789\r\n\
            1 \t;ext\r\nZ\r\n\
            0;last\r\nX-Trailer: 1\r\nContent-Length: 9\r\n\r\n\
            POST /y HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(scan(raw), (Some(1), false));
    }

    #[test]
    fn transfer_encoding_on_a_later_request() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
            POST / HTTP/1.1\r\nContent-Length: 3\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(raw), (Some(3), false));
    }

    #[test]
    fn lookalike_names_are_not_framing_fields() {
        let raw = b"POST / HTTP/1.1\r\nContent-Lengthx: 3\r\nX-Transfer-Encoding: chunked\r\n\
            Transfer-Encodin: chunked\r\nContent-Length: 2\r\n\r\nab\
            GET / HTTP/1.1\r\nX: Transfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(raw), (None, true));
    }

    #[test]
    fn unparseable_input_stops_the_scanner() {
        for raw in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;ext\nab",
            b"\rGET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(scan(raw), (None, false), "{}", String::from_utf8_lossy(raw));
        }
        // Equal duplicate lengths and whitespace around the value are fine (as in hyper).
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length:\t2 \r\n\r\nab";
        assert_eq!(scan(raw), (None, true));
    }

    #[test]
    fn head_limit_stops_the_scanner() {
        let mut s = H1Scanner::new(64);
        let head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(s.feed(head.as_bytes()), None);
        assert!(s.is_off());
        let mut s = H1Scanner::new(64);
        s.feed(b"GET / HTTP/1.1\r\nX: 1\r\n\r\n");
        assert!(!s.is_off(), "a head within the limit");
    }

    #[test]
    fn preface_lookalike_is_http1() {
        let raw = b"PRI * HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(raw), (Some(0), false));
        // Without HTTP/2 the preface is just (bad) HTTP/1 input.
        let mut s = Scanner::new(config(false));
        assert_eq!(s.feed(PREFACE, 0), Findings::default());
    }
}
