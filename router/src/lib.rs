//! The Switchyard router: apollo-router embedded as a library, with our native plugins.
//!
//! apollo-router's own `Executable` parses the process's argv with its CLI, which clashes with
//! `switchyard router ...`, so we embed it with [`RouterHttpServer`] instead and keep our CLI.

pub mod plugins;

use std::path::PathBuf;

use apollo_router::{ConfigurationSource, RouterHttpServer, SchemaSource, ShutdownSource};

/// What to start the router with.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// The router YAML (apollo-router's format plus our `plugins: switchyard.*`).
    pub config: PathBuf,
    /// The composed supergraph SDL.
    pub supergraph: PathBuf,
    /// Watch both files and apply changes without a restart.
    pub hot_reload: bool,
}

/// Starts the router. The returned server is a future that resolves when the router stops;
/// `shutdown()` on it stops it gracefully (in-flight requests finish).
pub fn start(options: &RouterOptions) -> anyhow::Result<RouterHttpServer> {
    for (what, path) in [
        ("router config", &options.config),
        ("supergraph", &options.supergraph),
    ] {
        if !path.is_file() {
            anyhow::bail!(
                "{what} {} does not exist (run from the repository root, or pass its path)",
                path.display()
            );
        }
    }
    Ok(RouterHttpServer::builder()
        .configuration(ConfigurationSource::File {
            path: options.config.clone(),
            watch: options.hot_reload,
        })
        .schema(SchemaSource::File {
            path: options.supergraph.clone(),
            watch: options.hot_reload,
        })
        .shutdown(ShutdownSource::None)
        // Otherwise apollo-router's usage reporter re-parses argv with its own CLI.
        .is_telemetry_disabled(true)
        .start())
}
