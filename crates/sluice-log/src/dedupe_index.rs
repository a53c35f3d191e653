//! The in-memory dedupe index of the SQLite log.
//!
//! Why in memory: a b-tree keyed by random messageIds dirties one random page per event, and
//! that page traffic was more than half of the writer's cost. The durable record of each
//! admission is an append-only row in the `dedupe` table (written in the event's transaction,
//! keyed by `seq`), so inserts stay sequential; this index maps a hash of `(source, messageId)`
//! to the `seq` of its latest admission and is rebuilt from that table on open. A hash hit is
//! confirmed against the durable row, so a hash collision never drops an event.
//!
//! Memory is about 70 bytes per admission inside the dedupe window (NATS JetStream keeps its
//! duplicate window in memory the same way); a shorter window bounds it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The map's keys are already keyed hashes: hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Shard = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

/// The map is split by the key's top bits so that growing it rehashes one small shard at a time
/// (a single table of millions of entries stalled the writer for up to a second when it doubled).
const SHARDS: usize = 64;

pub(crate) struct DedupeIndex {
    hasher: RandomState,
    /// key → seq of the latest admission, in `SHARDS` parts.
    latest: Vec<Shard>,
    /// `(received_at ms, key, seq)` in admission order, for expiry.
    order: VecDeque<(i64, u64, u64)>,
}

impl DedupeIndex {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            latest: (0..SHARDS).map(|_| Shard::default()).collect(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn key(&self, source_id: &str, message_id: &str) -> u64 {
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        self.hasher.hash_one((source_id, 0xffu8, message_id))
    }

    fn shard(&self, key: u64) -> &Shard {
        &self.latest[(key >> 58) as usize % SHARDS]
    }

    fn shard_mut(&mut self, key: u64) -> &mut Shard {
        &mut self.latest[(key >> 58) as usize % SHARDS]
    }

    /// The seq of the latest admission of `key` still inside the window, if any.
    pub(crate) fn get(&self, key: u64) -> Option<u64> {
        self.shard(key).get(&key).copied()
    }

    /// Forgets `key` if its latest admission is `seq`.
    fn forget(&mut self, key: u64, seq: u64) {
        let shard = self.shard_mut(key);
        if shard.get(&key) == Some(&seq) {
            shard.remove(&key);
        }
    }

    pub(crate) fn record(&mut self, key: u64, seq: u64, received_ms: i64) {
        self.shard_mut(key).insert(key, seq);
        self.order.push_back((received_ms, key, seq));
    }

    /// A mark to roll back to (the number of admissions recorded so far).
    pub(crate) fn mark(&self) -> usize {
        self.order.len()
    }

    /// Forgets every admission recorded after `mark` (their transaction did not commit).
    pub(crate) fn roll_back(&mut self, mark: usize) {
        while self.order.len() > mark {
            if let Some((_, key, seq)) = self.order.pop_back() {
                self.forget(key, seq);
            }
        }
    }

    /// Forgets admissions received before `before_ms`.
    pub(crate) fn expire(&mut self, before_ms: i64) {
        while let Some(&(received_ms, key, seq)) = self.order.front() {
            if received_ms >= before_ms {
                break;
            }
            self.order.pop_front();
            self.forget(key, seq);
        }
        if self.order.capacity() > 1024 && self.order.len() < self.order.capacity() / 4 {
            self.order.shrink_to_fit();
            self.latest.iter_mut().for_each(Shard::shrink_to_fit);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.latest.iter().map(Shard::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keeps_the_latest_admission_of_a_key() {
        let mut index = DedupeIndex::new();
        let a = index.key("s", "a");
        let b = index.key("s", "b");
        assert_ne!(index.key("sa", "b"), index.key("s", "ab"));
        index.record(a, 1, 100);
        index.record(b, 2, 150);
        index.record(a, 3, 200); // re-admitted after its window
        index.expire(160);
        assert_eq!(index.get(a), Some(3), "the newer admission of `a` survives");
        assert_eq!(index.get(b), None);
        index.expire(201);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn roll_back_forgets_uncommitted_admissions() {
        let mut index = DedupeIndex::new();
        let a = index.key("s", "a");
        let b = index.key("s", "b");
        index.record(a, 1, 100);
        let mark = index.mark();
        index.record(b, 2, 100);
        index.roll_back(mark);
        assert_eq!(index.get(a), Some(1));
        assert_eq!(index.get(b), None);
    }
}
