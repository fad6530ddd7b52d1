//! `switchyard router` as ops run it: the real binary (apollo-router's own main, so its
//! telemetry, Prometheus endpoint and our plugins' metrics are live), configuration errors, and
//! graceful shutdown on SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use switchyard_kit::testing::free_addr;

fn repo_root() -> std::path::PathBuf {
    switchyard_kit::testing::repo_root()
}

fn spawn_router(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["router", "--config", config.to_str().unwrap()])
        .arg("--supergraph")
        .arg(repo_root().join("schema/supergraph.graphql"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_for(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output_lossy();
            panic!("router exited ({status}): {out}");
        }
        assert!(Instant::now() < deadline, "router did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

trait Lossy {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl Lossy for Child {
    fn wait_with_output_lossy(&mut self) -> String {
        use std::io::Read;
        let mut out = String::new();
        if let Some(mut s) = self.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_query_metrics_reach_prometheus_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("manifest.json");
    std::fs::copy(
        repo_root().join("persisted-queries/manifest.json"),
        &manifest_path,
    )
    .unwrap();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let home = manifest["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "HomeFeed" && o["clientName"] == "ios")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (graphql, metrics) = (free_addr(), free_addr());
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "supergraph:\n  listen: {graphql}\n  path: /graphql\nhealth_check:\n  enabled: false\n\
             telemetry:\n  exporters:\n    metrics:\n      prometheus:\n        enabled: true\n        listen: {metrics}\n        path: /metrics\n\
             plugins:\n  switchyard.pipeline:\n    persisted_queries:\n      mode: enforce\n      manifest: {}\n      reload_interval: 100ms\n",
            manifest_path.display()
        ),
    )
    .unwrap();
    let mut router = spawn_router(&config);
    wait_for(graphql, &mut router).await;

    let http = reqwest::Client::new();
    let url = format!("http://{graphql}/graphql");
    let send = |body: Value| {
        http.post(&url)
            .header("apollographql-client-name", "ios")
            .json(&body)
            .send()
    };
    let r: Value = send(json!({"query": "{ feed { nodes { id } } }"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_IN_LIST",
        "{r}"
    );
    let r: Value = send(json!({"documentId": "0".repeat(64)}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_IN_LIST",
        "{r}"
    );
    // Runs (the subgraphs are not there, so it fails downstream, after the plugin counted it).
    send(json!({"documentId": home})).await.unwrap();
    // Regression (issue 10): every raw client name became a metric label. Names the manifest
    // does not know count as `other` (and, held to the per-client safelist, are refused).
    for i in 0..40 {
        http.post(&url)
            .header("apollographql-client-name", format!("random-{i}"))
            .json(&json!({"documentId": home}))
            .send()
            .await
            .unwrap();
    }

    // Atomically, as deploy tooling does: a reader never sees a half-written file.
    let tmp = dir.path().join("manifest.tmp");
    std::fs::write(&tmp, "{ not json").unwrap();
    std::fs::rename(&tmp, &manifest_path).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let text = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |needle: &[&str]| -> Option<String> {
        text.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    let requests = "switchyard_persisted_queries_requests_total";
    assert_eq!(
        count(&[
            requests,
            "outcome=\"rejected_not_in_list\"",
            "client=\"ios\""
        ])
        .as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count(&[requests, "outcome=\"unknown_id\"", "client=\"ios\""]).as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count(&[requests, "outcome=\"manifest_hit\"", "client=\"ios\""]).as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count(&[
            requests,
            "outcome=\"rejected_not_in_list\"",
            "client=\"other\""
        ])
        .as_deref(),
        Some("40"),
        "{text}"
    );
    let clients: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with(requests))
        .filter_map(|l| l.split("client=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        clients.into_iter().collect::<Vec<_>>(),
        ["ios", "other"],
        "{text}"
    );
    assert_eq!(
        count(&[
            "switchyard_persisted_queries_reloads_total",
            "outcome=\"rejected\""
        ])
        .as_deref(),
        Some("1"),
        "{text}"
    );

    // SIGTERM (what Kubernetes sends): a clean, zero exit.
    switchyard_kit::testing::signal(&router, "TERM");
    let exit = switchyard_kit::testing::wait_for_exit(&mut router, Duration::from_secs(30))
        .expect("router did not stop on SIGTERM");
    assert!(
        exit.success(),
        "{exit:?}: {}",
        router.wait_with_output_lossy()
    );
}

#[test]
fn configuration_mistakes_stop_start_up_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "plugins:\n  switchyard.pipeline:\n    headers_guard:\n      strip_prefixs: [x-]\n",
            "strip_prefixs",
        ),
        (
            "plugins:\n  switchyard.pipeline:\n    persisted_queries:\n      mode: enforce\n      manifest: /nonexistent/manifest.json\n",
            "/nonexistent/manifest.json",
        ),
        (
            "plugins:\n  switchyard.pipeline:\n    persisted_queries:\n      mode: strict\n      manifest: x.json\n",
            "strict",
        ),
        ("supergraph:\n  listen: [not, an, address]\n", "listen"),
    ];
    for (yaml, expected) in cases {
        let config = dir.path().join("router.yaml");
        std::fs::write(&config, format!("health_check:\n  enabled: false\n{yaml}")).unwrap();
        let mut child = spawn_router(&config);
        let Some(status) =
            switchyard_kit::testing::wait_for_exit(&mut child, Duration::from_secs(60))
        else {
            let _ = child.kill();
            panic!("router started with a bad config:\n{yaml}");
        };
        let output = child.wait_with_output_lossy();
        assert!(!status.success(), "{yaml}");
        assert!(
            output.contains(expected),
            "{yaml}\nexpected {expected:?} in:\n{output}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["router", "--config", "/nonexistent/router.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("router config /nonexistent/router.yaml does not exist")
    );
}

/// The production configuration starts as shipped (with its environment) and enforces
/// persisted queries, authentication and limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_config_starts_and_enforces() {
    // The issuer's JWKS, served over HTTP as in production.
    let jwks =
        std::fs::read_to_string(repo_root().join("cli/tests/fixtures/jwt/jwks-k1.json")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || async move { jwks.clone() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let graphql = free_addr();
    let mut router = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "router",
            "--config",
            "router/router.production.yaml",
            "--listen",
            &graphql.to_string(),
        ])
        .current_dir(repo_root())
        .env("SWITCHYARD_JWT_ISSUER", "https://auth.switchyard.test")
        .env("SWITCHYARD_ROUTER_SECRET", "production-test-secret-123456")
        .env(
            "SWITCHYARD_JWKS_URL",
            format!("http://{jwks_addr}/jwks.json"),
        )
        .env("SWITCHYARD_REDIS_URL", "redis://127.0.0.1:6379")
        .env(
            "SWITCHYARD_CACHE_ADMIN_TOKEN",
            "production-test-cache-admin-token",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(graphql, &mut router).await;
    let http = reqwest::Client::new();
    let url = format!("http://{graphql}/graphql");
    let r: Value = http
        .post(&url)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_IN_LIST",
        "enforce mode: {r}"
    );
    let r = http
        .post(&url)
        .bearer_auth("not.a.token")
        .json(&json!({"documentId": "0".repeat(64)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = Command::new("kill")
        .args(["-TERM", &router.id().to_string()])
        .status();
    let _ = router.wait();
}

/// Regression (issue 11): `switchyard router` with no `--config` quietly ran the development
/// config, which trusts the HMAC key published in this repository, on whatever address it was
/// given. Now it says which config it runs, and a router that would serve beyond loopback (or
/// runs with `SWITCHYARD_ENV=production`) refuses every published secret at start-up.
#[test]
fn the_development_config_serves_loopback_only() {
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .arg("router")
            .args(args)
            .current_dir(repo_root())
            .env_remove("SWITCHYARD_ENV")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(env) = env {
            command.env("SWITCHYARD_ENV", env);
        }
        let mut child = command.spawn().unwrap();
        let Some(status) =
            switchyard_kit::testing::wait_for_exit(&mut child, Duration::from_secs(60))
        else {
            let _ = child.kill();
            panic!("the router started with {args:?} {env:?}");
        };
        assert!(!status.success());
        child.wait_with_output_lossy()
    };
    let published = "jwt_auth.subgraph_secret, jwt_auth.keys[kid \"dev\"].secret, response_cache.invalidation.token are the development secret published in this repository";
    let public = format!("0.0.0.0:{}", free_addr().port());
    let output = run(&["--listen", &public], None);
    assert!(
        output.contains("no --config given, so running the development config router/router.yaml"),
        "{output}"
    );
    assert!(output.contains(published), "{output}");
    let loopback = free_addr().to_string();
    let output = run(&["--listen", &loopback], Some("production"));
    assert!(output.contains(published), "{output}");
    let output = run(&["--listen", &loopback], Some("prod"));
    assert!(
        output.contains("SWITCHYARD_ENV must be `development` or `production`, got \"prod\""),
        "{output}"
    );
}

/// Regression (issue 11): the accounts subgraph fell back to the development signing key with
/// only a warning. Outside development it now refuses to start without its own key and router
/// secret, and takes both from files (`*_FILE`) as Kubernetes mounts them.
#[test]
fn subgraphs_outside_development_need_their_own_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    // `switchyard subgraph accounts` on a public address, with `env` only.
    let accounts = |port: u16, env: &[(&str, String)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["subgraph", "accounts", "--listen"])
            .arg(format!("0.0.0.0:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--shards", "1"])
            .env_remove("SWITCHYARD_ENV")
            .env_remove("SWITCHYARD_JWT_KEY")
            .env_remove("SWITCHYARD_ROUTER_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        command
    };
    // Each of these stops at start-up.
    let run = |env: &[(&str, String)]| {
        let mut child = accounts(free_addr().port(), env).spawn().unwrap();
        let status = switchyard_kit::testing::wait_for_exit(&mut child, Duration::from_secs(30));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        (status, child.wait_with_output_lossy())
    };
    let (status, output) = run(&[]);
    assert!(status.is_some_and(|s| !s.success()), "{output}");
    assert!(
        output.contains(
            "SWITCHYARD_ROUTER_SECRET (or SWITCHYARD_ROUTER_SECRET_FILE) is required in production"
        ),
        "{output}"
    );
    let (_, output) = run(&[(
        "SWITCHYARD_ROUTER_SECRET",
        "switchyard-dev-router-secret".into(),
    )]);
    assert!(
        output.contains(
            "SWITCHYARD_ROUTER_SECRET is the development secret published in this repository"
        ),
        "{output}"
    );
    let secret_file = secrets.join("router-secret");
    std::fs::write(&secret_file, "a-router-secret-of-our-own\n").unwrap();
    let file = secret_file.display().to_string();
    let (status, output) = run(&[("SWITCHYARD_ROUTER_SECRET_FILE", file.clone())]);
    assert!(status.is_some_and(|s| !s.success()), "{output}");
    assert!(
        output
            .contains("SWITCHYARD_JWT_KEY (or SWITCHYARD_JWT_KEY_FILE) is required in production"),
        "{output}"
    );
    let (_, output) = run(&[
        ("SWITCHYARD_ROUTER_SECRET_FILE", file.clone()),
        ("SWITCHYARD_ROUTER_SECRET", "both".into()),
    ]);
    assert!(
        output.contains(
            "set one of SWITCHYARD_ROUTER_SECRET and SWITCHYARD_ROUTER_SECRET_FILE, not both"
        ),
        "{output}"
    );
    // With its own key from a file (a generated HS256 secret), it starts; neither secret is
    // ever printed.
    let key: String = (0..48).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let key_file = secrets.join("jwt-key");
    std::fs::write(&key_file, &key).unwrap();
    let port = free_addr().port();
    let mut child = accounts(
        port,
        &[
            ("SWITCHYARD_ROUTER_SECRET_FILE", file),
            ("SWITCHYARD_JWT_KEY_FILE", key_file.display().to_string()),
            ("SWITCHYARD_JWT_ALG", "HS256".into()),
        ],
    )
    .spawn()
    .unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(wait_for(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &mut child,
    ));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let output = child.wait_with_output_lossy();
    assert!(output.contains("listening on"), "{output}");
    assert!(
        !output.contains(&key) && !output.contains("a-router-secret-of-our-own"),
        "{output}"
    );
}
