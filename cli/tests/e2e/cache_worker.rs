//! Writes that never pass through a router still invalidate its cache: a profile changed and
//! a post deleted by a back-office job (straight through the subgraphs' code, no router)
//! reach the cached responses through the outbox, the relay and the cache worker.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_kit::deployment::Secret;
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::invalidation::{CacheInvalidator, CacheWorker};
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{Event, EventBus, Streams};

use crate::harness::{Options, Platform, free_addr};
use crate::response_cache::{ADMIN_TOKEN, calls, invalidation_yaml, plugins};

fn tags(event: &Event) -> Vec<String> {
    match event.domain.as_str() {
        switchyard_posts::NAME => switchyard_posts::schema::cache_tags(event),
        switchyard_accounts::NAME => switchyard_accounts::schema::cache_tags(event),
        _ => vec![],
    }
}

const PROFILE: &str = "query($h: String!) { userByHandle(handle: $h) { id displayName posts(first: 5) { nodes { id } } } }";

async fn profile(platform: &Platform, handle: &str) -> Value {
    let (status, _, body) = platform
        .post(json!({"query": PROFILE, "variables": {"h": handle}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["userByHandle"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_router_writes_invalidate_through_the_cache_worker() {
    let admin = free_addr();
    let platform = Platform::start(Options {
        plugins: plugins(&format!(
            "    memory_bytes: 8388608\n{}",
            invalidation_yaml(admin)
        )),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(
        EmbeddedBus::open(&dir.path().join("events.db"))
            .await
            .unwrap(),
    );
    let streams = Streams::default();
    let (accounts, posts) = (
        platform.subgraphs[0].store.clone(),
        platform.subgraphs[1].store.clone(),
    );
    let relays = [
        Relay::new(
            accounts.clone(),
            switchyard_accounts::NAME,
            bus.clone(),
            streams.clone(),
        ),
        Relay::new(
            posts.clone(),
            switchyard_posts::NAME,
            bus.clone(),
            streams.clone(),
        ),
    ];
    let invalidator = CacheInvalidator::new(
        format!("http://{admin}/invalidation"),
        Secret::new(ADMIN_TOKEN),
    )
    .unwrap();
    let worker = Worker::new(
        bus,
        &streams,
        Arc::new(CacheWorker::new(
            invalidator,
            &[switchyard_posts::NAME, switchyard_accounts::NAME],
            tags,
        )),
        WorkerOptions {
            block: Duration::from_millis(5),
            ..WorkerOptions::default()
        },
    )
    .await
    .unwrap();
    let settle = || async {
        loop {
            let mut moved = 0;
            for relay in &relays {
                moved += relay.run_once().await.unwrap();
            }
            let round = worker.run_once().await.unwrap();
            assert_eq!(round.failed + round.dead, 0, "{round:?}");
            if moved + round.handled == 0 {
                return;
            }
        }
    };

    let user = switchyard_accounts::seed::demo_user_ids(1, accounts.shard_count())[0];
    let session = accounts.session();
    let handle = switchyard_accounts::repo::users_by_ids(&session, &[user])
        .await
        .unwrap()[&user]
        .handle
        .clone();
    let before = profile(&platform, &handle).await;
    let accounts_calls = calls(&platform, "accounts");
    assert_eq!(profile(&platform, &handle).await, before);
    assert_eq!(
        calls(&platform, "accounts"),
        accounts_calls,
        "served from the cache"
    );

    // A back-office rename, not through any router.
    switchyard_accounts::repo::update_profile(
        &session,
        user,
        switchyard_accounts::repo::ProfileChange {
            display_name: Some("Renamed Off-Router".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        profile(&platform, &handle).await,
        before,
        "the cache still has the old name"
    );
    settle().await;
    let renamed = profile(&platform, &handle).await;
    assert_eq!(renamed["displayName"], "Renamed Off-Router", "{renamed}");

    // A back-office deletion of one of their posts.
    let post: i64 = renamed["posts"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        switchyard_posts::repo::delete_post(&posts.session(), post)
            .await
            .unwrap()
    );
    settle().await;
    let after = profile(&platform, &handle).await;
    let post_id = post.to_string();
    assert!(
        !after["posts"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"].as_str() == Some(post_id.as_str())),
        "the deleted post is gone from the cached profile: {after}"
    );
    platform.shutdown().await;
}
