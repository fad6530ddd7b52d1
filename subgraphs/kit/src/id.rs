//! Globally unique, time-ordered 63-bit ids that carry their shard.
//!
//! Layout (most significant first): 41 bits of milliseconds since [`EPOCH_MS`], 10 bits of shard
//! index, 12 bits of sequence. Because the shard index is inside the id, a bare id finds its row
//! with one query on one shard (no fan-out, no directory), and because time leads, ordering by id
//! is ordering by creation time on every shard, which is what makes the cross-shard feed a plain
//! k-way merge with a single-id cursor.

use std::sync::Mutex;

use crate::error::ApiError;

/// 2025-01-01T00:00:00Z: 41 bits of milliseconds from here last until 2094.
pub const EPOCH_MS: i64 = 1_735_689_600_000;
/// Shard bits: up to 1024 shards, far more than one deployment needs.
pub const SHARD_BITS: u32 = 10;
/// Sequence bits: 4096 ids per millisecond per process before the generator waits.
pub const SEQ_BITS: u32 = 12;
/// The largest shard count an id can address.
pub const MAX_SHARDS: usize = 1 << SHARD_BITS;

const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;
const SHARD_MASK: i64 = (1 << SHARD_BITS) - 1;

/// The shard index an id was minted for.
pub fn shard_of(id: i64) -> usize {
    ((id >> SEQ_BITS) & SHARD_MASK) as usize
}

/// Milliseconds since the Unix epoch at which the id was minted.
pub fn timestamp_ms_of(id: i64) -> i64 {
    (id >> (SHARD_BITS + SEQ_BITS)) + EPOCH_MS
}

/// Builds an id from its parts; for data whose ids must be the same on every run (demo seeds).
pub fn compose_id(ms: i64, shard: usize, seq: i64) -> i64 {
    debug_assert!(shard < MAX_SHARDS && (0..=SEQ_MASK).contains(&seq) && ms >= EPOCH_MS);
    ((ms - EPOCH_MS) << (SHARD_BITS + SEQ_BITS)) | ((shard as i64) << SEQ_BITS) | seq
}

/// Parses an external id (decimal digits, as GraphQL `ID`s are sent) and checks that it can
/// belong to a deployment of `shard_count` shards. Anything else is the client's mistake.
pub fn parse_id(raw: &str, shard_count: usize) -> Result<i64, ApiError> {
    let malformed = || {
        ApiError::BadInput(format!(
            "malformed id {:?}: expected a Switchyard id",
            truncate(raw)
        ))
    };
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let id: i64 = raw.parse().map_err(|_| malformed())?;
    if id <= 0 || shard_of(id) >= shard_count {
        return Err(malformed());
    }
    Ok(id)
}

fn truncate(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// Mints ids for one process. Each new millisecond starts its sequence at a random offset, so two
/// replicas minting on the same shard in the same millisecond rarely collide; when they do, the
/// primary-key constraint refuses the second insert and the caller retries with a fresh id.
#[derive(Debug)]
pub struct IdGenerator {
    state: Mutex<(i64, i64)>,
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl IdGenerator {
    pub fn new() -> Self {
        Self {
            state: Mutex::new((0, 0)),
        }
    }

    /// A new id on `shard`, strictly greater than every id this generator minted before.
    pub fn next(&self, shard: usize) -> i64 {
        assert!(shard < MAX_SHARDS, "shard index {shard} out of range");
        let mut state = self.state.lock().expect("id generator lock poisoned");
        let (last_ms, last_seq) = *state;
        let now = now_ms();
        let (ms, seq) = if now > last_ms {
            // Start in the lower half so a burst still has room before borrowing a millisecond.
            (now, i64::from(rand::random::<u16>()) & (SEQ_MASK >> 1))
        } else if last_seq < SEQ_MASK {
            (last_ms, last_seq + 1)
        } else {
            (last_ms + 1, 0)
        };
        *state = (ms, seq);
        compose_id(ms, shard, seq)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_carry_their_shard_and_time() {
        let ids = IdGenerator::new();
        let before = now_ms();
        for shard in [0, 1, 3, 1023] {
            let id = ids.next(shard);
            assert_eq!(shard_of(id), shard);
            assert!(id > 0);
            assert!(timestamp_ms_of(id) >= before);
        }
    }

    #[test]
    fn ids_are_unique_and_increasing() {
        let ids = IdGenerator::new();
        let mut seen = HashSet::new();
        let mut last = 0;
        for _ in 0..20_000 {
            let id = ids.next(2);
            assert!(id > last, "{id} after {last}");
            last = id;
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn parse_rejects_malformed_ids() {
        let id = IdGenerator::new().next(3);
        assert_eq!(parse_id(&id.to_string(), 4).unwrap(), id);
        for bad in ["", "abc", "-5", "0", "12x", "99999999999999999999", " 1"] {
            assert!(
                matches!(parse_id(bad, 4), Err(ApiError::BadInput(_))),
                "{bad:?}"
            );
        }
        // A valid id for shard 3 does not belong to a 2-shard deployment.
        assert!(parse_id(&id.to_string(), 2).is_err());
    }
}
