//! The request path as an attacker sees it (issue 10): in `enforce` mode nothing the safelist
//! did not check runs, however the request is encoded; bounds hold before any parse; every
//! refusal is `no-store`; legacy `application/json` clients get 200 for document errors.

use serde_json::{Value, json};

use crate::harness::{Options, Platform, codes, read, repo_root};

/// Enforce mode with the shipped manifest; returns the platform and the text of one shipped
/// operation (iOS `HomeFeed`).
async fn enforce() -> (Platform, String) {
    let manifest = repo_root().join("persisted-queries/manifest.json");
    let platform = Platform::start(Options {
        plugins: format!(
            "  persisted_queries:\n    mode: enforce\n    manifest: {}\n  response_cache: {{}}\n",
            manifest.display()
        ),
        ..Options::default()
    })
    .await;
    let text = std::fs::read_to_string(&manifest).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let home = file["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "HomeFeed" && o["clientName"] == "ios")
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    (platform, home)
}

/// A free-form query no manifest lists.
const FORBIDDEN: &str = "{ feed(first: 2) { nodes { id body } } }";

async fn raw_post(platform: &Platform, content_type: &str, body: String) -> (u16, Value) {
    let response = platform
        .http
        .post(&platform.url)
        .header("content-type", content_type)
        .header("apollographql-client-name", "ios")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response).await;
    (status, body)
}

async fn raw_get(platform: &Platform, query_string: &str) -> (u16, Value) {
    let response = platform
        .http
        .get(format!("{}?{query_string}", platform.url))
        .header("apollographql-client-name", "ios")
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response).await;
    (status, body)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safelist_cannot_be_walked_around() {
    let (platform, home) = enforce().await;
    let forbidden = serde_json::to_string(FORBIDDEN).unwrap();
    let allowed = serde_json::to_string(&home).unwrap();
    let posts = [
        // Regression (issue 10): trailing bytes made our old parser give up and pass it on.
        format!(r#"{{"query":{forbidden}}}x"#),
        format!(r#"{{"query":{forbidden}}} {{"query":{allowed}}}"#),
        format!(r#"{{"query":{allowed},"query":{forbidden}}}"#),
        format!(r#"{{"query":{forbidden},"query":{allowed}}}"#),
        format!(r#"{{"qu\u0065ry":{forbidden},"query":{allowed}}}"#),
        format!("\u{feff}{{\"query\":{forbidden}}}"),
        format!(r#"[{{"query":{forbidden}}}]"#),
        format!(r#"{{"query":{forbidden},"variables":{{}},"variables":{{"first":1}}}}"#),
        format!(r#"{{"query":{forbidden},"extensions":"{{}}"}}"#),
        format!(r#"{{"query":[{forbidden}]}}"#),
    ];
    for body in posts {
        let (status, response) = raw_post(&platform, "application/json", body.clone()).await;
        assert!(
            (400..500).contains(&status) && response["data"].is_null(),
            "{body}: {status} {response}"
        );
        assert!(!codes(&response).is_empty(), "{body}: {response}");
    }
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let (status, response) = raw_post(
            &platform,
            content_type,
            format!(r#"{{"query":{forbidden}}}"#),
        )
        .await;
        assert!(
            (400..500).contains(&status) && response["data"].is_null(),
            "{content_type}: {status} {response}"
        );
    }
    let gets = [
        // Regression (issue 10): a repeated `variables` made our old parser give up.
        format!("query={}&variables=x&variables=%7B%7D", enc(FORBIDDEN)),
        format!("query={}&query={}", enc(&home), enc(FORBIDDEN)),
        format!("query={}&query={}", enc(FORBIDDEN), enc(&home)),
        format!("qu%65ry={}&query={}", enc(FORBIDDEN), enc(&home)),
        format!("query={}&extensions=%5B%5D", enc(FORBIDDEN)),
        format!("query={}&variables=%7B", enc(FORBIDDEN)),
        format!("query={}", enc(FORBIDDEN)),
    ];
    for query_string in gets {
        let (status, response) = raw_get(&platform, &query_string).await;
        assert!(
            (400..500).contains(&status) && response["data"].is_null(),
            "{query_string}: {status} {response}"
        );
    }
    // What the apps ship still runs, by text and with its variables.
    let (status, response) = raw_post(
        &platform,
        "application/json; charset=utf-8",
        format!(r#" {{"query":{allowed},"variables":{{"first":2}}}} "#),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["data"]["feed"]["edges"].as_array().map(Vec::len),
        Some(2)
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_hold_before_anything_is_parsed() {
    let platform = Platform::start(Options::default()).await;
    // Regression (issue 10): documents holding a 1.5 MB string literal were parsed and kept.
    let huge = format!(
        r#"{{ feed(first: 1) {{ nodes {{ id }} }} a: __typename @skip(if: true) # {} }}"#,
        "x".repeat(1_500_000)
    );
    let (status, _, body) = platform.post(json!({ "query": huge })).await;
    assert_eq!(status, 413, "{body}");
    assert!(!codes(&body).is_empty(), "{body}");
    let big = format!(
        r#"{{ feed(first: 1) {{ nodes {{ id }} }} }} # {}"#,
        "x".repeat(20_000)
    );
    let (status, _, body) = platform.post(json!({ "query": big })).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["DOCUMENT_TOO_LARGE".to_owned()]),
        "{body}"
    );
    let long = "x".repeat(9_000);
    let (status, body) = raw_get(&platform, &format!("query={long}")).await;
    assert_eq!(
        (status, codes(&body)),
        (414, vec!["URI_TOO_LONG".to_owned()]),
        "{body}"
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_never_stored() {
    let (platform, _) = enforce().await;
    let refusals: Vec<reqwest::RequestBuilder> = vec![
        // 400: not in the safelist.
        platform
            .http
            .post(&platform.url)
            .json(&json!({"query": FORBIDDEN})),
        // 400: not a GraphQL request.
        platform
            .http
            .post(&platform.url)
            .header("content-type", "application/json")
            .body("{"),
        // 400: a document over the size bound.
        platform
            .http
            .post(&platform.url)
            .json(&json!({"query": format!("{{ a }} # {}", "x".repeat(20_000))})),
        // 414: too long.
        platform
            .http
            .get(format!("{}?query={}", platform.url, "x".repeat(9_000)))
            .header("apollo-require-preflight", "true"),
        // 400: apollo-router's own validation error, passed back through the pipeline.
        platform
            .http
            .post(&platform.url)
            .header("accept", "application/graphql-response+json")
            .json(&json!({"query": FORBIDDEN, "documentId": "x"})),
        // 400: a malformed client header.
        platform
            .http
            .post(&platform.url)
            .header("apollographql-client-name", "x".repeat(100))
            .json(&json!({"query": FORBIDDEN})),
    ];
    for request in refusals {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let cache_control = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!((400..500).contains(&status), "{status}");
        assert_eq!(cache_control.as_deref(), Some("no-store"), "{status}");
    }
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_json_clients_get_200_for_document_errors() {
    let platform = Platform::start(Options::default()).await;
    for (query, code) in [
        ("{ feed(first: 1) { nodes { id } ", "PARSING_ERROR"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
    ] {
        let (status, content_type, body) = platform
            .post_with(json!({ "query": query }), &[("accept", "application/json")])
            .await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/json"),
            "{body}"
        );
        let found = codes(&body);
        assert!(
            !found.is_empty() && found.iter().all(|c| c == code),
            "{body}"
        );
        let (status, content_type, body) = platform
            .post_with(
                json!({ "query": query }),
                &[("accept", "application/graphql-response+json")],
            )
            .await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/graphql-response+json"),
            "{body}"
        );
    }
    // Variable coercion failures too.
    let (status, _, body) = platform
        .post_with(
            json!({"query": "query Q($n: Int) { feed(first: $n) { nodes { id } } }", "variables": {"n": "many"}}),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!codes(&body).is_empty(), "{body}");
    // A request that is not GraphQL at all stays a 400.
    let (status, body) = raw_post(&platform, "application/json", "{".to_owned()).await;
    assert_eq!(status, 400, "{body}");
    platform.shutdown().await;
}
