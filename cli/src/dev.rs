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
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    for def in subgraphs::ALL {
        let store = args.store.connect(def).await?;
        (def.migrate)(&store)
            .await
            .with_context(|| format!("subgraph {}", def.name))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], def.default_port));
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "subgraph {}: cannot listen on {addr} (is another `switchyard dev` running?)",
                def.name
            )
        })?;
        urls.push((def.name, format!("http://{addr}/graphql")));
        let mut stop = stop_rx.clone();
        let app = (def.router)(store);
        servers.push(tokio::spawn(switchyard_kit::server::serve(
            listener,
            app,
            async move {
                let _ = stop.changed().await;
            },
        )));
    }
    if !args.no_seed {
        crate::seed::seed_if_empty(&args.store).await?;
    }

    let mut router = switchyard_router::start(&RouterOptions {
        config: args.router_config.clone(),
        supergraph: args.supergraph.clone(),
        hot_reload: true,
    })?;
    let router_addr = loop {
        tokio::select! {
            result = &mut router => {
                result.context("the router stopped during start-up")?;
                bail!("the router stopped during start-up");
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if let Some(addr) = router.listen_address().await {
            break addr;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the router did not start listening within 120 s");
        }
    };

    println!(
        "\nSwitchyard is up in {:.1}s:",
        started.elapsed().as_secs_f64()
    );
    println!("  router      {router_addr}/graphql");
    for (name, url) in &urls {
        println!("  {name:<11} {url}");
    }
    println!(
        "  data        {} ({} SQLite shard(s) per subgraph)",
        args.store.data_dir.display(),
        args.store.shards
    );
    println!(
        "\nTry:\n  curl -s {router_addr}/graphql -H 'content-type: application/json' \\\n    -d '{{\"query\":\"{{ feed(first: 3) {{ nodes {{ body author {{ handle displayName }} }} }} }}\"}}'\n\nCtrl-C stops everything (in-flight requests finish)."
    );

    tokio::select! {
        () = shutdown_signal() => {}
        result = &mut router => {
            result.context("the router stopped")?;
        }
    }
    router.shutdown().await.context("router shutdown")?;
    let _ = stop_tx.send(true);
    for server in servers {
        server
            .await
            .context("subgraph task")?
            .context("subgraph server")?;
    }
    println!("stopped");
    Ok(())
}
