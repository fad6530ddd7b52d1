//! A shard's replica or primary becoming unreachable, on the real PostgreSQL: the network path
//! to it goes through a `TcpProxy` the test cuts, so the shared server keeps serving every
//! other test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use switchyard_kit::ShardedStore;
use switchyard_kit::store::{ShardConfig, StoreConfig};
use switchyard_kit::testing::proxy::TcpProxy;
use switchyard_kit::testing::{PgShards, statements_on};

const PG: &str = "127.0.0.1:5432";

/// Rows of the test table on `shard`, read the way every loader reads.
async fn count_rows(store: &Arc<ShardedStore>) -> Result<Vec<i64>, switchyard_kit::StoreError> {
    let session = store.session();
    let rows = session
        .all_shards(|conn: DatabaseConnection, _| async move {
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT count(*) AS n FROM failover_rows",
                ))
                .await?
                .ok_or_else(|| DbErr::Custom("no row".into()))?;
            Ok(vec![row.try_get::<i64>("", "n")?])
        })
        .await?;
    Ok(rows.into_iter().flatten().collect())
}

async fn create_rows(store: &ShardedStore, per_shard: usize) {
    for shard in store.shards() {
        shard
            .primary
            .execute_unprepared("CREATE TABLE failover_rows (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        for i in 0..per_shard {
            shard
                .primary
                .execute_unprepared(&format!("INSERT INTO failover_rows VALUES ({i})"))
                .await
                .unwrap();
        }
    }
}

async fn failovers(subgraph: &str) -> u64 {
    let text = switchyard_kit::metrics::render().await;
    text.lines()
        .find(|l| {
            l.starts_with("switchyard_store_replica_failovers_total{")
                && l.contains(&format!("subgraph=\"{subgraph}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Shard 0 has a replica reached through a proxy (to the same database, so its rows are the
/// primary's). With the replica cut, every read still answers (the first one retried on the
/// primary), the replica leaves rotation once, readiness stays up; restored, reads return to
/// the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_over_to_the_primary_and_back() {
    let pg = PgShards::create("failover", 2).await;
    let mut proxy = TcpProxy::start(PG.parse().unwrap()).await;
    let mut shards = pg.config.shards.clone();
    shards[0].replica = Some(proxy.url_for(&shards[0].primary));
    let config = StoreConfig {
        replica_acquire_timeout_ms: 300,
        ..StoreConfig::from_shards(shards.clone())
    };
    let store = Arc::new(
        ShardedStore::connect_as("failover_test", &config)
            .await
            .unwrap(),
    );
    create_rows(&store, 3).await;
    assert_eq!(count_rows(&store).await.unwrap(), vec![3, 3]);
    assert!(store.shards()[0].replica_up());
    let through_replica = proxy.connections();
    assert!(through_replica > 0, "the replica was never read");

    proxy.cut().await;
    let cut_at = Instant::now();
    for _ in 0..20 {
        assert_eq!(count_rows(&store).await.unwrap(), vec![3, 3]);
    }
    let twenty_reads = cut_at.elapsed();
    assert!(!store.shards()[0].replica_up());
    assert_eq!(
        failovers("failover_test").await,
        1,
        "one failover per outage"
    );
    let readiness = store.readiness().await;
    assert!(readiness.ready, "{}", readiness.report);
    assert!(
        readiness.report.contains("shard 0: replica"),
        "{}",
        readiness.report
    );

    proxy.restore().await;
    let restored_at = Instant::now();
    while !store.shards()[0].replica_up() {
        assert!(
            restored_at.elapsed() < Duration::from_secs(5),
            "the replica did not return to rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back_after = restored_at.elapsed();
    let before = statements_on("failover_test", "replica").await;
    for _ in 0..20 {
        assert_eq!(count_rows(&store).await.unwrap(), vec![3, 3]);
    }
    let on_replica = statements_on("failover_test", "replica").await - before;
    assert!(
        on_replica >= 20,
        "reads did not return to the replica: {on_replica} statements"
    );
    println!(
        "20 reads with the replica cut took {twenty_reads:?}; back in rotation {back_after:?} after it returned"
    );
    drop(store);
    pg.drop_all().await;
}

/// A shard whose primary is cut fails its own reads with a connection error that names it;
/// the other shard keeps answering and the subgraph stays ready (unready only when no primary
/// answers); restored, the shard answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_primary_fails_only_its_shard() {
    let pg = PgShards::create("primary_cut", 2).await;
    let mut proxies = Vec::new();
    let mut shards: Vec<ShardConfig> = Vec::new();
    for shard in &pg.config.shards {
        let proxy = TcpProxy::start(PG.parse().unwrap()).await;
        shards.push(ShardConfig {
            primary: proxy.url_for(&shard.primary),
            replica: None,
        });
        proxies.push(proxy);
    }
    let config = StoreConfig {
        connect_timeout_secs: 1,
        ..StoreConfig::from_shards(shards)
    };
    let store = Arc::new(
        ShardedStore::connect_as("primary_cut", &config)
            .await
            .unwrap(),
    );
    create_rows(&store, 2).await;
    assert_eq!(count_rows(&store).await.unwrap(), vec![2, 2]);

    proxies[1].cut().await;
    let err = count_rows(&store).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().starts_with("shard 1:"), "{err}");
    let one_shard = store.session();
    let alive = one_shard
        .per_shard(
            [(0usize, vec![()])].into_iter().collect(),
            |conn: DatabaseConnection, _, _| async move {
                conn.execute_unprepared("SELECT 1").await?;
                Ok(vec![()])
            },
        )
        .await;
    assert!(alive.is_ok(), "shard 0 stopped answering: {alive:?}");
    let readiness = store.readiness().await;
    assert!(readiness.ready, "{}", readiness.report);
    assert!(
        readiness.report.contains("shard 1: primary"),
        "{}",
        readiness.report
    );

    proxies[0].cut().await;
    assert!(
        !store.readiness().await.ready,
        "no primary answers, yet ready"
    );

    for proxy in &mut proxies {
        proxy.restore().await;
    }
    assert_eq!(count_rows(&store).await.unwrap(), vec![2, 2]);
    assert!(store.readiness().await.ready);
    drop(store);
    pg.drop_all().await;
}
