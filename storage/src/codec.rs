//! Record encoding: `[format version: u8][crc32 of the payload: u32 LE][bincode payload]`.
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
