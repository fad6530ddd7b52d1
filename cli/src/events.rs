//! The event pipeline's processes: `switchyard worker <name>`, and the same workers inside
//! `switchyard dev`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use switchyard_kit::ShardedStore;
use switchyard_kit::deployment::{self, Secret};
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::invalidation::CacheInvalidator;
use switchyard_kit::events::redis_bus::RedisBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{EventBus, Streams};
use tokio::sync::watch;

use crate::StoreArgs;

/// Where events travel.
#[derive(Args, Clone)]
pub struct BusArgs {
    /// Redis for the event streams; without it, the embedded bus file (one process only).
    #[arg(long, env = "SWITCHYARD_EVENTS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The embedded bus file (default `<data-dir>/events.db`).
    #[arg(long, env = "SWITCHYARD_EVENTS_FILE")]
    pub events_file: Option<PathBuf>,
    /// Partitions per domain stream (every process of a deployment must agree).
    #[arg(long, env = "SWITCHYARD_EVENT_PARTITIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub partitions: u32,
    /// The routers' cache invalidation endpoint, told about every count a worker changes.
    #[arg(long, env = "SWITCHYARD_CACHE_INVALIDATION_URL")]
    pub cache_invalidation_url: Option<String>,
}

impl BusArgs {
    pub fn streams(&self) -> Streams {
        Streams {
            partitions: self.partitions,
            ..Streams::default()
        }
    }

    pub async fn bus(&self, store: &StoreArgs) -> anyhow::Result<Arc<dyn EventBus>> {
        Ok(match &self.redis_url {
            Some(url) => Arc::new(RedisBus::new(url).map_err(anyhow::Error::msg)?),
            None => {
                let file = self
                    .events_file
                    .clone()
                    .unwrap_or_else(|| store.data_dir.join("events.db"));
                Arc::new(
                    EmbeddedBus::open(&file)
                        .await
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("event bus {}", file.display()))?,
                )
            }
        })
    }

    /// The cache invalidator, with the token from `SWITCHYARD_CACHE_ADMIN_TOKEN` (or
    /// `_FILE`); the development token only in development.
    pub fn invalidator(
        &self,
        environment: deployment::Environment,
    ) -> anyhow::Result<Option<CacheInvalidator>> {
        let Some(url) = &self.cache_invalidation_url else {
            return Ok(None);
        };
        let token = deployment::secret_from_env("SWITCHYARD_CACHE_ADMIN_TOKEN")
            .map_err(anyhow::Error::msg)?;
        let token = match token {
            Some(token) if token.is_published() && environment.is_production() => anyhow::bail!(
                "SWITCHYARD_CACHE_ADMIN_TOKEN is the development token published in this repository; production needs its own"
            ),
            Some(token) => token,
            None if environment.is_production() => anyhow::bail!(
                "SWITCHYARD_CACHE_ADMIN_TOKEN (or _FILE) is required with --cache-invalidation-url in production"
            ),
            None => Secret::new(deployment::DEV_CACHE_ADMIN_TOKEN),
        };
        Ok(Some(
            CacheInvalidator::new(url.clone(), token).map_err(anyhow::Error::msg)?,
        ))
    }
}

/// The workers this binary runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkerName {
    /// Moves every subgraph's outbox (engagement, posts) to the bus.
    Relay,
    /// Keeps the engagement counts and the followers mirror.
    Counters,
}

/// How often an idle relay looks at the outboxes.
pub const RELAY_POLL: Duration = Duration::from_millis(50);

/// The stores the workers need: every subgraph that emits events.
#[derive(Clone)]
pub struct Stores {
    pub engagement: Arc<ShardedStore>,
    pub posts: Arc<ShardedStore>,
}

impl Stores {
    pub async fn connect(store: &StoreArgs) -> anyhow::Result<Self> {
        Ok(Self {
            engagement: store
                .connect(crate::subgraphs::find(switchyard_engagement::NAME)?)
                .await?,
            posts: store
                .connect(crate::subgraphs::find(switchyard_posts::NAME)?)
                .await?,
        })
    }

    fn emitters(&self) -> [(&'static str, Arc<ShardedStore>); 2] {
        [
            (switchyard_engagement::NAME, self.engagement.clone()),
            (switchyard_posts::NAME, self.posts.clone()),
        ]
    }
}

/// Runs `name` until `stop` says so.
pub async fn run(
    name: WorkerName,
    stores: Stores,
    bus: Arc<dyn EventBus>,
    args: &BusArgs,
    invalidator: Option<CacheInvalidator>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    match name {
        WorkerName::Relay => {
            let relays = stores.emitters().map(|(domain, store)| {
                let relay = Relay::new(store, domain, bus.clone(), args.streams());
                let stop = stopped(stop.clone());
                async move { relay.run(RELAY_POLL, stop).await }
            });
            futures::future::join_all(relays).await;
        }
        WorkerName::Counters => {
            let mut counters = switchyard_engagement::projections::Counters::new(stores.engagement);
            if let Some(invalidator) = invalidator {
                counters = counters.with_invalidator(invalidator);
            }
            let worker = Worker::new(
                bus,
                &args.streams(),
                Arc::new(counters),
                WorkerOptions::default(),
            )
            .await
            .map_err(anyhow::Error::msg)?;
            worker.run(stopped(stop)).await;
        }
    }
    Ok(())
}
