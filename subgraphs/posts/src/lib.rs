//! The posts subgraph: posts, users' post lists and the global feed.

pub mod entities;
pub mod loaders;
pub mod migration;
pub mod repo;
pub mod schema;
pub mod seed;

use std::sync::Arc;

use switchyard_kit::ShardedStore;

pub use migration::Migrator;
pub use schema::{PostsSchema, prepare, schema};

/// The subgraph's name in `supergraph.yaml` and in shard file names.
pub const NAME: &str = "posts";

/// The SDL this subgraph serves at `_service.sdl` (and `switchyard schema export` writes).
pub fn sdl() -> String {
    switchyard_kit::federation_sdl(&schema())
}

/// The subgraph's HTTP routes over `store`.
pub fn router(
    store: Arc<ShardedStore>,
    options: &switchyard_kit::server::ServerOptions,
) -> Result<axum::Router, String> {
    Ok(switchyard_kit::server::router(
        schema(),
        store,
        prepare,
        options,
    ))
}

/// This subgraph, for the `switchyard` binary.
pub const SUBGRAPH: switchyard_kit::SubgraphDef = switchyard_kit::SubgraphDef {
    name: NAME,
    default_port: 4002,
    sdl,
    router,
    migrate: |store| Box::pin(store.migrate::<Migrator>()),
};
