use std::time::{Duration, Instant};

use crate::harness::{Options, Platform};
use crate::steady_load::service_of_errors;

const PARTIAL: &str = "{ feed(first: 2) { nodes { id body } } user(id: \"1\") { id } }";

/// accounts down: posts data still comes back, the error names accounts (no 500); when
/// accounts returns, the next request is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgraph_down_and_back() {
    let mut platform = Platform::start(Options::default()).await;
    let some_user = switchyard_accounts::seed::demo_user_ids(1, 2)[0];
    let query = PARTIAL.replace("\"1\"", &format!("\"{some_user}\""));

    let body = platform.query(&query).await;
    assert!(body["errors"].is_null(), "{body}");

    platform.subgraph("accounts").stop().await;
    let (status, _, body) = platform.post(serde_json::json!({ "query": query })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["feed"]["nodes"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert!(body["data"]["user"].is_null(), "{body}");
    assert!(
        service_of_errors(&body).contains(&"accounts".to_owned()),
        "{body}"
    );

    platform.subgraph("accounts").restart().await;
    let body = platform.query(&query).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["user"]["id"], some_user.to_string());
    platform.shutdown().await;
}

/// A slow subgraph is cut off at its configured timeout, and the rest of the data survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subgraph_times_out() {
    let mut platform = Platform::start(Options {
        accounts_timeout: "500ms",
        ..Options::default()
    })
    .await;
    *platform.subgraph("accounts").spy.delay.lock().unwrap() = Duration::from_secs(5);
    let started = Instant::now();
    let body = platform.query(PARTIAL).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(
        body["data"]["feed"]["nodes"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert!(
        service_of_errors(&body).contains(&"accounts".to_owned()),
        "{body}"
    );
    let text = body["errors"].to_string().to_lowercase();
    assert!(
        text.contains("timed out") || text.contains("timeout"),
        "{body}"
    );
    *platform.subgraph("accounts").spy.delay.lock().unwrap() = Duration::ZERO;
    platform.shutdown().await;
}

/// Chaos under load: eight clients query posts and accounts without pause while accounts is
/// killed and restarted. The router never answers 5xx, posts' data is in every answer, the
/// only errors name accounts, and once accounts is back every answer is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgraph_killed_and_restarted_under_load() {
    use crate::steady_load::{SteadyLoad, posting};

    let mut platform = Platform::start(Options::default()).await;
    let some_user = switchyard_accounts::seed::demo_user_ids(1, 2)[0];
    let query = PARTIAL.replace("\"1\"", &format!("\"{some_user}\""));
    let mut load = SteadyLoad::start(
        8,
        posting(platform.http.clone(), platform.url.clone(), move |_, _| {
            (serde_json::json!({ "query": query }), vec![])
        }),
    );
    load.take(20).await;
    load.phase(1);
    platform.subgraph("accounts").stop().await;
    let noticed_after = load
        .until(Duration::from_secs(10), "accounts errors", |a| {
            a.phase == 1 && a.has_errors()
        })
        .await;
    load.take(50).await;
    load.phase(2);
    platform.subgraph("accounts").restart().await;
    let recovery = load
        .until(
            Duration::from_secs(5),
            "whole again after the restart",
            |a| a.phase == 2 && !a.has_errors(),
        )
        .await;
    load.phase(3);
    load.take_phase(3, 50).await;
    let seen = load.stop().await;
    for answer in &seen {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.body["data"]["feed"]["nodes"]
                .as_array()
                .map(Vec::len),
            Some(2),
            "posts' data went missing: {answer:?}"
        );
        assert!(
            answer.error_services().iter().all(|s| s == "accounts"),
            "{answer:?}"
        );
        if answer.phase == 3 {
            assert!(!answer.has_errors(), "an error after recovery: {answer:?}");
        }
    }
    let failed = seen.iter().filter(|a| a.has_errors()).count();
    println!(
        "{} answers, {failed} with accounts errors; outage seen after {noticed_after:?}, whole again {recovery:?} after the restart",
        seen.len()
    );
    platform.shutdown().await;
}
