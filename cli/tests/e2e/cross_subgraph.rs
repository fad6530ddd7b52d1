use serde_json::json;
use switchyard_accounts::seed::demo_user;

use crate::harness::{Options, Platform, USERS};

/// A query spanning posts and accounts returns the authors the data says wrote the posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_with_authors_spans_subgraphs() {
    let platform = Platform::start(Options::default()).await;
    let body = platform
        .query("{ feed(first: 20) { nodes { id body author { id handle displayName posts(first: 2) { nodes { id } } } } pageInfo { hasNextPage } } }")
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let nodes = body["data"]["feed"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 20);
    assert_eq!(body["data"]["feed"]["pageInfo"]["hasNextPage"], true);
    let shards = platform.subgraphs[0].store.shard_count();
    let users: Vec<_> = (0..USERS).map(|i| demo_user(i, shards)).collect();
    for node in nodes {
        let author = &node["author"];
        let expected = users
            .iter()
            .find(|u| author["id"] == u.id.to_string().as_str())
            .expect("author is a seeded user");
        assert_eq!(author["handle"], expected.handle.as_str());
        assert_eq!(author["displayName"], expected.display_name.as_str());
        assert!(!author["posts"]["nodes"].as_array().unwrap().is_empty());
    }
    // Newest first across shards.
    let ids: Vec<i64> = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    // And a mutation through the router lands in the right subgraph.
    let (status, _, body) = platform
        .post(json!({
            "query": "mutation($input: SignUpInput!) { signUp(input: $input) { user { id handle } } }",
            "variables": {"input": {"handle": "through_router", "email": "r@example.com", "password": "correct horse battery"}}
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["signUp"]["user"]["handle"], "through_router");
    platform.shutdown().await;
}
