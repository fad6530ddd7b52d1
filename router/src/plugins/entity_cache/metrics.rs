//! The entity cache's metrics (Prometheus names: `switchyard_entity_cache_*`). Labels are
//! subgraph names and entity type names from the supergraph (fixed sets), and fixed words.

use opentelemetry::metrics::{Counter, Meter};

use crate::plugins::response_cache::metrics::counter;

pub struct Metrics {
    pub lookups: Counter<u64>,
    pub saved: Counter<u64>,
    pub fetches: Counter<u64>,
    pub stores: Counter<u64>,
    pub uncacheable: Counter<u64>,
}

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        let counter = |name, description| counter(meter, name, description);
        Metrics {
            lookups: counter(
                "switchyard.entity_cache.lookups",
                "Entities and root fetches looked up, by subgraph, type (`root` for a root fetch) and result (hit, miss)",
            ),
            saved: counter(
                "switchyard.entity_cache.entities_saved",
                "Representations answered from the cache instead of being sent to the subgraph, by subgraph",
            ),
            fetches: counter(
                "switchyard.entity_cache.fetches",
                "Subgraph fetches the stage saw, by subgraph and outcome (hit: no request sent, partial, miss, bypass)",
            ),
            stores: counter(
                "switchyard.entity_cache.stores",
                "Entities and root fetches stored, by subgraph and scope",
            ),
            uncacheable: counter(
                "switchyard.entity_cache.uncacheable",
                "Entities and root fetches not stored, by subgraph and reason",
            ),
        }
    }
}
