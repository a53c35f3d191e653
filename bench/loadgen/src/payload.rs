//! Request bodies: Segment-style track events, built by hand (no serde) so
//! that payload generation stays cheap compared with the server's work.

use std::time::{SystemTime, UNIX_EPOCH};

/// Number of distinct userIds events are drawn from.
pub const USER_POOL: u64 = 10_000;

/// xoshiro256** — fast, good-quality, non-cryptographic PRNG. Seeded from the
/// OS RNG per connection, so 128-bit messageIds drawn from it are unique for
/// all practical purposes.
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn from_os() -> Self {
        let a = uuid::Uuid::new_v4().as_u64_pair();
        let b = uuid::Uuid::new_v4().as_u64_pair();
        Self::from_seed([a.0, a.1, b.0, b.1])
    }

    pub fn from_seed(mut s: [u64; 4]) -> Self {
        if s == [0; 4] {
            s[0] = 0x9E37_79B9_7F4A_7C15;
        }
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A random (version 4, RFC 4122 variant) UUID.
    pub fn uuid_v4(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Uniform-enough value in `0..n` (n small, so modulo bias is negligible).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Wall-clock time as an RFC 3339 UTC timestamp with millisecond precision,
/// e.g. `2025-01-31T23:59:59.123Z`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-from-epoch to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Builds request bodies whose events serialize to roughly `event_bytes`.
pub struct PayloadBuilder {
    pad: String,
}

const EVENT_NAME: &str = "Bench Event";

impl PayloadBuilder {
    pub fn new(event_bytes: usize) -> Self {
        // Measure an event with an empty pad, then pad up to the target.
        let mut probe = Vec::new();
        let mut rng = Rng::from_seed([1, 2, 3, 4]);
        let ts = now_rfc3339();
        let empty = PayloadBuilder { pad: String::new() };
        empty.write_event(&mut probe, &mut rng, &ts, 0);
        let pad_len = event_bytes.saturating_sub(probe.len());
        PayloadBuilder {
            pad: "x".repeat(pad_len),
        }
    }

    /// Appends one track event (a JSON object) to `out`.
    pub fn write_event(&self, out: &mut Vec<u8>, rng: &mut Rng, ts: &str, seq: u64) {
        let mut idbuf = uuid::Uuid::encode_buffer();
        let message_id = rng.uuid_v4().hyphenated().encode_lower(&mut idbuf);
        let user = rng.below(USER_POOL);
        out.extend_from_slice(b"{\"type\":\"track\",\"event\":\"");
        out.extend_from_slice(EVENT_NAME.as_bytes());
        out.extend_from_slice(b"\",\"userId\":\"user-");
        // Fixed width so every event has the same size.
        out.extend_from_slice(format!("{user:05}").as_bytes());
        out.extend_from_slice(b"\",\"messageId\":\"");
        out.extend_from_slice(message_id.as_bytes());
        out.extend_from_slice(b"\",\"timestamp\":\"");
        out.extend_from_slice(ts.as_bytes());
        out.extend_from_slice(b"\",\"properties\":{\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"plan\":\"pro\",\"revenue\":12.5,\"pad\":\"");
        out.extend_from_slice(self.pad.as_bytes());
        out.extend_from_slice(
            b"\"},\"context\":{\"library\":{\"name\":\"sluice-loadgen\",\"version\":\"",
        );
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\"}}}");
    }

    /// `{"batch":[...n events...],"sentAt":"..."}` for POST /v1/batch.
    pub fn batch(&self, rng: &mut Rng, n: usize, seq: &mut u64) -> Vec<u8> {
        let ts = now_rfc3339();
        let mut out = Vec::with_capacity(n * (self.pad.len() + 320) + 64);
        out.extend_from_slice(b"{\"batch\":[");
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            self.write_event(&mut out, rng, &ts, *seq);
            *seq += 1;
        }
        out.extend_from_slice(b"],\"sentAt\":\"");
        out.extend_from_slice(ts.as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }

    /// One track event for POST /v1/t.
    pub fn single(&self, rng: &mut Rng, seq: &mut u64) -> Vec<u8> {
        let ts = now_rfc3339();
        let mut out = Vec::with_capacity(self.pad.len() + 320);
        self.write_event(&mut out, rng, &ts, *seq);
        *seq += 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_735_689_599, 999), "2024-12-31T23:59:59.999Z");
        assert_eq!(now_rfc3339().len(), 24);
    }

    #[test]
    fn events_have_requested_size_and_are_valid_json() {
        let pb = PayloadBuilder::new(600);
        let mut rng = Rng::from_os();
        let mut seq = 0;
        let single = pb.single(&mut rng, &mut seq);
        assert_eq!(single.len(), 600); // seq 0 has the probe's width
        let v: serde_json::Value = serde_json::from_slice(&single).unwrap();
        assert_eq!(v["type"], "track");
        let id = v["messageId"].as_str().unwrap();
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);

        let body = pb.batch(&mut rng, 100, &mut seq);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let batch = v["batch"].as_array().unwrap();
        assert_eq!(batch.len(), 100);
        let ids: std::collections::HashSet<_> = batch
            .iter()
            .map(|e| e["messageId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 100);
        for e in batch {
            // seq grows from 1 to 3 digits here.
            let n = serde_json::to_vec(e).unwrap().len();
            assert!((600..=602).contains(&n), "{n}");
        }
        assert!(v["sentAt"].is_string());
        assert_eq!(seq, 101);
    }

    #[test]
    fn tiny_event_bytes_means_no_pad() {
        let pb = PayloadBuilder::new(1);
        let mut rng = Rng::from_seed([9, 9, 9, 9]);
        let mut seq = 0;
        let e = pb.single(&mut rng, &mut seq);
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["properties"]["pad"], "");
    }
}
