//! Record encoding: `[format version: u8][crc32 of the payload: u32 LE][bincode payload]` for one
//! record, and segments ([`encode_segment`]) for many records compressed together.
//! A record that fails any check is reported, never a panic.

use bincode::Options;

use crate::record::Record;

/// Varint integers and lengths: records are mostly small counts and short strings, and the
/// log's write cost grows with their size.
fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Version of the record schema written by this build.
pub const FORMAT_VERSION: u8 = 1;
const HEADER: usize = 5;

/// Why bytes could not be turned back into a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("record format version {0} is not one this build reads (expected {FORMAT_VERSION})")]
    UnknownVersion(u8),
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("record payload cannot be decoded: {0}")]
    Payload(String),
    #[error("record cannot be encoded: {0}")]
    Encode(String),
}

pub fn encode(record: &Record) -> Result<Vec<u8>, CodecError> {
    encode_value(record)
}

pub fn decode(bytes: &[u8]) -> Result<Record, CodecError> {
    decode_value(bytes)
}

/// Any stored value (records, learner states) behind the same version byte and checksum.
pub fn encode_value<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let payload = options()
        .serialize(value)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

pub fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion(bytes[0]));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[HEADER..];
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    options()
        .deserialize(payload)
        .map_err(|e| CodecError::Payload(e.to_string()))
}

/// Version byte of a segment: several records of the log, compressed together.
pub const SEGMENT_VERSION: u8 = 2;
/// `[version: u8][records: u32 LE][uncompressed length: u32 LE][crc32 of the rest: u32 LE]`.
const SEGMENT_HEADER: usize = 13;
/// A segment never decompresses to more than this: a damaged length cannot make a reader
/// allocate without bound.
const MAX_SEGMENT_BYTES: usize = 256 * 1024 * 1024;

/// How hard a segment is compressed: for what stays (a model's records sealed together, off the
/// cycle's path), or for the journal (written on the cycle's path and read once, when sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Kept,
    Journal,
}

impl Compression {
    /// zstd levels. Level 1 already finds what a model's records repeat within a segment (level
    /// 3 kept 0.7 % less of a simulated day); the journal uses a negative (fast) level, about
    /// twice as quick, for a few more bytes that stay only a round of slots.
    fn level(self) -> i32 {
        match self {
            Self::Kept => 1,
            Self::Journal => -3,
        }
    }
}

thread_local! {
    /// Compression contexts per thread (the log's), one per level, made once: making one per
    /// segment cost more than compressing a small segment.
    static COMPRESSORS: std::cell::RefCell<[Option<zstd::bulk::Compressor<'static>>; 2]> =
        const { std::cell::RefCell::new([None, None]) };
}

fn compress(raw: &[u8], how: Compression) -> Result<Vec<u8>, CodecError> {
    let failed = |e: std::io::Error| CodecError::Encode(format!("compression: {e}"));
    COMPRESSORS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let slot = &mut cell[how as usize];
        let compressor = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(how.level()).map_err(failed)?),
        };
        compressor.compress(raw).map_err(failed)
    })
}

/// Records stored together: the first sequence number, then each record with the gap from the
/// previous one (consecutive records of a model are usually a cycle's worth of sequence apart).
type SegmentPayload<R> = (u64, Vec<(u64, R)>);

/// Encodes records, in sequence order, as one compressed segment. Records of one model in a row
/// share most of their bytes, so the compression stores what changed from one to the next.
pub fn encode_segment(records: &[(u64, &Record)], how: Compression) -> Result<Vec<u8>, CodecError> {
    let first = records.first().map_or(0, |(seq, _)| *seq);
    let mut previous = first;
    let payload: SegmentPayload<&Record> = (
        first,
        records
            .iter()
            .map(|(seq, record)| {
                let gap = seq.saturating_sub(previous);
                previous = *seq;
                (gap, *record)
            })
            .collect(),
    );
    let raw = options()
        .serialize(&payload)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let compressed = compress(&raw, how)?;
    let count = u32::try_from(records.len())
        .map_err(|_| CodecError::Encode("too many records in one segment".into()))?;
    let raw_len =
        u32::try_from(raw.len()).map_err(|_| CodecError::Encode("segment over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(SEGMENT_HEADER + compressed.len());
    out.push(SEGMENT_VERSION);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// How many records a stored value holds, from its header alone: 1 for a single record.
pub fn stored_count(bytes: &[u8]) -> Option<u32> {
    match bytes.first()? {
        &SEGMENT_VERSION => Some(u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?)),
        _ => Some(1),
    }
}

/// Decodes a stored value: a segment, or a single record (as written before segments, under
/// sequence number `seq`).
pub fn decode_stored(bytes: &[u8], seq: u64) -> Result<Vec<(u64, Record)>, CodecError> {
    if bytes.first() != Some(&SEGMENT_VERSION) {
        return decode(bytes).map(|record| vec![(seq, record)]);
    }
    if bytes.len() < SEGMENT_HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (count, raw_len, stored) = (word(1), word(5) as usize, word(9));
    let compressed = &bytes[SEGMENT_HEADER..];
    let computed = crc32fast::hash(compressed);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    if raw_len > MAX_SEGMENT_BYTES {
        return Err(CodecError::Payload(format!(
            "segment claims {raw_len} bytes, over the {MAX_SEGMENT_BYTES} a segment may hold"
        )));
    }
    let raw = zstd::bulk::decompress(compressed, raw_len)
        .map_err(|e| CodecError::Payload(format!("decompression: {e}")))?;
    let (first, gaps): SegmentPayload<Record> = options()
        .deserialize(&raw)
        .map_err(|e| CodecError::Payload(e.to_string()))?;
    if gaps.len() != count as usize {
        return Err(CodecError::Payload(format!(
            "segment holds {} records, its header says {count}",
            gaps.len()
        )));
    }
    let mut seq = first;
    Ok(gaps
        .into_iter()
        .map(|(gap, record)| {
            seq = seq.saturating_add(gap);
            (seq, record)
        })
        .collect())
}
