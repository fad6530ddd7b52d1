//! A whole platform on ephemeral ports: real subgraphs (SQLite shards in a temp dir, small demo
//! data) and the real router, talking HTTP. Each subgraph sits behind a "spy" middleware that
//! records the headers it received and can be told to answer slowly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apollo_router::RouterHttpServer;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use serde_json::{Value, json};
use switchyard_kit::{ShardedStore, StoreConfig, SubgraphDef};
use switchyard_router::RouterOptions;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const USERS: usize = 200;
/// The secret the test router and subgraphs share.
pub const ROUTER_SECRET: &str = "test-router-secret-0123456789";
pub const POSTS: usize = 1_000;

pub fn repo_root() -> PathBuf {
    switchyard_kit::testing::repo_root()
}

/// What a subgraph saw, and how it should behave.
#[derive(Clone, Default)]
pub struct Spy {
    pub delay: Arc<Mutex<Duration>>,
    pub headers: Arc<Mutex<Vec<HeaderMap>>>,
    /// Each request's JSON body (`null` when it was not JSON), in the order received.
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

async fn spy_layer(State(spy): State<Spy>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    spy.headers.lock().unwrap().push(parts.headers.clone());
    spy.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
    let delay = *spy.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

pub struct Subgraph {
    pub def: &'static SubgraphDef,
    pub addr: SocketAddr,
    pub store: Arc<ShardedStore>,
    pub spy: Spy,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Subgraph {
    async fn start(
        def: &'static SubgraphDef,
        store: Arc<ShardedStore>,
        addr: SocketAddr,
        spy: Spy,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind subgraph");
        let addr = listener.local_addr().unwrap();
        let options = switchyard_kit::server::ServerOptions {
            router_secret: Some(switchyard_kit::deployment::Secret::new(ROUTER_SECRET)),
            ..Default::default()
        };
        let app = (def.router)(store.clone(), &options)
            .unwrap()
            .layer(from_fn_with_state(spy.clone(), spy_layer));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(switchyard_kit::server::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Self {
            def,
            addr,
            store,
            spy,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server (its port is closed until `restart`).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Subgraph::start(self.def, self.store.clone(), self.addr, self.spy.clone()).await;
    }
}

/// Produces a supergraph text for a given accounts URL.
pub type SupergraphWriter = Box<dyn Fn(&str) -> String + Send + Sync>;

pub struct Options {
    /// Per-subgraph timeout the router enforces for accounts.
    pub accounts_timeout: &'static str,
    pub hot_reload: bool,
    pub introspection: bool,
    /// Pipeline stages (YAML keys of `switchyard.pipeline`, at two-space indentation).
    pub plugins: String,
    /// Serve this supergraph file (written by `write_supergraph`) instead of the committed one.
    pub supergraph: Option<PathBuf>,
    /// Produces the supergraph text for a given accounts URL.
    pub write_supergraph: Option<SupergraphWriter>,
    /// Route accounts with `override_subgraph_url` (else the supergraph's URL is used).
    pub override_accounts_url: bool,
    /// The router's address (an ephemeral port when absent; a schema reload may then move it).
    pub listen: Option<SocketAddr>,
    /// A subgraph's store (by subgraph name) instead of two SQLite shards in the temp dir.
    pub stores: Option<StoreFn>,
}

/// Chooses a subgraph's store config; `None` keeps the SQLite default.
pub type StoreFn = Arc<dyn Fn(&str) -> Option<StoreConfig> + Send + Sync>;

pub use switchyard_kit::testing::free_addr;

/// A number no earlier test run used (for Redis key prefixes shared with other runs).
pub fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Default for Options {
    fn default() -> Self {
        Self {
            accounts_timeout: "5s",
            hot_reload: false,
            introspection: true,
            plugins: String::new(),
            supergraph: None,
            write_supergraph: None,
            override_accounts_url: true,
            listen: None,
            stores: None,
        }
    }
}

pub struct Platform {
    /// Holds the shard files and router.yaml until the platform is dropped.
    _dir: TempDir,
    supergraph: Option<(PathBuf, SupergraphWriter)>,
    pub router: RouterHttpServer,
    pub url: String,
    pub config_path: PathBuf,
    pub subgraphs: Vec<Subgraph>,
    pub http: reqwest::Client,
}

impl Platform {
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut subgraphs = Vec::new();
        let mut stores = Vec::new();
        for def in [
            &switchyard_accounts::SUBGRAPH,
            &switchyard_posts::SUBGRAPH,
            &switchyard_engagement::SUBGRAPH,
            &switchyard_notifications::SUBGRAPH,
        ] {
            let config = options
                .stores
                .as_ref()
                .and_then(|stores| stores(def.name))
                .unwrap_or_else(|| StoreConfig::sqlite(&dir.path().join("data"), def.name, 2));
            let store = Arc::new(ShardedStore::connect_as(def.name, &config).await.unwrap());
            (def.migrate)(&store).await.unwrap();
            stores.push(store.clone());
            subgraphs.push(
                Subgraph::start(def, store, "127.0.0.1:0".parse().unwrap(), Spy::default()).await,
            );
        }
        switchyard_accounts::seed::seed_users(&stores[0], USERS)
            .await
            .unwrap();
        let authors = switchyard_accounts::seed::demo_user_ids(USERS, stores[0].shard_count());
        switchyard_posts::seed::seed_posts(&stores[1], &authors, POSTS)
            .await
            .unwrap();

        let config_path = dir.path().join("router.yaml");
        std::fs::write(&config_path, router_yaml(&subgraphs, &options)).unwrap();
        let supergraph = match (&options.supergraph, &options.write_supergraph) {
            (Some(path), Some(write)) => {
                std::fs::write(
                    path,
                    write(&format!("http://{}/graphql", subgraphs[0].addr)),
                )
                .unwrap();
                path.clone()
            }
            _ => repo_root().join("schema/supergraph.graphql"),
        };
        let (router, addr) = launch(&config_path, supergraph, options.hot_reload).await;
        let supergraph_writer = match (options.supergraph, options.write_supergraph) {
            (Some(path), Some(write)) => Some((path, write)),
            _ => None,
        };
        Self {
            _dir: dir,
            supergraph: supergraph_writer,
            router,
            url: format!("{addr}/graphql"),
            config_path,
            subgraphs,
            http: reqwest::Client::new(),
        }
    }

    /// Another router in front of the same subgraphs (for budgets shared across replicas).
    /// The directory holds its config, which the router reads after `start` returns: keep it.
    pub async fn second_router(&self, options: &Options) -> (RouterHttpServer, String, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("router.yaml");
        std::fs::write(&config, router_yaml(&self.subgraphs, options)).unwrap();
        let (router, addr) = launch(
            &config,
            repo_root().join("schema/supergraph.graphql"),
            false,
        )
        .await;
        (router, format!("{addr}/graphql"), dir)
    }

    /// Rewrites the supergraph file with another accounts URL (the router must hot-reload).
    pub fn rewrite_supergraph(&self, accounts_url: &str) {
        let (path, write) = self.supergraph.as_ref().expect("a writable supergraph");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, write(accounts_url)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    pub fn subgraph(&mut self, name: &str) -> &mut Subgraph {
        self.subgraphs
            .iter_mut()
            .find(|s| s.def.name == name)
            .unwrap()
    }

    /// POSTs a GraphQL request; returns status, content type and body.
    pub async fn post(&self, body: Value) -> (u16, String, Value) {
        self.post_with(body, &[]).await
    }

    pub async fn post_with(&self, body: Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
        let mut request = self.http.post(&self.url).json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn query(&self, query: &str) -> Value {
        let (status, _, body) = self.post(json!({ "query": query })).await;
        assert!(status < 500, "{status}: {body}");
        body
    }

    pub async fn shutdown(mut self) {
        self.router.shutdown().await.unwrap();
        for subgraph in &mut self.subgraphs {
            subgraph.stop().await;
        }
    }
}

async fn launch(
    config: &Path,
    supergraph: PathBuf,
    hot_reload: bool,
) -> (RouterHttpServer, String) {
    let mut router = switchyard_router::start(&RouterOptions {
        config: config.to_owned(),
        supergraph,
        hot_reload,
    })
    .unwrap();
    let started = Instant::now();
    loop {
        if let Some(addr) = router.listen_address().await {
            return (router, addr.to_string());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "router did not start"
        );
        tokio::select! {
            result = &mut router => panic!("router stopped during start-up: {result:?}\n{}", std::fs::read_to_string(config).unwrap()),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

pub async fn read(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, body)
}

pub fn router_yaml(subgraphs: &[Subgraph], options: &Options) -> String {
    let urls: String = subgraphs
        .iter()
        .filter(|s| options.override_accounts_url || s.def.name != "accounts")
        .map(|s| format!("  {}: http://{}/graphql\n", s.def.name, s.addr))
        .collect();
    format!(
        r#"supergraph:
  listen: {listen}
  path: /graphql
  introspection: {introspection}
health_check:
  enabled: false
sandbox:
  enabled: false
homepage:
  enabled: false
include_subgraph_errors:
  all: true
override_subgraph_url:
{urls}traffic_shaping:
  all:
    timeout: 10s
  subgraphs:
    accounts:
      timeout: {timeout}
# Forward every x- header, so that only headers_guard stands between a client and a subgraph.
headers:
  all:
    request:
      - propagate:
          matching: "^x-.*"
{plugins}"#,
        introspection = options.introspection,
        listen = options
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1:0".to_owned()),
        timeout = options.accounts_timeout,
        // The pipeline always runs (with the guard, as in every shipped config).
        plugins = switchyard_router::pipeline::plugins_yaml(&format!(
            "  headers_guard: {{}}\n{}",
            options.plugins
        )),
    )
}

pub use switchyard_kit::testing::codes;

/// A private `redis-server` on a free port (tests that kill Redis must not kill the shared one).
pub fn spawn_redis() -> (std::process::Child, String) {
    let addr = free_addr();
    (spawn_redis_at(addr), format!("redis://{addr}"))
}

/// A private `redis-server` on `addr` (again, after a test killed the previous one).
pub fn spawn_redis_at(addr: SocketAddr) -> std::process::Child {
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &addr.port().to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed (see .ci/run)");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// `switchyard.jwt_auth` trusting the accounts subgraph's development signing key, anonymous
/// requests allowed (YAML lines under `plugins:`).
pub fn dev_jwt_plugin() -> String {
    use switchyard_accounts::tokens::{DEV_AUDIENCE, DEV_HMAC_SECRET, DEV_ISSUER};
    format!(
        r#"  jwt_auth:
    issuer: {DEV_ISSUER}
    audiences: [{DEV_AUDIENCE}]
    algorithms: [HS256]
    allow_anonymous: true
    subgraph_secret: {ROUTER_SECRET}
    keys:
      - kid: dev
        alg: HS256
        secret: {DEV_HMAC_SECRET}
"#
    )
}
