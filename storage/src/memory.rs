//! The decision log in memory: same semantics as on disk, nothing survives the process.

use crate::Retention;
use crate::backend::MemBackend;
use crate::log::Log;

/// A decision log held in memory.
pub type MemoryLog = Log<MemBackend>;

impl Log<MemBackend> {
    pub fn in_memory(retention: Retention) -> Self {
        match Log::load(MemBackend::default(), retention) {
            Ok(Ok(log)) => log,
            // An empty in-memory backend always loads; keep the signature infallible.
            _ => unreachable!("an empty in-memory log always loads"),
        }
    }
}
