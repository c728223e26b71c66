//! Segment files and the frame format (specified in `proto/README.md`).
//!
//! Frame: `u32 BE length ‖ record bytes ‖ chain hash h_n (32) ‖ u32 BE CRC32C(length ‖ record ‖ h_n)`
//! with `h_n = SHA-256(h_{n-1} ‖ record bytes)` and `h_0` = 32 zero bytes.

use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};

use super::merkle::Hash;

/// Bytes a frame adds around the record.
pub const FRAME_OVERHEAD: usize = 4 + 32 + 4;
/// Largest record accepted when reading (a larger length is damage, not a record).
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;
/// The chain hash before the first record.
pub const GENESIS: Hash = [0u8; 32];

/// Path of segment number `index` (1-based) in `dir`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("segment-{index:012}.log"))
}

/// The segment files of `dir`, ordered by number.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(num) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((num, path));
        }
    }
    out.sort();
    Ok(out)
}

/// `h_n = SHA-256(h_{n-1} ‖ record)`.
pub fn chain_hash(prev: &Hash, record: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev);
    ctx.update(record);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Appends one frame for `record` to `out`; returns its chain hash.
pub fn encode_frame(out: &mut Vec<u8>, record: &[u8], prev: &Hash) -> Hash {
    let start = out.len();
    let h = chain_hash(prev, record);
    // Records are bounded by MAX_RECORD_LEN well below u32::MAX.
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(&h);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    h
}

/// One frame read back.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The record bytes, exactly as written.
    pub record: &'a [u8],
    /// The chain hash stored in the frame.
    pub chain: Hash,
    /// Total frame length in bytes.
    pub len: usize,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside the frame.
    Incomplete,
    /// The length field exceeds [`MAX_RECORD_LEN`].
    BadLength(u32),
    /// The CRC does not match.
    BadCrc,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Incomplete => f.write_str("incomplete frame at end of segment"),
            Self::BadLength(n) => write!(f, "implausible record length {n}"),
            Self::BadCrc => f.write_str("CRC32C mismatch"),
        }
    }
}

/// Reads the frame at the start of `buf`; `Ok(None)` when `buf` is empty.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, FrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let len_bytes: [u8; 4] = buf
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::Incomplete)?;
    let len = u32::from_be_bytes(len_bytes);
    if len as usize > MAX_RECORD_LEN {
        return Err(FrameError::BadLength(len));
    }
    let total = len as usize + FRAME_OVERHEAD;
    let frame = buf.get(..total).ok_or(FrameError::Incomplete)?;
    let (body, crc) = frame.split_at(total - 4);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::BadCrc);
    }
    let record = &body[4..4 + len as usize];
    let mut chain = [0u8; 32];
    chain.copy_from_slice(&body[4 + len as usize..]);
    Ok(Some(Frame {
        record,
        chain,
        len: total,
    }))
}

/// Whether a framing error at `offset` of a last segment of `file_len` bytes is a torn write
/// (safe to cut) rather than damage inside the log: the frame runs past the end, or it is the
/// final frame and fails its CRC, or only zero bytes follow.
pub fn is_torn_tail(rest: &[u8], err: &FrameError) -> bool {
    match err {
        FrameError::Incomplete => true,
        FrameError::BadCrc => {
            let len = rest
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .unwrap_or(0);
            len + FRAME_OVERHEAD >= rest.len() || rest.iter().all(|b| *b == 0)
        }
        FrameError::BadLength(_) => rest.iter().all(|b| *b == 0) || rest.len() < FRAME_OVERHEAD,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_damage() {
        let mut buf = Vec::new();
        let h1 = encode_frame(&mut buf, b"hello", &GENESIS);
        let h2 = encode_frame(&mut buf, b"world!", &h1);
        let f1 = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(f1.record, b"hello");
        assert_eq!(f1.chain, h1);
        let f2 = parse_frame(&buf[f1.len..]).unwrap().unwrap();
        assert_eq!((f2.record, f2.chain), (&b"world!"[..], h2));
        assert_eq!(f1.len + f2.len, buf.len());
        let mut bad = buf.clone();
        bad[5] ^= 0x01;
        assert_eq!(parse_frame(&bad).unwrap_err(), FrameError::BadCrc);
        assert!(!is_torn_tail(&bad, &FrameError::BadCrc));
        assert_eq!(parse_frame(&buf[..10]).unwrap_err(), FrameError::Incomplete);
    }
}
