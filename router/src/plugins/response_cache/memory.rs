//! The in-process level: least recently used entries go first once the byte budget is spent.
//! A tag index finds the entries to drop on invalidation without scanning.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::entry::Entry;

/// What a lookup found.
pub enum Lookup {
    Fresh(Arc<Entry>),
    /// Past its age but within the stale-if-error window: kept, to be served only if the
    /// subgraphs fail.
    Stale(Arc<Entry>),
    /// Nothing, or an entry past both (now dropped; `true`).
    Missing(bool),
}

pub struct MemoryLevel {
    max_bytes: usize,
    /// How long past its age an entry is kept for stale-if-error (ms).
    stale_ms: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<String, Arc<Entry>>,
    by_tag: HashMap<String, HashSet<String>>,
    bytes: usize,
}

impl MemoryLevel {
    pub fn new(max_bytes: usize, stale_ms: u64) -> Self {
        Self {
            max_bytes,
            stale_ms,
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                by_tag: HashMap::new(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str, now_ms: u64) -> Lookup {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get(key) else {
            return Lookup::Missing(false);
        };
        if entry.is_fresh(now_ms) {
            return Lookup::Fresh(entry.clone());
        }
        if now_ms < entry.expires_at_ms() + self.stale_ms {
            return Lookup::Stale(entry.clone());
        }
        inner.remove(key);
        Lookup::Missing(true)
    }

    /// Stores `entry`; returns how many entries were evicted to make room. An entry larger
    /// than the whole budget is not kept.
    pub fn put(&self, key: String, entry: Arc<Entry>) -> u64 {
        let weight = entry.weight();
        if weight > self.max_bytes {
            return 0;
        }
        let mut inner = self.lock();
        inner.remove(&key);
        let mut evicted = 0;
        while inner.bytes + weight > self.max_bytes {
            let Some((old_key, _)) = inner
                .entries
                .peek_lru()
                .map(|(k, v)| (k.clone(), v.clone()))
            else {
                break;
            };
            inner.remove(&old_key);
            evicted += 1;
        }
        for tag in &entry.meta.tags {
            inner
                .by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        inner.bytes += weight;
        inner.entries.put(key, entry);
        evicted
    }

    /// Drops every entry tagged with one of `tags`; returns how many.
    pub fn invalidate<'a>(&self, tags: impl IntoIterator<Item = &'a str>) -> u64 {
        let mut inner = self.lock();
        let mut dropped = 0;
        for tag in tags {
            let Some(keys) = inner.by_tag.remove(tag) else {
                continue;
            };
            for key in keys {
                if inner.remove(&key) {
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Drops everything (after missing invalidations while Redis was unreachable).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.by_tag.clear();
        inner.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn entry_count(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    fn remove(&mut self, key: &str) -> bool {
        let Some(entry) = self.entries.pop(key) else {
            return false;
        };
        self.bytes -= entry.weight();
        for tag in &entry.meta.tags {
            if let Some(keys) = self.by_tag.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::Meta;
    use super::*;

    fn entry(stored_at_ms: u64, body: &str, tags: &[&str]) -> Arc<Entry> {
        Arc::new(Entry {
            meta: Meta {
                stored_at_ms,
                max_age: 10,
                private: false,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                etag: String::new(),
            },
            body: bytes::Bytes::from(body.to_owned()),
        })
    }

    #[test]
    fn expires_and_counts_stale() {
        let memory = MemoryLevel::new(1 << 20, 0);
        memory.put("k".into(), entry(0, "{}", &[]));
        assert!(matches!(memory.get("k", 9_999), Lookup::Fresh(_)));
        assert!(matches!(memory.get("k", 10_000), Lookup::Missing(true)));
        assert!(matches!(memory.get("k", 10_000), Lookup::Missing(false)));
        assert_eq!(memory.bytes(), 0);
    }

    #[test]
    fn keeps_expired_entries_for_stale_if_error() {
        let memory = MemoryLevel::new(1 << 20, 5_000);
        memory.put("k".into(), entry(0, "{}", &["A:1"]));
        assert!(matches!(memory.get("k", 10_000), Lookup::Stale(_)));
        assert!(matches!(memory.get("k", 14_999), Lookup::Stale(_)));
        assert!(matches!(memory.get("k", 15_000), Lookup::Missing(true)));
        // Invalidation drops stale entries too: they are never served after it.
        memory.put("k".into(), entry(0, "{}", &["A:1"]));
        memory.invalidate(["A:1"]);
        assert!(matches!(memory.get("k", 10_000), Lookup::Missing(false)));
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let one = entry(0, &"x".repeat(1000), &["A:1"]).weight();
        let memory = MemoryLevel::new(one * 2, 0);
        memory.put("a".into(), entry(0, &"x".repeat(1000), &["A:1"]));
        memory.put("b".into(), entry(0, &"x".repeat(1000), &["A:1"]));
        assert!(matches!(memory.get("a", 1), Lookup::Fresh(_))); // a is now the most recent
        assert_eq!(
            memory.put("c".into(), entry(0, &"x".repeat(1000), &["A:1"])),
            1
        );
        assert!(matches!(memory.get("b", 1), Lookup::Missing(_)));
        assert!(matches!(memory.get("a", 1), Lookup::Fresh(_)));
        assert!(memory.bytes() <= one * 2);
        // Too big for the whole budget: not kept, nothing evicted for it.
        assert_eq!(
            memory.put("huge".into(), entry(0, &"x".repeat(one * 3), &[])),
            0
        );
        assert_eq!(memory.entry_count(), 2);
    }

    #[test]
    fn invalidates_by_tag_only_what_carries_it() {
        let memory = MemoryLevel::new(1 << 20, 0);
        memory.put(
            "feed".into(),
            entry(0, "{}", &["Post:1", "Post:2", "User:7"]),
        );
        memory.put("post2".into(), entry(0, "{}", &["Post:2"]));
        memory.put("user8".into(), entry(0, "{}", &["User:8"]));
        assert_eq!(memory.invalidate(["Post:2"]), 2);
        assert!(matches!(memory.get("feed", 1), Lookup::Missing(_)));
        assert!(matches!(memory.get("user8", 1), Lookup::Fresh(_)));
        assert_eq!(memory.invalidate(["Post:1", "Nope:1"]), 0);
        // Replacing an entry re-indexes it.
        memory.put("user8".into(), entry(0, "{}", &["User:9"]));
        assert_eq!(memory.invalidate(["User:8"]), 0);
        assert_eq!(memory.invalidate(["User:9"]), 1);
        assert_eq!(memory.bytes(), 0);
    }
}
