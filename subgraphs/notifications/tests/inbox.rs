//! The inbox on real shards, filled by the notifications worker through a real bus (Redis
//! with PostgreSQL, the embedded bus with SQLite): collapse of bursts, fan-out of a post to
//! every follower in pages, idempotence under redelivery, and the API a phone uses.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use switchyard_kit::events::outbox;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{Event, EventBus, Streams, kinds};
use switchyard_kit::id::compose_id;
use switchyard_kit::{ShardedStore, StoreConfig, Viewer, backend_tests};
use switchyard_notifications::fanout::{Fanout, FanoutOptions};
use switchyard_notifications::{Migrator, prepare, schema};

struct Inbox {
    store: Arc<ShardedStore>,
    bus: Arc<dyn EventBus>,
    streams: Streams,
    worker: Worker,
    seq: std::sync::atomic::AtomicU64,
    _dir: tempfile::TempDir,
}

impl Inbox {
    async fn new(config: StoreConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = switchyard_kit::testing::bus_for(&config, dir.path()).await;
        let store = switchyard_kit::testing::migrated_store::<Migrator>(config).await;
        let streams = switchyard_kit::testing::test_streams(2);
        let fanout = Fanout::new(
            store.clone(),
            FanoutOptions {
                // Small pages, so a post to five followers takes several.
                batch: 2,
                ..FanoutOptions::default()
            },
        );
        let worker = Worker::new(
            bus.clone(),
            &streams,
            Arc::new(fanout),
            WorkerOptions {
                consumer: "w1".into(),
                block: Duration::from_millis(5),
                retry_base: Duration::from_millis(1),
                ..WorkerOptions::default()
            },
        )
        .await
        .unwrap();
        Self {
            store,
            bus,
            streams,
            worker,
            seq: Default::default(),
            _dir: dir,
        }
    }

    /// Publishes an event as the relay would (domain stream, partition by aggregate).
    async fn emit(&self, domain: &str, kind: &str, aggregate: String, data: Value) -> Event {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = Event {
            id: format!("{domain}:0:{n}"),
            kind: kind.into(),
            domain: domain.into(),
            aggregate,
            occurred_at: Utc::now(),
            data,
            traceparent: None,
        };
        self.publish(&event).await;
        event
    }

    async fn publish(&self, event: &Event) {
        let stream = self.streams.stream_for(&event.domain, &event.aggregate);
        self.bus.publish(&stream, &[event.encode()]).await.unwrap();
    }

    async fn settle(&self) {
        loop {
            let round = self.worker.run_once().await.unwrap();
            assert_eq!(round.failed + round.dead, 0, "{round:?}");
            if round.handled == 0 {
                return;
            }
        }
    }

    async fn exec(&self, viewer: Viewer, query: &str, vars: Value) -> Value {
        switchyard_kit::testing::execute(&schema(), prepare, &self.store, viewer, query, vars).await
    }

    /// `PushRequested` events written so far (the push queue), on every shard.
    async fn pushes(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for shard in 0..self.store.shard_count() {
            for row in outbox::entity::Entity::find()
                .all(self.store.primary(shard))
                .await
                .unwrap()
            {
                assert_eq!(row.kind, kinds::PUSH_REQUESTED);
                out.push(serde_json::from_str(&row.data).unwrap());
            }
        }
        out
    }

    async fn inbox(&self, user: i64) -> Value {
        let r = self
            .exec(
                Viewer::user(user),
                "{ notifications(first: 50) { unreadCount edges { node { id kind actorCount actor { id } post { id } read } } pageInfo { hasNextPage } } }",
                json!({}),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
        r["data"]["notifications"].clone()
    }
}

fn user(shard: usize, n: i64) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 2_000 + n, shard, 0)
}

fn post(shard: usize, n: i64) -> i64 {
    compose_id(Utc::now().timestamp_millis() - 5_000 + n, shard, 0)
}

async fn like(inbox: &Inbox, post_id: i64, user_id: i64) -> Event {
    inbox
        .emit(
            "engagement",
            kinds::POST_LIKED,
            format!("Post:{post_id}"),
            json!({"post_id": post_id, "user_id": user_id}),
        )
        .await
}

async fn follow(inbox: &Inbox, follow_id: i64, follower: i64, followee: i64) {
    inbox
        .emit(
            "engagement",
            kinds::USER_FOLLOWED,
            format!("User:{follower}"),
            json!({"follow_id": follow_id, "follower_id": follower, "followee_id": followee}),
        )
        .await;
}

/// A post, handled before anything else is published: likes of a post whose author is not
/// known yet are retried until it is, and `settle` expects no retries.
async fn create_post(inbox: &Inbox, post_id: i64, author: i64) -> Event {
    let event = inbox
        .emit(
            "posts",
            kinds::POST_CREATED,
            format!("Post:{post_id}"),
            json!({"post_id": post_id, "author_id": author}),
        )
        .await;
    inbox.settle().await;
    event
}

async fn bursts_collapse_into_one_entry_and_one_push(config: StoreConfig) {
    let inbox = Inbox::new(config).await;
    let author = user(0, 1);
    let p = post(1, 1);
    create_post(&inbox, p, author).await;
    // Ten people like the post within a second, and the author likes their own post.
    let mut likes = Vec::new();
    for n in 0..10 {
        likes.push(like(&inbox, p, user(n % 4, 100 + n as i64)).await);
    }
    like(&inbox, p, author).await;
    inbox
        .emit(
            "engagement",
            kinds::COMMENT_ADDED,
            format!("Post:{p}"),
            json!({"comment_id": 7, "post_id": p, "author_id": user(3, 200)}),
        )
        .await;
    inbox.settle().await;

    let found = inbox.inbox(author).await;
    let edges = found["edges"].as_array().unwrap();
    assert_eq!(
        edges.len(),
        2,
        "one LIKE entry and one COMMENT entry: {found}"
    );
    assert_eq!(found["unreadCount"], 2);
    let liked = &edges[1]["node"];
    assert_eq!(liked["kind"], "LIKE");
    assert_eq!(
        liked["actorCount"], 10,
        "the author's own like notifies no one"
    );
    assert_eq!(
        liked["actor"]["id"],
        user(1, 109).to_string(),
        "the latest liker"
    );
    assert_eq!(liked["post"]["id"], p.to_string());
    assert_eq!(edges[0]["node"]["kind"], "COMMENT");
    let pushes = inbox.pushes().await;
    assert_eq!(
        pushes.len(),
        2,
        "ten likes in a minute are one push: {pushes:?}"
    );

    // Delivered again (a relay that died before marking them sent): nothing changes.
    for event in &likes {
        inbox.publish(event).await;
    }
    inbox.settle().await;
    assert_eq!(inbox.inbox(author).await, found);
    assert_eq!(inbox.pushes().await.len(), 2);

    // Read, then liked again: a new entry, pushed.
    let like_id = liked["id"].as_str().unwrap().to_owned();
    let r = inbox
        .exec(
            Viewer::user(author),
            "mutation($ids: [ID!]!) { markRead(ids: $ids) }",
            json!({"ids": [like_id]}),
        )
        .await;
    assert_eq!(r["data"]["markRead"], 1, "{r}");
    like(&inbox, p, user(2, 300)).await;
    inbox.settle().await;
    let after = inbox.inbox(author).await;
    assert_eq!(after["edges"].as_array().unwrap().len(), 3, "{after}");
    assert_eq!(after["unreadCount"], 2);
    assert_eq!(inbox.pushes().await.len(), 3);
}

async fn a_post_fans_out_to_every_follower_in_pages(config: StoreConfig) {
    let inbox = Inbox::new(config).await;
    let author = user(2, 1);
    let followers: Vec<i64> = (0..5).map(|n| user(n % 4, 10 + n as i64)).collect();
    for (n, follower) in followers.iter().enumerate() {
        follow(&inbox, 1_000 + n as i64, *follower, author).await;
    }
    // One follows and unfollows at once; the unfollow may be handled first (other stream
    // partition): either way they get no post.
    let gone = user(1, 99);
    follow(&inbox, 2_000, gone, author).await;
    inbox
        .emit(
            "engagement",
            kinds::USER_UNFOLLOWED,
            format!("User:{gone}"),
            json!({"follow_id": 2_000, "follower_id": gone, "followee_id": author}),
        )
        .await;
    inbox.settle().await;
    let follows = inbox.inbox(author).await;
    assert_eq!(follows["edges"].as_array().unwrap().len(), 1, "{follows}");
    assert_eq!(follows["edges"][0]["node"]["kind"], "FOLLOW");
    assert_eq!(follows["edges"][0]["node"]["actorCount"], 6);

    let p = post(3, 1);
    let created = create_post(&inbox, p, author).await;
    // Delivered again (a worker that died half way through the pages): nothing doubles.
    inbox.publish(&created).await;
    inbox.settle().await;
    for follower in &followers {
        let found = inbox.inbox(*follower).await;
        assert_eq!(found["edges"].as_array().unwrap().len(), 1, "{found}");
        assert_eq!(found["edges"][0]["node"]["kind"], "POST");
        assert_eq!(found["edges"][0]["node"]["post"]["id"], p.to_string());
        assert_eq!(found["unreadCount"], 1);
    }
    assert_eq!(inbox.inbox(gone).await["edges"], json!([]));
    let total = {
        let mut n = 0;
        for shard in 0..inbox.store.shard_count() {
            n += switchyard_notifications::entities::notification::Entity::find()
                .count(inbox.store.primary(shard))
                .await
                .unwrap();
        }
        n
    };
    assert_eq!(total, 6, "one FOLLOW entry and five POST entries");
    // 1 push for the follows (collapsed), 5 for the post.
    assert_eq!(inbox.pushes().await.len(), 6);
}

async fn the_inbox_api_is_the_viewers_own(config: StoreConfig) {
    let inbox = Inbox::new(config).await;
    let (alice, bob) = (user(0, 1), user(1, 2));
    let p = post(0, 1);
    create_post(&inbox, p, alice).await;
    like(&inbox, p, bob).await;
    follow(&inbox, 5, bob, alice).await;
    inbox.settle().await;
    let found = inbox.inbox(alice).await;
    assert_eq!(found["unreadCount"], 2);
    let ids: Vec<String> = found["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect();

    // Bob cannot read or mark Alice's entries.
    assert_eq!(inbox.inbox(bob).await["edges"], json!([]));
    let r = inbox
        .exec(
            Viewer::user(bob),
            "mutation($ids: [ID!]!) { markRead(ids: $ids) }",
            json!({"ids": ids}),
        )
        .await;
    assert_eq!(r["data"]["markRead"], 0, "{r}");
    assert_eq!(inbox.inbox(alice).await["unreadCount"], 2);

    for query in [
        "{ notifications { unreadCount } }",
        "mutation { markAllRead }",
        "mutation { registerDevice(platform: IOS, token: \"00\") { id } }",
        "{ notificationPreferences { kind push } }",
    ] {
        let r = inbox.exec(Viewer::anonymous(), query, json!({})).await;
        assert_eq!(
            switchyard_kit::testing::codes(&r),
            ["UNAUTHENTICATED"],
            "{query}: {r}"
        );
    }
    for (query, vars) in [
        ("{ notifications(first: 0) { unreadCount } }", json!({})),
        (
            "{ notifications(after: \"nope\") { unreadCount } }",
            json!({}),
        ),
        (
            "mutation($ids: [ID!]!) { markRead(ids: $ids) }",
            json!({"ids": ["x"]}),
        ),
        (
            "mutation($ids: [ID!]!) { markRead(ids: $ids) }",
            json!({"ids": (0..101).map(|n| n.to_string()).collect::<Vec<_>>()}),
        ),
        (
            "mutation($t: String!) { registerDevice(platform: IOS, token: $t) { id } }",
            json!({"t": "not-hex"}),
        ),
        (
            "mutation($t: String!) { registerDevice(platform: ANDROID, token: $t) { id } }",
            json!({"t": "a b c ".repeat(20)}),
        ),
        (
            "mutation($t: String!) { registerDevice(platform: ANDROID, token: $t) { id } }",
            json!({"t": "x".repeat(5000)}),
        ),
        (
            "mutation { registerDevice(platform: WINDOWS, token: \"x\") { id } }",
            json!({}),
        ),
    ] {
        let r = inbox.exec(Viewer::user(alice), query, vars).await;
        let codes = switchyard_kit::testing::codes(&r);
        assert!(
            codes == ["BAD_USER_INPUT"] || codes == ["GRAPHQL_VALIDATION_FAILED"],
            "{query}: {r}"
        );
    }

    // markRead of one, then all.
    let r = inbox
        .exec(
            Viewer::user(alice),
            "mutation($ids: [ID!]!) { markRead(ids: $ids) }",
            json!({"ids": [ids[0].clone(), ids[0].clone()]}),
        )
        .await;
    assert_eq!(r["data"]["markRead"], 1, "{r}");
    let r = inbox
        .exec(Viewer::user(alice), "mutation { markAllRead }", json!({}))
        .await;
    assert_eq!(r["data"]["markAllRead"], 0, "{r}");
    let after = inbox.inbox(alice).await;
    assert_eq!(after["unreadCount"], 0);
    assert!(
        after["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["node"]["read"] == true)
    );

    // Devices: registered, refreshed, moved to another user, unregistered.
    let token = "ab".repeat(32);
    let register = "mutation($t: String!, $p: DevicePlatform!) { registerDevice(platform: $p, token: $t) { id platform } }";
    let first = inbox
        .exec(
            Viewer::user(alice),
            register,
            json!({"t": token.to_uppercase(), "p": "IOS"}),
        )
        .await;
    assert_eq!(
        first["data"]["registerDevice"]["platform"], "IOS",
        "{first}"
    );
    let again = inbox
        .exec(
            Viewer::user(alice),
            register,
            json!({"t": token, "p": "IOS"}),
        )
        .await;
    assert_eq!(
        again["data"]["registerDevice"]["id"], first["data"]["registerDevice"]["id"],
        "one device per token: {again}"
    );
    let devices = |user| {
        let store = inbox.store.clone();
        async move {
            switchyard_notifications::repo::devices_of(
                store.primary(switchyard_kit::id::shard_of(user)),
                user,
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(devices(alice).await.len(), 1);
    inbox
        .exec(Viewer::user(bob), register, json!({"t": token, "p": "IOS"}))
        .await;
    assert!(devices(alice).await.is_empty(), "the token moved to bob");
    assert_eq!(devices(bob).await.len(), 1);
    let r = inbox
        .exec(
            Viewer::user(alice),
            "mutation($t: String!) { unregisterDevice(token: $t) }",
            json!({"t": token}),
        )
        .await;
    assert_eq!(
        r["data"]["unregisterDevice"], false,
        "not alice's any more: {r}"
    );
    let r = inbox
        .exec(
            Viewer::user(bob),
            "mutation($t: String!) { unregisterDevice(token: $t) }",
            json!({"t": token}),
        )
        .await;
    assert_eq!(r["data"]["unregisterDevice"], true, "{r}");
    // At most ten per user: the eleventh replaces the oldest.
    for n in 0..11 {
        let r = inbox
            .exec(
                Viewer::user(alice),
                register,
                json!({"t": format!("{n:064x}"), "p": "IOS"}),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let kept = devices(alice).await;
    assert_eq!(kept.len(), 10);
    assert!(
        !kept.iter().any(|d| d.token == format!("{:064x}", 0)),
        "the oldest went"
    );

    // Preferences: every kind pushes until turned off.
    let r = inbox
        .exec(
            Viewer::user(alice),
            "mutation { setNotificationPreference(kind: LIKE, push: false) { kind push } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["setNotificationPreference"]["push"], false, "{r}");
    let r = inbox
        .exec(
            Viewer::user(alice),
            "{ notificationPreferences { kind push } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["notificationPreferences"],
        json!([
            {"kind": "LIKE", "push": false},
            {"kind": "COMMENT", "push": true},
            {"kind": "FOLLOW", "push": true},
            {"kind": "POST", "push": true},
        ])
    );
}

backend_tests!(
    bursts_collapse_into_one_entry_and_one_push,
    a_post_fans_out_to_every_follower_in_pages,
    the_inbox_api_is_the_viewers_own,
);

/// An inbox is never cacheable: `no-cache` (not merely no hint, which a router's
/// `default_max_age` would fill in), and the schema says so to the router and the explorer.
#[tokio::test]
async fn the_inbox_is_never_cacheable() {
    let problems =
        switchyard_kit::cache::check_hints(switchyard_notifications::schema::schema_builder())
            .await;
    assert!(problems.is_empty(), "{problems:#?}");
    let sdl = switchyard_notifications::sdl();
    assert!(
        sdl.contains("@cacheControl(maxAge: 0, scope: PRIVATE)"),
        "{sdl}"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = switchyard_kit::testing::migrated_store::<Migrator>(StoreConfig::sqlite(
        dir.path(),
        "notifications",
        2,
    ))
    .await;
    for query in [
        "{ notifications { unreadCount } }",
        "{ notificationPreferences { kind } }",
        "{ notifications { edges { node { id } } } notificationPreferences { kind } }",
    ] {
        let (body, headers) = switchyard_kit::testing::execute_with_cache_headers(
            &schema(),
            prepare,
            &store,
            Viewer::user(user(0, 1)),
            query,
            json!({}),
        )
        .await;
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(
            headers.get("cache-control").map(String::as_str),
            Some("no-cache, private"),
            "{query}"
        );
    }
}
