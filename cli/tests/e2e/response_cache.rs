//! `switchyard.response_cache` through the real router, the real subgraphs and real Redis:
//! hits and misses, expiry, PRIVATE isolation, tag invalidation across two routers (by a
//! subgraph mutation and by the admin endpoint), single flight, and Redis dying mid-test.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{
    Options, Platform, USERS, free_addr, read, spawn_redis, spawn_redis_at, unique,
};

pub const ADMIN_TOKEN: &str = "test-invalidation-token-0123456789";

/// jwt_auth with the development key, persisted queries, and the cache (with `cache_yaml`
/// lines under it).
pub fn plugins(cache_yaml: &str) -> String {
    let manifest = crate::harness::repo_root().join("persisted-queries/manifest.json");
    format!(
        r#"{jwt}  persisted_queries:
    mode: allow_apq
    manifest: {manifest}
  response_cache:
{cache_yaml}"#,
        jwt = crate::harness::dev_jwt_plugin(),
        manifest = manifest.display()
    )
}

pub fn redis_yaml(url: &str, prefix: &str) -> String {
    format!(
        "    redis:\n      url: {url}\n      key_prefix: \"{prefix}\"\n      channel: \"{prefix}invalidations\"\n      timeout: 200ms\n"
    )
}

/// The platform, its router caching in the shared Redis under a fresh key prefix (returned),
/// with `extra` YAML lines for the cache.
async fn start_with_redis(extra: &str) -> (Platform, String) {
    let prefix = format!("test:rc:{}:", unique());
    let cache = format!("{}{extra}", redis_yaml(SHARED_REDIS, &prefix));
    let platform = Platform::start(Options {
        plugins: plugins(&cache),
        ..Options::default()
    })
    .await;
    (platform, prefix)
}

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

pub fn invalidation_yaml(listen: std::net::SocketAddr) -> String {
    format!("    invalidation:\n      listen: {listen}\n      token: {ADMIN_TOKEN}\n")
}

/// An access token for demo user `id`, signed with the development key.
pub fn token_for(id: i64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
    use switchyard_accounts::tokens::{DEV_AUDIENCE, DEV_HMAC_SECRET, DEV_ISSUER};
    let now = get_current_timestamp();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("dev".into());
    let claims = json!({"sub": id.to_string(), "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
                        "exp": now + 300, "iat": now, "scope": "read write"});
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(DEV_HMAC_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn demo_users() -> Vec<i64> {
    switchyard_accounts::seed::demo_user_ids(USERS, 2)
}

/// POSTs `query` to `url` as `token`'s user; returns status, headers and body.
pub async fn ask(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> (u16, HeaderMap, Value) {
    let mut request = http
        .post(url)
        .header("apollographql-client-name", "ios")
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    let (status, _, body) = read(response).await;
    (status, headers, body)
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// Requests each subgraph has served so far.
pub fn calls(platform: &Platform, name: &str) -> usize {
    platform
        .subgraphs
        .iter()
        .find(|s| s.def.name == name)
        .unwrap()
        .spy
        .headers
        .lock()
        .unwrap()
        .len()
}

/// The keys matching `pattern`, with their remaining time to live (ms).
pub async fn redis_keys(url: &str, pattern: &str) -> Vec<(String, i64)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((key, ttl));
    }
    out
}

const FEED: &str =
    "query Feed($n: Int!) { feed(first: $n) { edges { node { id body author { handle } } } } }";

/// A miss fills both levels; the next request is a hit with `Age`; entries expire with their
/// time to live (capped to 2 s here) in the router and in Redis. Mutations and responses
/// with errors are never cached and say `no-store`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_misses_and_expiry() {
    let redis_url = SHARED_REDIS;
    let (platform, prefix) = start_with_redis("    max_ttl: 2s\n").await;
    let http = &platform.http;
    let vars = json!({"n": 5});

    let (status, headers, first) = ask(http, &platform.url, FEED, vars.clone(), None).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["errors"].is_null(), "{first}");
    // The feed's 10 s hint, capped by max_ttl.
    assert_eq!(header(&headers, "cache-control"), "public, max-age=2");
    assert!(header(&headers, "vary").contains("apollographql-client-name"));
    let posts_calls = calls(&platform, "posts");
    let accounts_calls = calls(&platform, "accounts");

    // Redis holds the entry and its tags, with the entry's time to live, before the response
    // goes out (so every replica can find what a client has seen).
    let entries = redis_keys(redis_url, &format!("{prefix}e:*")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].1 > 0 && entries[0].1 <= 2_000, "{entries:?}");
    let tags = redis_keys(redis_url, &format!("{prefix}t:*")).await;
    assert!(tags.iter().any(|(k, _)| k.contains(":t:Post:")), "{tags:?}");
    assert!(tags.iter().any(|(k, _)| k.contains(":t:User:")), "{tags:?}");

    let (_, headers, second) = ask(http, &platform.url, FEED, vars.clone(), None).await;
    assert_eq!(second, first);
    assert_eq!(header(&headers, "cache-control"), "public, max-age=2");
    assert!(!header(&headers, "age").is_empty());
    assert_eq!(
        calls(&platform, "posts"),
        posts_calls,
        "served from the cache"
    );
    assert_eq!(calls(&platform, "accounts"), accounts_calls);

    // Formatting does not change the key; variables do.
    let reformatted = "# the same operation\nquery Feed($n: Int!) {\n  feed(first: $n) { edges { node { id body author { handle } } } }\n}";
    ask(http, &platform.url, reformatted, vars.clone(), None).await;
    assert_eq!(calls(&platform, "posts"), posts_calls);
    ask(http, &platform.url, FEED, json!({"n": 6}), None).await;
    assert_eq!(calls(&platform, "posts"), posts_calls + 1);

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(
        redis_keys(redis_url, &format!("{prefix}e:*"))
            .await
            .is_empty()
    );
    let (_, _, third) = ask(http, &platform.url, FEED, vars.clone(), None).await;
    assert_eq!(third, first);
    assert_eq!(
        calls(&platform, "posts"),
        posts_calls + 2,
        "expired: fetched again"
    );

    // Errors: not cached, every time a subgraph round.
    let missing = "{ post(id: \"12\") { body } }";
    let (_, headers, body) = ask(http, &platform.url, missing, json!({}), None).await;
    assert!(!body["errors"].is_null());
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let before = calls(&platform, "posts");
    ask(http, &platform.url, missing, json!({}), None).await;
    assert_eq!(calls(&platform, "posts"), before + 1);

    // Mutations: never cached.
    let author = demo_users()[0];
    let create = "mutation($i: CreatePostInput!) { createPost(input: $i) { id } }";
    let token = token_for(author);
    let (_, headers, body) = ask(
        http,
        &platform.url,
        create,
        json!({"i": {"body": "fresh"}}),
        Some(&token),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    platform.shutdown().await;
}

/// A PRIVATE response (`me`) is only ever served to the user it was made for; an anonymous
/// one is not cached at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_responses_stay_with_their_user() {
    let (platform, _) = start_with_redis("").await;
    let http = &platform.http;
    let users = demo_users();
    let (alice, bob) = (token_for(users[0]), token_for(users[1]));
    let me = "{ me { id handle } }";

    let (_, headers, a1) = ask(http, &platform.url, me, json!({}), Some(&alice)).await;
    assert_eq!(a1["data"]["me"]["id"], users[0].to_string(), "{a1}");
    assert_eq!(header(&headers, "cache-control"), "private, max-age=30");
    let accounts_calls = calls(&platform, "accounts");

    let (_, headers, a2) = ask(http, &platform.url, me, json!({}), Some(&alice)).await;
    assert_eq!(a2, a1);
    assert_eq!(header(&headers, "cache-control"), "private, max-age=30");
    assert_eq!(calls(&platform, "accounts"), accounts_calls, "alice's copy");

    // Same operation, same variables, same client: only the user differs.
    let (_, _, b1) = ask(http, &platform.url, me, json!({}), Some(&bob)).await;
    assert_eq!(b1["data"]["me"]["id"], users[1].to_string(), "{b1}");
    assert_eq!(calls(&platform, "accounts"), accounts_calls + 1);

    let (_, headers, anonymous) = ask(http, &platform.url, me, json!({}), None).await;
    assert!(anonymous["data"]["me"].is_null(), "{anonymous}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    ask(http, &platform.url, me, json!({}), None).await;
    assert_eq!(calls(&platform, "accounts"), accounts_calls + 3);

    // A public response is shared by everyone, signed in or not.
    let user = "query($id: ID!) { user(id: $id) { handle } }";
    let vars = json!({"id": users[2].to_string()});
    let (_, headers, _) = ask(http, &platform.url, user, vars.clone(), Some(&alice)).await;
    assert_eq!(header(&headers, "cache-control"), "public, max-age=60");
    let before = calls(&platform, "accounts");
    ask(http, &platform.url, user, vars.clone(), Some(&bob)).await;
    ask(http, &platform.url, user, vars, None).await;
    assert_eq!(calls(&platform, "accounts"), before);
    platform.shutdown().await;
}

/// Two routers share Redis. A profile change made through one drops the cached profile in
/// both; so does the admin endpoint, which refuses callers without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_reaches_every_router() {
    let prefix = format!("test:rc:{}:", unique());
    let redis = redis_yaml(SHARED_REDIS, &prefix);
    let admin = free_addr();
    let platform = Platform::start(Options {
        plugins: plugins(&format!("{redis}{}", invalidation_yaml(admin))),
        ..Options::default()
    })
    .await;
    let (mut second, second_url, _dir) = platform
        .second_router(&Options {
            plugins: plugins(&redis),
            ..Options::default()
        })
        .await;
    let http = &platform.http;
    let users = demo_users();
    let profile = "query($id: ID!) { user(id: $id) { id bio } }";
    let vars = json!({"id": users[3].to_string()});

    let (_, _, original) = ask(http, &platform.url, profile, vars.clone(), None).await;
    let accounts_calls = calls(&platform, "accounts");
    // The second router finds it in Redis, and keeps a copy in memory.
    let (_, headers, copy) = ask(http, &second_url, profile, vars.clone(), None).await;
    assert_eq!(copy, original);
    assert_eq!(header(&headers, "cache-control"), "public, max-age=60");
    assert_eq!(calls(&platform, "accounts"), accounts_calls);

    // The owner edits the profile through the first router.
    let edit = "mutation($id: ID!) { updateProfile(id: $id, input: {bio: \"edited\"}) { bio } }";
    let (_, _, body) = ask(
        http,
        &platform.url,
        edit,
        vars.clone(),
        Some(&token_for(users[3])),
    )
    .await;
    assert_eq!(body["data"]["updateProfile"]["bio"], "edited", "{body}");
    // Pub/sub is asynchronous: the second router hears it within moments.
    let started = Instant::now();
    loop {
        let (_, _, seen) = ask(http, &second_url, profile, vars.clone(), None).await;
        if seen["data"]["user"]["bio"] == "edited" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "second router still serves {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, _, seen) = ask(http, &platform.url, profile, vars.clone(), None).await;
    assert_eq!(seen["data"]["user"]["bio"], "edited");

    // The admin endpoint: cache both, invalidate by tag, both fetch again.
    let post_query = "query($id: ID!) { post(id: $id) { id body } }";
    let (_, _, feed) = ask(http, &platform.url, FEED, json!({"n": 1}), None).await;
    let post_id = feed["data"]["feed"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let post_vars = json!({"id": post_id});
    ask(http, &platform.url, post_query, post_vars.clone(), None).await;
    ask(http, &second_url, post_query, post_vars.clone(), None).await;
    let posts_calls = calls(&platform, "posts");
    ask(http, &second_url, post_query, post_vars.clone(), None).await;
    assert_eq!(calls(&platform, "posts"), posts_calls);

    let endpoint = format!("http://{admin}/invalidation");
    let refused = http
        .post(&endpoint)
        .json(&json!({"tags": [format!("Post:{post_id}")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .post(&endpoint)
        .bearer_auth("not-the-token-at-all-no")
        .json(&json!({"tags": ["Post:1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    for (body, message) in [
        (json!({"tag": ["Post:1"]}), "unknown field `tag`"),
        (json!({"tags": []}), "send 1 to 1000 tags"),
        (json!({"tags": ["no spaces allowed:1 x"]}), "is not a tag"),
    ] {
        let response = http
            .post(&endpoint)
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{text}");
    }
    let get = http
        .get(&endpoint)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    let response = http
        .post(&endpoint)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tags": [format!("Post:{post_id}")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    assert!(
        outcome["invalidated"]["redis"].as_u64().unwrap() >= 1,
        "{outcome}"
    );
    // Redis lost the entry at once, the second router's memory within moments: it fetches.
    let started = Instant::now();
    loop {
        let before = calls(&platform, "posts");
        ask(http, &second_url, post_query, post_vars.clone(), None).await;
        if calls(&platform, "posts") > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "second router kept its copy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first router dropped its copy before answering the call, and finds the second
    // router's fresh one in Redis.
    let before = calls(&platform, "posts");
    let (_, headers, _) = ask(http, &platform.url, post_query, post_vars.clone(), None).await;
    assert_eq!(header(&headers, "cache-control"), "public, max-age=30");
    assert_eq!(calls(&platform, "posts"), before);
    // The feed held that post too: dropped with it.
    let before = calls(&platform, "posts");
    ask(http, &platform.url, FEED, json!({"n": 1}), None).await;
    assert_eq!(calls(&platform, "posts"), before + 1);

    second.shutdown().await.unwrap();
    platform.shutdown().await;
}

/// 100 concurrent identical misses make one subgraph round, and all get the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_subgraph_round() {
    let (platform, _) = start_with_redis("").await;
    let posts = platform
        .subgraphs
        .iter()
        .find(|s| s.def.name == "posts")
        .unwrap();
    // Slow enough that every request arrives while the first is still running.
    *posts.spy.delay.lock().unwrap() = Duration::from_millis(500);
    let (posts_before, accounts_before) = (calls(&platform, "posts"), calls(&platform, "accounts"));
    let requests = (0..100).map(|_| {
        let http = platform.http.clone();
        let url = platform.url.clone();
        async move { ask(&http, &url, FEED, json!({"n": 7}), None).await }
    });
    let answers = futures::future::join_all(requests).await;
    *posts.spy.delay.lock().unwrap() = Duration::ZERO;
    assert!(answers.iter().all(|(status, _, _)| *status == 200));
    assert!(answers.iter().all(|(_, _, body)| body == &answers[0].2));
    assert!(answers[0].2["errors"].is_null(), "{}", answers[0].2);
    assert_eq!(calls(&platform, "posts") - posts_before, 1);
    assert_eq!(calls(&platform, "accounts") - accounts_before, 1);
    platform.shutdown().await;
}

/// Redis dies: requests are still served (from memory or the subgraphs), promptly; when it
/// comes back, the router uses it again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_never_fails_a_request() {
    let (mut redis, url) = spawn_redis();
    let addr: std::net::SocketAddr = url.trim_start_matches("redis://").parse().unwrap();
    let prefix = "test:rc:outage:";
    let platform = Platform::start(Options {
        plugins: plugins(&redis_yaml(&url, prefix)),
        ..Options::default()
    })
    .await;
    let http = &platform.http;
    let (_, _, cached) = ask(http, &platform.url, FEED, json!({"n": 3}), None).await;
    assert_eq!(redis_keys(&url, &format!("{prefix}e:*")).await.len(), 1);

    redis.kill().unwrap();
    redis.wait().unwrap();
    let started = Instant::now();
    let posts_calls = calls(&platform, "posts");
    let (status, _, body) = ask(http, &platform.url, FEED, json!({"n": 3}), None).await;
    assert_eq!((status, &body), (200, &cached), "served from memory");
    assert_eq!(calls(&platform, "posts"), posts_calls);
    for n in 4..10 {
        let (status, headers, body) = ask(http, &platform.url, FEED, json!({"n": n}), None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(header(&headers, "cache-control"), "public, max-age=10");
    }
    // Stored in memory even without Redis.
    let posts_calls = calls(&platform, "posts");
    ask(http, &platform.url, FEED, json!({"n": 9}), None).await;
    assert_eq!(calls(&platform, "posts"), posts_calls);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no request waited on the dead Redis: {:?}",
        started.elapsed()
    );

    let mut redis = spawn_redis_at(addr);
    let started = Instant::now();
    let mut n = 10;
    loop {
        ask(http, &platform.url, FEED, json!({"n": n}), None).await;
        n += 1;
        if !redis_keys(&url, &format!("{prefix}e:*")).await.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the router never wrote to Redis again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    platform.shutdown().await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}

/// Persisted GETs carry what a CDN needs: `public, max-age` and `Vary` on the client name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_gets_are_cdn_cacheable() {
    let platform = Platform::start(Options {
        plugins: plugins("    memory_bytes: 1048576\n"),
        ..Options::default()
    })
    .await;
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::harness::repo_root().join("persisted-queries/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let id = manifest["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["name"] == "HomeFeed")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = || {
        platform
            .http
            .get(&platform.url)
            .query(&[("documentId", id.as_str()), ("variables", r#"{"first":3}"#)])
            .header("apollographql-client-name", "ios")
            .header("apollo-require-preflight", "true")
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=10");
    assert!(
        first.headers()["vary"]
            .to_str()
            .unwrap()
            .contains("apollographql-client-name")
    );
    let first: Value = first.json().await.unwrap();
    assert!(first["errors"].is_null(), "{first}");
    let posts_calls = calls(&platform, "posts");
    let second = get().await.unwrap();
    assert!(second.headers().contains_key("age"));
    let etag = second.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 26, "{etag}");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(calls(&platform, "posts"), posts_calls);

    // Revalidation: the client (or a CDN) holds this response, so it gets a 304 and no body,
    // on a connection that stays usable.
    let revalidate = |tag: String| {
        platform
            .http
            .get(&platform.url)
            .query(&[("documentId", id.as_str()), ("variables", r#"{"first":3}"#)])
            .header("apollographql-client-name", "ios")
            .header("apollo-require-preflight", "true")
            .header("if-none-match", tag)
            .send()
    };
    for _ in 0..3 {
        let not_modified = revalidate(format!("\"stale\", {etag}")).await.unwrap();
        assert_eq!(not_modified.status(), 304);
        assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(
            not_modified.headers()["cache-control"],
            "public, max-age=10"
        );
        assert!(not_modified.bytes().await.unwrap().is_empty());
    }
    let changed = revalidate("\"something-else\"".into()).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.json::<Value>().await.unwrap(), first);
    assert_eq!(calls(&platform, "posts"), posts_calls);
    platform.shutdown().await;
}

/// When the subgraphs fail, a response past its age (within `stale_if_error`) is served
/// instead of the error, with an `Age` that says how old it is; nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_responses_stand_in_when_subgraphs_fail() {
    let mut platform = Platform::start(Options {
        plugins: plugins("    max_ttl: 1s\n    stale_if_error: 30s\n"),
        ..Options::default()
    })
    .await;
    let http = platform.http.clone();
    let url = platform.url.clone();
    let (_, _, fresh) = ask(&http, &url, FEED, json!({"n": 4}), None).await;
    assert!(fresh["errors"].is_null(), "{fresh}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    platform.subgraph("posts").stop().await;
    let (status, headers, stale) = ask(&http, &url, FEED, json!({"n": 4}), None).await;
    assert_eq!((status, &stale), (200, &fresh), "the last good feed");
    assert_eq!(header(&headers, "cache-control"), "public, max-age=1");
    let age: u64 = header(&headers, "age").parse().unwrap();
    assert!(age >= 1, "{age}");
    // Never cached: the error goes through.
    let (_, headers, failed) = ask(&http, &url, FEED, json!({"n": 5}), None).await;
    assert!(!failed["errors"].is_null(), "{failed}");
    assert_eq!(header(&headers, "cache-control"), "no-store");

    // Back up: fetched fresh again.
    platform.subgraph("posts").restart().await;
    let before = calls(&platform, "posts");
    let (_, headers, again) = ask(&http, &url, FEED, json!({"n": 4}), None).await;
    assert_eq!(again, fresh);
    assert_eq!(calls(&platform, "posts"), before + 1);
    assert_eq!(header(&headers, "age"), "0");
    platform.shutdown().await;
}

/// A response built while one of its entities was invalidated is served but not kept: an
/// invalidation is never undone by a slow request that read the old data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_during_a_miss_wins() {
    let admin = free_addr();
    let platform = Platform::start(Options {
        plugins: plugins(&invalidation_yaml(admin)),
        ..Options::default()
    })
    .await;
    let user = demo_users()[5];
    let profile = "query($id: ID!) { user(id: $id) { handle } }";
    let vars = json!({"id": user.to_string()});
    let accounts = platform
        .subgraphs
        .iter()
        .find(|s| s.def.name == "accounts")
        .unwrap();
    *accounts.spy.delay.lock().unwrap() = Duration::from_millis(400);
    let slow = {
        let (http, url, vars) = (platform.http.clone(), platform.url.clone(), vars.clone());
        tokio::spawn(async move { ask(&http, &url, profile, vars, None).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let invalidated = platform
        .http
        .post(format!("http://{admin}/invalidation"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tags": [format!("User:{user}")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalidated.status(), 200);
    let (status, headers, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["user"]["handle"].is_string(), "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    *accounts.spy.delay.lock().unwrap() = Duration::ZERO;

    let before = calls(&platform, "accounts");
    let (_, headers, _) = ask(&platform.http, &platform.url, profile, vars, None).await;
    assert_eq!(
        calls(&platform, "accounts"),
        before + 1,
        "not served from the cache"
    );
    assert_eq!(header(&headers, "cache-control"), "public, max-age=60");
    platform.shutdown().await;
}

/// Regression (issue 10): undeclared variables made a new key per value, so anyone could bust
/// the cache (and grow Redis tag sets); equivalent requests (defaults written or not, POST or
/// GET) share one entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivalent_requests_share_one_entry() {
    let platform = Platform::start(Options {
        plugins: plugins("    memory_bytes: 1048576\n"),
        ..Options::default()
    })
    .await;
    let query = "query F($n: Int = 2) { feed(first: $n) { nodes { id } } }";
    let (status, _, first) = platform
        .post(json!({"query": query, "variables": {"junk": 0}}))
        .await;
    assert_eq!(status, 200, "{first}");
    let posts_calls = calls(&platform, "posts");
    for n in 1..20 {
        let (status, _, body) = platform
            .post(json!({"query": query, "variables": {"junk": n}}))
            .await;
        assert_eq!((status, &body), (200, &first));
    }
    let (_, _, body) = platform
        .post(json!({"query": query, "variables": {"n": 2}}))
        .await;
    assert_eq!(body, first, "the default written out is the same request");
    let response = platform
        .http
        .get(&platform.url)
        .query(&[("query", query), ("variables", r#"{"junk":"x"}"#)])
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    let (_, _, body) = read(response).await;
    assert_eq!(body, first, "GET and POST share the entry");
    assert_eq!(calls(&platform, "posts"), posts_calls, "every one a hit");
    platform.shutdown().await;
}

/// Regression (issue 10): POST hits were not served before the engine (the safelist dropped
/// `Content-Length`, which the lookup needed), so a burst of them met the rate limit where the
/// same GET hits did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_hits_are_served_before_the_engine() {
    let platform = Platform::start(Options {
        plugins: format!(
            "{}  rate_limit:\n    rules:\n      - {{ name: per-ip, key: ip, limit: 3, per: 1m }}\n",
            plugins("    memory_bytes: 1048576\n")
        ),
        ..Options::default()
    })
    .await;
    let body = json!({"query": "{ feed(first: 2) { nodes { id } } }"});
    let (status, _, first) = platform.post(body.clone()).await;
    assert_eq!(status, 200, "{first}");
    for _ in 0..10 {
        let (status, _, again) = platform.post(body.clone()).await;
        assert_eq!((status, &again), (200, &first));
    }
    platform.shutdown().await;
}

/// Regression (issue 10): `createPost` invalidated `User:<author>`, dropping every cached
/// response that showed the author's profile; post lists now have their own tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_post_drops_the_post_list_not_the_profile() {
    let platform = Platform::start(Options {
        plugins: plugins("    memory_bytes: 1048576\n"),
        ..Options::default()
    })
    .await;
    let http = &platform.http;
    let author = demo_users()[0];
    let id = json!({"id": author.to_string()});
    let profile = "query($id: ID!) { user(id: $id) { handle displayName } }";
    let list = "query($id: ID!) { user(id: $id) { handle posts(first: 3) { nodes { id } } } }";
    for query in [profile, list] {
        let (status, _, body) = ask(http, &platform.url, query, id.clone(), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (accounts, posts) = (calls(&platform, "accounts"), calls(&platform, "posts"));
    let create = "mutation($i: CreatePostInput!) { createPost(input: $i) { id } }";
    let (_, _, body) = ask(
        http,
        &platform.url,
        create,
        json!({"i": {"body": "new"}}),
        Some(&token_for(author)),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    let created = body["data"]["createPost"]["id"].clone();
    let posts_after_mutation = calls(&platform, "posts");
    let accounts_after_mutation = calls(&platform, "accounts");
    assert_eq!(posts_after_mutation, posts + 1, "the mutation itself");
    // The profile is still served from the cache.
    ask(http, &platform.url, profile, id.clone(), None).await;
    assert_eq!(calls(&platform, "accounts"), accounts_after_mutation);
    // The list is fetched again and shows the new post.
    let (_, _, body) = ask(http, &platform.url, list, id, None).await;
    assert_eq!(
        calls(&platform, "posts"),
        posts_after_mutation + 1,
        "{body}"
    );
    assert!(
        calls(&platform, "accounts") > accounts,
        "the list's query asks accounts too"
    );
    let nodes = body["data"]["user"]["posts"]["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|n| n["id"] == created), "{body}");
    platform.shutdown().await;
}
