//! The size limits of the Segment tracking API, enforced (never assumed) by the collector.

/// Limits on what one request may carry. Defaults are Segment's documented limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one event's JSON (32 KB).
    pub max_event_bytes: usize,
    /// Bytes of one request body after decompression (500 KB).
    pub max_request_bytes: usize,
    /// Events in one batch.
    pub max_batch_events: usize,
    /// Nesting of arrays and objects in a body. Nested values are stored as sent, so this bounds
    /// the recursion of every later reader.
    pub max_nesting_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 32_768,
            max_request_bytes: 512_000,
            max_batch_events: 2_500,
            max_nesting_depth: 64,
        }
    }
}
