//! Engagement through the real router, with the event pipeline running: a like becomes a
//! count, and the worker's cache invalidation drops the cached feed page that showed the old
//! count.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_kit::deployment::Secret;
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::invalidation::CacheInvalidator;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{EventBus, Streams};

use crate::harness::{Options, Platform, free_addr};
use crate::response_cache::{ADMIN_TOKEN, calls, invalidation_yaml, plugins, token_for};

/// The pipeline of the platform's engagement subgraph, on an embedded bus.
struct Pipeline {
    relay: Relay,
    worker: Worker,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    async fn start(platform: &Platform, invalidation: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("events.db"))
                .await
                .unwrap(),
        );
        let streams = Streams::default();
        let store = platform.subgraphs[2].store.clone();
        let counters = switchyard_engagement::projections::Counters::new(store.clone())
            .with_invalidator(
                CacheInvalidator::new(invalidation, Secret::new(ADMIN_TOKEN)).unwrap(),
            );
        let worker = Worker::new(
            bus.clone(),
            &streams,
            Arc::new(counters),
            WorkerOptions {
                block: Duration::from_millis(5),
                ..WorkerOptions::default()
            },
        )
        .await
        .unwrap();
        Self {
            relay: Relay::new(store, switchyard_engagement::NAME, bus, streams),
            worker,
            _dir: dir,
        }
    }

    /// Relays and handles until nothing is left (no clock involved).
    async fn settle(&self) {
        loop {
            let relayed = self.relay.run_once().await.unwrap();
            let round = self.worker.run_once().await.unwrap();
            assert_eq!(round.failed + round.dead, 0, "{round:?}");
            if relayed == 0 && round.handled == 0 {
                return;
            }
        }
    }
}

const FEED: &str = "{ feed(first: 3) { nodes { id body likeCount commentCount } } }";

async fn feed(platform: &Platform) -> Value {
    let (status, _, body) = platform.post(json!({"query": FEED})).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_becomes_a_count_and_drops_the_cached_feed() {
    let admin = free_addr();
    let platform = Platform::start(Options {
        plugins: plugins(&format!(
            "    memory_bytes: 8388608\n{}",
            invalidation_yaml(admin)
        )),
        ..Options::default()
    })
    .await;
    let pipeline = Pipeline::start(&platform, &format!("http://{admin}/invalidation")).await;
    let before = feed(&platform).await;
    let post = before["data"]["feed"]["nodes"][0].clone();
    assert_eq!(post["likeCount"], 0, "{before}");
    let post_id = post["id"].as_str().unwrap().to_owned();

    let user =
        switchyard_accounts::seed::demo_user_ids(1, platform.subgraphs[0].store.shard_count())[0];
    let bearer = format!("Bearer {}", token_for(user));
    let (_, _, r) = platform
        .post_with(
            json!({"query": "mutation($p: ID!) { likePost(postId: $p) { id viewerHasLiked } }", "variables": {"p": post_id}}),
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(r["data"]["likePost"]["viewerHasLiked"], true, "{r}");

    // Before the worker ran, the feed is read (and cached) with the old count...
    let stale = feed(&platform).await;
    assert_eq!(stale["data"]["feed"]["nodes"][0]["likeCount"], 0, "{stale}");
    let engagement_calls = calls(&platform, "engagement");
    assert_eq!(feed(&platform).await, stale);
    assert_eq!(
        calls(&platform, "engagement"),
        engagement_calls,
        "served from the cache, which would keep the old count for its 10 s"
    );
    // ...and once the counters worker has counted, it drops that cached page.
    pipeline.settle().await;
    let after = feed(&platform).await;
    assert_eq!(after["data"]["feed"]["nodes"][0]["likeCount"], 1, "{after}");
    assert_eq!(calls(&platform, "engagement"), engagement_calls + 1);

    // Personalised: the signed-in viewer sees their own like, anonymous callers do not.
    let personal = json!({"query": "{ feed(first: 1) { nodes { id likeCount viewerHasLiked } } }"});
    let (_, _, mine) = platform
        .post_with(personal.clone(), &[("authorization", bearer.as_str())])
        .await;
    assert_eq!(
        mine["data"]["feed"]["nodes"][0]["viewerHasLiked"], true,
        "{mine}"
    );
    let (_, _, anonymous): (u16, String, Value) = platform.post(personal).await;
    assert_eq!(
        anonymous["data"]["feed"]["nodes"][0]["viewerHasLiked"], false,
        "{anonymous}"
    );
    platform.shutdown().await;
}

/// The personalised home feed as the apps send it (the persisted `PersonalFeed`), through the
/// router: the statements each subgraph ran, per shard and level, whatever the page size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_personal_feed_costs_one_statement_per_shard_per_level() {
    let platform = Platform::start(Options {
        plugins: crate::harness::dev_jwt_plugin(),
        ..Options::default()
    })
    .await;
    let query = std::fs::read_to_string(
        crate::harness::repo_root().join("persisted-queries/operations/ios/PersonalFeed.graphql"),
    )
    .unwrap();
    let user =
        switchyard_accounts::seed::demo_user_ids(1, platform.subgraphs[0].store.shard_count())[0];
    let bearer = format!("Bearer {}", token_for(user));
    let statements = |platform: &Platform| -> Vec<u64> {
        platform
            .subgraphs
            .iter()
            .map(|s| s.store.statements().total())
            .collect()
    };
    let mut report = Vec::new();
    for first in [5, 50] {
        let before = statements(&platform);
        let (status, _, r) = platform
            .post_with(
                json!({"query": query, "variables": {"first": first}}),
                &[("authorization", bearer.as_str())],
            )
            .await;
        assert_eq!(status, 200, "{r}");
        assert!(r["errors"].is_null(), "{r}");
        let nodes = r["data"]["feed"]["edges"].as_array().unwrap();
        assert_eq!(nodes.len(), first, "{r}");
        assert!(nodes.iter().all(|n| n["node"]["viewerHasLiked"] == false && n["node"]["likeCount"].is_number()));
        let after = statements(&platform);
        let used: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        report.push((first, used.clone()));
        // accounts: the authors, one per shard of theirs (2 shards here); posts: the feed, one
        // per shard; engagement: counts and the viewer's likes per shard of the posts, and the
        // viewer's follows on the viewer's shard.
        let shards = platform.subgraphs[1].store.shard_count() as u64;
        assert!(used[0] <= shards, "accounts {used:?}");
        assert_eq!(used[1], shards, "posts {used:?}");
        assert!(used[2] <= 2 * shards + 1, "engagement {used:?}");
    }
    eprintln!("PersonalFeed statements [accounts, posts, engagement]: {report:?}");
    platform.shutdown().await;
}
