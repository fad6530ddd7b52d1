//! The event pipeline: how fast the relay drains the outbox (events per second), and how long
//! a like takes to become a count (p50/p99, the relay and the counters worker running as in
//! `switchyard dev` or a deployment). Two set-ups in the same run: the embedded default
//! (SQLite shards, the SQLite bus) and the deployment shape (PostgreSQL shards, Redis
//! Streams); the ratio compares them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::EntityTrait;
use switchyard_engagement::entities::post_counter;
use switchyard_engagement::projections::Counters;
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::redis_bus::RedisBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{EventBus, Streams};
use switchyard_kit::id::compose_id;
use switchyard_kit::{ShardedStore, StoreConfig};

use crate::Settings;

/// Events written before the relay is timed.
const BACKLOG: usize = 5_000;
/// Likes whose latency is measured.
const SAMPLES: usize = 200;

struct Measured {
    relay_events_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn post(n: usize) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 10_000 + n as i64, n % 4, 0)
}

fn user(n: usize) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 20_000 + n as i64, n % 4, 0)
}

async fn measure(store: Arc<ShardedStore>, bus: Arc<dyn EventBus>) -> anyhow::Result<Measured> {
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let relay_task = {
        let relay = Relay::new(
            store.clone(),
            switchyard_engagement::NAME,
            bus.clone(),
            streams.clone(),
        );
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { relay.run(Duration::from_millis(50), stop).await })
    };
    let worker_task = {
        let (worker, stop) = (worker.clone(), stopped(stop_rx.clone()));
        tokio::spawn(async move { worker.run(stop).await })
    };
    let mut latencies = Vec::with_capacity(SAMPLES);
    for n in 0..SAMPLES {
        let target = post(1_000 + n);
        let started = Instant::now();
        switchyard_engagement::repo::like(&session, user(n), target).await?;
        loop {
            let row = post_counter::Entity::find_by_id(target)
                .one(store.primary(switchyard_kit::id::shard_of(target)))
                .await?;
            if row.is_some_and(|r| r.likes == 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
    }
    let _ = stop_tx.send(true);
    relay_task.await?;
    worker_task.await?;
    latencies.sort_unstable();
    let at = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Ok(Measured {
        relay_events_per_sec,
        p50: at(0.50),
        p99: at(0.99),
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
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("events.db"))
                .await
                .map_err(anyhow::Error::msg)?,
        );
        embedded.push(measure(store, bus).await?);

        let pg = switchyard_kit::testing::PgShards::create(&format!("bench{round}"), 4).await;
        let store = Arc::new(ShardedStore::connect(&pg.config).await?);
        store.migrate::<switchyard_engagement::Migrator>().await?;
        let bus: Arc<dyn EventBus> =
            Arc::new(RedisBus::new("redis://127.0.0.1:6379").map_err(anyhow::Error::msg)?);
        deployed.push(measure(store.clone(), bus).await?);
        drop(store);
        pg.drop_all().await;
    }
    let median = |values: Vec<f64>| crate::load::median(values);
    let report = |name: &str, runs: &[Measured]| {
        let rate = median(runs.iter().map(|m| m.relay_events_per_sec).collect());
        let p50 = median(runs.iter().map(|m| m.p50.as_secs_f64() * 1000.0).collect());
        let p99 = median(runs.iter().map(|m| m.p99.as_secs_f64() * 1000.0).collect());
        println!(
            "{name:<34} relay {rate:>8.0} events/s   like -> count p50 {p50:>6.1} ms  p99 {p99:>6.1} ms"
        );
        (rate, p50)
    };
    println!(
        "events: {BACKLOG} likes relayed, then {SAMPLES} likes timed until counted ({} rounds, medians)",
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
