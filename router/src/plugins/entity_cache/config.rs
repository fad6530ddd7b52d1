//! The entity cache's configuration (`response_cache: entities:` in the router YAML): it
//! shares the response cache's levels, so only what differs per subgraph is here.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Configuration of the entity cache.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityCacheConfig {
    /// Off: every subgraph fetch goes to its subgraph.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Longest a fetch or an entity is kept, whatever the hints say (each subgraph may lower
    /// it). Absent: the response cache's `max_ttl`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_ttl: Option<Duration>,
    /// Sends the PRIVATE fields of an entity fetch (by the supergraph's `@cacheControl`) on
    /// their own, so the public fields of the same entities are cached once for every user
    /// and only the viewer's part is fetched per user.
    #[serde(default = "enabled")]
    pub split_private_fields: bool,
    /// Per subgraph (by its name in the supergraph): on or off, and a shorter `max_ttl`.
    /// Subgraphs not listed are cached with the settings above.
    #[serde(default)]
    pub subgraphs: BTreeMap<String, SubgraphConfig>,
}

/// One subgraph's entity cache settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubgraphConfig {
    /// Off: this subgraph's fetches are never cached (its hints still reach the
    /// whole-response cache).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Longest this subgraph's fetches and entities are kept.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_ttl: Option<Duration>,
}

fn enabled() -> bool {
    true
}
