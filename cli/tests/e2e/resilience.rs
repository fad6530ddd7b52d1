use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Options, Platform};

fn service_of_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["service"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

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

/// One answer seen by the load while the subgraph went down and came back.
struct Seen {
    status: u16,
    posts_whole: bool,
    error_services: Vec<String>,
    /// Set once the restarted subgraph has answered a whole request.
    after_recovery: bool,
}

/// Chaos under load: eight clients query posts and accounts without pause while accounts is
/// killed and restarted. The router never answers 5xx, posts' data is in every answer, the
/// only errors name accounts, and once accounts is back every answer is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgraph_killed_and_restarted_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut platform = Platform::start(Options::default()).await;
    let some_user = switchyard_accounts::seed::demo_user_ids(1, 2)[0];
    let query = PARTIAL.replace("\"1\"", &format!("\"{some_user}\""));
    let stop = Arc::new(AtomicBool::new(false));
    let recovered = Arc::new(AtomicBool::new(false));
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, url, query) = (platform.http.clone(), platform.url.clone(), query.clone());
        let (stop, recovered, seen_tx) = (stop.clone(), recovered.clone(), seen_tx.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let after_recovery = recovered.load(Ordering::SeqCst);
                let response = http
                    .post(&url)
                    .json(&serde_json::json!({ "query": query }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let _ = seen_tx.send(Seen {
                    status,
                    posts_whole: body["data"]["feed"]["nodes"].as_array().map(Vec::len) == Some(2),
                    error_services: service_of_errors(&body),
                    after_recovery,
                });
            }
        }));
    }
    drop(seen_tx);
    // Wait for an answer that shows accounts missing, then one that shows it back: events, not
    // sleeps.
    let mut seen = Vec::new();
    let mut next = async |seen: &mut Vec<Seen>| -> Option<usize> {
        let answer = tokio::time::timeout(Duration::from_secs(20), seen_rx.recv())
            .await
            .ok()??;
        seen.push(answer);
        Some(seen.len() - 1)
    };
    while seen.len() < 20 {
        next(&mut seen).await.expect("load before the kill");
    }
    platform.subgraph("accounts").stop().await;
    let killed_at = Instant::now();
    loop {
        let i = next(&mut seen).await.expect("load while accounts is down");
        if !seen[i].error_services.is_empty() {
            break;
        }
    }
    let noticed_after = killed_at.elapsed();
    // Keep load on the outage for a while.
    for _ in 0..50 {
        next(&mut seen).await.expect("load while accounts is down");
    }
    platform.subgraph("accounts").restart().await;
    let restarted_at = Instant::now();
    loop {
        let i = next(&mut seen).await.expect("load after the restart");
        if seen[i].error_services.is_empty() {
            break;
        }
        assert!(
            restarted_at.elapsed() < Duration::from_secs(5),
            "not recovered 5 s after accounts returned"
        );
    }
    let recovery = restarted_at.elapsed();
    recovered.store(true, Ordering::SeqCst);
    let mut whole_after = 0;
    while whole_after < 50 {
        let i = next(&mut seen).await.expect("load after recovery");
        if seen[i].after_recovery {
            assert!(
                seen[i].error_services.is_empty(),
                "an error after recovery: {:?}",
                seen[i].error_services
            );
            whole_after += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    while let Ok(answer) = seen_rx.try_recv() {
        seen.push(answer);
    }
    for answer in &seen {
        assert!(answer.status < 500, "a {} during the chaos", answer.status);
        assert_eq!(answer.status, 200);
        assert!(answer.posts_whole, "posts' data went missing");
        assert!(
            answer.error_services.iter().all(|s| s == "accounts"),
            "{:?}",
            answer.error_services
        );
    }
    let failed = seen.iter().filter(|a| !a.error_services.is_empty()).count();
    println!(
        "{} answers, {failed} with accounts errors; outage seen after {noticed_after:?}, whole again {recovery:?} after the restart",
        seen.len()
    );
    platform.shutdown().await;
}
