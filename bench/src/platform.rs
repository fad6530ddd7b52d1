//! The platform under load: real subgraphs on SQLite shards (demo data) and the real router,
//! in this process, on ephemeral ports.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_kit::{ShardedStore, StoreConfig};
use switchyard_router::RouterOptions;

pub struct Platform {
    pub url: String,
    routers: Vec<switchyard_router::RouterHttpServer>,
    repo: std::path::PathBuf,
    subgraph_urls: String,
    dir: tempfile::TempDir,
}

impl Platform {
    /// Starts everything; `plugins` is YAML indented under `plugins:`.
    pub async fn start(
        repo: &Path,
        users: usize,
        posts: usize,
        plugins: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut urls = String::new();
        let mut stores = Vec::new();
        for def in [&switchyard_accounts::SUBGRAPH, &switchyard_posts::SUBGRAPH] {
            let config = StoreConfig::sqlite(&dir.path().join("data"), def.name, 4);
            let store = Arc::new(ShardedStore::connect_as(def.name, &config).await?);
            (def.migrate)(&store).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            urls.push_str(&format!(
                "  {}: http://{}/graphql\n",
                def.name,
                listener.local_addr()?
            ));
            let app = (def.router)(
                store.clone(),
                &switchyard_kit::server::ServerOptions::default(),
            )
            .map_err(anyhow::Error::msg)?;
            tokio::spawn(switchyard_kit::server::serve(
                listener,
                app,
                std::future::pending(),
            ));
            stores.push(store);
        }
        switchyard_accounts::seed::seed_users(&stores[0], users).await?;
        let authors = switchyard_accounts::seed::demo_user_ids(users, stores[0].shard_count());
        switchyard_posts::seed::seed_posts(&stores[1], &authors, posts).await?;

        let mut platform = Self {
            url: String::new(),
            routers: Vec::new(),
            repo: repo.to_owned(),
            subgraph_urls: urls,
            dir,
        };
        platform.url = platform.add_router(plugins).await?;
        Ok(platform)
    }

    /// Another router in front of the same subgraphs; returns its URL.
    pub async fn add_router(&mut self, plugins: &str) -> anyhow::Result<String> {
        let urls = &self.subgraph_urls;
        let config = self
            .dir
            .path()
            .join(format!("router-{}.yaml", self.routers.len()));
        std::fs::write(
            &config,
            format!(
                "supergraph:\n  listen: 127.0.0.1:0\n  path: /graphql\nhealth_check:\n  enabled: false\n\
                 override_subgraph_url:\n{urls}{plugins}",
                plugins = switchyard_router::pipeline::plugins_yaml(plugins)
            ),
        )?;
        let router = switchyard_router::start(&RouterOptions {
            config,
            supergraph: self.repo.join("schema/supergraph.graphql"),
            hot_reload: false,
        })?;
        let started = Instant::now();
        let addr = loop {
            if let Some(addr) = router.listen_address().await {
                break addr;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "router did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.routers.push(router);
        Ok(format!("{addr}/graphql"))
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        for router in &mut self.routers {
            router.shutdown().await.context("router shutdown")?;
        }
        Ok(())
    }
}
