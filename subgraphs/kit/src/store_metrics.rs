//! What the sharded store reports: each statement SeaORM sends (its kind, time and failure, as
//! a metric and, inside a sampled trace, a span), and at scrape time each pool's usage and each
//! PostgreSQL replica's lag. Statement text and parameter values are never recorded: the kind
//! is the statement's first keyword.

use std::sync::Weak;

use opentelemetry::KeyValue;
use prometheus::{Histogram, IntCounter};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::metrics::{Metrics, Watch, metrics};
use crate::store::{ShardedStore, Where};

/// Statement kinds, as label values (a bounded set: anything else is `other`).
const KINDS: [&str; 9] = [
    "select",
    "insert",
    "update",
    "delete",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "other",
];

/// The statement's kind, from its first keyword.
pub fn statement_kind(sql: &str) -> &'static str {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    KINDS
        .iter()
        .find(|kind| first.eq_ignore_ascii_case(kind))
        .copied()
        .unwrap_or(match first.to_ascii_lowercase().as_str() {
            // `WITH ... SELECT` and `RELEASE SAVEPOINT` read as what they mostly are.
            "with" => "select",
            "release" => "savepoint",
            _ => "other",
        })
}

/// One connection's statement metrics, resolved once per kind (no label lookup per statement).
pub(crate) struct StatementObserver {
    at: Where,
    shard: String,
    durations: Vec<Histogram>,
    errors: Vec<IntCounter>,
}

impl StatementObserver {
    pub(crate) fn new(at: Where) -> Self {
        let m = metrics();
        let shard = at.shard.to_string();
        let labels = |kind: &'static str| [at.subgraph, shard.as_str(), at.role, kind];
        Self {
            durations: KINDS
                .iter()
                .map(|k| m.statement_duration.with_label_values(&labels(k)))
                .collect(),
            errors: KINDS
                .iter()
                .map(|k| m.statement_errors.with_label_values(&labels(k)))
                .collect(),
            shard,
            at,
        }
    }

    pub(crate) fn statement(&self, info: &sea_orm::metric::Info<'_>) {
        let kind = statement_kind(&info.statement.sql);
        let index = KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(KINDS.len() - 1);
        self.durations[index].observe(info.elapsed.as_secs_f64());
        if info.failed {
            self.errors[index].inc();
        }
        crate::telemetry::record_finished_span(
            "store.statement",
            info.elapsed,
            info.failed,
            || {
                vec![
                    KeyValue::new("db.system", system(info.statement.db_backend)),
                    KeyValue::new("db.operation", kind),
                    KeyValue::new("subgraph", self.at.subgraph),
                    KeyValue::new("shard", self.shard.clone()),
                    KeyValue::new("role", self.at.role),
                ]
            },
        );
    }
}

fn system(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "postgresql",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}

/// Reads a store's pools (and replicas' lag) at scrape time; gone once the store is dropped.
pub(crate) struct PoolWatch(pub Weak<ShardedStore>);

#[async_trait::async_trait]
impl Watch for PoolWatch {
    async fn read(&self, m: &Metrics) {
        let Some(store) = self.0.upgrade() else {
            return;
        };
        for shard in store.shards() {
            let index = shard.index.to_string();
            let connections = std::iter::once(("primary", &shard.primary))
                .chain(shard.replica.as_ref().map(|r| ("replica", r)));
            for (role, conn) in connections {
                let (size, idle, max) = pool_usage(conn);
                let labels = [store.name(), index.as_str(), role];
                m.pool_max_connections
                    .with_label_values(&labels)
                    .set(i64::from(max));
                for (state, value) in [("idle", idle), ("in_use", size.saturating_sub(idle))] {
                    m.pool_connections
                        .with_label_values(&[store.name(), index.as_str(), role, state])
                        .set(i64::from(value));
                }
            }
            if shard.replica.is_some() {
                m.replica_up
                    .with_label_values(&[store.name(), index.as_str()])
                    .set(i64::from(shard.replica_up()));
            }
            if let Some(replica) = &shard.replica
                && replica.get_database_backend() == DbBackend::Postgres
            {
                let gauge = m
                    .replica_lag
                    .with_label_values(&[store.name(), index.as_str()]);
                match replica_lag_seconds(replica).await {
                    Ok(lag) => gauge.set(lag),
                    // An unreachable replica has no lag to report; its statements' errors and
                    // the readiness probe say it is down.
                    Err(e) => tracing::debug!(shard = shard.index, "replica lag: {e}"),
                }
            }
        }
    }
}

fn pool_usage(conn: &DatabaseConnection) -> (u32, u32, u32) {
    match conn.get_database_backend() {
        DbBackend::Postgres => {
            let pool = conn.get_postgres_connection_pool();
            (
                pool.size(),
                u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                pool.options().get_max_connections(),
            )
        }
        DbBackend::Sqlite => {
            let pool = conn.get_sqlite_connection_pool();
            (
                pool.size(),
                u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                pool.options().get_max_connections(),
            )
        }
        _ => (0, 0, 0),
    }
}

/// Seconds of WAL the replica has received but not replayed yet, measured by the age of the
/// last replayed transaction (0 when everything received is replayed, and on a server that is
/// not a standby).
async fn replica_lag_seconds(replica: &DatabaseConnection) -> Result<f64, sea_orm::DbErr> {
    let row = replica
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT CASE WHEN NOT pg_is_in_recovery() \
                OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8 \
                ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 \
             END AS lag",
        ))
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<f64>("", "lag").ok())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_kinds_are_bounded() {
        assert_eq!(statement_kind("SELECT \"id\" FROM post"), "select");
        assert_eq!(statement_kind("  insert into x values (1)"), "insert");
        assert_eq!(statement_kind("(SELECT 1) UNION (SELECT 2)"), "select");
        assert_eq!(
            statement_kind("WITH t AS (SELECT 1) SELECT * FROM t"),
            "select"
        );
        assert_eq!(statement_kind("BEGIN"), "begin");
        assert_eq!(statement_kind("RELEASE SAVEPOINT s1"), "savepoint");
        assert_eq!(statement_kind("VACUUM"), "other");
        assert_eq!(statement_kind(""), "other");
    }
}
