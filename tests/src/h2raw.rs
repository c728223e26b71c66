//! Hand-written HTTP/2 frames for floods and malformed input.

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix and the given first-byte flags.
pub fn hpack_int(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// HPACK literal header field without indexing, new name.
pub fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_int(name.len(), 7, 0, out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(value.len(), 7, 0, out);
    out.extend_from_slice(value.as_bytes());
}

/// A header block for a simple request.
pub fn request_block(method: &str, path: &str, authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    literal(":method", method, &mut out);
    literal(":scheme", "http", &mut out);
    literal(":authority", authority, &mut out);
    literal(":path", path, &mut out);
    for (n, v) in extra {
        literal(n, v, &mut out);
    }
    out
}

/// Parses frames from a buffer: (type, flags, stream, payload).
pub fn parse(mut buf: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 9 {
        let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
        if buf.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
        out.push((buf[3], buf[4], stream, buf[9..9 + len].to_vec()));
        buf = &buf[9 + len..];
    }
    out
}
