//! The posts subgraph against real shards: SQLite files and the local PostgreSQL.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_kit::id::{IdGenerator, shard_of};
use switchyard_kit::testing::codes;
use switchyard_kit::{ShardedStore, StoreConfig, Viewer, backend_tests};
use switchyard_posts::{Migrator, prepare, schema};

async fn store(config: StoreConfig) -> Arc<ShardedStore> {
    switchyard_kit::testing::migrated_store::<Migrator>(config).await
}

/// Runs one request in its own session, as the HTTP server does.
async fn exec(store: &Arc<ShardedStore>, query: &str, vars: Value) -> Value {
    exec_as(store, Viewer::anonymous(), query, vars).await
}

async fn exec_as(store: &Arc<ShardedStore>, viewer: Viewer, query: &str, vars: Value) -> Value {
    switchyard_kit::testing::execute(&schema(), prepare, store, viewer, query, vars).await
}

/// Author ids spread over all four shards, as accounts would mint them.
fn authors(n: usize) -> Vec<i64> {
    let ids = IdGenerator::new();
    (0..n).map(|i| ids.next(i % 4)).collect()
}

const CREATE: &str = "mutation($input: CreatePostInput!) { createPost(input: $input) { id body mediaUrls author { id } } }";

async fn create(store: &Arc<ShardedStore>, author: i64, body: &str) -> String {
    let r = exec_as(
        store,
        Viewer::user(author),
        CREATE,
        json!({"input": {"body": body}}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["createPost"]["id"].as_str().unwrap().to_owned()
}

async fn posts_live_on_their_authors_shard(config: StoreConfig) {
    let store = store(config).await;
    for author in authors(8) {
        let id: i64 = create(&store, author, "hello").await.parse().unwrap();
        assert_eq!(shard_of(id), shard_of(author));
    }
    let author = authors(1)[0];
    let r = exec_as(
        &store,
        Viewer::user(author),
        CREATE,
        json!({"input": {"body": " hi ", "mediaUrls": ["https://cdn.example.com/1.jpg"]}}),
    )
    .await;
    let post = &r["data"]["createPost"];
    assert_eq!(post["body"], "hi");
    assert_eq!(post["mediaUrls"], json!(["https://cdn.example.com/1.jpg"]));
    assert_eq!(post["author"]["id"], author.to_string());
    let r = exec(
        &store,
        "query($id: ID!) { post(id: $id) { body } }",
        json!({"id": post["id"]}),
    )
    .await;
    assert_eq!(r["data"]["post"]["body"], "hi");
}

async fn user_posts_paginate(config: StoreConfig) {
    let store = store(config).await;
    let author = authors(1)[0];
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create(&store, author, &format!("post {i}")).await);
    }
    ids.reverse(); // newest first
    let q = "query($r: [_Any!]!, $after: String) { _entities(representations: $r) { ... on User { posts(first: 3, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } } } }";
    let rep = json!([{"__typename": "User", "id": author.to_string()}]);
    let mut after = Value::Null;
    let mut seen = Vec::new();
    loop {
        let r = exec(&store, q, json!({"r": rep, "after": after})).await;
        assert!(r["errors"].is_null(), "{r}");
        let posts = &r["data"]["_entities"][0]["posts"];
        seen.extend(
            posts["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
        );
        if !posts["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = posts["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ids);
}

/// The feed is the global newest-first order over every shard, page after page.
async fn feed_merges_shards(config: StoreConfig) {
    let store = store(config).await;
    let mut all = Vec::new();
    for (i, author) in authors(12).into_iter().enumerate() {
        for j in 0..(i % 3 + 1) {
            all.push(
                create(&store, author, &format!("{i}/{j}"))
                    .await
                    .parse::<i64>()
                    .unwrap(),
            );
        }
    }
    all.sort_unstable_by(|a, b| b.cmp(a));
    let q = "query($after: String) { feed(first: 5, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }";
    let mut after = Value::Null;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = exec(&store, q, json!({"after": after})).await;
        let feed = &r["data"]["feed"];
        seen.extend(
            feed["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_str().unwrap().parse::<i64>().unwrap()),
        );
        if !feed["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = feed["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, all);
}

/// 50 posts with their authors' post lists: one statement per shard per level, not per row.
async fn batching_costs_one_statement_per_shard_per_level(config: StoreConfig) {
    let store = store(config).await;
    let authors = authors(40);
    switchyard_posts::seed::seed_posts(&store, &authors, 400)
        .await
        .unwrap();

    let before = store.statements().snapshot();
    let r = exec(
        &store,
        "{ feed(first: 50) { nodes { id author { id } } } }",
        json!({}),
    )
    .await;
    let level1: Vec<u64> = store
        .statements()
        .snapshot()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(r["data"]["feed"]["nodes"].as_array().unwrap().len(), 50);
    assert_eq!(level1, [1, 1, 1, 1], "feed: one statement per shard");

    // The next level: each of those 50 posts' authors with their latest posts.
    let reps: Vec<Value> = r["data"]["feed"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json!({"__typename": "User", "id": n["author"]["id"]}))
        .collect();
    let before = store.statements().snapshot();
    let r = exec(&store, "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { posts(first: 3) { nodes { id } } } } }", json!({"r": reps})).await;
    assert!(r["errors"].is_null(), "{r}");
    let level2: Vec<u64> = store
        .statements()
        .snapshot()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(
        level2.iter().all(|n| *n <= 1),
        "User.posts for 50 authors: {level2:?}"
    );

    // And 50 posts by id (the `_entities` path for Post).
    let ids: Vec<Value> = r["data"]["_entities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["posts"]["nodes"].as_array().unwrap().clone())
        .take(50)
        .map(|n| json!({"__typename": "Post", "id": n["id"]}))
        .collect();
    let before = store.statements().snapshot();
    let r = exec(
        &store,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Post { id body } } }",
        json!({"r": ids}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let level3: Vec<u64> = store
        .statements()
        .snapshot()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(level3.iter().all(|n| *n <= 1), "Post entities: {level3:?}");
    println!(
        "statements per shard: feed(50) {level1:?}, User.posts x50 {level2:?}, Post x50 {level3:?}"
    );
}

async fn delete_post(config: StoreConfig) {
    let store = store(config).await;
    let [owner, other] = authors(2)[..] else {
        unreachable!()
    };
    let id = create(&store, owner, "bye").await;
    let q = "mutation($id: ID!) { deletePost(id: $id) }";
    // Only the author may delete it.
    let r = exec(&store, q, json!({"id": id})).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{r}");
    let r = exec_as(&store, Viewer::user(other), q, json!({"id": id})).await;
    assert_eq!(codes(&r), ["FORBIDDEN"], "{r}");
    let r = exec_as(&store, Viewer::user(owner), q, json!({"id": id})).await;
    assert_eq!(r["data"]["deletePost"], id.as_str());
    let r = exec_as(&store, Viewer::user(owner), q, json!({"id": id})).await;
    assert_eq!(codes(&r), ["NOT_FOUND"]);
    let r = exec(
        &store,
        "query($id: ID!) { post(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(codes(&r), ["NOT_FOUND"]);

    // Each change left its event in the outbox of the post's shard, the second delete none.
    use sea_orm::{EntityTrait, QueryOrder};
    use switchyard_kit::events::outbox::entity as outbox;
    let shard = switchyard_kit::id::shard_of(id.parse().unwrap());
    let events: Vec<(String, String)> = outbox::Entity::find()
        .order_by_asc(outbox::Column::Seq)
        .all(store.primary(shard))
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.kind, row.aggregate))
        .collect();
    let aggregate = format!("Post:{id}");
    assert_eq!(
        events,
        [
            ("PostCreated".to_owned(), aggregate.clone()),
            ("PostDeleted".to_owned(), aggregate)
        ]
    );
}

async fn bad_input_is_rejected(config: StoreConfig) {
    let store = store(config).await;
    let author = Viewer::user(authors(1)[0]);
    // Posting needs a signed-in author.
    let r = exec(&store, CREATE, json!({"input": {"body": "x"}})).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{r}");
    let cases = [
        (json!({"body": ""}), "must not be empty"),
        (json!({"body": "x".repeat(2001)}), "at most 2000"),
        (
            json!({"body": "x", "mediaUrls": ["a", "b", "c", "d", "e"]}),
            "at most 4",
        ),
        (
            json!({"body": "x", "mediaUrls": ["file:///etc/passwd"]}),
            "http(s) URL",
        ),
    ];
    for (input, message) in cases {
        let r = exec_as(&store, author.clone(), CREATE, json!({"input": input})).await;
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{r}"
        );
    }
    for (first, after) in [
        (json!(0), json!(null)),
        (json!(101), json!(null)),
        (json!(5), json!("garbage")),
    ] {
        let r = exec(
            &store,
            "query($f: Int, $a: String) { feed(first: $f, after: $a) { nodes { id } } }",
            json!({"f": first, "a": after}),
        )
        .await;
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{r}");
    }
    let r = exec(&store, "{ feed { nodes { id } } }", json!({})).await;
    assert_eq!(r["data"]["feed"]["nodes"], json!([]), "nothing was written");
}

backend_tests!(
    posts_live_on_their_authors_shard,
    user_posts_paginate,
    feed_merges_shards,
    delete_post,
    bad_input_is_rejected,
);
backend_tests!(batching_costs_one_statement_per_shard_per_level);

#[tokio::test]
async fn service_sdl_matches_committed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "sdl", 1)).await;
    let r = exec(&store, "{ _service { sdl } }", json!({})).await;
    let committed =
        std::fs::read_to_string(switchyard_kit::testing::repo_root().join("schema/posts.graphql"))
            .unwrap();
    assert_eq!(r["data"]["_service"]["sdl"].as_str().unwrap(), committed);
}

/// The per-instance backstop: past its budget a subgraph answers 429 with a GraphQL error,
/// and its health endpoint stays reachable.
#[tokio::test]
async fn backstop_limits_the_instance() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "backstop", 1)).await;
    let options = switchyard_kit::server::ServerOptions {
        max_requests_per_second: 1,
        burst: 2,
        ..Default::default()
    };
    let app = switchyard_posts::router(store, &options).unwrap();
    let request = || {
        axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"query":"{ __typename }"}"#))
            .unwrap()
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.clone().oneshot(request()).await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .map(|r| r.status().as_u16())
            .collect::<Vec<_>>(),
        [200, 200, 429]
    );
    let refused = statuses.pop().unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    let health = app
        .oneshot(
            axum::http::Request::get("/health")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// An oversized body is refused without being read into memory.
#[tokio::test]
async fn oversized_bodies_are_refused() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "limit", 1)).await;
    let app = switchyard_posts::router(store, &Default::default()).unwrap();
    let huge = format!(
        r#"{{"query":"{{ __typename }}","variables":{{"x":"{}"}}}}"#,
        "a".repeat(3 * 1024 * 1024)
    );
    let response = app
        .oneshot(
            axum::http::Request::post("/graphql")
                .header("content-type", "application/json")
                .header("content-length", huge.len())
                .body(axum::body::Body::from(huge))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

/// Every type's and field's `cache_control(..)` agrees with its `@cacheControl` in the schema.
#[tokio::test]
async fn cache_hints_match_the_schema() {
    let problems =
        switchyard_kit::cache::check_hints(switchyard_posts::schema::schema_builder()).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let sdl = switchyard_posts::sdl();
    assert!(
        sdl.contains("@cacheControl(maxAge: 30, scope: PUBLIC)"),
        "{sdl}"
    );
    assert!(
        sdl.contains("@composeDirective(name: \"@cacheControl\")"),
        "{sdl}"
    );
}

/// Responses carry the hint of what they selected and the tags of the posts they hold;
/// mutations name the entities they changed.
#[tokio::test]
async fn responses_carry_cache_hints_and_tags() {
    use switchyard_kit::testing::execute_with_cache_headers;
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "hints", 4)).await;
    let author = authors(1)[0];
    let first = create(&store, author, "one").await;
    let second = create(&store, author, "two").await;
    let run = |viewer: Viewer, query: &'static str, vars: Value| {
        let store = store.clone();
        async move { execute_with_cache_headers(&schema(), prepare, &store, viewer, query, vars).await }
    };

    // The feed's own hint (10 s) is below Post's (30 s); tags name every post, selected id or not.
    let (r, headers) = run(
        Viewer::anonymous(),
        "{ feed(first: 10) { edges { node { body } } } }",
        json!({}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(headers["cache-control"], "max-age=10");
    assert_eq!(
        headers["x-switchyard-cache-tags"],
        format!("Post:{first} Post:{second}")
    );

    let (_, headers) = run(
        Viewer::anonymous(),
        "query($id: ID!) { post(id: $id) { body } }",
        json!({"id": first}),
    )
    .await;
    assert_eq!(headers["cache-control"], "max-age=30");
    assert_eq!(headers["x-switchyard-cache-tags"], format!("Post:{first}"));

    // A user's list has its own tag: their next post drops it, not their cached profile.
    let (_, headers) = run(
        Viewer::anonymous(),
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { posts(first: 5) { nodes { id } } } } }",
        json!({"r": [{"__typename": "User", "id": author.to_string()}]}),
    )
    .await;
    assert_eq!(headers["cache-control"], "max-age=30");
    assert!(
        headers["x-switchyard-cache-tags"].contains(&format!("UserPosts:{author}")),
        "{headers:?}"
    );

    // Errors are never cacheable: no hint, no tags.
    let (r, headers) = run(
        Viewer::anonymous(),
        "{ post(id: \"12\") { body } }",
        json!({}),
    )
    .await;
    assert!(!r["errors"].is_null());
    assert!(!headers.contains_key("cache-control"), "{headers:?}");
    assert!(!headers.contains_key("x-switchyard-cache-tags"));

    let (_, headers) = run(
        Viewer::user(author),
        CREATE,
        json!({"input": {"body": "three"}}),
    )
    .await;
    assert_eq!(
        headers["x-switchyard-cache-invalidate"],
        format!("UserPosts:{author}")
    );
    let (r, headers) = run(
        Viewer::user(author),
        "mutation($id: ID!) { deletePost(id: $id) }",
        json!({"id": first}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        headers["x-switchyard-cache-invalidate"],
        format!("Post:{first} UserPosts:{author}")
    );
}
