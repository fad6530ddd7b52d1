use serde_json::json;

use crate::harness::{Options, Platform};

/// A client-sent `x-switchyard-user-id` never reaches a subgraph, even though the router is
/// configured to forward every other `x-` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_headers_from_clients_are_stripped() {
    let mut platform = Platform::start(Options::default()).await;
    platform
        .subgraph("accounts")
        .spy
        .headers
        .lock()
        .unwrap()
        .clear();
    let (status, _, body) = platform
        .post_with(
            json!({"query": "{ userByHandle(handle: \"ada_lovelace_0\") { id } }"}),
            &[
                ("x-switchyard-user-id", "1"),
                ("X-Switchyard-Scopes", "admin"),
                ("x-trace-me", "yes"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = platform
        .subgraph("accounts")
        .spy
        .headers
        .lock()
        .unwrap()
        .clone();
    assert!(!seen.is_empty(), "the request reached accounts");
    for headers in &seen {
        assert_eq!(
            headers.get("x-trace-me").map(|v| v.to_str().unwrap()),
            Some("yes"),
            "propagation works"
        );
        assert!(headers.get("x-switchyard-user-id").is_none(), "{headers:?}");
        assert!(headers.get("x-switchyard-scopes").is_none(), "{headers:?}");
    }
    platform.shutdown().await;
}
