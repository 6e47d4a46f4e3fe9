//! Wire and disk framing: checksummed frames and zstd-compressed batches of frames.
//!
//! automerge's `load_incremental` accepts a truncated stream silently, so nothing reaches
//! it without a length and a checksum around it.
//!
//! - A **frame** is `len: u32 LE` · `crc32c(payload): u32 LE` · `payload` (`len` bytes,
//!   at most [`MAX_FRAME`]).
//! - A **batch** is `magic "MKZB"` · `version: u8` · `raw_len: u32 LE` (length of the
//!   decompressed frame stream, at most [`MAX_BATCH_RAW`]) · `crc32c(compressed): u32 LE`
//!   · `zstd(frame stream)`.
//!
//! Decoding hostile input returns a typed [`FrameError`], never panics, and never
//! allocates more than the caps: zstd output is limited to the declared (capped) length.

use thiserror::Error;

/// Largest frame payload (one automerge change or one protocol header).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Largest decompressed batch.
pub const MAX_BATCH_RAW: usize = 16 * 1024 * 1024;
/// Magic bytes of a batch.
pub const BATCH_MAGIC: [u8; 4] = *b"MKZB";
/// Frame header size.
pub const FRAME_HEADER: usize = 8;
/// Batch header size.
pub const BATCH_HEADER: usize = 4 + 1 + 4 + 4;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// What was wrong with framed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("truncated: need {needed} more bytes")]
    Truncated { needed: usize },
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("not a batch (bad magic)")]
    BadMagic,
    #[error("batch version {theirs} is not ours ({ours})")]
    Version { ours: u8, theirs: u8 },
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("decompressed length {actual} differs from the declared {declared}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("{0} trailing bytes after the last frame")]
    Trailing(usize),
}

/// crc32c of `data`.
pub fn checksum(data: &[u8]) -> u32 {
    CRC32C.checksum(data)
}

/// Append one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_FRAME);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Read one frame from the front of `input`: its payload and the bytes consumed.
pub fn decode_frame(input: &[u8]) -> Result<(&[u8], usize), FrameError> {
    if input.len() < FRAME_HEADER {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER - input.len(),
        });
    }
    let len = read_u32(&input[0..4]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME,
        });
    }
    let stored = read_u32(&input[4..8]);
    let end = FRAME_HEADER + len;
    if input.len() < end {
        return Err(FrameError::Truncated {
            needed: end - input.len(),
        });
    }
    let payload = &input[FRAME_HEADER..end];
    let computed = checksum(payload);
    if computed != stored {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok((payload, end))
}

/// Split a whole frame stream into payloads; any leftover or bad frame is an error.
pub fn decode_frames(mut input: &[u8]) -> Result<Vec<&[u8]>, FrameError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (p, used) = decode_frame(input)?;
        out.push(p);
        input = &input[used..];
    }
    Ok(out)
}

/// Builds one batch, refusing frames once `limit` raw bytes are reached.
#[derive(Debug)]
pub struct BatchBuilder {
    raw: Vec<u8>,
    limit: usize,
    frames: usize,
}

impl BatchBuilder {
    /// A builder whose decompressed size stays at or below `limit` (capped by
    /// [`MAX_BATCH_RAW`]).
    pub fn new(limit: usize) -> BatchBuilder {
        BatchBuilder {
            raw: Vec::new(),
            limit: limit.min(MAX_BATCH_RAW),
            frames: 0,
        }
    }

    /// Whether a payload of `len` bytes still fits.
    pub fn fits(&self, len: usize) -> bool {
        len <= MAX_FRAME && self.raw.len() + FRAME_HEADER + len <= self.limit
    }

    /// Add a frame if it fits; returns whether it was added. The first frame is always
    /// added (when under [`MAX_FRAME`]) so that a single large change still moves.
    pub fn push(&mut self, payload: &[u8]) -> bool {
        if payload.len() > MAX_FRAME {
            return false;
        }
        if self.frames > 0 && !self.fits(payload.len()) {
            return false;
        }
        if self.raw.len() + FRAME_HEADER + payload.len() > MAX_BATCH_RAW {
            return false;
        }
        encode_frame(payload, &mut self.raw);
        self.frames += 1;
        true
    }

    /// Number of frames so far.
    pub fn len(&self) -> usize {
        self.frames
    }

    /// Whether no frame was added.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Raw (uncompressed) size so far.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Compress into a batch with the given format version byte.
    pub fn finish(self, version: u8) -> Vec<u8> {
        seal(&self.raw, version)
    }
}

fn seal(raw: &[u8], version: u8) -> Vec<u8> {
    // Level 3: zstd's default, a fair trade on a 2-core box; in-memory compression of a
    // bounded buffer cannot fail short of an allocation failure.
    let compressed = zstd::bulk::compress(raw, 3).unwrap_or_default();
    let mut out = Vec::with_capacity(BATCH_HEADER + compressed.len());
    out.extend_from_slice(&BATCH_MAGIC);
    out.push(version);
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(&compressed).to_le_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// Encode `payloads` as one batch (no size limit beyond the caps).
pub fn encode_batch<'a>(payloads: impl IntoIterator<Item = &'a [u8]>, version: u8) -> Vec<u8> {
    let mut raw = Vec::new();
    for p in payloads {
        encode_frame(p, &mut raw);
    }
    seal(&raw, version)
}

/// The version byte of a batch, read before anything else so that a peer speaking
/// another version gets a clear answer.
pub fn batch_version(input: &[u8]) -> Result<u8, FrameError> {
    if input.len() < 5 {
        if !BATCH_MAGIC.starts_with(input) {
            return Err(FrameError::BadMagic);
        }
        return Err(FrameError::Truncated {
            needed: 5 - input.len(),
        });
    }
    if input[..4] != BATCH_MAGIC {
        return Err(FrameError::BadMagic);
    }
    Ok(input[4])
}

/// Decode a batch of the given `version` into its frame payloads.
pub fn decode_batch(input: &[u8], version: u8) -> Result<Vec<Vec<u8>>, FrameError> {
    let theirs = batch_version(input)?;
    if theirs != version {
        return Err(FrameError::Version {
            ours: version,
            theirs,
        });
    }
    if input.len() < BATCH_HEADER {
        return Err(FrameError::Truncated {
            needed: BATCH_HEADER - input.len(),
        });
    }
    let declared = read_u32(&input[5..9]) as usize;
    if declared > MAX_BATCH_RAW {
        return Err(FrameError::TooLong {
            len: declared,
            max: MAX_BATCH_RAW,
        });
    }
    let stored = read_u32(&input[9..13]);
    let body = &input[BATCH_HEADER..];
    let computed = checksum(body);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let raw = zstd::bulk::decompress(body, declared)
        .map_err(|e| FrameError::Decompress(e.to_string()))?;
    if raw.len() != declared {
        return Err(FrameError::LengthMismatch {
            declared,
            actual: raw.len(),
        });
    }
    Ok(decode_frames(&raw)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_roundtrip_and_every_cut_is_an_error() {
        let mut buf = Vec::new();
        encode_frame(b"hello", &mut buf);
        encode_frame(b"", &mut buf);
        let frames = decode_frames(&buf).unwrap();
        assert_eq!(frames, vec![&b"hello"[..], &b""[..]]);
        for cut in 0..buf.len() {
            if cut == 13 {
                continue; // exactly one whole frame
            }
            if cut == 0 {
                assert!(decode_frames(&buf[..0]).unwrap().is_empty());
                continue;
            }
            assert!(decode_frames(&buf[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn batch_cut_at_every_byte_is_refused() {
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        let batch = encode_batch(payloads.iter().map(Vec::as_slice), 1);
        assert_eq!(decode_batch(&batch, 1).unwrap(), payloads);
        for cut in 0..batch.len() {
            assert!(decode_batch(&batch[..cut], 1).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn flipped_byte_is_refused() {
        let batch = encode_batch([&b"abc"[..], b"def"], 1);
        for i in 0..batch.len() {
            let mut b = batch.clone();
            b[i] ^= 0x40;
            assert!(decode_batch(&b, 1).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn version_and_size_caps() {
        let batch = encode_batch([&b"abc"[..]], 2);
        assert_eq!(
            decode_batch(&batch, 1),
            Err(FrameError::Version { ours: 1, theirs: 2 })
        );
        let mut big = batch.clone();
        big[1] = b'X';
        assert_eq!(decode_batch(&big, 2), Err(FrameError::BadMagic));
        let mut huge = batch;
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_batch(&huge, 2),
            Err(FrameError::TooLong { .. })
        ));
        let mut f = Vec::new();
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        assert!(matches!(decode_frame(&f), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn builder_respects_its_limit() {
        let mut b = BatchBuilder::new(1000);
        let p = [7u8; 300];
        assert!(b.push(&p));
        assert!(b.push(&p));
        assert!(b.push(&p));
        assert!(!b.push(&p));
        assert_eq!(b.len(), 3);
        assert!(b.raw_len() <= 1000);
        let mut one = BatchBuilder::new(10);
        assert!(one.push(&p), "a single large frame still moves");
        assert!(!one.push(b"x"));
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(&data, 1);
            let _ = decode_frames(&data);
        }

        #[test]
        fn decode_never_panics_on_valid_header(body in proptest::collection::vec(any::<u8>(), 0..300), len in any::<u32>()) {
            let mut data = BATCH_MAGIC.to_vec();
            data.push(1);
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(&checksum(&body).to_le_bytes());
            data.extend_from_slice(&body);
            let _ = decode_batch(&data, 1);
        }

        #[test]
        fn roundtrip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let batch = encode_batch(payloads.iter().map(Vec::as_slice), 1);
            prop_assert_eq!(decode_batch(&batch, 1).unwrap(), payloads);
        }
    }
}
