//! `switchyard`: one binary for every role (see `switchyard --help`).

mod compose;
mod dev;
mod events;
mod files;
mod pq;
mod seed;
mod subgraphs;
mod telemetry;
mod worker_metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchyard_kit::ShardedStore;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "GraphQL federation platform: router, subgraphs and tooling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    telemetry: telemetry::TelemetryArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start every subgraph and the router with embedded defaults (SQLite shards under ./data,
    /// demo data on first start).
    Dev(dev::DevArgs),
    /// Run the router.
    Router {
        /// The router config; without it, the development config router/router.yaml (which
        /// trusts published development secrets, so it only starts on a loopback address).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "schema/supergraph.graphql")]
        supergraph: PathBuf,
        /// Apply changes to either file without a restart.
        #[arg(long)]
        hot_reload: bool,
        /// Overrides `supergraph.listen` in the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run one subgraph's HTTP server.
    Subgraph {
        /// accounts, posts, engagement or notifications.
        name: String,
        /// Address to listen on (default 127.0.0.1 and the subgraph's own port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        store: StoreArgs,
        /// Do not run migrations at start-up (when a deploy job runs `switchyard migrate`).
        #[arg(long)]
        skip_migrations: bool,
    },
    /// Compose supergraph.yaml into schema/supergraph.graphql.
    Compose {
        #[arg(long, default_value = "supergraph.yaml")]
        config: PathBuf,
        #[arg(long, default_value = "schema/supergraph.graphql")]
        output: PathBuf,
        /// Fail when the output file is stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Subgraph schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Persisted queries: the manifest clients' operations become, and their schema check.
    Pq {
        #[command(subcommand)]
        command: PqCommand,
    },
    /// Run one worker of the event pipeline: `relay` (outboxes to the bus), `counters`,
    /// `notifications` (inbox fan-out) or `push` (APNs and FCM).
    Worker {
        name: events::WorkerName,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        bus: events::BusArgs,
        /// Serve Prometheus `/metrics` here (outbox lag for the relay, handler outcomes for
        /// the others).
        #[arg(long, env = "SWITCHYARD_METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// The event history: `switchyard events replay counters [--apply]` rebuilds a
    /// projection from it and reports every difference from the live one.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Run migrations on every shard of every subgraph.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Load the demo data set (idempotent).
    Seed {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 100_000)]
        posts: usize,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Rebuild a projection from the outboxes' history and compare it with the live one;
    /// exits non-zero when they differ (after repairing them with `--apply`).
    Replay {
        projection: Projection,
        /// Set the live values to the replayed ones.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Projection {
    /// Like, comment, follower and following counts.
    Counters,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Write each subgraph's SDL from code into schema/<name>.graphql.
    Export {
        #[arg(long, default_value = "schema")]
        dir: PathBuf,
        /// Fail when a committed file is stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
enum PqCommand {
    /// Write the manifest from persisted-queries/operations/<client>/*.graphql.
    Build {
        #[arg(long, default_value = "persisted-queries/operations")]
        operations: PathBuf,
        #[arg(long, default_value = "persisted-queries/manifest.json")]
        manifest: PathBuf,
        /// Fail when the committed manifest is stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Validate every persisted operation against the supergraph.
    Check {
        #[arg(long, default_value = "persisted-queries/operations")]
        operations: PathBuf,
        #[arg(long, default_value = "schema/supergraph.graphql")]
        supergraph: PathBuf,
    },
}

/// Where the shards are, when `SWITCHYARD_<NAME>_SHARDS` does not say.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite shard files.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Number of embedded SQLite shards per subgraph.
    #[arg(long, env = "SWITCHYARD_SHARDS", default_value_t = 4)]
    pub shards: usize,
}

impl StoreArgs {
    pub async fn connect(
        &self,
        def: &switchyard_kit::SubgraphDef,
    ) -> anyhow::Result<Arc<ShardedStore>> {
        let config = subgraphs::store_config(def, &self.data_dir, self.shards)?;
        let store = ShardedStore::connect_as(def.name, &config)
            .await
            .with_context(|| format!("subgraph {}", def.name))?;
        Ok(Arc::new(store))
    }
}

/// What `switchyard router` runs without `--config`.
const DEV_ROUTER_CONFIG: &str = "router/router.yaml";

fn main() -> std::process::ExitCode {
    // `switchyard router` (and `dev`'s router child) become apollo-router here.
    if let Some(result) = switchyard_router::main_if_exec() {
        return exit(result);
    }
    let cli = Cli::parse();
    if let Command::Router {
        config,
        supergraph,
        hot_reload,
        listen,
    } = cli.command
    {
        let config = match config {
            Some(config) => {
                eprintln!("switchyard router: config {}", config.display());
                config
            }
            None => {
                eprintln!(
                    "switchyard router: no --config given, so running the development config {DEV_ROUTER_CONFIG}: it trusts the development signing key and secrets published in this repository, and refuses to start on a non-loopback address or with SWITCHYARD_ENV=production. For production pass --config router/router.production.yaml (docs/security.md#production-checks)."
                );
                PathBuf::from(DEV_ROUTER_CONFIG)
            }
        };
        let options = switchyard_router::RouterOptions {
            config,
            supergraph,
            hot_reload,
        };
        return exit(Err(switchyard_router::exec(&options, listen)));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return exit(Err(err.into())),
    };
    exit(runtime.block_on(async move {
        let telemetry = cli.telemetry.init(service_name(&cli.command))?;
        let result = run(cli).await;
        telemetry.shutdown().await;
        result
    }))
}

/// The `service.name` of this process's spans.
fn service_name(command: &Command) -> String {
    match command {
        Command::Dev(_) => "switchyard-dev".to_owned(),
        Command::Subgraph { name, .. } => format!("switchyard-{name}"),
        Command::Worker { name, .. } => format!("switchyard-worker-{}", name.as_str()),
        _ => "switchyard-cli".to_owned(),
    }
}

fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Router { .. } => unreachable!("handled in main: the process becomes the router"),
        Command::Subgraph {
            name,
            listen,
            store,
            skip_migrations,
        } => {
            let def = subgraphs::find(&name)?;
            let addr =
                listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], def.default_port)));
            // Settings first: a typo in the environment must not wait for (or touch) the shards.
            let options = switchyard_kit::server::ServerOptions::from_env(&[addr])
                .map_err(|e| anyhow::anyhow!("subgraph {}: {e}", def.name))?;
            let store = store.connect(def).await?;
            if !skip_migrations {
                (def.migrate)(&store)
                    .await
                    .with_context(|| format!("subgraph {}", def.name))?;
            }
            let app = (def.router)(store, &options)
                .map_err(|e| anyhow::anyhow!("subgraph {}: {e}", def.name))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("subgraph {}: cannot listen on {addr}", def.name))?;
            tracing::info!(
                subgraph = def.name,
                "listening on http://{}/graphql",
                listener.local_addr()?
            );
            switchyard_kit::server::serve(listener, app, shutdown_signal()).await?;
            Ok(())
        }
        Command::Worker {
            name,
            store,
            bus,
            metrics_listen,
        } => {
            let environment = switchyard_kit::deployment::Environment::from_env(&[])
                .map_err(anyhow::Error::msg)?;
            let invalidator = bus.invalidator(environment)?;
            let events = bus.bus(&store).await?;
            let stores = events::Stores::connect(&store).await?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            tracing::info!(worker = ?name, "running");
            let run = events::Run {
                bus: events,
                args: bus,
                invalidator,
                environment,
                metrics_listen,
            };
            events::run(name, stores, run, stop_rx).await
        }
        Command::Events {
            command:
                EventsCommand::Replay {
                    projection: Projection::Counters,
                    apply,
                    store,
                },
        } => {
            let stores = events::Stores::connect(&store).await?;
            let report = switchyard_engagement::projections::replay(&stores.engagement, apply)
                .await
                .map_err(anyhow::Error::msg)?;
            println!(
                "replayed {} event(s); compared {} counter(s); {} difference(s){}",
                report.events,
                report.compared,
                report.differences.len(),
                if apply && !report.differences.is_empty() {
                    ", repaired"
                } else {
                    ""
                }
            );
            for d in &report.differences {
                println!(
                    "  {} of {}: live {}, replayed {}",
                    d.counter, d.id, d.live, d.replayed
                );
            }
            if report.differences.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("the live projection differs from its event history")
            }
        }
        Command::Compose {
            config,
            output,
            check,
        } => {
            let sdl = compose::compose_file(&config)?;
            files::write_or_check(&output, &sdl, check, "switchyard compose")
        }
        Command::Schema {
            command: SchemaCommand::Export { dir, check },
        } => {
            for def in subgraphs::ALL {
                let path = dir.join(format!("{}.graphql", def.name));
                files::write_or_check(&path, &(def.sdl)(), check, "switchyard schema export")?;
            }
            Ok(())
        }
        Command::Pq {
            command:
                PqCommand::Build {
                    operations,
                    manifest,
                    check,
                },
        } => {
            let ops = pq::read_operations(&operations)?;
            let file = pq::build_manifest(&ops)?;
            files::write_or_check(&manifest, &file.to_json(), check, "switchyard pq build")?;
            if !check {
                println!(
                    "{} operation(s) from {} file(s)",
                    file.operations.len(),
                    ops.len()
                );
            }
            Ok(())
        }
        Command::Pq {
            command:
                PqCommand::Check {
                    operations,
                    supergraph,
                },
        } => {
            let ops = pq::read_operations(&operations)?;
            let sdl = std::fs::read_to_string(&supergraph)
                .with_context(|| format!("reading {}", supergraph.display()))?;
            let problems = pq::check_operations(&ops, &sdl)?;
            if problems.is_empty() {
                println!(
                    "all {} persisted operation(s) are valid against {}",
                    ops.len(),
                    supergraph.display()
                );
                Ok(())
            } else {
                for problem in &problems {
                    eprintln!("{problem}");
                }
                anyhow::bail!(
                    "{} problem(s): a schema change would break shipped operations",
                    problems.len()
                )
            }
        }
        Command::Migrate { store } => {
            for def in subgraphs::ALL {
                let connected = store.connect(def).await?;
                (def.migrate)(&connected)
                    .await
                    .with_context(|| format!("subgraph {}", def.name))?;
                println!(
                    "{}: migrated {} shard(s)",
                    def.name,
                    connected.shard_count()
                );
            }
            Ok(())
        }
        Command::Seed {
            store,
            users,
            posts,
        } => seed::run(&store, users, posts).await,
    }
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before killing a pod).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
