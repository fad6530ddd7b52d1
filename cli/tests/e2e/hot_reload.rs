use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Options, Platform, router_yaml};

const INTROSPECT: &str = "{ __schema { queryType { name } } }";

/// With hot reload, a changed router.yaml applies without a restart: introspection off → on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_without_restart() {
    let platform = Platform::start(Options {
        hot_reload: true,
        introspection: false,
        ..Options::default()
    })
    .await;
    let (_, _, body) = platform.post(json!({"query": INTROSPECT})).await;
    assert!(
        body["data"].is_null() || body["data"]["__schema"].is_null(),
        "introspection is off: {body}"
    );

    // Same listen address, so the router keeps its socket and clients keep their URL.
    let addr = platform
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/graphql")
        .to_owned();
    let yaml = router_yaml(
        &platform.subgraphs,
        &Options {
            introspection: true,
            ..Options::default()
        },
    )
    .replacen("listen: 127.0.0.1:0", &format!("listen: {addr}"), 1);
    std::fs::write(&platform.config_path, yaml).unwrap();
    let started = Instant::now();
    loop {
        let (_, _, body) = platform.post(json!({"query": INTROSPECT})).await;
        if body["data"]["__schema"]["queryType"]["name"] == "Query" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "config was not reloaded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Regular traffic kept working through the reload.
    let body = platform.query("{ feed(first: 1) { nodes { id } } }").await;
    assert!(body["errors"].is_null(), "{body}");
    platform.shutdown().await;
}
