//! The embedded event bus: Redis Streams' consumer-group semantics over one SQLite file, for
//! `switchyard dev` and tests without Redis. Durable (a restart loses nothing) and for one
//! process: consumers in other processes would not be woken (they would still see entries at
//! their next poll).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait,
    Value,
};
use tokio::sync::Notify;

use super::{Backlog, BusError, Delivery, Event, EventBus};

pub struct EmbeddedBus {
    db: DatabaseConnection,
    published: Notify,
    /// Entries kept per stream (sequence numbers are per file, so "the last `max_len`
    /// sequence numbers": at most that many).
    max_len: u64,
}

fn backend(e: impl std::fmt::Display) -> BusError {
    BusError::Backend(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS bus_entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bus_entries_stream ON bus_entries (stream, seq)",
    "CREATE TABLE IF NOT EXISTS bus_groups (stream TEXT NOT NULL, grp TEXT NOT NULL, last_seq INTEGER NOT NULL, PRIMARY KEY (stream, grp))",
    "CREATE TABLE IF NOT EXISTS bus_pending (stream TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, consumer TEXT NOT NULL, delivered_ms INTEGER NOT NULL, deliveries INTEGER NOT NULL, PRIMARY KEY (stream, grp, seq))",
];

impl EmbeddedBus {
    /// Opens (creating) the bus file at `path`.
    pub async fn open(path: &Path) -> Result<Self, BusError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        let mut options = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
        options.max_connections(4).sqlx_logging(false);
        options.map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
        let db = Database::connect(options).await.map_err(backend)?;
        for statement in SCHEMA {
            db.execute_unprepared(statement).await.map_err(backend)?;
        }
        Ok(Self {
            db,
            published: Notify::new(),
            max_len: super::redis_bus::MAX_STREAM_LEN,
        })
    }

    /// Keeps at most `max_len` entries per stream (tests use a small bound).
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    fn statement(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(sea_orm::DatabaseBackend::Sqlite, sql, values)
    }

    /// Reads new entries of every stream for the group, once (no waiting).
    async fn take_new(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let txn = self.db.begin().await.map_err(backend)?;
        let mut out = Vec::new();
        for stream in streams {
            if out.len() >= count {
                break;
            }
            // The write first, so this transaction holds the write lock before it reads.
            txn.execute_raw(Self::statement(
                "INSERT OR IGNORE INTO bus_groups (stream, grp, last_seq) VALUES (?, ?, 0)",
                vec![stream.clone().into(), group.into()],
            ))
            .await
            .map_err(backend)?;
            let rows = txn
                .query_all_raw(Self::statement(
                    "SELECT e.seq, e.body FROM bus_entries e JOIN bus_groups g ON g.stream = e.stream AND g.grp = ? WHERE e.stream = ? AND e.seq > g.last_seq ORDER BY e.seq LIMIT ?",
                    vec![group.into(), stream.clone().into(), ((count - out.len()) as i64).into()],
                ))
                .await
                .map_err(backend)?;
            let mut last = None;
            for row in rows {
                let seq: i64 = row.try_get("", "seq").map_err(backend)?;
                let body: String = row.try_get("", "body").map_err(backend)?;
                txn.execute_raw(Self::statement(
                    "INSERT OR REPLACE INTO bus_pending (stream, grp, seq, consumer, delivered_ms, deliveries) VALUES (?, ?, ?, ?, ?, 1)",
                    vec![stream.clone().into(), group.into(), seq.into(), consumer.into(), now_ms().into()],
                ))
                .await
                .map_err(backend)?;
                last = Some(seq);
                out.push(Delivery {
                    stream: stream.clone(),
                    entry: seq.to_string(),
                    event: Event::decode(body.as_bytes()).map_err(|e| e.to_string()),
                    deliveries: 1,
                });
            }
            if let Some(last) = last {
                txn.execute_raw(Self::statement(
                    "UPDATE bus_groups SET last_seq = ? WHERE stream = ? AND grp = ?",
                    vec![last.into(), stream.clone().into(), group.into()],
                ))
                .await
                .map_err(backend)?;
            }
        }
        txn.commit().await.map_err(backend)?;
        Ok(out)
    }
}

#[async_trait::async_trait]
impl EventBus for EmbeddedBus {
    async fn publish(&self, stream: &str, entries: &[String]) -> Result<(), BusError> {
        if entries.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin().await.map_err(backend)?;
        for entry in entries {
            txn.execute_raw(Self::statement(
                "INSERT INTO bus_entries (stream, body) VALUES (?, ?)",
                vec![stream.into(), entry.clone().into()],
            ))
            .await
            .map_err(backend)?;
        }
        // Bounded like a Redis stream (`MAXLEN`): the oldest entries go.
        txn.execute_raw(Self::statement(
            "DELETE FROM bus_entries WHERE stream = ? AND seq <= (SELECT MAX(seq) FROM bus_entries WHERE stream = ?) - ?",
            vec![stream.into(), stream.into(), (self.max_len as i64).into()],
        ))
        .await
        .map_err(backend)?;
        txn.commit().await.map_err(backend)?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        self.db
            .execute_raw(Self::statement(
                "INSERT OR IGNORE INTO bus_groups (stream, grp, last_seq) VALUES (?, ?, 0)",
                vec![stream.into(), group.into()],
            ))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn read_new(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Registered before reading, so a publish in between is not missed.
            let published = self.published.notified();
            let found = self
                .take_new(streams, group, consumer, count.max(1))
                .await?;
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, published).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn claim_idle(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let now = now_ms();
        let before = now - min_idle.as_millis() as i64;
        let txn = self.db.begin().await.map_err(backend)?;
        txn.execute_raw(Self::statement(
            "UPDATE bus_pending SET consumer = ?, delivered_ms = ?, deliveries = deliveries + 1 WHERE rowid IN (SELECT rowid FROM bus_pending WHERE stream = ? AND grp = ? AND delivered_ms <= ? ORDER BY seq LIMIT ?)",
            vec![consumer.into(), now.into(), stream.into(), group.into(), before.into(), (count.max(1) as i64).into()],
        ))
        .await
        .map_err(backend)?;
        let rows = txn
            .query_all_raw(Self::statement(
                "SELECT p.seq, p.deliveries, e.body FROM bus_pending p LEFT JOIN bus_entries e ON e.seq = p.seq WHERE p.stream = ? AND p.grp = ? AND p.consumer = ? AND p.delivered_ms = ? ORDER BY p.seq",
                vec![stream.into(), group.into(), consumer.into(), now.into()],
            ))
            .await
            .map_err(backend)?;
        txn.commit().await.map_err(backend)?;
        rows.into_iter()
            .map(|row| {
                let seq: i64 = row.try_get("", "seq").map_err(backend)?;
                let deliveries: i64 = row.try_get("", "deliveries").map_err(backend)?;
                let body: Option<String> = row.try_get("", "body").map_err(backend)?;
                Ok(Delivery {
                    stream: stream.to_owned(),
                    entry: seq.to_string(),
                    event: match body {
                        Some(body) => Event::decode(body.as_bytes()).map_err(|e| e.to_string()),
                        None => Err("the entry was trimmed".into()),
                    },
                    deliveries: deliveries.max(0) as u64,
                })
            })
            .collect()
    }

    async fn ack(&self, stream: &str, group: &str, entries: &[String]) -> Result<(), BusError> {
        let txn = self.db.begin().await.map_err(backend)?;
        for entry in entries {
            let Ok(seq) = entry.parse::<i64>() else {
                continue;
            };
            txn.execute_raw(Self::statement(
                "DELETE FROM bus_pending WHERE stream = ? AND grp = ? AND seq = ?",
                vec![stream.into(), group.into(), seq.into()],
            ))
            .await
            .map_err(backend)?;
        }
        txn.commit().await.map_err(backend)
    }

    async fn len(&self, stream: &str) -> Result<u64, BusError> {
        let row = self
            .db
            .query_one_raw(Self::statement(
                "SELECT COUNT(*) AS n FROM bus_entries WHERE stream = ?",
                vec![stream.into()],
            ))
            .await
            .map_err(backend)?;
        let n: i64 = row
            .map(|r| r.try_get("", "n"))
            .transpose()
            .map_err(backend)?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    async fn range(&self, stream: &str, max: usize) -> Result<Vec<(String, String)>, BusError> {
        let rows = self
            .db
            .query_all_raw(Self::statement(
                "SELECT seq, body FROM bus_entries WHERE stream = ? ORDER BY seq LIMIT ?",
                vec![stream.into(), (max.max(1) as i64).into()],
            ))
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|row| {
                let seq: i64 = row.try_get("", "seq").map_err(backend)?;
                let body: String = row.try_get("", "body").map_err(backend)?;
                Ok((seq.to_string(), body))
            })
            .collect()
    }

    async fn backlog(&self, stream: &str, group: &str) -> Result<Backlog, BusError> {
        let row = self
            .db
            .query_one_raw(Self::statement(
                "SELECT \
                   (SELECT COUNT(*) FROM bus_entries e JOIN bus_groups g ON g.stream = e.stream AND g.grp = ? \
                     WHERE e.stream = ? AND e.seq > g.last_seq) AS lag, \
                   (SELECT COUNT(*) FROM bus_pending WHERE stream = ? AND grp = ?) AS pending",
                vec![group.into(), stream.into(), stream.into(), group.into()],
            ))
            .await
            .map_err(backend)?;
        let count = |name: &str| -> Result<u64, BusError> {
            let n: i64 = match &row {
                Some(row) => row.try_get("", name).map_err(backend)?,
                None => 0,
            };
            Ok(n.max(0) as u64)
        };
        Ok(Backlog {
            lag: Some(count("lag")?),
            pending: count("pending")?,
        })
    }
}
