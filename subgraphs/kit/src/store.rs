//! Sharded SeaORM store: N shards, each a primary plus an optional read replica.
//!
//! Rows live on the shard their owning key hashes to (or, for an existing id, the shard the id
//! carries — see [`crate::id`]). Reads go to the replica when a shard has one, except after this
//! request wrote to that shard ([`Session`]), so a client always reads its own writes.
//!
//! A replica that stops answering is taken out of rotation: the read that found it down is
//! retried on the primary, later reads go straight to the primary, and a background probe puts
//! the replica back once it answers again ([`ReplicaHealth`]). A replica is a scaling aid, not
//! a dependency: losing one costs latency for at most [`StoreConfig::replica_acquire_timeout_ms`],
//! never an error.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;
use serde::Deserialize;
use tracing::Instrument;

use crate::id::{IdGenerator, MAX_SHARDS, shard_of};

/// How a subgraph reaches its shards.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// One entry per shard, in shard-index order. The order is part of the data: a row's id
    /// names its shard's index, so shards may be appended but never reordered or removed.
    pub shards: Vec<ShardConfig>,
    /// Pool size per connection (primary and replica each).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long start-up waits for a shard before naming it as unreachable.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// How long a read waits for a replica connection before it is retried on the primary
    /// and the replica is taken out of rotation. Short, because a replica that cannot hand out
    /// a connection in this time is down or overloaded, and the primary can answer instead.
    #[serde(default = "default_replica_acquire_timeout_ms")]
    pub replica_acquire_timeout_ms: u64,
}

/// One shard's connection URLs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// `sqlite://path.db?mode=rwc` or `postgres://user@host/db`.
    pub primary: String,
    /// A read replica of the primary, if any (same URL forms).
    #[serde(default)]
    pub replica: Option<String>,
}

fn default_max_connections() -> u32 {
    8
}

fn default_connect_timeout_secs() -> u64 {
    5
}

fn default_replica_acquire_timeout_ms() -> u64 {
    1000
}

/// How often a replica taken out of rotation is probed.
const REPLICA_PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl StoreConfig {
    /// The embedded default: `shards` SQLite files under `data_dir`, named after the subgraph.
    pub fn sqlite(data_dir: &Path, subgraph: &str, shards: usize) -> Self {
        let shards = (0..shards)
            .map(|i| ShardConfig {
                primary: format!(
                    "sqlite://{}/{subgraph}-shard-{i}.db?mode=rwc",
                    data_dir.display()
                ),
                replica: None,
            })
            .collect();
        Self::from_shards(shards)
    }

    /// Shards given by primary URL, without replicas.
    pub fn from_urls<I: IntoIterator<Item = String>>(urls: I) -> Self {
        Self::from_shards(
            urls.into_iter()
                .map(|primary| ShardConfig {
                    primary,
                    replica: None,
                })
                .collect(),
        )
    }

    pub fn from_shards(shards: Vec<ShardConfig>) -> Self {
        Self {
            shards,
            max_connections: default_max_connections(),
            connect_timeout_secs: default_connect_timeout_secs(),
            replica_acquire_timeout_ms: default_replica_acquire_timeout_ms(),
        }
    }
}

/// Store failures. Each names the shard it concerns, because with N databases "connection
/// refused" alone sends an operator to the wrong one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no shards configured")]
    NoShards,
    #[error("{0} shards configured; ids address at most {MAX_SHARDS}")]
    TooManyShards(usize),
    #[error("shard {shard} ({role}, {url}): cannot connect: {source}")]
    Connect {
        shard: usize,
        role: &'static str,
        url: String,
        source: DbErr,
    },
    #[error("shard {shard}: migration failed: {source}")]
    Migrate { shard: usize, source: DbErr },
    #[error("shard {shard}: {source}")]
    Query { shard: usize, source: DbErr },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl StoreError {
    /// True when the shard could not be reached (rather than refusing the statement).
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Query { source, .. } | StoreError::Db(source) => is_unreachable(source),
            _ => false,
        }
    }
}

/// Statements executed, per shard, counted by SeaORM's metric hook on every real statement
/// sent to a database (not calls into our code): the basis of the batching tests and metrics.
#[derive(Debug, Default)]
pub struct StatementCounter {
    per_shard: Vec<AtomicU64>,
}

impl StatementCounter {
    fn new(shards: usize) -> Self {
        Self {
            per_shard: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Statements run on one shard so far (primary and replica together).
    pub fn shard(&self, shard: usize) -> u64 {
        self.per_shard[shard].load(Ordering::Relaxed)
    }

    /// Statements run on every shard so far, by shard index.
    pub fn snapshot(&self) -> Vec<u64> {
        self.per_shard
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }
}

/// What the readiness probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// False only when no shard's primary answers.
    pub ready: bool,
    /// `ready`, or one line per connection that did not answer.
    pub report: String,
}

/// One shard's connections.
#[derive(Debug)]
pub struct Shard {
    pub index: usize,
    pub primary: DatabaseConnection,
    pub replica: Option<DatabaseConnection>,
    replica_health: Arc<ReplicaHealth>,
}

impl Shard {
    /// False while the replica is out of rotation (reads go to the primary).
    pub fn replica_up(&self) -> bool {
        self.replica.is_some() && !self.replica_health.down.load(Ordering::Acquire)
    }
}

/// Whether a shard's replica is in rotation. Set down by the read that found it unreachable,
/// set up again by the probe that task starts, so only one probe runs per outage.
#[derive(Debug, Default)]
struct ReplicaHealth {
    down: AtomicBool,
    /// How many times the replica came back. A read that started before the last return and
    /// failed after it saw the outage, not a new one: it must not take the replica out again.
    returns: AtomicU64,
}

/// All shards of one subgraph.
#[derive(Debug)]
pub struct ShardedStore {
    /// The subgraph the shards belong to (the `subgraph` label of the store's metrics).
    name: &'static str,
    shards: Vec<Shard>,
    ids: IdGenerator,
    statements: Arc<StatementCounter>,
}

impl ShardedStore {
    /// Connects every shard (concurrently) for tests and tools; its metrics are labelled
    /// `subgraph="store"`. Subgraphs use [`Self::connect_as`].
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        Self::connect_as("store", config).await
    }

    /// Connects every shard of `subgraph` (concurrently). The first failure is returned naming
    /// its shard. Pool usage and replica lag are read at every metrics scrape from then on.
    pub async fn connect_as(
        subgraph: &'static str,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let n = config.shards.len();
        if n == 0 {
            return Err(StoreError::NoShards);
        }
        if n > MAX_SHARDS {
            return Err(StoreError::TooManyShards(n));
        }
        let statements = Arc::new(StatementCounter::new(n));
        let shards = futures::future::try_join_all(config.shards.iter().enumerate().map(
            |(index, shard)| {
                let statements = statements.clone();
                async move {
                    let at = |role| Where {
                        subgraph,
                        shard: index,
                        role,
                    };
                    let primary =
                        connect_one(config, at("primary"), &shard.primary, &statements).await?;
                    let replica = match &shard.replica {
                        Some(url) => {
                            Some(connect_one(config, at("replica"), url, &statements).await?)
                        }
                        None => None,
                    };
                    Ok::<_, StoreError>(Shard {
                        index,
                        primary,
                        replica,
                        replica_health: Arc::default(),
                    })
                }
            },
        ))
        .await?;
        Ok(Self {
            name: subgraph,
            shards,
            ids: IdGenerator::new(),
            statements,
        })
    }

    /// The subgraph the shards belong to.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reads this store's pool usage and replica lag at every metrics scrape (once per
    /// subgraph name, see [`crate::metrics::watch`]).
    pub fn watch_metrics(self: &Arc<Self>) {
        crate::metrics::watch(
            format!("store:{}", self.name),
            Arc::new(crate::store_metrics::PoolWatch(Arc::downgrade(self))),
        );
    }

    /// Runs the subgraph's migrations on every shard's primary (concurrently).
    pub async fn migrate<M: MigratorTrait>(&self) -> Result<(), StoreError> {
        futures::future::try_join_all(self.shards.iter().map(|shard| async move {
            M::up(&shard.primary, None)
                .await
                .map_err(|source| StoreError::Migrate {
                    shard: shard.index,
                    source,
                })
        }))
        .await?;
        Ok(())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub fn statements(&self) -> &StatementCounter {
        &self.statements
    }

    /// The shard an owning key (a handle, a user id's bytes) lives on: FNV-1a, which is fixed
    /// forever, unlike std's hasher, so the same key lands on the same shard in every release.
    pub fn shard_for_key(&self, key: &[u8]) -> usize {
        (stable_hash(key) % self.shards.len() as u64) as usize
    }

    /// A new id for a row on `shard`.
    pub fn next_id(&self, shard: usize) -> i64 {
        self.ids.next(shard)
    }

    pub fn primary(&self, shard: usize) -> &DatabaseConnection {
        &self.shards[shard].primary
    }

    /// A fresh request scope (read-your-writes tracking starts empty).
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            store: self.clone(),
            written: (0..self.shards.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
        }
    }

    /// Bulk loading: `rows` go to the shard `shard_of` names, in chunks of `chunk`, one
    /// transaction per shard, all shards concurrently. `insert` writes one chunk and says how
    /// many rows were new; the total is returned.
    pub async fn load_rows<T, F>(
        &self,
        rows: impl IntoIterator<Item = T>,
        shard_of: impl Fn(&T) -> usize,
        chunk: usize,
        insert: F,
    ) -> Result<u64, StoreError>
    where
        T: Sync,
        F: for<'t> Fn(
            &'t sea_orm::DatabaseTransaction,
            &'t [T],
        ) -> futures::future::BoxFuture<'t, Result<u64, DbErr>>,
    {
        use sea_orm::TransactionTrait;
        let groups = group_by_shard(rows, shard_of, self.shard_count());
        let per_shard = futures::future::try_join_all(groups.into_iter().map(|(shard, rows)| {
            let insert = &insert;
            async move {
                let fail = |source| StoreError::Query { shard, source };
                let txn = self.primary(shard).begin().await.map_err(fail)?;
                let mut inserted = 0;
                for part in rows.chunks(chunk.max(1)) {
                    inserted += insert(&txn, part).await.map_err(fail)?;
                }
                txn.commit().await.map_err(fail)?;
                Ok::<_, StoreError>(inserted)
            }
        }))
        .await?;
        Ok(per_shard.into_iter().sum())
    }

    /// The readiness probe: pings every primary and replica. A replica that does not answer is
    /// taken out of rotation and does not make the subgraph unready (its reads go to the
    /// primary). One shard whose primary is down does not either: every replica of this
    /// subgraph shares that primary, so taking them all out of service would turn one shard's
    /// outage into the whole subgraph's. Unready means no primary answers at all.
    pub async fn readiness(self: &Arc<Self>) -> Readiness {
        let mut report = String::new();
        let mut primaries_up = 0;
        for shard in &self.shards {
            let primary = shard.primary.ping().await;
            match &primary {
                Ok(()) => primaries_up += 1,
                Err(e) => report.push_str(&format!("shard {}: primary: {e}\n", shard.index)),
            }
            let returns = shard.replica_health.returns.load(Ordering::Acquire);
            if let Some(replica) = &shard.replica
                && let Err(e) = replica.ping().await
            {
                if is_unreachable(&e) {
                    self.replica_unreachable(shard.index, &e, returns);
                }
                report.push_str(&format!(
                    "shard {}: replica: {e} (reads on the primary)\n",
                    shard.index
                ));
            }
        }
        Readiness {
            ready: primaries_up > 0,
            report: if report.is_empty() {
                "ready".to_owned()
            } else {
                report
            },
        }
    }

    /// Takes `shard`'s replica out of rotation (once per outage) and starts the probe that
    /// puts it back.
    /// `returns` is the replica's return count when the failed read started.
    fn replica_unreachable(self: &Arc<Self>, shard: usize, err: &DbErr, returns: u64) {
        let shard_ref = &self.shards[shard];
        let (Some(replica), health) = (&shard_ref.replica, &shard_ref.replica_health) else {
            return;
        };
        if health.returns.load(Ordering::Acquire) != returns
            || health.down.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let subgraph = self.name;
        tracing::warn!(subgraph, shard, error = %err, "replica unreachable: reads go to the primary until it answers");
        crate::metrics::metrics()
            .replica_failovers
            .with_label_values(&[subgraph, &shard.to_string()])
            .inc();
        let (replica, health) = (replica.clone(), health.clone());
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPLICA_PROBE_INTERVAL).await;
                if store.strong_count() == 0 {
                    return;
                }
                let probe = replica.execute_unprepared("SELECT 1");
                if let Ok(Ok(_)) = tokio::time::timeout(REPLICA_PROBE_INTERVAL, probe).await {
                    health.returns.fetch_add(1, Ordering::AcqRel);
                    health.down.store(false, Ordering::Release);
                    tracing::info!(subgraph, shard, "replica answers again: back in rotation");
                    return;
                }
            }
        });
    }
}

pub use switchyard_wire::hash::stable_hash;

/// Which connection: the labels of its metrics and spans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Where {
    pub subgraph: &'static str,
    pub shard: usize,
    pub role: &'static str,
}

async fn connect_one(
    config: &StoreConfig,
    at: Where,
    url: &str,
    statements: &Arc<StatementCounter>,
) -> Result<DatabaseConnection, StoreError> {
    let Where { shard, role, .. } = at;
    let fail = |source: DbErr| StoreError::Connect {
        shard,
        role,
        url: redact(url),
        source,
    };
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        ensure_sqlite_parent_dir(url).map_err(|e| fail(DbErr::Custom(e.to_string())))?;
    } else if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(fail(DbErr::Custom(
            "unsupported URL scheme: expected sqlite:// or postgres://".into(),
        )));
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.max_connections)
        .min_connections(if is_sqlite { 1 } else { 0 })
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .acquire_timeout(if at.role == "replica" {
            Duration::from_millis(config.replica_acquire_timeout_ms.max(1))
        } else {
            Duration::from_secs(config.connect_timeout_secs.max(5))
        })
        .sqlx_logging(false);
    if is_sqlite {
        options.map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    }
    let mut conn = Database::connect(options).await.map_err(fail)?;
    // Connecting can succeed lazily; make sure the shard really answers before we say it's up.
    conn.execute_unprepared("SELECT 1").await.map_err(fail)?;
    let counter = statements.clone();
    let observe = crate::store_metrics::StatementObserver::new(at);
    conn.set_metric_callback(move |info| {
        counter.per_shard[shard].fetch_add(1, Ordering::Relaxed);
        observe.statement(info);
    });
    Ok(conn)
}

fn ensure_sqlite_parent_dir(url: &str) -> std::io::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

/// The URL without its password, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// One request's view of the store. Tracks which shards this request wrote to, so that later
/// reads in the same request go to those shards' primaries instead of possibly-lagging replicas.
#[derive(Debug)]
pub struct Session {
    store: Arc<ShardedStore>,
    written: Vec<AtomicBool>,
}

impl Session {
    pub fn store(&self) -> &ShardedStore {
        &self.store
    }

    /// The connection to read `shard` from: its replica, unless this session wrote to the
    /// shard or the replica is out of rotation. Prefer [`Self::read`], which also fails over.
    pub fn reader(&self, shard: usize) -> &DatabaseConnection {
        let shard_ref = &self.store.shards[shard];
        match &shard_ref.replica {
            Some(replica)
                if !self.written[shard].load(Ordering::Acquire)
                    && !shard_ref.replica_health.down.load(Ordering::Acquire) =>
            {
                replica
            }
            _ => &shard_ref.primary,
        }
    }

    /// Runs one read on `shard`: on [`Self::reader`]'s connection, and when that was the
    /// replica and it proved unreachable, again on the primary (taking the replica out of
    /// rotation). `read` may therefore run twice; it must only read.
    pub async fn read<T, F, Fut>(&self, shard: usize, read: F) -> Result<T, DbErr>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        self.read_with(shard, (), |conn, ()| read(conn)).await
    }

    /// [`Self::read`] handing `input` to `read`; it is cloned only when the read goes to the
    /// replica (for the retry on the primary), so a shard without one pays nothing for it.
    pub async fn read_with<V, T, F, Fut>(&self, shard: usize, input: V, read: F) -> Result<T, DbErr>
    where
        V: Clone,
        F: Fn(DatabaseConnection, V) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let returns = self.store.shards[shard]
            .replica_health
            .returns
            .load(Ordering::Acquire);
        let conn = self.reader(shard);
        let primary = self.store.primary(shard);
        if std::ptr::eq(conn, primary) {
            return read(primary.clone(), input).await;
        }
        match read(conn.clone(), input.clone()).await {
            Err(err) if is_unreachable(&err) => {
                self.store.replica_unreachable(shard, &err, returns);
                read(primary.clone(), input).await
            }
            result => result,
        }
    }

    /// The connection to write `shard` with; later reads of `shard` in this session use it too.
    pub fn writer(&self, shard: usize) -> &DatabaseConnection {
        self.written[shard].store(true, Ordering::Release);
        &self.store.shards[shard].primary
    }

    /// Runs `query` once per shard that `ids` touch, concurrently, with that shard's ids: the
    /// batched lookup every loader is built on (one `WHERE id IN (...)` per shard, not per id).
    pub async fn per_shard_of_ids<T, F, Fut>(
        &self,
        ids: &[i64],
        query: F,
    ) -> Result<Vec<T>, StoreError>
    where
        F: Fn(DatabaseConnection, usize, Vec<i64>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, DbErr>>,
    {
        let groups = group_by_shard(
            ids.iter().copied(),
            |id| shard_of(*id),
            self.store.shard_count(),
        );
        self.per_shard(groups, query).await
    }

    /// Runs `query` on every shard with its group of keys, concurrently, and concatenates the rows.
    pub async fn per_shard<K, T, F, Fut>(
        &self,
        groups: BTreeMap<usize, Vec<K>>,
        query: F,
    ) -> Result<Vec<T>, StoreError>
    where
        K: Clone,
        F: Fn(DatabaseConnection, usize, Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, DbErr>>,
    {
        tracing::Span::current().record("shards", groups.len());
        let query = &query;
        let results = futures::future::try_join_all(groups.into_iter().map(|(shard, keys)| {
            let span = self.shard_span(shard, keys.len());
            on_shard(
                shard,
                self.read_with(shard, keys, move |conn, keys| query(conn, shard, keys)),
            )
            .instrument(span)
        }))
        .await?;
        Ok(results.into_iter().flatten().collect())
    }

    /// Runs `query` on every shard (for cross-shard listings), returning each shard's rows apart.
    pub async fn all_shards<T, F, Fut>(&self, query: F) -> Result<Vec<Vec<T>>, StoreError>
    where
        F: Fn(DatabaseConnection, usize) -> Fut,
        Fut: Future<Output = Result<Vec<T>, DbErr>>,
    {
        tracing::Span::current().record("shards", self.store.shard_count());
        let query = &query;
        futures::future::try_join_all((0..self.store.shard_count()).map(|shard| {
            let span = self.shard_span(shard, 0);
            on_shard(shard, self.read(shard, move |conn| query(conn, shard))).instrument(span)
        }))
        .await
    }

    /// The span of one shard's part of a batched read: which shard, which connection, how
    /// many keys went in and rows came out (never the keys themselves).
    fn shard_span(&self, shard: usize, keys: usize) -> tracing::Span {
        let role = if std::ptr::eq(self.reader(shard), self.store.primary(shard)) {
            "primary"
        } else {
            "replica"
        };
        tracing::info_span!(
            "store.shard",
            subgraph = self.store.name,
            shard,
            role,
            keys,
            rows = tracing::field::Empty,
        )
    }
}

/// One shard's part of a batched read: its error names the shard, its row count goes on the
/// shard's span.
async fn on_shard<T>(
    shard: usize,
    query: impl Future<Output = Result<Vec<T>, DbErr>>,
) -> Result<Vec<T>, StoreError> {
    let rows = query
        .await
        .map_err(|source| StoreError::Query { shard, source })?;
    tracing::Span::current().record("rows", rows.len());
    Ok(rows)
}

/// Groups keys by shard, dropping keys whose shard this deployment does not have.
pub fn group_by_shard<K>(
    keys: impl IntoIterator<Item = K>,
    shard: impl Fn(&K) -> usize,
    shard_count: usize,
) -> BTreeMap<usize, Vec<K>> {
    let mut groups: BTreeMap<usize, Vec<K>> = BTreeMap::new();
    for key in keys {
        let s = shard(&key);
        if s < shard_count {
            groups.entry(s).or_default().push(key);
        }
    }
    groups
}

/// True when `err` says the database could not be reached or dropped the connection (rather
/// than refusing the statement): the errors a read on another copy of the data would avoid.
pub fn is_unreachable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::Protocol(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception) and 57P (the server shutting down or
            // restarting: admin_shutdown, crash_shutdown, cannot_connect_now).
            Sqlx::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        },
        _ => false,
    }
}

/// True when a database error is a unique-constraint violation (a taken handle, a colliding id).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The `n`-th (1-based) bind placeholder in `backend`'s syntax.
pub fn placeholder(backend: sea_orm::DbBackend, n: usize) -> String {
    match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// `count` placeholders from the `start`-th, comma-separated.
pub fn placeholders(backend: sea_orm::DbBackend, start: usize, count: usize) -> String {
    (start..start + count)
        .map(|n| placeholder(backend, n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:****@h/db");
        assert_eq!(
            redact("sqlite://data/x.db?mode=rwc"),
            "sqlite://data/x.db?mode=rwc"
        );
    }

    #[test]
    fn grouping_drops_unknown_shards() {
        let groups = group_by_shard([1usize, 5, 2, 9], |k| *k % 4, 3);
        assert_eq!(groups.get(&1), Some(&vec![1, 5, 9]));
        assert_eq!(groups.get(&2), Some(&vec![2]));
        assert_eq!(groups.len(), 2);
    }

    #[tokio::test]
    async fn unreachable_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::sqlite(dir.path(), "t", 2);
        config.shards[1].primary = "postgres://nobody@127.0.0.1:1/nowhere".into();
        config.connect_timeout_secs = 2;
        let err = ShardedStore::connect(&config)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "shard 1 (primary, postgres://nobody@127.0.0.1:1/nowhere): cannot connect"
            ),
            "{err}"
        );

        config.shards[1].primary = "mysql://x".into();
        let err = ShardedStore::connect(&config)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shard 1") && err.contains("unsupported URL scheme"),
            "{err}"
        );
    }
}
