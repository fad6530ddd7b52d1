use serde_json::json;

use crate::harness::{Options, Platform, codes, read};

/// Malformed requests get GraphQL-over-HTTP errors with codes, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_graphql_errors() {
    malformed_requests(Options::default())
        .await
        .shutdown()
        .await;
}

/// The same with the response cache, whose first stage reads requests before apollo-router
/// does: it must leave every malformed request for apollo-router to answer, and serve hits
/// in the content type the client asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_graphql_errors_with_the_cache() {
    let platform = malformed_requests(Options {
        plugins: "  response_cache: {}\n".to_owned(),
        ..Options::default()
    })
    .await;
    let get = |params: &[(&str, &str)]| {
        platform
            .http
            .get(&platform.url)
            .query(params)
            .header("apollo-require-preflight", "true")
            .send()
    };
    let (status, _, body) = read(
        get(&[
            ("query", "{ feed { nodes { id } } }"),
            ("variables", "{nope"),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(!codes(&body).is_empty(), "{body}");
    let batch = platform
        .http
        .post(&platform.url)
        .json(&json!([{"query": "{ __typename }"}, {"query": "{ __typename }"}]))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(batch).await;
    assert_eq!(status, 400, "{body}");
    assert!(!codes(&body).is_empty(), "{body}");
    // A hit keeps the content type the client negotiated.
    for _ in 0..2 {
        let (status, content_type, body) = platform
            .post_with(
                json!({"query": "{ feed(first: 2) { nodes { id } } }"}),
                &[("accept", "application/graphql-response+json")],
            )
            .await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/graphql-response+json"),
            "{body}"
        );
    }
    platform.shutdown().await;
}

async fn malformed_requests(options: Options) -> Platform {
    let platform = Platform::start(options).await;
    let raw = |body: &'static str, content_type: &'static str| {
        platform
            .http
            .post(&platform.url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let (status, _, body) = read(raw("{\"query\":", "application/json").await.unwrap()).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["INVALID_GRAPHQL_REQUEST".to_owned()]),
        "{body}"
    );

    let (status, _, body) = read(raw("", "application/json").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(codes(&body), ["INVALID_GRAPHQL_REQUEST"], "{body}");

    let (status, _, body) = read(raw("<q/>", "application/xml").await.unwrap()).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(codes(&body), ["INVALID_CONTENT_TYPE_HEADER"], "{body}");

    // A simple (CSRF-able) content type is refused before anything runs.
    let (status, _, body) = read(
        raw("{\"query\":\"{ __typename }\"}", "text/plain")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["CSRF_ERROR".to_owned()]),
        "{body}"
    );

    // Document errors: 200 for a client that accepts only `application/json` (GraphQL over
    // HTTP, for legacy clients); `application/graphql-response+json` clients get 400 (below).
    let (status, _, body) = platform
        .post(json!({"query": "{ feed(first: 1) { nodes { id } }"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(codes(&body), ["PARSING_ERROR"], "{body}");

    let (status, _, body) = platform
        .post(json!({"query": "{ feed { nodes { id nope } } }"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(codes(&body), ["GRAPHQL_VALIDATION_FAILED"], "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\""),
        "{body}"
    );

    let (status, _, body) = platform
        .post(json!({"query": "query($id: ID!) { user(id: $id) { id } }"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(codes(&body), ["VALIDATION_INVALID_TYPE_VARIABLE"], "{body}");

    let (status, _, body) = platform.post(json!({"variables": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(!codes(&body).is_empty(), "{body}");

    // Errors from a subgraph keep their code and name the subgraph.
    let (status, _, body) = platform
        .post(json!({"query": "{ user(id: \"abc\") { id } }"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body}");
    assert_eq!(body["errors"][0]["extensions"]["service"], "accounts");

    // GET works for queries.
    let response = platform
        .http
        .get(&platform.url)
        .query(&[("query", "{ feed(first: 1) { nodes { id } } }")])
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["feed"]["nodes"].as_array().unwrap().len(), 1);

    // Clients that ask for application/graphql-response+json get it, errors included.
    let (status, content_type, _) = platform
        .post_with(
            json!({"query": "{ nope }"}),
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/graphql-response+json")
    );
    let (status, content_type, _) = platform
        .post_with(
            json!({"query": "{ __typename }"}),
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/graphql-response+json")
    );
    let (_, content_type, _) = platform.post(json!({"query": "{ __typename }"})).await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    platform
}
