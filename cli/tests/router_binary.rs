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
