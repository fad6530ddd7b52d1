//! One cached response and its wire form in Redis: a small JSON header line, then the
//! response body exactly as it will be sent.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// When the response was produced (unix ms), for `Age`.
    pub stored_at_ms: u64,
    /// Seconds it may be served from `stored_at_ms` on.
    pub max_age: u32,
    pub private: bool,
    pub tags: Vec<String>,
    /// A strong validator of the body, for `ETag` / `If-None-Match` (empty in entries written
    /// before it existed).
    #[serde(default)]
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub meta: Meta,
    /// The serialized GraphQL response (no errors, by construction).
    pub body: Bytes,
}

impl Entry {
    pub fn expires_at_ms(&self) -> u64 {
        self.meta.stored_at_ms + u64::from(self.meta.max_age) * 1000
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms()
    }

    /// Whole seconds since it was produced, for the `Age` header.
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.meta.stored_at_ms) / 1000
    }

    /// Milliseconds left to live (at least 1, for Redis `PX`).
    pub fn ttl_ms(&self, now_ms: u64) -> u64 {
        self.expires_at_ms().saturating_sub(now_ms).max(1)
    }

    /// Bytes it holds, for the in-process level's budget.
    pub fn weight(&self) -> usize {
        self.body.len() + self.meta.tags.iter().map(|t| t.len() + 24).sum::<usize>() + 128
    }

    pub fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("meta serializes");
        let mut out = Vec::with_capacity(meta.len() + 1 + self.body.len());
        out.extend_from_slice(&meta);
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    /// `None` for anything this version did not write (another version's format, a
    /// truncated value): treated as a miss.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let split = bytes.iter().position(|b| *b == b'\n')?;
        let meta: Meta = serde_json::from_slice(&bytes[..split]).ok()?;
        Some(Self {
            meta,
            body: Bytes::copy_from_slice(&bytes[split + 1..]),
        })
    }
}

/// A strong `ETag` for `body`: 96 bits of its sha256, quoted.
pub fn etag_of(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..12]))
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`).
pub fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    !etag.is_empty()
        && if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
}

pub use crate::plugins::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let entry = Entry {
            meta: Meta {
                stored_at_ms: 1_000,
                max_age: 30,
                private: true,
                tags: vec!["Post:1".into()],
                etag: etag_of(b"{}"),
            },
            body: Bytes::from_static(b"{\"data\":{\"a\":\"x\\ny\"}}"),
        };
        assert_eq!(Entry::decode(&entry.encode()), Some(entry.clone()));
        assert_eq!(Entry::decode(b"not an entry"), None);
        assert_eq!(Entry::decode(b"{\"x\":1}\n{}"), None);
        assert!(entry.is_fresh(30_999));
        assert!(!entry.is_fresh(31_000));
        assert_eq!(entry.age_secs(3_500), 2);
        assert_eq!(entry.ttl_ms(40_000), 1);
    }

    #[test]
    fn etags_match_as_http_says() {
        let etag = etag_of(b"{\"data\":{}}");
        assert_eq!(etag.len(), 26);
        assert_ne!(etag, etag_of(b"{\"data\":{\"a\":1}}"));
        assert!(matches_etag(&etag, &etag));
        assert!(matches_etag(&format!("\"x\", W/{etag}"), &etag));
        assert!(matches_etag("*", &etag));
        assert!(!matches_etag("\"other\"", &etag));
        assert!(!matches_etag("*", ""));
    }
}
