//! The event bus contract, on the real Redis and on the embedded SQLite bus alike: groups,
//! pending entries, claiming a dead consumer's entries, the worker's retries and dead letters,
//! and the relay's at-least-once hand-over absorbed by idempotent handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use switchyard_kit::StoreConfig;
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::outbox::{self, NewEvent};
use switchyard_kit::events::processed;
use switchyard_kit::events::redis_bus::RedisBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Handler, HandlerError, Worker, WorkerOptions};
use switchyard_kit::events::{Event, EventBus, Streams};

fn streams() -> Streams {
    switchyard_kit::testing::test_streams(2)
}

fn redis() -> Arc<dyn EventBus> {
    Arc::new(RedisBus::new("redis://127.0.0.1:6379").unwrap())
}

async fn embedded(dir: &tempfile::TempDir) -> Arc<dyn EventBus> {
    Arc::new(
        EmbeddedBus::open(&dir.path().join("events.db"))
            .await
            .unwrap(),
    )
}

fn event(n: u32) -> String {
    Event {
        id: format!("t:0:{n}"),
        kind: "Tested".into(),
        domain: "t".into(),
        aggregate: "A:1".into(),
        occurred_at: chrono::Utc::now(),
        data: serde_json::json!({"n": n}),
        traceparent: None,
    }
    .encode()
}

/// Groups, pending, acknowledgement and claiming.
async fn group_semantics(bus: Arc<dyn EventBus>) {
    let s = streams();
    let stream = s.all("t")[0].clone();
    bus.ensure_group(&stream, "g1").await.unwrap();
    bus.ensure_group(&stream, "g1").await.unwrap();
    bus.ensure_group(&stream, "g2").await.unwrap();
    bus.publish(&stream, &[event(1), event(2), event(3)])
        .await
        .unwrap();
    let streams = vec![stream.clone()];
    let first = bus
        .read_new(&streams, "g1", "alice", 2, Duration::from_millis(10))
        .await
        .unwrap();
    let ns: Vec<i64> = first
        .iter()
        .map(|d| d.event.as_ref().unwrap().data["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2], "in order, at most `count`");
    assert!(first.iter().all(|d| d.deliveries == 1));
    let rest = bus
        .read_new(&streams, "g1", "bob", 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "each entry goes to one consumer of a group");
    let other = bus
        .read_new(&streams, "g2", "carol", 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(other.len(), 3, "every group sees every entry");

    // alice acknowledges 1 and dies holding 2: bob claims 2 once it is idle.
    bus.ack(&stream, "g1", std::slice::from_ref(&first[0].entry))
        .await
        .unwrap();
    bus.ack(&stream, "g1", std::slice::from_ref(&rest[0].entry))
        .await
        .unwrap();
    let not_yet = bus
        .claim_idle(&stream, "g1", "bob", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert!(not_yet.is_empty(), "nothing idle for a minute yet");
    let claimed = bus
        .claim_idle(&stream, "g1", "bob", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].entry, first[1].entry);
    assert_eq!(claimed[0].deliveries, 2);
    bus.ack(&stream, "g1", std::slice::from_ref(&claimed[0].entry))
        .await
        .unwrap();
    assert!(
        bus.claim_idle(&stream, "g1", "bob", Duration::ZERO, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(bus.len(&stream).await.unwrap(), 3);

    // A blocked read wakes for an entry published meanwhile.
    let reader = {
        let (bus, streams) = (bus.clone(), streams.clone());
        tokio::spawn(async move {
            bus.read_new(&streams, "g1", "bob", 10, Duration::from_secs(10))
                .await
                .unwrap()
        })
    };
    tokio::task::yield_now().await;
    bus.publish(&stream, &[event(4)]).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the read wakes up")
        .unwrap();
    assert_eq!(woken.len(), 1);
}

#[tokio::test]
async fn redis_keeps_group_semantics() {
    group_semantics(redis()).await;
}

#[tokio::test]
async fn the_embedded_bus_keeps_group_semantics() {
    let dir = tempfile::tempdir().unwrap();
    group_semantics(embedded(&dir).await).await;
}

/// Fails the first `fail` calls, then succeeds.
struct Flaky {
    fail: usize,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Handler for Flaky {
    fn group(&self) -> &'static str {
        "flaky"
    }
    fn domains(&self) -> &'static [&'static str] {
        &["t"]
    }
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err("not yet".to_owned().into());
        }
        Ok(())
    }
}

fn options() -> WorkerOptions {
    WorkerOptions {
        consumer: "w1".into(),
        block: Duration::from_millis(20),
        retry_base: Duration::from_millis(1),
        claim_idle: Duration::ZERO,
        ..WorkerOptions::default()
    }
}

async fn retries_then_dead_letters(bus: Arc<dyn EventBus>) {
    // Fails twice, succeeds on the third attempt in place.
    let s = streams();
    let flaky = Arc::new(Flaky {
        fail: 2,
        calls: 0.into(),
    });
    let worker = Worker::new(bus.clone(), &s, flaky.clone(), options())
        .await
        .unwrap();
    bus.publish(&s.all("t")[0], &[event(1)]).await.unwrap();
    let round = worker.run_once().await.unwrap();
    assert_eq!((round.handled, round.failed, round.dead), (1, 0, 0));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);

    // Always fails: 3 attempts per delivery, claimed again until the 5th, then dead. The
    // malformed entry is dead at once.
    let s = streams();
    let broken = Arc::new(Flaky {
        fail: usize::MAX,
        calls: 0.into(),
    });
    let worker = Worker::new(bus.clone(), &s, broken.clone(), options())
        .await
        .unwrap();
    bus.publish(&s.all("t")[1], &[event(2), "not an event".into()])
        .await
        .unwrap();
    let mut dead = 0;
    for _ in 0..7 {
        dead += worker.run_once().await.unwrap().dead;
    }
    assert_eq!(dead, 2);
    assert_eq!(
        broken.calls.load(Ordering::SeqCst),
        15,
        "5 deliveries x 3 attempts"
    );
    let letters = bus.range(&s.dead_letters("flaky"), 10).await.unwrap();
    let reasons: Vec<String> = letters
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(body).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("malformed event"), "{reasons:?}");
    assert_eq!(reasons[1], "delivered too often");
    assert_eq!(
        worker.run_once().await.unwrap(),
        Default::default(),
        "nothing left pending"
    );
}

#[tokio::test]
async fn redis_retries_then_dead_letters() {
    retries_then_dead_letters(redis()).await;
}

#[tokio::test]
async fn the_embedded_bus_retries_then_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    retries_then_dead_letters(embedded(&dir).await).await;
}

/// Fails event 1 until event 2 was handled (a like waiting for its post's `PostCreated`), and
/// publishes event 2 on `stream` when event 1 first fails: it arrives after the round began.
struct Waits {
    seen: std::sync::Mutex<Vec<u64>>,
    bus: Arc<dyn EventBus>,
    stream: String,
}

#[async_trait::async_trait]
impl Handler for Waits {
    fn group(&self) -> &'static str {
        "waits"
    }
    fn domains(&self) -> &'static [&'static str] {
        &["t"]
    }
    async fn handle(&self, handled: &Event) -> Result<(), HandlerError> {
        let n = handled.data["n"].as_u64().unwrap();
        let waiting = n == 1 && !self.seen.lock().unwrap().contains(&2);
        if waiting {
            if !self.seen.lock().unwrap().contains(&0) {
                self.seen.lock().unwrap().push(0);
                self.bus.publish(&self.stream, &[event(2)]).await.unwrap();
            }
            return Err("event 2 first".to_owned().into());
        }
        self.seen.lock().unwrap().push(n);
        Ok(())
    }
}

/// A failing entry does not hold up the others: while it waits for its retry, the round
/// handles the rest, including an entry published after the round began.
async fn a_failure_does_not_hold_up_the_round(bus: Arc<dyn EventBus>) {
    let s = streams();
    let waits = Arc::new(Waits {
        seen: Default::default(),
        bus: bus.clone(),
        stream: s.all("t")[1].clone(),
    });
    let worker = Worker::new(
        bus.clone(),
        &s,
        waits.clone(),
        WorkerOptions {
            retry_base: Duration::from_millis(200),
            ..options()
        },
    )
    .await
    .unwrap();
    bus.publish(&s.all("t")[0], &[event(1), event(3)])
        .await
        .unwrap();
    let round = worker.run_once().await.unwrap();
    assert_eq!(
        (round.handled, round.failed, round.dead),
        (3, 0, 0),
        "{round:?}"
    );
    // 0 marks event 1's first failure (when event 2 was published).
    assert_eq!(*waits.seen.lock().unwrap(), [0, 3, 2, 1]);
}

#[tokio::test]
async fn redis_a_failure_does_not_hold_up_the_round() {
    a_failure_does_not_hold_up_the_round(redis()).await;
}

#[tokio::test]
async fn the_embedded_bus_a_failure_does_not_hold_up_the_round() {
    let dir = tempfile::tempdir().unwrap();
    a_failure_does_not_hold_up_the_round(embedded(&dir).await).await;
}

/// The outbox and processed-events tables, as a subgraph's migrator includes them.
struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(outbox::CreateOutbox),
            Box::new(processed::CreateProcessedEvents),
            Box::new(outbox::AddOutboxTraceparent),
        ]
    }
}

/// Counts each event once, recording it in `processed_events` on shard 0.
struct Counting {
    store: Arc<switchyard_kit::ShardedStore>,
    effects: AtomicUsize,
}

#[async_trait::async_trait]
impl Handler for Counting {
    fn group(&self) -> &'static str {
        "counting"
    }
    fn domains(&self) -> &'static [&'static str] {
        &["t"]
    }
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let txn = self
            .store
            .primary(0)
            .begin()
            .await
            .map_err(|e| e.to_string())?;
        if processed::first_time(&txn, "counting", &event.id)
            .await
            .map_err(|e| e.to_string())?
        {
            self.effects.fetch_add(1, Ordering::SeqCst);
        }
        Ok(txn.commit().await.map_err(|e| e.to_string())?)
    }
}

/// The relay dies between publishing and marking sent: it publishes those rows again, and
/// the handler's processed-event check absorbs the duplicates.
async fn relay_duplicates_are_absorbed(bus: Arc<dyn EventBus>, config: StoreConfig) {
    let store = switchyard_kit::testing::migrated_store::<Migrator>(config).await;
    let s = streams();
    for shard in 0..store.shard_count() {
        let txn = store.primary(shard).begin().await.unwrap();
        for i in 0..3 {
            outbox::record(
                &txn,
                NewEvent::new(
                    "Tested",
                    format!("A:{shard}-{i}"),
                    serde_json::json!({"i": i}),
                ),
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
    }
    let relay = Relay::new(store.clone(), "t", bus.clone(), s.clone());
    let unsent = |lag: Vec<switchyard_kit::events::relay::ShardLag>| {
        lag.iter().map(|l| l.unsent).sum::<u64>()
    };
    assert_eq!(unsent(relay.lag().await.unwrap()), 12);
    assert_eq!(relay.run_once().await.unwrap(), 12);
    assert_eq!(relay.run_once().await.unwrap(), 0, "marked sent");
    assert_eq!(unsent(relay.lag().await.unwrap()), 0);
    // "Crash" before marking shard 1's rows: they are unsent again and go out twice.
    outbox::entity::Entity::update_many()
        .col_expr(
            outbox::entity::Column::SentAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(outbox::entity::Column::Seq.gt(0))
        .exec(store.primary(1))
        .await
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 3);
    let mut on_bus = 0;
    for stream in s.all("t") {
        on_bus += bus.len(&stream).await.unwrap();
    }
    assert_eq!(on_bus, 15, "three duplicates on the bus");

    let handler = Arc::new(Counting {
        store: store.clone(),
        effects: 0.into(),
    });
    let worker = Worker::new(bus.clone(), &s, handler.clone(), options())
        .await
        .unwrap();
    let mut handled = 0;
    loop {
        let round = worker.run_once().await.unwrap();
        if round.handled == 0 {
            break;
        }
        handled += round.handled;
    }
    assert_eq!(handled, 15);
    assert_eq!(
        handler.effects.load(Ordering::SeqCst),
        12,
        "each event's effect once"
    );
}

#[tokio::test]
async fn relay_duplicates_are_absorbed_on_redis_and_postgres() {
    switchyard_kit::testing::with_pg_shards("relay", |config| async move {
        relay_duplicates_are_absorbed(redis(), config).await;
    })
    .await;
}

#[tokio::test]
async fn relay_duplicates_are_absorbed_embedded_and_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let bus = embedded(&dir).await;
    relay_duplicates_are_absorbed(bus, StoreConfig::sqlite(dir.path(), "relay", 4)).await;
}

/// The embedded bus is bounded like a Redis stream: the oldest entries go.
#[tokio::test]
async fn the_embedded_bus_keeps_a_bounded_stream() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&dir.path().join("events.db"))
        .await
        .unwrap()
        .with_max_len(3);
    for n in 0..10 {
        bus.publish("s", &[event(n)]).await.unwrap();
    }
    assert_eq!(bus.len("s").await.unwrap(), 3);
    let kept: Vec<i64> = bus
        .range("s", 10)
        .await
        .unwrap()
        .iter()
        .map(|(_, body)| {
            Event::decode(body.as_bytes()).unwrap().data["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(kept, [7, 8, 9]);
}

/// Two consumers of one bus (the workers of one process) read on connections of their own: a
/// read blocked on a quiet stream does not hold up another consumer's read.
#[tokio::test]
async fn redis_blocking_reads_do_not_wait_for_each_other() {
    let bus = redis();
    let s = streams();
    let (quiet, busy) = (s.all("t")[0].clone(), s.all("t")[1].clone());
    bus.ensure_group(&quiet, "a").await.unwrap();
    bus.ensure_group(&busy, "b").await.unwrap();
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let blocked_clients = |info: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = blocked_clients(&info);
    let blocked = {
        let (bus, quiet) = (bus.clone(), quiet.clone());
        tokio::spawn(async move {
            bus.read_new(&[quiet], "a", "blocked", 10, Duration::from_secs(10))
                .await
        })
    };
    // Wait until Redis holds that read blocked (`blocked_clients` grows; another test's
    // blocked read could only make this wait shorter, never fail it wrongly).
    let started = std::time::Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut conn)
            .await
            .unwrap();
        if blocked_clients(&info) > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the read never blocked: {info}"
        );
        tokio::task::yield_now().await;
    }
    bus.publish(&busy, &[event(1)]).await.unwrap();
    let busy = [busy];
    tokio::select! {
        read = bus.read_new(&busy, "b", "reader", 10, Duration::from_secs(10)) => {
            assert_eq!(read.unwrap().len(), 1);
        }
        _ = blocked => panic!("the read waited for the other consumer's blocked read"),
    }
}
