//! Notifications through the real router with the whole event pipeline running (relays of
//! posts, engagement and notifications, the fan-out and push workers, the embedded bus): a
//! post and a like made through the router become an inbox entry whose actor and post the
//! router resolves from accounts and posts, and a push to the author's registered device.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{EventBus, Streams};
use switchyard_notifications::fanout::{Fanout, FanoutOptions};
use switchyard_notifications::push::log::LogProvider;
use switchyard_notifications::push::{Providers, Pusher};

use crate::harness::{Options, Platform};
use crate::response_cache::token_for;

struct Pipeline {
    relays: Vec<Relay>,
    workers: Vec<Worker>,
    pushed: Arc<LogProvider>,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    async fn start(platform: &Platform) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("events.db"))
                .await
                .unwrap(),
        );
        let streams = Streams::default();
        let store = |name: &str| {
            platform
                .subgraphs
                .iter()
                .find(|s| s.def.name == name)
                .unwrap()
                .store
                .clone()
        };
        let relays = [
            switchyard_posts::NAME,
            switchyard_engagement::NAME,
            switchyard_notifications::NAME,
        ]
        .map(|name| Relay::new(store(name), name, bus.clone(), streams.clone()))
        .into();
        let options = WorkerOptions {
            block: Duration::from_millis(5),
            ..WorkerOptions::default()
        };
        let notifications = store(switchyard_notifications::NAME);
        let pushed = Arc::new(LogProvider::new("apns"));
        let providers = Providers {
            ios: pushed.clone(),
            android: pushed.clone(),
        };
        let workers = vec![
            Worker::new(
                bus.clone(),
                &streams,
                Arc::new(Fanout::new(notifications.clone(), FanoutOptions::default())),
                options.clone(),
            )
            .await
            .unwrap(),
            Worker::new(
                bus.clone(),
                &streams,
                Arc::new(Pusher::new(notifications, providers)),
                options,
            )
            .await
            .unwrap(),
        ];
        Self {
            relays,
            workers,
            pushed,
            _dir: dir,
        }
    }

    /// Relays and handles until nothing is left (no clock involved).
    async fn settle(&self) {
        loop {
            let mut moved = 0;
            for relay in &self.relays {
                moved += relay.run_once().await.unwrap();
            }
            for worker in &self.workers {
                let round = worker.run_once().await.unwrap();
                assert_eq!(round.failed + round.dead, 0, "{round:?}");
                moved += round.handled;
            }
            if moved == 0 {
                return;
            }
        }
    }
}

async fn call(platform: &Platform, user: i64, query: &str, variables: Value) -> Value {
    let bearer = format!("Bearer {}", token_for(user));
    let (status, _, body) = platform
        .post_with(
            json!({"query": query, "variables": variables}),
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{query}: {body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_through_the_router_becomes_an_inbox_entry_and_a_push() {
    let platform = Platform::start(Options {
        plugins: crate::harness::dev_jwt_plugin(),
        ..Options::default()
    })
    .await;
    let pipeline = Pipeline::start(&platform).await;
    let users =
        switchyard_accounts::seed::demo_user_ids(2, platform.subgraphs[0].store.shard_count());
    let (author, liker) = (users[0], users[1]);

    call(
        &platform,
        author,
        "mutation($t: String!) { registerDevice(platform: IOS, token: $t) { id platform } }",
        json!({"t": "0123456789abcdef".repeat(4)}),
    )
    .await;
    let created = call(
        &platform,
        author,
        "mutation { createPost(input: {body: \"hello, followers\"}) { id } }",
        json!({}),
    )
    .await;
    let post = created["createPost"]["id"].as_str().unwrap().to_owned();
    pipeline.settle().await;
    call(
        &platform,
        liker,
        "mutation($p: ID!) { likePost(postId: $p) { id } }",
        json!({"p": post}),
    )
    .await;
    pipeline.settle().await;

    let inbox = call(
        &platform,
        author,
        "{ notifications(first: 10) { unreadCount edges { node { id kind actorCount read actor { id handle } post { id body } } } } }",
        json!({}),
    )
    .await;
    let edges = inbox["notifications"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{inbox}");
    let node = &edges[0]["node"];
    assert_eq!(node["kind"], "LIKE");
    assert_eq!(node["actor"]["id"], liker.to_string());
    assert!(
        node["actor"]["handle"].is_string(),
        "resolved by accounts: {inbox}"
    );
    assert_eq!(
        node["post"]["body"], "hello, followers",
        "resolved by posts"
    );
    assert_eq!(inbox["notifications"]["unreadCount"], 1);
    assert_eq!(pipeline.pushed.sent(), 1, "one push to the author's device");

    // The liker's inbox is their own (empty), and reading clears the author's count.
    let theirs = call(
        &platform,
        liker,
        "{ notifications { unreadCount edges { node { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(theirs["notifications"]["edges"], json!([]));
    let cleared = call(&platform, author, "mutation { markAllRead }", json!({})).await;
    assert_eq!(cleared["markAllRead"], 0);
    let (status, _, anonymous) = platform
        .post(json!({"query": "{ notifications { unreadCount } }"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{anonymous}"
    );
    platform.shutdown().await;
}
