//! The whole platform as `switchyard dev` runs it, observed from outside: traces sent to an
//! in-process OTLP collector (the router over gRPC, the subgraphs and workers over HTTP), the
//! Prometheus endpoints of both processes, and every log line either wrote.
//!
//! One engagement shard is on PostgreSQL with a "replica" (the same database), so the replica
//! role's statements, pools and lag are exported as in production. Uses dev's default ports:
//! it runs in its own test binary, after `tests/dev.rs` (cargo runs test binaries one by one).

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_kit::testing::PgShards;
use switchyard_kit::testing::otlp::{OtlpReceiver, ReceivedSpan, span_tree};

mod support;
use support::Dev;

const ROUTER: &str = "http://127.0.0.1:4000/graphql";
const PASSWORD: &str = "observed-Passw0rd-7781";

fn start_dev(receiver: &OtlpReceiver, data: &std::path::Path, engagement_db: &str) -> Dev {
    Dev::start(data, |command| {
        command
            .args([
                "--log-format",
                "json",
                // This process (subgraphs, workers) over HTTP; the router child reads the
                // environment below and speaks gRPC.
                "--otlp-protocol",
                "http",
                "--otlp-endpoint",
                &receiver.http_endpoint,
            ])
            .env("SWITCHYARD_OTLP_ENDPOINT", &receiver.grpc_endpoint)
            .env("SWITCHYARD_OTLP_PROTOCOL", "grpc")
            .env("SWITCHYARD_OTLP_BATCH_DELAY", "100ms")
            .env("SWITCHYARD_ENGAGEMENT_SHARDS", engagement_db)
            .env("SWITCHYARD_ENGAGEMENT_REPLICAS", engagement_db)
            // Our own crates at debug: a secret must not leak at any level we ship.
            .env("RUST_LOG", "info,switchyard=debug,sqlx=warn,sea_orm=warn");
    })
}

async fn graphql(
    http: &reqwest::Client,
    token: Option<&str>,
    body: Value,
) -> (Value, Option<String>) {
    let mut request = http.post(ROUTER).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let trace = response
        .headers()
        .get("trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.json().await.unwrap(), trace)
}

async fn sign_up(http: &reqwest::Client, handle: &str) -> String {
    let (body, _) = graphql(
        http,
        None,
        json!({"query": "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken } }",
               "variables": {"i": {"handle": handle, "email": format!("{handle}@example.com"), "password": PASSWORD}}}),
    )
    .await;
    body["data"]["signUp"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// The sum of every sample of `metric` whose labels contain all of `labels`.
fn sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metric_names(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

fn find<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect()
}

/// Whether `ancestor` is `span` or above it in its trace.
fn descends(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let mut current = span;
    for _ in 0..64 {
        if current.span_id == ancestor.span_id {
            return true;
        }
        match spans
            .iter()
            .find(|s| s.trace_id == span.trace_id && s.span_id == current.parent_span_id)
        {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_router_to_the_shard_and_on_through_the_workers() {
    let receiver = OtlpReceiver::start().await;
    // As many shards as dev gives every subgraph (a post id names its shard).
    let pg = PgShards::create("obs", 4).await;
    let urls: Vec<String> = pg.config.shards.iter().map(|s| s.primary.clone()).collect();
    let data = tempfile::tempdir().unwrap();
    let dev = start_dev(&receiver, data.path(), &urls.join(","));
    let http = reqwest::Client::new();
    let router_metrics = "http://127.0.0.1:9090/metrics";
    let dev_metrics = "http://127.0.0.1:4002/metrics";
    let before = scrape(&http, dev_metrics).await;

    // Sign up two users; Alice signs in again with her password, and uses that token.
    sign_up(&http, "obs_alice").await;
    let bob = sign_up(&http, "obs_bob").await;
    let (body, _) = graphql(
        &http,
        None,
        json!({"query": "mutation($i: SignInInput!) { signIn(input: $i) { accessToken } }",
               "variables": {"i": {"login": "obs_alice", "password": PASSWORD}}}),
    )
    .await;
    let alice = body["data"]["signIn"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let (body, _) = graphql(
        &http,
        Some(&alice),
        json!({"query": "mutation { registerDevice(platform: IOS, token: \"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\") { id } }"}),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    let (body, _) = graphql(
        &http,
        Some(&alice),
        json!({"query": "mutation { createPost(input: {body: \"traced\"}) { id } }"}),
    )
    .await;
    let post = body["data"]["createPost"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();

    // 1. A query: router -> posts -> accounts and engagement (loader batches, shard reads).
    let (body, trace) = graphql(
        &http,
        Some(&alice),
        json!({"query": "query TraceMe { feed(first: 5) { nodes { id body likeCount author { handle } } } }"}),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    let trace = trace.expect("the router names the trace in `trace-id`");
    let has = |spans: &[ReceivedSpan], name: &str, service: &str| {
        spans
            .iter()
            .any(|s| s.trace_id == trace && s.name == name && s.service == service)
    };
    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.parent_span_id.is_empty())
                && has(spans, "store.statement", "switchyard-dev")
                && spans
                    .iter()
                    .filter(|s| s.trace_id == trace && s.name == "graphql.request")
                    .count()
                    >= 3
        })
        .await;
    let tree = span_tree(&spans, &trace);
    println!("trace {trace}:\n{tree}");
    for (name, service) in [
        ("switchyard.authenticate", "switchyard-router"),
        ("switchyard.safelist", "switchyard-router"),
        ("switchyard.limits", "switchyard-router"),
        ("switchyard.read", "switchyard-router"),
        ("switchyard.document", "switchyard-router"),
        ("graphql.request", "switchyard-dev"),
        ("loader.batch", "switchyard-dev"),
        ("store.shard", "switchyard-dev"),
        ("store.statement", "switchyard-dev"),
    ] {
        assert!(
            has(&spans, name, service),
            "no {name} from {service}:\n{tree}"
        );
    }
    // Parent links: one root (the router's), every other span's parent is in the trace.
    let of_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let ids: HashSet<&str> = of_trace.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&&ReceivedSpan> = of_trace
        .iter()
        .filter(|s| !ids.contains(s.parent_span_id.as_str()))
        .collect();
    assert_eq!(roots.len(), 1, "one root:\n{tree}");
    assert_eq!(roots[0].service, "switchyard-router", "{tree}");
    let router_root = *roots[0];
    for request in find(&spans, &trace, "graphql.request") {
        let parent = of_trace
            .iter()
            .find(|s| s.span_id == request.parent_span_id)
            .unwrap();
        assert_eq!(parent.service, "switchyard-router", "{tree}");
        assert!(descends(&spans, request, router_root));
    }
    let accounts_request = find(&spans, &trace, "graphql.request")
        .into_iter()
        .find(|s| s.attributes.get("subgraph").map(String::as_str) == Some("accounts"))
        .unwrap_or_else(|| panic!("no accounts request:\n{tree}"));
    let batch = find(&spans, &trace, "loader.batch")
        .into_iter()
        .find(|s| descends(&spans, s, accounts_request))
        .unwrap_or_else(|| panic!("no accounts loader batch:\n{tree}"));
    assert_eq!(batch.attributes["subgraph"], "accounts");
    assert!(
        batch.attributes["keys"].parse::<u64>().unwrap() >= 1,
        "{batch:?}"
    );
    assert!(batch.attributes.contains_key("shards"), "{batch:?}");
    let shard = find(&spans, &trace, "store.shard")
        .into_iter()
        .find(|s| descends(&spans, s, batch))
        .unwrap_or_else(|| panic!("no shard span under the batch:\n{tree}"));
    assert!(shard.attributes.contains_key("rows"), "{shard:?}");
    let statement = find(&spans, &trace, "store.statement")
        .into_iter()
        .find(|s| descends(&spans, s, shard))
        .unwrap_or_else(|| panic!("no statement under the shard:\n{tree}"));
    assert_eq!(
        statement.attributes["db.operation"], "select",
        "{statement:?}"
    );
    assert!(
        statement
            .attributes
            .keys()
            .all(|k| !k.contains("statement") || k == "db.operation"),
        "no statement text or values: {statement:?}"
    );
    // The engagement read went to the replica role.
    assert!(
        find(&spans, &trace, "store.shard")
            .iter()
            .any(|s| s.attributes["subgraph"] == "engagement" && s.attributes["role"] == "replica"),
        "{tree}"
    );

    // 2. A like: the trace goes on through the relay into the counters, notifications and
    // push workers, and the push itself.
    let (body, like_trace) = graphql(
        &http,
        Some(&bob),
        json!({"query": "mutation($p: ID!) { likePost(postId: $p) { id } }", "variables": {"p": post}}),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    let like_trace = like_trace.unwrap();
    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == like_trace && s.name == "push.send")
                && spans
                    .iter()
                    .any(|s| s.trace_id == like_trace && s.parent_span_id.is_empty())
        })
        .await;
    let like_tree = span_tree(&spans, &like_trace);
    println!("like trace {like_trace}:\n{like_tree}");
    let handled: HashSet<&str> = find(&spans, &like_trace, "event.handle")
        .iter()
        .filter_map(|s| s.attributes.get("group").map(String::as_str))
        .collect();
    for group in ["counters", "notifications", "push"] {
        assert!(
            handled.contains(group),
            "no {group} handler in:\n{like_tree}"
        );
    }
    assert!(
        !find(&spans, &like_trace, "outbox.relay").is_empty(),
        "{like_tree}"
    );
    let push = find(&spans, &like_trace, "push.send")[0];
    assert_eq!(push.attributes["provider"], "log");
    assert_eq!(push.attributes["outcome"], "delivered");
    let like_root: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == like_trace && s.parent_span_id.is_empty())
        .collect();
    assert!(descends(&spans, push, like_root[0]), "{like_tree}");

    // 3. Refusals the router counts: unreadable JSON, a bad token, an operation too deep.
    let bad = http
        .post(ROUTER)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    graphql(&http, Some("not-a-jwt"), json!({"query": "{ __typename }"})).await;
    let wide: String = (0..40).map(|i| format!("a{i}: __typename ")).collect();
    let deep = format!("{{ {wide} }}");
    graphql(&http, Some(&alice), json!({"query": deep})).await;

    // 4. Metrics: the series exist and moved.
    let router = scrape(&http, router_metrics).await;
    let after = scrape(&http, dev_metrics).await;
    for (metric, labels) in [
        (
            "switchyard_pipeline_refusals_total",
            &["stage=\"read\""][..],
        ),
        ("switchyard_jwt_failures_total", &["reason=\"malformed\""]),
        ("switchyard_operation_limits_refusals_total", &[]),
        ("switchyard_response_cache_lookups_total", &[]),
    ] {
        assert!(
            sum(&router, metric, labels) >= 1.0,
            "{metric} {labels:?}:\n{router}"
        );
    }
    let moved = |metric: &str, labels: &[&str]| {
        let (b, a) = (sum(&before, metric, labels), sum(&after, metric, labels));
        assert!(
            a > b,
            "{metric} {labels:?} did not move ({b} -> {a}):\n{after}"
        );
    };
    moved(
        "switchyard_subgraph_requests_total",
        &["subgraph=\"posts\"", "operation=\"TraceMe__posts__0\""],
    );
    moved(
        "switchyard_subgraph_request_duration_seconds_count",
        &["subgraph=\"accounts\""],
    );
    moved(
        "switchyard_loader_batch_keys_count",
        &["subgraph=\"accounts\""],
    );
    moved(
        "switchyard_store_statement_duration_seconds_count",
        &["subgraph=\"engagement\"", "role=\"replica\""],
    );
    moved(
        "switchyard_store_statement_duration_seconds_count",
        &[
            "subgraph=\"engagement\"",
            "role=\"primary\"",
            "statement=\"insert\"",
        ],
    );
    moved(
        "switchyard_relay_published_events_total",
        &["subgraph=\"engagement\""],
    );
    moved(
        "switchyard_worker_events_total",
        &["group=\"notifications\"", "outcome=\"handled\""],
    );
    moved(
        "switchyard_worker_handler_duration_seconds_count",
        &["group=\"push\""],
    );
    moved(
        "switchyard_push_sends_total",
        &["provider=\"log\"", "outcome=\"delivered\""],
    );
    for (metric, labels) in [
        (
            "switchyard_store_pool_connections",
            &["subgraph=\"engagement\"", "role=\"replica\""][..],
        ),
        (
            "switchyard_store_pool_max_connections",
            &["subgraph=\"posts\""],
        ),
        (
            "switchyard_store_replica_lag_seconds",
            &["subgraph=\"engagement\""],
        ),
        (
            "switchyard_outbox_unsent_events",
            &["subgraph=\"engagement\""],
        ),
        ("switchyard_outbox_lag_up", &["subgraph=\"engagement\""]),
        ("switchyard_consumer_group_lag_entries", &["group=\"push\""]),
        (
            "switchyard_consumer_group_pending_entries",
            &["group=\"counters\""],
        ),
        (
            "switchyard_dead_letter_entries",
            &["group=\"notifications\""],
        ),
        ("switchyard_worker_bus_errors_total", &["group=\"cache\""]),
    ] {
        assert!(
            after
                .lines()
                .any(|l| l.starts_with(metric) && labels.iter().all(|x| l.contains(x))),
            "no {metric} {labels:?}:\n{after}"
        );
    }
    assert_eq!(sum(&after, "switchyard_outbox_lag_up", &[]), 4.0, "{after}");
    // No label carries a user id or raw client input.
    for line in after.lines().chain(router.lines()) {
        assert!(
            !line.contains("obs_alice") && !line.contains("obs_bob"),
            "{line}"
        );
    }

    // 5. Dashboards and alerts reference only series the processes export.
    let exported: HashSet<String> = metric_names(&router)
        .into_iter()
        .chain(metric_names(&after))
        .collect();
    let referenced = switchyard_kit::testing::promql::referenced_metrics(
        &switchyard_kit::testing::repo_root().join("charts/switchyard"),
    )
    .unwrap();
    assert!(referenced.len() >= 20, "{referenced:?}");
    let missing: Vec<&String> = referenced
        .iter()
        .filter(|m| !exported.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "referenced but not exported: {missing:?}"
    );

    // 6. Logs: JSON with trace ids, one line per subgraph request, and neither the password
    // nor a token anywhere.
    let _ = Command::new("kill")
        .args(["-INT", &dev.child.id().to_string()])
        .status();
    let lines = dev.lines.lock().unwrap().clone();
    let requests: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "switchyard::request")
        .collect();
    assert!(
        requests
            .iter()
            .any(|r| r["operation"] == "TraceMe__posts__0"
                && r["outcome"] == "ok"
                && r["duration_ms"].is_number()
                && r["trace_id"] == trace.as_str()),
        "no request line for the traced query"
    );
    for line in &lines {
        for secret in [PASSWORD, alice.as_str(), bob.as_str()] {
            assert!(!line.contains(secret), "a secret in the logs: {line}");
        }
    }
    drop(dev);
    pg.drop_all().await;
}
