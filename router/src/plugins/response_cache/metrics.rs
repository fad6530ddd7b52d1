//! The plugin's metrics (Prometheus names: `switchyard_response_cache_*`).

use opentelemetry::metrics::{Counter, Meter};

pub struct Metrics {
    pub lookups: Counter<u64>,
    pub stale: Counter<u64>,
    pub stores: Counter<u64>,
    pub stored_bytes: Counter<u64>,
    pub uncacheable: Counter<u64>,
    pub evictions: Counter<u64>,
    pub invalidations: Counter<u64>,
    pub invalidated_entries: Counter<u64>,
    pub redis_errors: Counter<u64>,
}

/// A counter with its description (shared by the entity cache's metrics).
pub fn counter(meter: &Meter, name: &'static str, description: &'static str) -> Counter<u64> {
    meter
        .u64_counter(name)
        .with_description(description)
        .build()
}

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        let counter = |name, description| counter(meter, name, description);
        Metrics {
            lookups: counter(
                "switchyard.response_cache.lookups",
                "Cacheable requests, by result (hit, miss, coalesced) and level",
            ),
            stale: counter(
                "switchyard.response_cache.stale",
                "Expired in-process entries found, and stale entries served when the subgraphs failed (by outcome)",
            ),
            stores: counter(
                "switchyard.response_cache.stores",
                "Responses stored, by scope",
            ),
            stored_bytes: counter(
                "switchyard.response_cache.stored_bytes",
                "Bytes of responses stored",
            ),
            uncacheable: counter(
                "switchyard.response_cache.uncacheable",
                "Responses not stored, by reason",
            ),
            evictions: counter(
                "switchyard.response_cache.evictions",
                "In-process entries evicted to stay within memory_bytes",
            ),
            invalidations: counter(
                "switchyard.response_cache.invalidations",
                "Tags invalidated, by source (subgraph, admin, pubsub)",
            ),
            invalidated_entries: counter(
                "switchyard.response_cache.invalidated_entries",
                "Entries dropped by invalidations, by level",
            ),
            redis_errors: counter(
                "switchyard.response_cache.redis_errors",
                "Redis calls that failed or timed out, by operation",
            ),
        }
    }
}
