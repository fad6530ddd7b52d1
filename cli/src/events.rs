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
use switchyard_kit::events::invalidation::{CacheInvalidator, CacheWorker};
use switchyard_kit::events::redis_bus::RedisBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Handler, Worker, WorkerOptions};
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
    /// Moves every subgraph's outbox (posts, engagement, notifications) to the bus.
    Relay,
    /// Keeps the engagement counts and the followers mirror.
    Counters,
    /// Fans posts' and engagement's events out to inboxes and the push queue.
    Notifications,
    /// Sends the push queue to APNs and FCM (the log provider where none is configured, in
    /// development).
    Push,
    /// Turns posts' and accounts' events into router cache invalidations (needs
    /// `--cache-invalidation-url`).
    Cache,
}

impl WorkerName {
    /// The name on the command line (and in the worker's `service.name`).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerName::Relay => "relay",
            WorkerName::Counters => "counters",
            WorkerName::Notifications => "notifications",
            WorkerName::Push => "push",
            WorkerName::Cache => "cache",
        }
    }

    /// Every worker, in the order `switchyard dev` starts them.
    pub const ALL: [WorkerName; 5] = [
        WorkerName::Relay,
        WorkerName::Counters,
        WorkerName::Notifications,
        WorkerName::Push,
        WorkerName::Cache,
    ];
}

/// How often an idle relay looks at the outboxes.
pub const RELAY_POLL: Duration = Duration::from_millis(50);

/// The stores the workers need: every subgraph that emits events.
#[derive(Clone)]
pub struct Stores {
    pub accounts: Arc<ShardedStore>,
    pub engagement: Arc<ShardedStore>,
    pub posts: Arc<ShardedStore>,
    pub notifications: Arc<ShardedStore>,
}

impl Stores {
    pub async fn connect(store: &StoreArgs) -> anyhow::Result<Self> {
        Ok(Self {
            accounts: store
                .connect(crate::subgraphs::find(switchyard_accounts::NAME)?)
                .await?,
            engagement: store
                .connect(crate::subgraphs::find(switchyard_engagement::NAME)?)
                .await?,
            posts: store
                .connect(crate::subgraphs::find(switchyard_posts::NAME)?)
                .await?,
            notifications: store
                .connect(crate::subgraphs::find(switchyard_notifications::NAME)?)
                .await?,
        })
    }

    fn emitters(&self) -> [(&'static str, Arc<ShardedStore>); 4] {
        [
            (switchyard_accounts::NAME, self.accounts.clone()),
            (switchyard_engagement::NAME, self.engagement.clone()),
            (switchyard_posts::NAME, self.posts.clone()),
            (switchyard_notifications::NAME, self.notifications.clone()),
        ]
    }
}

/// What a worker runs with besides its stores.
pub struct Run {
    pub bus: Arc<dyn EventBus>,
    pub args: BusArgs,
    /// Drops cached responses once a projection changed (counters, cache).
    pub invalidator: Option<CacheInvalidator>,
    pub environment: deployment::Environment,
    /// Serve `/metrics` here (`switchyard worker --metrics-listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs `name` until `stop` says so.
pub async fn run(
    name: WorkerName,
    stores: Stores,
    run: Run,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let Run {
        bus,
        args,
        invalidator,
        environment,
        metrics_listen,
    } = run;
    let handler: Arc<dyn Handler> = match name {
        WorkerName::Relay => {
            let relays: Vec<_> = stores
                .emitters()
                .into_iter()
                .map(|(domain, store)| {
                    let relay = Relay::new(store, domain, bus.clone(), args.streams());
                    relay.watch_metrics();
                    relay
                })
                .collect();
            let served = serve_metrics(metrics_listen, stopped(stop.clone()));
            let relays = relays
                .iter()
                .map(|relay| relay.run(RELAY_POLL, stopped(stop.clone())));
            let (served, _) = tokio::join!(served, futures::future::join_all(relays));
            return served;
        }
        WorkerName::Counters => {
            let mut counters = switchyard_engagement::projections::Counters::new(stores.engagement);
            if let Some(invalidator) = invalidator {
                counters = counters.with_invalidator(invalidator);
            }
            Arc::new(counters)
        }
        WorkerName::Notifications => Arc::new(switchyard_notifications::fanout::Fanout::new(
            stores.notifications,
            Default::default(),
        )),
        WorkerName::Push => {
            let providers = switchyard_notifications::push::config::providers_from_env(environment)
                .map_err(anyhow::Error::msg)?;
            tracing::info!(
                ios = providers.ios.name(),
                android = providers.android.name(),
                "push providers"
            );
            Arc::new(switchyard_notifications::push::Pusher::new(
                stores.notifications,
                providers,
            ))
        }
        WorkerName::Cache => {
            let invalidator = invalidator.context(
                "the cache worker needs --cache-invalidation-url (SWITCHYARD_CACHE_INVALIDATION_URL)",
            )?;
            Arc::new(CacheWorker::new(
                invalidator,
                &[switchyard_posts::NAME, switchyard_accounts::NAME],
                cache_tags,
            ))
        }
    };
    let worker = Worker::new(bus, &args.streams(), handler, WorkerOptions::default())
        .await
        .map_err(anyhow::Error::msg)?;
    let served = serve_metrics(metrics_listen, stopped(stop.clone()));
    let (served, ()) = tokio::join!(served, worker.run(stopped(stop)));
    served
}

async fn serve_metrics(
    listen: Option<std::net::SocketAddr>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match listen {
        Some(listen) => crate::worker_metrics::serve(listen, stop).await,
        None => Ok(()),
    }
}

/// The tags an event makes stale, by the subgraph that emitted it.
fn cache_tags(event: &switchyard_kit::events::Event) -> Vec<String> {
    match event.domain.as_str() {
        switchyard_posts::NAME => switchyard_posts::schema::cache_tags(event),
        switchyard_accounts::NAME => switchyard_accounts::schema::cache_tags(event),
        _ => vec![],
    }
}
