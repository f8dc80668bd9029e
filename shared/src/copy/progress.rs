//! Counters a front end can show while copying (bytes, units), updated by the engine.

use std::sync::atomic::AtomicU64;

/// Live counters of one promotion.
#[derive(Debug, Default)]
pub struct Progress {
    /// Units finished (copied, present or failed).
    pub units_done: AtomicU64,
    /// Bytes read from staging.
    pub bytes_read: AtomicU64,
}
