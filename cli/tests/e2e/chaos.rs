//! Chaos under steady load through the router: Redis stopped and started, a PostgreSQL shard's
//! primary cut, a replica cut. While a dependency is down only what depends on it may error,
//! the router never answers 5xx, recovery comes within seconds of its return, and no write the
//! platform acknowledged is lost.
//!
//! Databases and Redis are real; the test that stops Redis runs its own `redis-server`, and
//! the PostgreSQL outages cut a [`TcpProxy`] in front of the shared server (what a crashed or
//! partitioned database host looks like to its clients), so other tests keep their server.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use switchyard_kit::store::{ShardConfig, StoreConfig};
use switchyard_kit::testing::proxy::TcpProxy;
use switchyard_kit::testing::{PgShards, statements_on};

use crate::harness::{
    Options, Platform, USERS, dev_jwt_plugin, spawn_redis, spawn_redis_at, unique,
};
use crate::response_cache::{plugins, redis_keys, redis_yaml, token_for};
use crate::steady_load::{Answer, SteadyLoad, posting, slowest_in};

const PG: &str = "127.0.0.1:5432";

/// The feed (posts) and one profile (accounts): a read that spans both subgraphs.
fn feed_and_profile(user: i64) -> Value {
    json!({
        "query": "query($u: ID!) { feed(first: 5) { nodes { id body } } user(id: $u) { id handle } }",
        "variables": { "u": user.to_string() },
    })
}

/// Every answer a 200 with the whole feed and no errors.
fn assert_all_whole(seen: &[Answer]) {
    assert_never_5xx(seen);
    for answer in seen {
        assert!(!answer.has_errors(), "{answer:?}");
        assert_eq!(
            answer.body["data"]["feed"]["nodes"]
                .as_array()
                .map(Vec::len),
            Some(5),
            "{answer:?}"
        );
    }
}

fn assert_never_5xx(seen: &[Answer]) {
    for answer in seen {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
}

/// Redis stopped and started while six clients read through the response cache (Redis as its
/// second level): every answer stays whole (the cache degrades to memory and the subgraphs),
/// and once Redis is back the router writes to it again within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_started_under_load() {
    let (mut redis, url) = spawn_redis();
    let addr: std::net::SocketAddr = url.trim_start_matches("redis://").parse().unwrap();
    let prefix = format!("test:chaos:{}:", unique());
    let platform = Platform::start(Options {
        // Entries live one second, so the router keeps missing and writing to Redis.
        plugins: plugins(&format!("{}    max_ttl: 1s\n", redis_yaml(&url, &prefix))),
        ..Options::default()
    })
    .await;
    let users = switchyard_accounts::seed::demo_user_ids(USERS, 2);
    let mut load = SteadyLoad::start(
        6,
        posting(
            platform.http.clone(),
            platform.url.clone(),
            move |client, _| (feed_and_profile(users[client]), vec![]),
        ),
    );
    load.take(30).await;
    assert!(
        !redis_keys(&url, &format!("{prefix}*")).await.is_empty(),
        "nothing cached in Redis"
    );

    load.phase(1);
    redis.kill().unwrap();
    redis.wait().unwrap();
    load.take_phase(1, 100).await;

    load.phase(2);
    let mut redis = spawn_redis_at(addr);
    let mut waited = std::time::Instant::now();
    loop {
        load.take(5).await;
        if !redis_keys(&url, &format!("{prefix}*")).await.is_empty() {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the router did not write to Redis again within 10 s of its return"
        );
    }
    let rewritten_after = waited.elapsed();
    waited = std::time::Instant::now();
    load.take_phase(2, 30).await;
    let seen = load.stop().await;
    assert_all_whole(&seen);
    let slowest_down = slowest_in(&seen, 1);
    println!(
        "{} answers, none failed; slowest with Redis down {slowest_down:?}; writing to Redis again {rewritten_after:?} after its return (then {:?} for 30 more answers)",
        seen.len(),
        waited.elapsed()
    );
    platform.shutdown().await;
    let _ = redis.kill();
    let _ = redis.wait();
}

/// The posts subgraph on two PostgreSQL shards, each reached through a proxy the test can cut;
/// `replicas` adds a replica per shard (the same database, through a proxy of its own).
struct PostsOnPostgres {
    pg: PgShards,
    primaries: Vec<TcpProxy>,
    replicas: Vec<TcpProxy>,
    config: StoreConfig,
}

impl PostsOnPostgres {
    async fn create(tag: &str, replicas: bool) -> Self {
        let pg = PgShards::create(tag, 2).await;
        let (mut primaries, mut replica_proxies, mut shards) = (Vec::new(), Vec::new(), Vec::new());
        for shard in &pg.config.shards {
            let primary = TcpProxy::start(PG.parse().unwrap()).await;
            let mut config = ShardConfig {
                primary: primary.url_for(&shard.primary),
                replica: None,
            };
            if replicas {
                let replica = TcpProxy::start(PG.parse().unwrap()).await;
                config.replica = Some(replica.url_for(&shard.primary));
                replica_proxies.push(replica);
            }
            primaries.push(primary);
            shards.push(config);
        }
        let config = StoreConfig {
            connect_timeout_secs: 1,
            ..StoreConfig::from_shards(shards)
        };
        Self {
            pg,
            primaries,
            replicas: replica_proxies,
            config,
        }
    }

    fn options(&self, plugins: String) -> Options {
        let config = self.config.clone();
        Options {
            plugins,
            stores: Some(Arc::new(move |name| {
                (name == "posts").then(|| config.clone())
            })),
            ..Options::default()
        }
    }

    /// The first column of `sql`'s first row on each shard, read directly (not through the
    /// proxies).
    async fn per_shard(&self, sql: &str) -> Vec<i64> {
        let mut values = Vec::new();
        for shard in &self.pg.config.shards {
            let conn = Database::connect(shard.primary.as_str()).await.unwrap();
            let row = conn
                .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
                .await
                .unwrap()
                .expect("a row on every shard");
            values.push(row.try_get_by_index::<i64>(0).unwrap());
            conn.close().await.unwrap();
        }
        values
    }

    /// A `SELECT count(*)` summed over both shards.
    async fn count(&self, sql: &str) -> i64 {
        self.per_shard(sql).await.iter().sum()
    }
}

/// What the writers of the primary-cut test send: client `c` posts as author `authors[c]`.
const WRITERS: usize = 4;

/// One posts shard's primary cut while four clients post and four read. Writes on that shard
/// fail with `STORE_UNAVAILABLE` naming posts, writes on the other shard succeed, reads lose
/// only that shard's post (the other shard's post and accounts' data stay), no answer is a 5xx; after the primary returns its writes succeed
/// again within seconds, and every acknowledged post is in its shard with its outbox event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shard_primary_cut_under_load() {
    let mut posts = PostsOnPostgres::create("chaos_primary", false).await;
    let platform = Platform::start(posts.options(dev_jwt_plugin())).await;
    let store = platform.subgraphs[1].store.clone();
    let users = switchyard_accounts::seed::demo_user_ids(USERS, 2);
    // Two authors whose posts live on shard 0, two on shard 1.
    let mut authors = Vec::new();
    for shard in [0, 0, 1, 1] {
        let author = users
            .iter()
            .copied()
            .filter(|u| switchyard_posts::repo::author_shard(&store, *u) == shard)
            .find(|u| !authors.contains(u))
            .expect("an author on each shard");
        authors.push(author);
    }
    let shard_of_writer = |client: usize| client / 2;
    let seeded_posts = posts.count("SELECT count(*) FROM posts").await;
    // One seeded post per shard: the readers ask for both (and a profile), so an answer shows
    // exactly which shard's data an outage took.
    let post_on = posts
        .per_shard("SELECT id FROM posts ORDER BY id LIMIT 1")
        .await;
    let tokens: Vec<String> = authors
        .iter()
        .map(|a| format!("Bearer {}", token_for(*a)))
        .collect();
    let profile = users[0];
    let read_ids = post_on.clone();
    let mut load = SteadyLoad::start(
        2 * WRITERS,
        posting(
            platform.http.clone(),
            platform.url.clone(),
            move |client, sequence| {
                if client < WRITERS {
                    (
                        json!({
                            "query": "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
                            "variables": { "b": format!("chaos {client} {sequence}") },
                        }),
                        vec![("authorization".into(), tokens[client].clone())],
                    )
                } else {
                    (
                        json!({
                            "query": "query($a: ID!, $b: ID!, $u: ID!) { a: post(id: $a) { id } b: post(id: $b) { id } user(id: $u) { id } }",
                            "variables": { "a": read_ids[0].to_string(), "b": read_ids[1].to_string(), "u": profile.to_string() },
                        }),
                        vec![],
                    )
                }
            },
        ),
    );
    load.take(40).await;

    load.phase(1);
    posts.primaries[1].cut().await;
    load.until(
        Duration::from_secs(15),
        "a write on the cut shard failing",
        |a| a.phase == 1 && a.client < WRITERS && shard_of_writer(a.client) == 1 && a.has_errors(),
    )
    .await;
    load.until(
        Duration::from_secs(15),
        "a write on the other shard succeeding",
        |a| a.phase == 1 && a.client < WRITERS && shard_of_writer(a.client) == 0 && !a.has_errors(),
    )
    .await;
    load.take_phase(1, 40).await;

    posts.primaries[1].restore().await;
    load.phase(2);
    let recovery = load
        .until(
            Duration::from_secs(10),
            "a write on the restored shard succeeding",
            |a| {
                a.phase == 2
                    && a.client < WRITERS
                    && shard_of_writer(a.client) == 1
                    && !a.has_errors()
            },
        )
        .await;
    load.phase(3);
    load.take_phase(3, 40).await;
    let seen = load.stop().await;
    assert_never_5xx(&seen);

    let mut acknowledged = BTreeSet::new();
    let mut failed_writes = 0;
    for answer in &seen {
        if answer.client < WRITERS {
            match answer.body["data"]["createPost"]["id"].as_str() {
                Some(id) if !answer.has_errors() => {
                    assert!(
                        acknowledged.insert(id.to_owned()),
                        "id {id} acknowledged twice"
                    );
                }
                _ => {
                    failed_writes += 1;
                    // Sent during the outage, or in flight when it began.
                    assert!(
                        answer.phase == 1 || (answer.phase == 0 && answer.answered_in >= 1),
                        "a write failed outside the outage: {answer:?}"
                    );
                    assert_eq!(shard_of_writer(answer.client), 1, "{answer:?}");
                    assert_eq!(
                        answer.error_services(),
                        vec!["posts".to_owned()],
                        "{answer:?}"
                    );
                    assert_eq!(
                        answer.body["errors"][0]["extensions"]["code"], "STORE_UNAVAILABLE",
                        "{answer:?}"
                    );
                }
            }
        } else {
            // Only shard 1's post may go missing, and only while it is cut: the loader
            // batches both posts, and a batch that fails on one shard still loads the keys
            // on the others.
            assert_eq!(
                answer.body["data"]["user"]["id"],
                profile.to_string(),
                "accounts' data went missing: {answer:?}"
            );
            assert_eq!(
                answer.body["data"]["a"]["id"],
                post_on[0].to_string(),
                "shard 0's post went missing: {answer:?}"
            );
            for error in answer.body["errors"].as_array().into_iter().flatten() {
                assert_eq!(error["path"], json!(["b"]), "{answer:?}");
                assert_eq!(error["extensions"]["service"], "posts", "{answer:?}");
                assert_eq!(
                    error["extensions"]["code"], "STORE_UNAVAILABLE",
                    "{answer:?}"
                );
            }
            if !answer.has_errors() {
                assert_eq!(answer.body["data"]["b"]["id"], post_on[1].to_string());
            }
            if answer.phase == 3 {
                assert!(!answer.has_errors(), "{answer:?}");
            }
        }
    }
    assert!(failed_writes > 0);

    let ids = acknowledged.iter().cloned().collect::<Vec<_>>().join(",");
    let found = posts
        .count(&format!("SELECT count(*) FROM posts WHERE id IN ({ids})"))
        .await;
    assert_eq!(
        found as usize,
        acknowledged.len(),
        "an acknowledged post is missing"
    );
    let aggregates = acknowledged
        .iter()
        .map(|id| format!("'Post:{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let events = posts
        .count(&format!(
            "SELECT count(*) FROM outbox WHERE kind = 'PostCreated' AND aggregate IN ({aggregates})"
        ))
        .await;
    assert_eq!(
        events as usize,
        acknowledged.len(),
        "an acknowledged post has no outbox event"
    );
    // A write whose commit succeeded but whose answer was lost would be a post without an
    // acknowledgement: allowed (the client retries), but every post still has its event.
    let new_posts = posts.count("SELECT count(*) FROM posts").await - seeded_posts;
    let all_events = posts
        .count("SELECT count(*) FROM outbox WHERE kind = 'PostCreated'")
        .await;
    assert!(new_posts as usize >= acknowledged.len());
    assert_eq!(
        all_events, new_posts,
        "posts and their outbox events differ"
    );
    println!(
        "{} answers; {} posts acknowledged, all in PostgreSQL with their outbox events ({new_posts} new rows, {all_events} events); {failed_writes} writes refused on the cut shard; writes whole again {recovery:?} after it returned",
        seen.len(),
        acknowledged.len()
    );
    platform.shutdown().await;
    drop(store);
    posts.pg.drop_all().await;
}

/// Both posts replicas cut while eight clients read: every answer stays whole (reads fail over
/// to the primaries), and once the replicas return reads go back to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_cut_under_load() {
    let mut posts = PostsOnPostgres::create("chaos_replica", true).await;
    let platform = Platform::start(posts.options(String::new())).await;
    let store = platform.subgraphs[1].store.clone();
    let profile = switchyard_accounts::seed::demo_user_ids(1, 2)[0];
    let mut load = SteadyLoad::start(
        8,
        posting(platform.http.clone(), platform.url.clone(), move |_, _| {
            (feed_and_profile(profile), vec![])
        }),
    );
    load.take(40).await;
    assert!(
        posts.replicas.iter().all(|r| r.connections() > 0),
        "the replicas were never read"
    );

    load.phase(1);
    for replica in &mut posts.replicas {
        replica.cut().await;
    }
    load.take_phase(1, 100).await;
    assert!(
        store.shards().iter().all(|s| !s.replica_up()),
        "a cut replica still in rotation"
    );

    load.phase(2);
    for replica in &mut posts.replicas {
        replica.restore().await;
    }
    let restored = std::time::Instant::now();
    while !store.shards().iter().all(|s| s.replica_up()) {
        load.take(5).await;
        assert!(
            restored.elapsed() < Duration::from_secs(5),
            "replicas not back in rotation"
        );
    }
    let back_after = restored.elapsed();
    let before = statements_on("posts", "replica").await;
    load.take_phase(2, 40).await;
    let on_replicas = statements_on("posts", "replica").await - before;
    let seen = load.stop().await;
    assert_all_whole(&seen);
    let failovers: Vec<String> = switchyard_kit::metrics::render()
        .await
        .lines()
        .filter(|l| l.starts_with("switchyard_store_replica_failovers_total{"))
        .map(str::to_owned)
        .collect();
    assert!(
        on_replicas >= 40,
        "reads did not return to the replicas: {on_replicas} statements; {failovers:?}"
    );
    let slowest_down = slowest_in(&seen, 1);
    println!(
        "{} answers, none failed; slowest while the replicas were cut {slowest_down:?}; back in rotation {back_after:?} after they returned",
        seen.len()
    );
    platform.shutdown().await;
    drop(store);
    posts.pg.drop_all().await;
}
