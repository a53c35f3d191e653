//! Deterministic ULIDs for event ids.
//!
//! Customer.io deduplicates events by a ULID `id`. Deriving it from the event (time part = the
//! event's timestamp, random part = 80 bits of SHA-256(source id ‖ messageId)) makes every
//! resend of an event, after a crash or a replay, carry the same id.

use sha2::{Digest, Sha256};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The ULID of an event: `timestamp_ms` (clamped to 48 bits) and 80 bits of
/// SHA-256(`source_id` ‖ 0x00 ‖ `message_id`).
pub fn event_ulid(timestamp_ms: i64, source_id: &str, message_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source_id.as_bytes());
    // A separator, so ("ab", "c") and ("a", "bc") differ.
    hasher.update([0u8]);
    hasher.update(message_id.as_bytes());
    let digest = hasher.finalize();
    let time = (timestamp_ms.max(0) as u128) & ((1u128 << 48) - 1);
    let mut random = 0u128;
    for byte in &digest[..10] {
        random = (random << 8) | u128::from(*byte);
    }
    encode((time << 80) | random)
}

/// Crockford base32 of a 128-bit value: 26 characters, most significant first.
fn encode(value: u128) -> String {
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((value >> (i * 5)) & 0x1f) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_event_same_id_and_time_prefix_sorts() {
        let a = event_ulid(1_700_000_000_000, "src_1", "m-1");
        assert_eq!(a, event_ulid(1_700_000_000_000, "src_1", "m-1"));
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|b| CROCKFORD.contains(&b)));
        assert_ne!(a, event_ulid(1_700_000_000_000, "src_2", "m-1"));
        assert_ne!(a, event_ulid(1_700_000_000_000, "src_1", "m-2"));
        assert_ne!(
            event_ulid(0, "ab", "c"),
            event_ulid(0, "a", "bc"),
            "the separator keeps the fields apart"
        );
        // The first 10 characters are the time: a later event sorts after an earlier one.
        let later = event_ulid(1_700_000_000_001, "src_1", "m-1");
        assert!(later[..10] > a[..10]);
        // Known value: time 0 gives a zero time part.
        assert!(event_ulid(0, "s", "m").starts_with("0000000000"));
        // The largest 48-bit time encodes as 7ZZZZZZZZZ (the spec's maximum).
        assert!(event_ulid((1 << 48) - 1, "s", "m").starts_with("7ZZZZZZZZZ"));
    }
}
