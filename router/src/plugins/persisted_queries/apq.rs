//! Automatic persisted queries (development mode): bodies registered by clients, bounded.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

/// Bodies by id, least recently used evicted first.
pub struct ApqCache {
    entries: Mutex<LruCache<String, Arc<str>>>,
}

impl ApqCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<str>> {
        self.entries.lock().expect("apq lock").get(id).cloned()
    }

    /// Registers a body under its (already verified) id.
    pub fn insert(&self, id: String, body: Arc<str>) {
        self.entries.lock().expect("apq lock").put(id, body);
    }
}
