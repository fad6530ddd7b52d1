//! The accounts subgraph: users, their profiles and handles.

pub mod attempts;
pub mod auth;
pub mod config;
pub mod entities;
pub mod loaders;
pub mod migration;
pub mod passwords;
pub mod providers;
pub mod repo;
pub mod schema;
pub mod seed;
pub mod tokens;
pub mod totp;

use std::sync::Arc;

use switchyard_kit::ShardedStore;

pub use migration::Migrator;
pub use schema::{AccountsSchema, prepare, schema};

/// The subgraph's name in `supergraph.yaml` and in shard file names.
pub const NAME: &str = "accounts";

/// The SDL this subgraph serves at `_service.sdl` (and `switchyard schema export` writes).
pub fn sdl() -> String {
    switchyard_kit::federation_sdl(&schema())
}

/// The subgraph's HTTP routes over `store`.
pub fn router(
    store: Arc<ShardedStore>,
    options: &switchyard_kit::server::ServerOptions,
) -> Result<axum::Router, String> {
    let config = config::AccountsConfig::from_env(options.environment)?;
    Ok(switchyard_kit::server::router(
        schema::schema_with(config),
        store,
        prepare,
        options,
    ))
}

/// This subgraph, for the `switchyard` binary.
pub const SUBGRAPH: switchyard_kit::SubgraphDef = switchyard_kit::SubgraphDef {
    name: NAME,
    default_port: 4001,
    sdl,
    router,
    migrate: |store| Box::pin(store.migrate::<Migrator>()),
};
