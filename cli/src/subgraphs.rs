//! The subgraphs this binary knows, and how to reach their shards.

use std::path::Path;

use anyhow::bail;
use switchyard_kit::{StoreConfig, SubgraphDef};

/// Every subgraph, in the order `dev` starts them.
pub const ALL: &[SubgraphDef] = &[
    switchyard_accounts::SUBGRAPH,
    switchyard_posts::SUBGRAPH,
    switchyard_engagement::SUBGRAPH,
    switchyard_notifications::SUBGRAPH,
];

pub fn find(name: &str) -> anyhow::Result<&'static SubgraphDef> {
    ALL.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<_> = ALL.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown subgraph {name:?}; known: {}", names.join(", "))
    })
}

/// Where a subgraph's shards are. `SWITCHYARD_<NAME>_SHARDS` (comma-separated URLs, one per
/// shard, in shard order) wins; `SWITCHYARD_<NAME>_REPLICAS` adds read replicas by position
/// (empty entries for shards without one). Otherwise: `shards` SQLite files under `data_dir`.
pub fn store_config(
    def: &SubgraphDef,
    data_dir: &Path,
    shards: usize,
) -> anyhow::Result<StoreConfig> {
    let prefix = format!("SWITCHYARD_{}", def.name.to_ascii_uppercase());
    let urls = std::env::var(format!("{prefix}_SHARDS")).ok();
    let replicas = std::env::var(format!("{prefix}_REPLICAS")).ok();
    let Some(urls) = urls.filter(|u| !u.trim().is_empty()) else {
        if replicas.is_some() {
            bail!("{prefix}_REPLICAS is set but {prefix}_SHARDS is not");
        }
        if shards == 0 || shards > switchyard_kit::id::MAX_SHARDS {
            bail!(
                "--shards must be between 1 and {}",
                switchyard_kit::id::MAX_SHARDS
            );
        }
        return Ok(StoreConfig::sqlite(data_dir, def.name, shards));
    };
    let mut config = StoreConfig::from_urls(urls.split(',').map(|u| u.trim().to_owned()));
    if let Some(replicas) = replicas {
        let replicas: Vec<&str> = replicas.split(',').map(str::trim).collect();
        if replicas.len() != config.shards.len() {
            bail!(
                "{prefix}_REPLICAS has {} entries but {prefix}_SHARDS has {}; use empty entries for shards without a replica",
                replicas.len(),
                config.shards.len()
            );
        }
        for (shard, replica) in config.shards.iter_mut().zip(replicas) {
            shard.replica = (!replica.is_empty()).then(|| replica.to_owned());
        }
    }
    if let Some((i, _)) = config
        .shards
        .iter()
        .enumerate()
        .find(|(_, s)| s.primary.is_empty())
    {
        bail!("{prefix}_SHARDS entry {i} is empty");
    }
    Ok(config)
}
