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
        // A reload that rebuilds the HTTP server closes idle keep-alive connections; a client
        // sending on one at that instant sees the connection close (and would retry).
        let body = match platform
            .http
            .post(&platform.url)
            .json(&json!({"query": INTROSPECT}))
            .send()
            .await
        {
            Ok(response) => crate::harness::read(response).await.2,
            Err(error) => serde_json::json!({"transport": error.to_string()}),
        };
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

/// With hot reload, a changed supergraph applies without a restart: here the accounts routing
/// URL starts out wrong and is corrected in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supergraph_changes_apply_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let committed =
        std::fs::read_to_string(crate::harness::repo_root().join("schema/supergraph.graphql"))
            .unwrap();
    let supergraph = dir.path().join("supergraph.graphql");
    let platform = Platform::start(Options {
        hot_reload: true,
        supergraph: Some(supergraph.clone()),
        // The supergraph's own URLs decide where accounts is.
        override_accounts_url: false,
        listen: Some(crate::harness::free_addr()),
        write_supergraph: Some(Box::new(move |accounts_url: &str| {
            committed.replace("http://127.0.0.1:4001/graphql", accounts_url)
        })),
        ..Options::default()
    })
    .await;
    let query = "{ userByHandle(handle: \"ada_lovelace_0\") { id } }";
    let body = platform.query(query).await;
    assert!(
        body["data"]["userByHandle"]["id"].is_string(),
        "starts right: {body}"
    );

    platform.rewrite_supergraph("http://127.0.0.1:9/graphql");
    wait_until(&platform, query, |body| !body["errors"].is_null()).await;
    let real = platform.subgraphs[0].addr;
    platform.rewrite_supergraph(&format!("http://{real}/graphql"));
    wait_until(&platform, query, |body| {
        body["data"]["userByHandle"]["id"].is_string()
    })
    .await;
    platform.shutdown().await;
}

async fn wait_until(platform: &Platform, query: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let started = Instant::now();
    loop {
        let body = match platform
            .http
            .post(&platform.url)
            .json(&json!({ "query": query }))
            .send()
            .await
        {
            Ok(response) => crate::harness::read(response).await.2,
            Err(error) => serde_json::json!({"transport": error.to_string()}),
        };
        if done(&body) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "supergraph was not reloaded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
