//! The notifications subgraph: each user's inbox, the devices their pushes go to and which
//! kinds push; and the two workers behind it, the fan-out from other subgraphs' events into
//! inboxes ([`fanout`]) and push delivery to APNs and FCM ([`push`]).

pub mod entities;
pub mod fanout;
pub mod kind;
pub mod migration;
pub mod push;
pub mod repo;
pub mod schema;

use std::sync::Arc;

use switchyard_kit::ShardedStore;

pub use migration::Migrator;
pub use schema::{NotificationsSchema, prepare, schema};

/// A store (or other) failure inside a worker, retried like any handler error.
pub(crate) fn worker_error(
    e: impl std::fmt::Display,
) -> switchyard_kit::events::worker::HandlerError {
    e.to_string().into()
}

/// The subgraph's name in `supergraph.yaml`, shard file names and its event stream.
pub const NAME: &str = "notifications";

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
    default_port: 4004,
    sdl,
    router,
    migrate: |store| Box::pin(store.migrate::<Migrator>()),
};
