//! `switchyard dev`: every subgraph and the router in one process, embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_router::RouterOptions;
use tokio::sync::watch;

use crate::{StoreArgs, shutdown_signal, subgraphs};

#[derive(Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Router configuration.
    #[arg(long, default_value = "router/router.yaml")]
    pub router_config: PathBuf,
    /// Composed supergraph.
    #[arg(long, default_value = "schema/supergraph.graphql")]
    pub supergraph: PathBuf,
    /// Do not load demo data into empty stores.
    #[arg(long)]
    pub no_seed: bool,
    #[command(flatten)]
    pub bus: crate::events::BusArgs,
}

/// The development router's cache invalidation endpoint (router/router.yaml).
const DEV_CACHE_INVALIDATION_URL: &str = "http://127.0.0.1:8089/invalidation";

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let router_addr = switchyard_router::deployment::listen_address(&args.router_config)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // The router config trusts the same development secret unless the environment sets one.
    // (the same default as in router/router.yaml). The subgraphs listen on loopback only.
    let subgraph_addrs: Vec<SocketAddr> = subgraphs::ALL
        .iter()
        .map(|def| SocketAddr::from(([127, 0, 0, 1], def.default_port)))
        .collect();
    let mut server_options = switchyard_kit::server::ServerOptions::from_env(&subgraph_addrs)
        .map_err(anyhow::Error::msg)?;
    server_options.router_secret.get_or_insert_with(|| {
        switchyard_kit::deployment::Secret::new(switchyard_kit::deployment::DEV_ROUTER_SECRET)
    });
    server_options.check().map_err(anyhow::Error::msg)?;
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    let mut stores = std::collections::HashMap::new();
    for (def, &addr) in subgraphs::ALL.iter().zip(&subgraph_addrs) {
        let store = args.store.connect(def).await?;
        (def.migrate)(&store)
            .await
            .with_context(|| format!("subgraph {}", def.name))?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "subgraph {}: cannot listen on {addr} (is another `switchyard dev` running?)",
                def.name
            )
        })?;
        urls.push((def.name, format!("http://{addr}/graphql")));
        stores.insert(def.name, store.clone());
        let app = (def.router)(store, &server_options)
            .map_err(|e| anyhow::anyhow!("subgraph {}: {e}", def.name))?;
        servers.push(tokio::spawn(switchyard_kit::server::serve(
            listener,
            app,
            stopped(stop_rx.clone()),
        )));
    }
    if !args.no_seed {
        // The stores the subgraphs already use: no second set of pools, no second migration.
        let store = |name: &str| {
            stores
                .get(name)
                .cloned()
                .with_context(|| format!("no {name} subgraph"))
        };
        let (accounts, posts) = (
            store(switchyard_accounts::NAME)?,
            store(switchyard_posts::NAME)?,
        );
        crate::seed::seed_if_empty(&accounts, &posts).await?;
    }

    // The event pipeline, in-process: the embedded bus unless Redis is configured.
    let events = args.bus.bus(&args.store).await?;
    let mut bus_args = args.bus.clone();
    bus_args
        .cache_invalidation_url
        .get_or_insert_with(|| DEV_CACHE_INVALIDATION_URL.to_owned());
    let invalidator = bus_args.invalidator(switchyard_kit::deployment::Environment::Development)?;
    let store = |name: &str| {
        stores
            .get(name)
            .cloned()
            .with_context(|| format!("no {name} subgraph"))
    };
    let event_stores = crate::events::Stores {
        accounts: store(switchyard_accounts::NAME)?,
        engagement: store(switchyard_engagement::NAME)?,
        posts: store(switchyard_posts::NAME)?,
        notifications: store(switchyard_notifications::NAME)?,
    };
    let mut workers = Vec::new();
    for name in crate::events::WorkerName::ALL {
        let (event_stores, events, bus_args, invalidator, stop) = (
            event_stores.clone(),
            events.clone(),
            bus_args.clone(),
            invalidator.clone(),
            stop_rx.clone(),
        );
        workers.push(tokio::spawn(async move {
            let run = crate::events::Run {
                bus: events,
                args: bus_args,
                invalidator,
                environment: switchyard_kit::deployment::Environment::Development,
                metrics_listen: None,
            };
            crate::events::run(name, event_stores, run, stop).await
        }));
    }

    let options = RouterOptions {
        config: args.router_config.clone(),
        supergraph: args.supergraph.clone(),
        hot_reload: true,
    };
    let mut router = spawn_router(&options)?;
    loop {
        if tokio::net::TcpStream::connect(router_addr).await.is_ok() {
            break;
        }
        if let Some(status) = router.try_wait()? {
            bail!("the router exited during start-up ({status})");
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the router did not start listening on {router_addr} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!(
        "\nSwitchyard is up in {:.1}s:",
        started.elapsed().as_secs_f64()
    );
    println!("  router      http://{router_addr}/graphql");
    if let Some(path) = switchyard_router::deployment::explorer_path(&args.router_config) {
        println!("  explorer    http://{router_addr}{path}");
    }
    for (name, url) in &urls {
        println!("  {name:<11} {url}");
    }
    println!(
        "  data        {} ({} SQLite shard(s) per subgraph)",
        args.store.data_dir.display(),
        args.store.shards
    );
    println!(
        "  events      {} (relay and the counters, notifications, push and cache workers in this process)",
        if args.bus.redis_url.is_some() {
            "Redis Streams"
        } else {
            "embedded bus"
        }
    );
    println!(
        "\nTry:\n  curl -s http://{router_addr}/graphql -H 'content-type: application/json' \\\n    -d '{{\"query\":\"{{ feed(first: 3) {{ nodes {{ body author {{ handle displayName }} }} }} }}\"}}'\n\nCtrl-C stops everything (in-flight requests finish)."
    );

    let early_exit = tokio::select! {
        () = shutdown_signal() => None,
        status = router.wait() => Some(status?),
    };
    // The router drains its in-flight requests first (they may still need the subgraphs).
    if early_exit.is_none() {
        terminate(&router);
        router.wait().await.context("waiting for the router")?;
    }
    let _ = stop_tx.send(true);
    for server in servers {
        server
            .await
            .context("subgraph task")?
            .context("subgraph server")?;
    }
    for worker in workers {
        worker.await.context("worker task")??;
    }
    if let Some(status) = early_exit {
        bail!("the router exited unexpectedly ({status})");
    }
    println!("stopped");
    Ok(())
}

/// The router as a child process: apollo-router only sets up its telemetry in its own `main`.
fn spawn_router(options: &RouterOptions) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::from(switchyard_router::command(options, None)?);
    command.kill_on_drop(true);
    // If this process dies without cleaning up, the router goes with it.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command.spawn().context("starting the router")
}

/// Asks the router to shut down gracefully (SIGTERM: finish in-flight requests, then exit).
fn terminate(router: &tokio::process::Child) {
    if let Some(pid) = router.id() {
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}
