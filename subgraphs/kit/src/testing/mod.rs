//! Test support: real shard databases on the local PostgreSQL, created and dropped per test.

use sea_orm::{ConnectionTrait, Database};

use crate::store::StoreConfig;

pub mod otlp;
pub mod promql;
pub mod proxy;

/// The server the tests use (trust auth). Override with `SWITCHYARD_TEST_PG`.
pub fn pg_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Statements `subgraph`'s store ran on connections of `role` (`primary`, `replica`) in this
/// process so far, from the store's metrics (every shard and statement kind).
pub async fn statements_on(subgraph: &str, role: &str) -> u64 {
    let (subgraph, role) = (
        format!("subgraph=\"{subgraph}\""),
        format!("role=\"{role}\""),
    );
    crate::metrics::render()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_store_statement_duration_seconds_count{")
                && l.contains(&subgraph)
                && l.contains(&role)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `n` fresh databases on the local PostgreSQL; [`PgShards::drop_all`] removes them.
pub struct PgShards {
    names: Vec<String>,
    pub config: StoreConfig,
}

impl PgShards {
    pub async fn create(tag: &str, n: usize) -> Self {
        let admin = Database::connect(pg_admin_url())
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 is needed for this test (see .ci/run)");
        let run: u32 = rand::random();
        let tag: String = tag.chars().take(24).collect();
        let names: Vec<String> = (0..n)
            .map(|i| format!("sy_test_{tag}_{}_{run:08x}_{i}", std::process::id()))
            .collect();
        for name in &names {
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
        }
        let base = pg_admin_url();
        let base = base
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(base);
        let config = StoreConfig::from_urls(names.iter().map(|n| format!("{base}/{n}")));
        Self { names, config }
    }

    /// Drops the databases (call at the end of the test, after closing the store).
    pub async fn drop_all(self) {
        let admin = Database::connect(pg_admin_url())
            .await
            .expect("connect to PostgreSQL");
        for name in &self.names {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop test database");
        }
    }
}

/// Runs `body` against a fresh 4-shard PostgreSQL store config and drops the databases after,
/// whether `body` passed or panicked.
pub async fn with_pg_shards<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(StoreConfig) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    let pg = PgShards::create(tag, 4).await;
    let result = std::panic::AssertUnwindSafe(body(pg.config.clone()))
        .catch_unwind()
        .await;
    pg.drop_all().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `body` against a fresh 4-shard SQLite store config in a temporary directory.
pub async fn with_sqlite_shards<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(StoreConfig) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    body(StoreConfig::sqlite(dir.path(), tag, 4)).await;
}

/// For each named `async fn(StoreConfig)`, a test module with a `sqlite` and a `postgres` test.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::testing::with_sqlite_shards(stringify!($name), super::$name).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::testing::with_pg_shards(stringify!($name), super::$name).await;
            }
        }
    )*};
}

/// Connects a store and runs a subgraph's migrations on it.
pub async fn migrated_store<M: sea_orm_migration::MigratorTrait>(
    config: StoreConfig,
) -> std::sync::Arc<crate::ShardedStore> {
    let store = crate::ShardedStore::connect(&config)
        .await
        .expect("connect");
    store.migrate::<M>().await.expect("migrate");
    std::sync::Arc::new(store)
}

/// Runs one request in its own store session, with its loaders and `viewer`, as the HTTP
/// server does; returns the response as JSON.
pub async fn execute<E: async_graphql::Executor>(
    schema: &E,
    prepare: crate::server::PrepareRequest,
    store: &std::sync::Arc<crate::ShardedStore>,
    viewer: crate::Viewer,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    execute_with_cache_headers(schema, prepare, store, viewer, query, variables)
        .await
        .0
}

/// [`execute`], plus the cache headers the HTTP server would send with the response
/// (`cache-control` and the cache tag headers), lower-case names.
pub async fn execute_with_cache_headers<E: async_graphql::Executor>(
    schema: &E,
    prepare: crate::server::PrepareRequest,
    store: &std::sync::Arc<crate::ShardedStore>,
    viewer: crate::Viewer,
    query: &str,
    variables: serde_json::Value,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, String>,
) {
    let tags = crate::cache::CacheTags::default();
    let request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(variables))
        .data(viewer)
        .data(tags.clone());
    let mut response = schema
        .execute(prepare(request, std::sync::Arc::new(store.session())))
        .await;
    tags.apply(&mut response);
    let mut headers = std::collections::BTreeMap::new();
    if response.is_ok()
        && let Some(value) = response.cache_control.value()
    {
        headers.insert("cache-control".to_owned(), value);
    }
    for (name, value) in &response.http_headers {
        headers.insert(
            name.as_str().to_owned(),
            value.to_str().unwrap_or_default().to_owned(),
        );
    }
    (
        serde_json::to_value(&response).expect("responses serialize"),
        headers,
    )
}

/// A loopback address nobody listens on right now.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port on 127.0.0.1")
}

/// The `extensions.code` of each error in a GraphQL response.
pub fn codes(response: &serde_json::Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The repository root, found at run time from the crate cargo is testing. (Not `env!`: a
/// test binary reused from a build in another checkout would carry that checkout's path.)
pub fn repo_root() -> std::path::PathBuf {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("tests run under cargo");
    std::path::Path::new(&manifest_dir)
        .ancestors()
        .find(|dir| dir.join("supergraph.yaml").is_file())
        .expect("a crate inside the Switchyard repository")
        .to_owned()
}

/// Sends `signal` (`INT`, `TERM`) to a child process.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

/// Waits up to `timeout` for a child to exit; `None` if it is still running.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The bus a store test runs its pipeline on: the real Redis when the shards are PostgreSQL
/// (the deployment shape), the embedded bus in `dir` when they are SQLite files.
pub async fn bus_for(
    config: &StoreConfig,
    dir: &std::path::Path,
) -> std::sync::Arc<dyn crate::events::EventBus> {
    let postgres = config
        .shards
        .first()
        .is_some_and(|s| s.primary.starts_with("postgres"));
    if postgres {
        std::sync::Arc::new(
            crate::events::redis_bus::RedisBus::new("redis://127.0.0.1:6379").expect("redis url"),
        )
    } else {
        std::sync::Arc::new(
            crate::events::embedded::EmbeddedBus::open(&dir.join("events.db"))
                .await
                .expect("embedded bus"),
        )
    }
}

/// Stream names of their own for one test (tests share the Redis server), `partitions` each.
pub fn test_streams(partitions: u32) -> crate::events::Streams {
    crate::events::Streams {
        prefix: format!("test:{}:{}:", std::process::id(), rand::random::<u32>()),
        partitions,
    }
}
