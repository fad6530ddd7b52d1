//! The entity cache (`response_cache: entities:`) through the real router and the real
//! subgraphs: personalised feeds that fetch only the viewer's part, PRIVATE entities that
//! stay with their user, a like that drops one post's entity on every replica, entities
//! answered with errors, and Redis dying.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_kit::StoreConfig;

use crate::harness::{Options, Platform, spawn_redis, unique};
use crate::response_cache::{ask, demo_users, plugins, redis_yaml, token_for};

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// The signed-in home feed, as the apps send it (persisted-queries/…/PersonalFeed.graphql).
const PERSONAL_FEED: &str = "query PersonalFeed($first: Int) { feed(first: $first) { edges { node { id body likeCount commentCount viewerHasLiked author { id handle displayName viewerFollows } } } } }";

/// The entity cache on, under the whole-response cache (both share the levels).
const ENTITIES_YAML: &str = "    entities:\n      enabled: true\n";

/// The platform with the entity cache on (in-process levels only).
async fn start() -> Platform {
    Platform::start(Options {
        plugins: plugins(ENTITIES_YAML),
        ..Options::default()
    })
    .await
}

/// The JSON bodies a subgraph received from position `from` on.
fn bodies(platform: &Platform, name: &str, from: usize) -> Vec<Value> {
    let subgraph = platform
        .subgraphs
        .iter()
        .find(|s| s.def.name == name)
        .unwrap();
    subgraph.spy.bodies.lock().unwrap()[from..].to_vec()
}

fn received(platform: &Platform, name: &str) -> usize {
    bodies(platform, name, 0).len()
}

fn representations(body: &Value) -> usize {
    body["variables"]["representations"]
        .as_array()
        .map_or(0, Vec::len)
}

fn feed_nodes(body: &Value) -> Vec<Value> {
    body["data"]["feed"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no feed in {body}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// `query` through the router as demo user `user`; asserts a 200.
async fn read_as(platform: &Platform, query: &str, variables: Value, user: i64) -> Value {
    let token = token_for(user);
    let (status, _, body) = ask(
        &platform.http,
        &platform.url,
        query,
        variables,
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Likes `post` as `user` through `url`.
async fn like(platform: &Platform, url: &str, user: i64, post: &str) {
    let (status, _, body) = ask(
        &platform.http,
        url,
        "mutation($p: ID!) { likePost(postId: $p) { id viewerHasLiked } }",
        json!({"p": post}),
        Some(&token_for(user)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["likePost"]["viewerHasLiked"], true, "{body}");
}

/// 50 signed-in users read their home feed. After the first, no request reaches posts or
/// accounts, and engagement is asked only for the viewer's fields (`viewerHasLiked`,
/// `viewerFollows`), never again for the counts; every user sees their own likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personalised_feeds_fetch_only_the_viewers_part() {
    let platform = start().await;
    let http = &platform.http;
    let users: Vec<i64> = demo_users().into_iter().take(50).collect();
    let (_, _, anonymous) = ask(
        http,
        &platform.url,
        PERSONAL_FEED,
        json!({"first": 20}),
        None,
    )
    .await;
    let posts: Vec<String> = feed_nodes(&anonymous)
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(posts.len(), 20, "{anonymous}");
    // Every user likes one post of the page (user k the post k mod 20).
    for (k, user) in users.iter().enumerate() {
        like(&platform, &platform.url, *user, &posts[k % 20]).await;
    }

    // The first user fills the cache (likes invalidated the counts meanwhile).
    let first = read_as(&platform, PERSONAL_FEED, json!({"first": 20}), users[0]).await;
    let (posts_from, accounts_from, engagement_from) = (
        received(&platform, "posts"),
        received(&platform, "accounts"),
        received(&platform, "engagement"),
    );
    let mut engagement_calls = 0;
    let mut representations_sent = 0;
    for (k, user) in users.iter().enumerate().skip(1) {
        let before = received(&platform, "engagement");
        let body = read_as(&platform, PERSONAL_FEED, json!({"first": 20}), *user).await;
        assert!(body["errors"].is_null(), "{body}");
        let nodes = feed_nodes(&body);
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(
                node["viewerHasLiked"],
                i == k % 20,
                "user {k} sees post {i} as {node}"
            );
            assert!(node["likeCount"].as_i64().is_some(), "{node}");
            assert!(node["author"]["handle"].is_string(), "{node}");
        }
        for fetch in bodies(&platform, "engagement", before) {
            let query = fetch["query"].as_str().unwrap_or_default();
            assert!(
                query.contains("viewer"),
                "engagement was asked for more than the viewer's part: {query}"
            );
            assert!(
                !query.contains("likeCount") && !query.contains("commentCount"),
                "the counts came from engagement again: {query}"
            );
            engagement_calls += 1;
            representations_sent += representations(&fetch);
        }
    }
    assert_eq!(
        received(&platform, "posts"),
        posts_from,
        "posts was asked again"
    );
    assert_eq!(
        received(&platform, "accounts"),
        accounts_from,
        "accounts was asked again"
    );
    // Two viewer fetches per request (the posts' `viewerHasLiked`, the authors'
    // `viewerFollows`), each with only that page's entities.
    assert_eq!(engagement_calls, 49 * 2);
    assert_eq!(received(&platform, "engagement") - engagement_from, 49 * 2);
    let authors: HashSet<String> = feed_nodes(&first)
        .iter()
        .map(|n| n["author"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(representations_sent, 49 * (20 + authors.len()));
    platform.shutdown().await;
}

/// With the entity cache on, a public response is still stored and served whole: the second
/// request is answered before planning, with its `Age`, and reaches no subgraph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_responses_are_still_served_whole() {
    let platform = start().await;
    let http = &platform.http;
    let query =
        "query($n: Int) { feed(first: $n) { edges { node { id likeCount author { handle } } } } }";
    let (_, headers, first) = ask(http, &platform.url, query, json!({"n": 5}), None).await;
    assert_eq!(
        crate::response_cache::header(&headers, "cache-control"),
        "public, max-age=10",
        "{first}"
    );
    let calls: usize = ["posts", "accounts", "engagement"]
        .iter()
        .map(|s| received(&platform, s))
        .sum();
    let (_, headers, second) = ask(http, &platform.url, query, json!({"n": 5}), None).await;
    assert_eq!(second, first);
    assert!(headers.contains_key("age"), "{headers:?}");
    let after: usize = ["posts", "accounts", "engagement"]
        .iter()
        .map(|s| received(&platform, s))
        .sum();
    assert_eq!(after, calls, "a whole-response hit reaches no subgraph");
    platform.shutdown().await;
}

/// A PRIVATE entity is keyed by its user: another user, or an anonymous caller, never gets
/// it (this fails if the key forgets the user), and each gets their own fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_entity_never_reaches_another_user() {
    let platform = start().await;
    let http = &platform.http;
    let users = demo_users();
    let (alice, bob) = (users[1], users[2]);
    let query = "query($n: Int) { feed(first: $n) { edges { node { id viewerHasLiked } } } }";
    let (_, _, page) = ask(http, &platform.url, query, json!({"n": 3}), None).await;
    let liked = feed_nodes(&page)[1]["id"].as_str().unwrap().to_owned();
    like(&platform, &platform.url, alice, &liked).await;

    let seen = |body: &Value| -> Vec<bool> {
        feed_nodes(body)
            .iter()
            .map(|n| n["viewerHasLiked"].as_bool().unwrap())
            .collect()
    };
    let mine = read_as(&platform, query, json!({"n": 3}), alice).await;
    assert_eq!(seen(&mine), [false, true, false], "{mine}");
    // Alice again: her entities come from the cache.
    let before = received(&platform, "engagement");
    let again = read_as(&platform, query, json!({"n": 3}), alice).await;
    assert_eq!(seen(&again), [false, true, false]);
    assert_eq!(
        received(&platform, "engagement"),
        before,
        "alice's entities were cached"
    );
    // Bob and an anonymous caller each get their own answer, fetched.
    let his = read_as(&platform, query, json!({"n": 3}), bob).await;
    assert_eq!(seen(&his), [false, false, false], "{his}");
    assert_eq!(received(&platform, "engagement"), before + 1);
    let (_, _, nobody) = ask(http, &platform.url, query, json!({"n": 3}), None).await;
    assert_eq!(seen(&nobody), [false, false, false], "{nobody}");
    platform.shutdown().await;
}

/// A like on one router drops that post's entities in Redis and in every replica's memory;
/// the next feed on the other router fetches exactly that post again, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_invalidates_that_post_on_every_replica() {
    let prefix = format!("test:ec:{}:", unique());
    let cache = format!("{}{}", redis_yaml(SHARED_REDIS, &prefix), ENTITIES_YAML);
    let platform = Platform::start(Options {
        plugins: plugins(&cache),
        ..Options::default()
    })
    .await;
    let (mut second, second_url, _dir) = platform
        .second_router(&Options {
            plugins: plugins(&cache),
            ..Options::default()
        })
        .await;
    let http = &platform.http;
    let query = "query($n: Int) { feed(first: $n) { edges { node { id likeCount } } } }";
    let (_, _, page) = ask(http, &platform.url, query, json!({"n": 5}), None).await;
    let ids: Vec<String> = feed_nodes(&page)
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    // The second router finds every entity in Redis.
    let before = received(&platform, "engagement");
    let (_, _, copy) = ask(http, &second_url, query, json!({"n": 5}), None).await;
    assert_eq!(copy["data"], page["data"]);
    assert_eq!(received(&platform, "engagement"), before);

    like(&platform, &platform.url, demo_users()[4], &ids[2]).await;
    // Pub/sub is asynchronous: the second router drops the entity within moments, then asks
    // engagement for that one post only.
    let started = Instant::now();
    loop {
        let before = received(&platform, "engagement");
        let (status, _, body) = ask(http, &second_url, query, json!({"n": 5}), None).await;
        assert_eq!(status, 200, "{body}");
        let fetched = bodies(&platform, "engagement", before);
        if !fetched.is_empty() {
            assert_eq!(fetched.len(), 1, "{fetched:?}");
            assert_eq!(
                fetched[0]["variables"]["representations"],
                json!([{"__typename": "Post", "id": ids[2]}]),
                "only the liked post is fetched again"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the second router still serves the liked post from its cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.shutdown().await.unwrap();
    platform.shutdown().await;
}

/// Engagement with one shard refuses the posts of the second shard. async-graphql fails a
/// whole `_entities` list when one entity fails (per-entity errors, as other subgraph
/// servers answer them, are covered beside the stage in `entity_cache::tests`): nothing of
/// that fetch is cached, the next request sends every representation again, and the errors
/// point at the same posts with and without the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_entity_fetch_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let platform = Platform::start(Options {
        plugins: plugins(ENTITIES_YAML),
        stores: Some(std::sync::Arc::new(move |name: &str| {
            (name == "engagement").then(|| StoreConfig::sqlite(&data, name, 1))
        })),
        ..Options::default()
    })
    .await;
    let http = &platform.http;
    let query = "query($n: Int) { feed(first: $n) { edges { node { id likeCount } } } }";
    let error_paths = |body: &Value| -> Vec<Value> {
        body["errors"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|e| e["path"].clone())
            .collect()
    };
    let before = received(&platform, "engagement");
    let (_, _, first) = ask(http, &platform.url, query, json!({"n": 10}), None).await;
    let refused = error_paths(&first);
    assert!(!refused.is_empty(), "{first}");
    let sent = bodies(&platform, "engagement", before);
    assert_eq!(sent.len(), 1);
    for _ in 0..2 {
        let before = received(&platform, "engagement");
        let (_, headers, again) = ask(http, &platform.url, query, json!({"n": 10}), None).await;
        let fetched = bodies(&platform, "engagement", before);
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        assert_eq!(
            fetched[0]["variables"]["representations"], sent[0]["variables"]["representations"],
            "every representation is sent again"
        );
        assert_eq!(error_paths(&again), refused, "{again}");
        assert_eq!(again["data"], first["data"]);
        assert_eq!(
            crate::response_cache::header(&headers, "cache-control"),
            "no-store"
        );
    }
    platform.shutdown().await;
}

/// Redis gone: every fetch goes to its subgraph, nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_sends_every_fetch_to_the_subgraphs() {
    let (mut redis, url) = spawn_redis();
    let prefix = format!("test:ec:{}:", unique());
    let platform = Platform::start(Options {
        plugins: plugins(&format!("{}{}", redis_yaml(&url, &prefix), ENTITIES_YAML)),
        ..Options::default()
    })
    .await;
    redis.kill().unwrap();
    redis.wait().unwrap();
    let users = demo_users();
    let before = received(&platform, "engagement");
    let started = Instant::now();
    for user in &users[..5] {
        let body = read_as(&platform, PERSONAL_FEED, json!({"first": 5}), *user).await;
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(feed_nodes(&body).len(), 5);
    }
    assert!(received(&platform, "engagement") > before);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited on the dead Redis: {:?}",
        started.elapsed()
    );
    platform.shutdown().await;
}
