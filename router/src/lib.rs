//! The Switchyard router: apollo-router embedded as a library, with our native plugins.
//!
//! Two ways in:
//! - [`exec`] / [`command`]: what `switchyard router` and `switchyard dev` use. The process
//!   becomes apollo-router itself, through apollo-router's own `main`, with an argv we build.
//!   Only that path initialises apollo-router's telemetry (its logging, OpenTelemetry traces,
//!   the Prometheus endpoint and the metrics our plugins record): the initialisation is
//!   private to its `main`, and its argument type is not exported, so we cannot call it with our
//!   own arguments in a process whose argv holds `switchyard` subcommands.
//! - [`start`]: embeds a router with [`RouterHttpServer`] and hands back its address, for tests
//!   and benchmarks that run several routers in one process. No telemetry there.

pub mod composition;
pub mod deployment;
pub mod explorer;
pub mod pipeline;
pub mod plugins;
pub mod supergraph;

pub use apollo_router::RouterHttpServer;

use std::path::PathBuf;

use apollo_router::{ConfigurationSource, SchemaSource, ShutdownSource};

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

/// Set in the environment of a `switchyard` process that must *be* apollo-router: see [`exec`].
pub const EXEC_ENV: &str = "SWITCHYARD_EXEC_APOLLO_ROUTER";

/// Call first thing in `main`, before any runtime or logging exists: in a process started by
/// [`exec`] or [`command`], runs apollo-router's own `main` (which parses the argv we gave it)
/// and returns its result; otherwise `None`.
pub fn main_if_exec() -> Option<anyhow::Result<()>> {
    std::env::var_os(EXEC_ENV)?;
    Some(apollo_router::main())
}

/// apollo-router's arguments for `options`.
pub fn apollo_args(options: &RouterOptions, listen: Option<std::net::SocketAddr>) -> Vec<String> {
    let mut args = vec![
        "--config".to_owned(),
        options.config.display().to_string(),
        "--supergraph".to_owned(),
        options.supergraph.display().to_string(),
        // The anonymous usage reporter would re-read the process's argv with its own CLI.
        "--anonymous-telemetry-disabled".to_owned(),
    ];
    if options.hot_reload {
        args.push("--hot-reload".to_owned());
    }
    if let Some(listen) = listen {
        args.extend(["--listen".to_owned(), listen.to_string()]);
    }
    args
}

/// A command that runs this binary as apollo-router with `options` (for `switchyard dev`,
/// which runs the router as a child next to the in-process subgraphs).
pub fn command(
    options: &RouterOptions,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<std::process::Command> {
    check_files(options)?;
    let environment = launch_environment(options, listen)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(apollo_args(options, listen))
        .env(EXEC_ENV, "1")
        // Decided here, where the listen address is known; the plugin checks against it.
        .env(
            switchyard_wire::deployment::ENV_VAR,
            deployment::name(environment),
        );
    // One switch for every process: spans are exported where an OTLP endpoint is set. The
    // router YAML reads the boolean apollo-router needs.
    use switchyard_wire::names::{OTLP_ENABLED_ENV, OTLP_ENDPOINT_ENV};
    if std::env::var_os(OTLP_ENABLED_ENV).is_none() {
        let on = std::env::var(OTLP_ENDPOINT_ENV).is_ok_and(|e| !e.trim().is_empty());
        command.env(OTLP_ENABLED_ENV, if on { "true" } else { "false" });
    }
    Ok(command)
}

/// Replaces this process with apollo-router running `options` (`switchyard router`). Returns
/// only on failure.
#[cfg(unix)]
pub fn exec(options: &RouterOptions, listen: Option<std::net::SocketAddr>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    match command(options, listen) {
        Ok(mut command) => anyhow::Error::from(command.exec()).context("starting apollo-router"),
        Err(e) => e,
    }
}

/// Development or production, from `SWITCHYARD_ENV` and where the router will listen.
fn launch_environment(
    options: &RouterOptions,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<switchyard_wire::deployment::Environment> {
    let listen = match listen {
        Some(listen) => listen,
        None => deployment::listen_address(&options.config)?,
    };
    deployment::resolve(listen)
}

fn check_files(options: &RouterOptions) -> anyhow::Result<()> {
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
    Ok(())
}

/// Starts the router. The returned server is a future that resolves when the router stops;
/// `shutdown()` on it stops it gracefully (in-flight requests finish).
pub fn start(options: &RouterOptions) -> anyhow::Result<RouterHttpServer> {
    check_files(options)?;
    deployment::record(launch_environment(options, None)?);
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
