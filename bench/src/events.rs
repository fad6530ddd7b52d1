//! The event pipeline: how fast the relay drains the outbox (events per second), and how long
//! a like takes to become a count, an inbox entry and a push request (p50/p99, the relays and
//! the counters, notifications and push workers running as in `switchyard dev` or a
//! deployment). Two set-ups in the same run: the embedded default
//! (SQLite shards, the SQLite bus) and the deployment shape (PostgreSQL shards, Redis
//! Streams); the ratio compares them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use switchyard_engagement::entities::post_counter;
use switchyard_engagement::projections::Counters;
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::redis_bus::RedisBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{EventBus, Streams};
use switchyard_kit::id::compose_id;
use switchyard_kit::{ShardedStore, StoreConfig};
use switchyard_notifications::entities as notification_entities;
use switchyard_notifications::fanout::{Fanout, FanoutOptions};
use switchyard_notifications::push::{Outcome, Providers, PushMessage, PushProvider, Pusher};

use crate::Settings;

/// Events written before the relay is timed.
const BACKLOG: usize = 5_000;
/// Likes whose latency is measured.
const SAMPLES: usize = 200;

struct Measured {
    relay_events_per_sec: f64,
    /// like -> count, like -> inbox row, like -> push request.
    count: (Duration, Duration),
    inbox: (Duration, Duration),
    push: (Duration, Duration),
}

/// A push provider that only notes when each device was first sent to.
#[derive(Default)]
struct Stamps(std::sync::Mutex<std::collections::HashMap<String, Instant>>);

#[async_trait::async_trait]
impl PushProvider for Stamps {
    fn name(&self) -> &'static str {
        "stamps"
    }
    async fn send(&self, token: &str, _: &PushMessage) -> Outcome {
        let mut stamps = self.0.lock().unwrap_or_else(|p| p.into_inner());
        stamps.entry(token.to_owned()).or_insert_with(Instant::now);
        Outcome::Delivered
    }
}

/// The author of the `n`th timed post (each its own, so no burst collapses).
fn author(n: usize) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 30_000 + n as i64, n % 4, 0)
}

fn device_token(n: usize) -> String {
    format!("{n:064x}")
}

fn post(n: usize) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 10_000 + n as i64, n % 4, 0)
}

fn user(n: usize) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 20_000 + n as i64, n % 4, 0)
}

async fn measure(
    store: Arc<ShardedStore>,
    notifications: Arc<ShardedStore>,
    bus: Arc<dyn EventBus>,
) -> anyhow::Result<Measured> {
    let streams = Streams {
        prefix: format!(
            "bench:{}:{}:",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ),
        partitions: 4,
    };
    let session = store.session();
    for n in 0..BACKLOG {
        switchyard_engagement::repo::like(&session, user(n), post(n % 500)).await?;
    }
    let relay = Relay::new(
        store.clone(),
        switchyard_engagement::NAME,
        bus.clone(),
        streams.clone(),
    );
    let started = Instant::now();
    let mut relayed = 0;
    while relayed < BACKLOG {
        relayed += relay.run_once().await?;
    }
    let relay_events_per_sec = relayed as f64 / started.elapsed().as_secs_f64();
    // Drain the backlog into the counters before the latency samples.
    let worker = Arc::new(
        Worker::new(
            bus.clone(),
            &streams,
            Arc::new(Counters::new(store.clone())),
            WorkerOptions {
                batch: 500,
                block: Duration::from_millis(100),
                ..WorkerOptions::default()
            },
        )
        .await
        .map_err(anyhow::Error::msg)?,
    );
    while worker.run_once().await.map_err(anyhow::Error::msg)?.handled > 0 {}

    // The timed posts' authors, known to the notifications projection, each with a device.
    let notifications_session = notifications.session();
    for n in 0..SAMPLES {
        let (target, author) = (post(1_000 + n), author(n));
        notification_entities::post_author::Entity::insert(
            notification_entities::post_author::ActiveModel {
                post_id: sea_orm::Set(target),
                author_id: sea_orm::Set(author),
            },
        )
        .exec_without_returning(notifications.primary(switchyard_kit::id::shard_of(target)))
        .await?;
        switchyard_notifications::repo::register_device(
            &notifications_session,
            author,
            switchyard_notifications::kind::Platform::Ios,
            &device_token(n),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let stamps = Arc::new(Stamps::default());
    let workers = [
        worker.clone(),
        Arc::new(
            Worker::new(
                bus.clone(),
                &streams,
                Arc::new(Fanout::new(notifications.clone(), FanoutOptions::default())),
                WorkerOptions::default(),
            )
            .await
            .map_err(anyhow::Error::msg)?,
        ),
        Arc::new(
            Worker::new(
                bus.clone(),
                &streams,
                Arc::new(Pusher::new(
                    notifications.clone(),
                    Providers {
                        ios: stamps.clone(),
                        android: stamps.clone(),
                    },
                )),
                WorkerOptions::default(),
            )
            .await
            .map_err(anyhow::Error::msg)?,
        ),
    ];
    // The backlog's likes are of posts the notifications projection does not know: drained
    // (and dropped) before the timing starts, as the counters were.
    while workers[1]
        .run_once()
        .await
        .map_err(anyhow::Error::msg)?
        .handled
        > 0
    {}

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    for (domain, relayed) in [
        (switchyard_engagement::NAME, store.clone()),
        (switchyard_notifications::NAME, notifications.clone()),
    ] {
        let relay = Relay::new(relayed, domain, bus.clone(), streams.clone());
        let stop = stopped(stop_rx.clone());
        // The poll `switchyard dev` and `switchyard worker relay` use.
        tasks.push(tokio::spawn(async move {
            relay.run(Duration::from_millis(50), stop).await
        }));
    }
    for worker in workers {
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move { worker.run(stop).await }));
    }
    let (mut counted, mut inboxed, mut pushed) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..SAMPLES {
        let (target, author) = (post(1_000 + n), author(n));
        let started = Instant::now();
        switchyard_engagement::repo::like(&session, user(n), target).await?;
        let (mut count, mut inbox, mut push) = (None, None, None);
        while count.is_none() || inbox.is_none() || push.is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!(
                    "like {n}: count {count:?}, inbox {inbox:?}, push {push:?} after 60 s"
                );
            }
            if count.is_none() {
                let row = post_counter::Entity::find_by_id(target)
                    .one(store.primary(switchyard_kit::id::shard_of(target)))
                    .await?;
                if row.is_some_and(|r| r.likes == 1) {
                    count = Some(started.elapsed());
                }
            }
            if inbox.is_none() {
                let row = notification_entities::notification::Entity::find()
                    .filter(notification_entities::notification::Column::RecipientId.eq(author))
                    .one(notifications.primary(switchyard_kit::id::shard_of(author)))
                    .await?;
                if row.is_some() {
                    inbox = Some(started.elapsed());
                }
            }
            if push.is_none() {
                let stamped = stamps
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&device_token(n))
                    .copied();
                push = stamped.map(|at| at.duration_since(started));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        counted.extend(count);
        inboxed.extend(inbox);
        pushed.extend(push);
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        task.await?;
    }
    let percentiles = |mut latencies: Vec<Duration>| {
        latencies.sort_unstable();
        let at = |p: f64| {
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        (at(0.50), at(0.99))
    };
    Ok(Measured {
        relay_events_per_sec,
        count: percentiles(counted),
        inbox: percentiles(inboxed),
        push: percentiles(pushed),
    })
}

pub async fn events(settings: &Settings) -> anyhow::Result<()> {
    let mut embedded = Vec::new();
    let mut deployed = Vec::new();
    for round in 0..settings.rounds {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(
            ShardedStore::connect(&StoreConfig::sqlite(dir.path(), "engagement", 4)).await?,
        );
        store.migrate::<switchyard_engagement::Migrator>().await?;
        let notifications = Arc::new(
            ShardedStore::connect(&StoreConfig::sqlite(dir.path(), "notifications", 4)).await?,
        );
        notifications
            .migrate::<switchyard_notifications::Migrator>()
            .await?;
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("events.db"))
                .await
                .map_err(anyhow::Error::msg)?,
        );
        embedded.push(measure(store, notifications, bus).await?);

        let pg = switchyard_kit::testing::PgShards::create(&format!("bench{round}"), 4).await;
        let pg_notifications =
            switchyard_kit::testing::PgShards::create(&format!("benchn{round}"), 4).await;
        let store = Arc::new(ShardedStore::connect(&pg.config).await?);
        store.migrate::<switchyard_engagement::Migrator>().await?;
        let notifications = Arc::new(ShardedStore::connect(&pg_notifications.config).await?);
        notifications
            .migrate::<switchyard_notifications::Migrator>()
            .await?;
        let bus: Arc<dyn EventBus> =
            Arc::new(RedisBus::new("redis://127.0.0.1:6379").map_err(anyhow::Error::msg)?);
        deployed.push(measure(store.clone(), notifications.clone(), bus).await?);
        drop(store);
        drop(notifications);
        pg.drop_all().await;
        pg_notifications.drop_all().await;
    }
    let median = |values: Vec<f64>| crate::load::median(values);
    let ms = |runs: &[Measured], pick: fn(&Measured) -> Duration| {
        median(
            runs.iter()
                .map(|m| pick(m).as_secs_f64() * 1000.0)
                .collect(),
        )
    };
    let report = |name: &str, runs: &[Measured]| {
        let rate = median(runs.iter().map(|m| m.relay_events_per_sec).collect());
        println!("{name:<34} relay {rate:>8.0} events/s");
        let p50 = ms(runs, |m| m.count.0);
        for (what, p50, p99) in [
            ("count", p50, ms(runs, |m| m.count.1)),
            (
                "inbox row",
                ms(runs, |m| m.inbox.0),
                ms(runs, |m| m.inbox.1),
            ),
            (
                "push request",
                ms(runs, |m| m.push.0),
                ms(runs, |m| m.push.1),
            ),
        ] {
            println!(
                "{:<34}   like -> {what:<13} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms",
                ""
            );
        }
        (rate, p50)
    };
    println!(
        "events: {BACKLOG} likes relayed, then {SAMPLES} likes timed until counted, in the author's inbox and pushed ({} rounds, medians)",
        settings.rounds
    );
    let (embedded_rate, embedded_p50) = report("embedded (SQLite + SQLite bus)", &embedded);
    let (deployed_rate, deployed_p50) = report("deployed (PostgreSQL + Redis)", &deployed);
    println!(
        "ratio deployed/embedded: relay {:.2}x, like -> count p50 {:.2}x",
        deployed_rate / embedded_rate,
        deployed_p50 / embedded_p50
    );
    Ok(())
}
