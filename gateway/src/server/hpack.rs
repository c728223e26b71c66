//! Just enough HPACK (RFC 7541) to follow HTTP/2 header blocks for the byte scanner
//! (`h2flood.rs`): which field names are pseudo-header fields (`:path`, …), and the dynamic
//! table that later blocks index into. Names are judged and values skipped; nothing is kept but
//! each dynamic entry's size, name length and whether its name is a pseudo-header field.
//!
//! A general decoder is not used here because the scanner runs on every HEADERS frame of every
//! h2 connection beside hyper's own decoder: the maintained general crate we used before
//! (`loona-hpack`) built its Huffman table, a hash map, for each Huffman string it decoded, which
//! cost a quarter of the gateway's CPU on small h2c requests. Huffman strings are walked here
//! with the code's canonical form (codes of one length are consecutive), one comparison per bit,
//! no allocation.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// A block that is not valid HPACK (hyper's decoder refuses it too): the follower stops.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

/// Names of the static table (RFC 7541 Appendix A), index 1 first; 1–14 are pseudo-header fields.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// What the follower keeps of a dynamic-table entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    pseudo: bool,
    name_len: usize,
    size: usize,
}

/// The dynamic table of one connection's request direction, names only.
#[derive(Debug)]
pub struct Names {
    /// Newest first (index 62 is `entries[0]`).
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// The largest table size the peer may ask for (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
}

impl Names {
    /// A connection's table; `limit` is the header table size the server advertises (4096 unless
    /// changed in its SETTINGS).
    pub fn new(limit: usize) -> Names {
        Names {
            entries: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
        }
    }

    /// Walks one complete header block, updating the dynamic table; true when one of its field
    /// names is a pseudo-header field.
    pub fn block(&mut self, mut block: &[u8]) -> Result<bool, Invalid> {
        let b = &mut block;
        let mut pseudo = false;
        while let Some(&first) = b.first() {
            if first & 0x80 != 0 {
                // Indexed field.
                let index = integer(b, 7)?;
                pseudo |= self.name(index)?.0;
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing.
                let (name_pseudo, name_len) = self.literal_name(b, 6)?;
                let (value_len, _) = string(b)?;
                pseudo |= name_pseudo;
                self.insert(Entry {
                    pseudo: name_pseudo,
                    name_len,
                    size: name_len.saturating_add(value_len).saturating_add(32),
                });
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let max = integer(b, 5)?;
                if max > self.limit {
                    return Err(Invalid);
                }
                self.max = max;
                self.evict_to(max);
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                let (name_pseudo, _) = self.literal_name(b, 4)?;
                string(b)?;
                pseudo |= name_pseudo;
            }
        }
        Ok(pseudo)
    }

    /// Whether the name at `index` (static or dynamic) is a pseudo-header field, and its length.
    fn name(&self, index: usize) -> Result<(bool, usize), Invalid> {
        match index {
            0 => Err(Invalid),
            1..=61 => Ok((index <= 14, STATIC_NAMES[index - 1].len())),
            _ => self
                .entries
                .get(index - 62)
                .map(|e| (e.pseudo, e.name_len))
                .ok_or(Invalid),
        }
    }

    /// The name of a literal field: indexed (`prefix`-bit index) or a new string.
    fn literal_name(&self, b: &mut &[u8], prefix: u8) -> Result<(bool, usize), Invalid> {
        match integer(b, prefix)? {
            0 => string(b).map(|(len, colon)| (colon, len)),
            index => self.name(index),
        }
    }

    fn insert(&mut self, entry: Entry) {
        if entry.size > self.max {
            // RFC 7541 §4.4: an entry larger than the table empties it and is not added.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - entry.size);
        self.size += entry.size;
        self.entries.push_front(entry);
    }

    fn evict_to(&mut self, room: usize) {
        while self.size > room {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

/// An integer with an `prefix`-bit prefix (RFC 7541 §5.1), at most 2^28.
fn integer(b: &mut &[u8], prefix: u8) -> Result<usize, Invalid> {
    let (&first, rest) = b.split_first().ok_or(Invalid)?;
    *b = rest;
    let mask = u8::MAX >> (8 - prefix);
    let mut value = usize::from(first & mask);
    if value < usize::from(mask) {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = b.split_first().ok_or(Invalid)?;
        *b = rest;
        if shift > 21 {
            return Err(Invalid);
        }
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// A string literal (RFC 7541 §5.2): its length once decoded, and whether it starts with `:`.
fn string(b: &mut &[u8]) -> Result<(usize, bool), Invalid> {
    let huffman = b.first().ok_or(Invalid)? & 0x80 != 0;
    let len = integer(b, 7)?;
    let raw = b.get(..len).ok_or(Invalid)?;
    *b = b.get(len..).ok_or(Invalid)?;
    if huffman {
        huffman_walk(raw)
    } else {
        Ok((raw.len(), raw.first() == Some(&b':')))
    }
}

/// The Huffman code in canonical form: for each code length, the first code and how many codes
/// have that length, and the symbols in code order.
struct Canonical {
    first: [u32; 31],
    count: [u32; 31],
    offset: [u32; 31],
    symbols: [u16; 257],
}

fn canonical() -> &'static Canonical {
    static CANONICAL: OnceLock<Canonical> = OnceLock::new();
    CANONICAL.get_or_init(|| {
        let mut order: Vec<usize> = (0..CODES.len()).collect();
        order.sort_by_key(|&s| (CODES[s].1, CODES[s].0));
        let mut c = Canonical {
            first: [0; 31],
            count: [0; 31],
            offset: [0; 31],
            symbols: [0; 257],
        };
        for (position, &symbol) in order.iter().enumerate() {
            let (code, len) = CODES[symbol];
            let len = usize::from(len);
            if c.count[len] == 0 {
                c.first[len] = code;
                c.offset[len] = position as u32;
            }
            c.count[len] += 1;
            c.symbols[position] = symbol as u16;
        }
        c
    })
}

/// Decodes a Huffman string only to count its symbols and look at the first one; padding must
/// be at most 7 bits of ones and EOS must not appear (RFC 7541 §5.2).
fn huffman_walk(raw: &[u8]) -> Result<(usize, bool), Invalid> {
    let table = canonical();
    let (mut code, mut len) = (0u32, 0usize);
    let (mut count, mut first) = (0usize, None);
    for byte in raw {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > 30 {
                return Err(Invalid);
            }
            let n = table.count[len];
            if n > 0 && code >= table.first[len] && code - table.first[len] < n {
                let symbol = table.symbols[(table.offset[len] + code - table.first[len]) as usize];
                if symbol == 256 {
                    return Err(Invalid);
                }
                first.get_or_insert(symbol);
                count += 1;
                code = 0;
                len = 0;
            }
        }
    }
    if len > 7 || code != (1 << len) - 1 {
        return Err(Invalid);
    }
    Ok((count, first == Some(u16::from(b':'))))
}

/// The HPACK Huffman code (RFC 7541 Appendix B): (code, length in bits) per symbol, EOS last.
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28),
    (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28),
    (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10),
    (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6),
    (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7),
    (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5),
    (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14),
    (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23),
    (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
    (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
    (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22),
    (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22),
    (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23),
    (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
    (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
    (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22),
    (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27),
    (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Encodes `text` with the Huffman code (test side only).
    fn huffman(text: &[u8]) -> Vec<u8> {
        let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
        for &c in text {
            let (code, len) = CODES[usize::from(c)];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
        }
        out
    }

    #[test]
    fn the_code_is_canonical_and_every_symbol_decodes() {
        let table = canonical();
        for len in 1..31 {
            let mut codes: Vec<u32> = CODES
                .iter()
                .filter(|(_, l)| usize::from(*l) == len)
                .map(|(c, _)| *c)
                .collect();
            codes.sort_unstable();
            for (i, code) in codes.iter().enumerate() {
                assert_eq!(*code, table.first[len] + i as u32, "length {len}");
            }
        }
        for symbol in 0..=255u8 {
            let text = [symbol, b'a', symbol];
            assert_eq!(
                huffman_walk(&huffman(&text)),
                Ok((3, symbol == b':')),
                "{symbol}"
            );
        }
        assert_eq!(huffman_walk(&huffman(b":authority")), Ok((10, true)));
        assert_eq!(huffman_walk(b""), Ok((0, false)));
    }

    #[test]
    fn bad_huffman_padding_and_eos_are_invalid() {
        // Eight bits of padding; padding of zeros; the EOS code itself.
        let mut long = huffman(b"a");
        long.push(0xff);
        assert_eq!(huffman_walk(&long), Err(Invalid));
        assert_eq!(huffman_walk(&[0x07]), Ok((1, false)));
        assert_eq!(huffman_walk(&[0x00]), Err(Invalid));
        assert_eq!(huffman_walk(&[0x1f, 0x00]), Err(Invalid));
        assert_eq!(huffman_walk(&[0xff, 0xff, 0xff, 0xff]), Err(Invalid));
    }

    #[test]
    fn rfc_7541_appendix_c_requests_are_followed() {
        // C.4: three requests with Huffman coding, sharing one dynamic table.
        let mut names = Names::new(4096);
        let c41 = hex("828684418cf1e3c2e5f23a6ba0ab90f4ff");
        let c42 = hex("828684be5886a8eb10649cbf");
        let c43 = hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf");
        assert_eq!(names.block(&c41), Ok(true));
        assert_eq!(names.size, 57);
        assert_eq!(names.block(&c42), Ok(true));
        assert_eq!(names.size, 110);
        assert_eq!(names.block(&c43), Ok(true));
        assert_eq!(names.size, 164);
        // Index 62 is now custom-key (not pseudo); 64 is :authority.
        assert_eq!(names.block(&[0xbe]), Ok(false));
        assert_eq!(names.block(&[0xc0]), Ok(true));
        assert_eq!(names.block(&[0xc1]), Err(Invalid));
    }

    #[test]
    fn eviction_size_updates_and_bad_integers() {
        // C.5-style eviction with a 256-octet table.
        let mut names = Names::new(4096);
        assert_eq!(names.block(&[0x3f, 0xe1, 0x01]), Ok(false)); // size update to 256
        for _ in 0..10 {
            // :path (indexed name 4) with a 100-byte value: 137 octets each, one fits.
            let mut block = vec![0x44, 100];
            block.extend_from_slice(&[b'x'; 100]);
            names.block(&block).unwrap();
            assert_eq!(names.entries.len(), 1);
            assert_eq!(names.size, 137);
        }
        // An entry larger than the table empties it.
        let mut big = vec![0x44, 0x7f, 0xf2, 0x01];
        big.extend_from_slice(&[b'x'; 369]);
        assert_eq!(names.block(&big), Ok(true));
        assert_eq!(names.size, 0);
        // A size update above the advertised limit, an index 0, an integer too long, a
        // string running past the block.
        assert_eq!(names.block(&[0x3f, 0xe2, 0x1f]), Err(Invalid));
        assert_eq!(names.block(&[0x80]), Err(Invalid));
        assert_eq!(
            names.block(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(Invalid)
        );
        assert_eq!(names.block(&[0x00, 0x05, b'a']), Err(Invalid));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
