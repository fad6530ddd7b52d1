//! Likes, comments and follows on real shards, with the counts kept by the counters worker
//! through the real pipeline: outbox → relay → bus (Redis with PostgreSQL, the embedded bus
//! with SQLite) → worker.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_engagement::projections::Counters;
use switchyard_engagement::{Migrator, NAME, prepare, schema};
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Handler, Worker, WorkerOptions};
use switchyard_kit::events::{EventBus, Streams};
use switchyard_kit::id::compose_id;
use switchyard_kit::{ShardedStore, StoreConfig, Viewer, backend_tests};

/// The store, and the pipeline that keeps its projections.
struct Engagement {
    store: Arc<ShardedStore>,
    bus: Arc<dyn EventBus>,
    streams: Streams,
    relay: Relay,
    worker: Worker,
    _dir: tempfile::TempDir,
}

fn options(consumer: &str) -> WorkerOptions {
    WorkerOptions {
        consumer: consumer.into(),
        block: Duration::from_millis(5),
        retry_base: Duration::from_millis(1),
        claim_idle: Duration::from_secs(60),
        ..WorkerOptions::default()
    }
}

impl Engagement {
    async fn new(config: StoreConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = switchyard_kit::testing::bus_for(&config, dir.path()).await;
        let store = switchyard_kit::testing::migrated_store::<Migrator>(config).await;
        let streams = switchyard_kit::testing::test_streams(2);
        let relay = Relay::new(store.clone(), NAME, bus.clone(), streams.clone());
        let worker = Worker::new(
            bus.clone(),
            &streams,
            Arc::new(Counters::new(store.clone())),
            options("w1"),
        )
        .await
        .unwrap();
        Self {
            store,
            bus,
            streams,
            relay,
            worker,
            _dir: dir,
        }
    }

    async fn exec(&self, viewer: Viewer, query: &str, vars: Value) -> Value {
        switchyard_kit::testing::execute(&schema(), prepare, &self.store, viewer, query, vars).await
    }

    /// Runs the pipeline until nothing is left to relay or handle (no waiting on a clock).
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

/// A post id on `shard` (engagement only needs its shard).
fn post(shard: usize, n: i64) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 1_000 + n, shard, 0)
}

fn user(shard: usize, n: i64) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 2_000 + n, shard, 0)
}

const COUNTS: &str = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Post { id likeCount commentCount viewerHasLiked } } }";

fn representations(ids: &[i64]) -> Value {
    json!({"r": ids.iter().map(|id| json!({"__typename": "Post", "id": id.to_string()})).collect::<Vec<_>>()})
}

async fn likes_count_once_and_unlike_reverses(config: StoreConfig) {
    let e = Engagement::new(config).await;
    let (alice, bob) = (user(0, 1), user(1, 2));
    let p = post(2, 1);
    let like = "mutation($p: ID!) { likePost(postId: $p) { id viewerHasLiked } }";
    for _ in 0..2 {
        let r = e
            .exec(Viewer::user(alice), like, json!({"p": p.to_string()}))
            .await;
        assert_eq!(r["data"]["likePost"]["viewerHasLiked"], true, "{r}");
    }
    e.exec(Viewer::user(bob), like, json!({"p": p.to_string()}))
        .await;
    let r = e
        .exec(Viewer::anonymous(), like, json!({"p": p.to_string()}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{r}"
    );
    e.settle().await;
    let r = e
        .exec(Viewer::user(alice), COUNTS, representations(&[p]))
        .await;
    assert_eq!(
        r["data"]["_entities"][0]["likeCount"], 2,
        "liking twice is one like: {r}"
    );
    assert_eq!(r["data"]["_entities"][0]["viewerHasLiked"], true);

    let unlike = "mutation($p: ID!) { unlikePost(postId: $p) { viewerHasLiked } }";
    for _ in 0..2 {
        let r = e
            .exec(Viewer::user(alice), unlike, json!({"p": p.to_string()}))
            .await;
        assert_eq!(r["data"]["unlikePost"]["viewerHasLiked"], false, "{r}");
    }
    e.settle().await;
    let r = e
        .exec(Viewer::user(alice), COUNTS, representations(&[p]))
        .await;
    assert_eq!(r["data"]["_entities"][0]["likeCount"], 1, "{r}");
    assert_eq!(r["data"]["_entities"][0]["viewerHasLiked"], false);
}

/// A worker that died after handling part of a batch without acknowledging it, and events it
/// read but never handled: another consumer claims them; nothing is lost, nothing doubles.
async fn a_dead_worker_loses_and_doubles_nothing(config: StoreConfig) {
    let e = Engagement::new(config).await;
    let p = post(1, 7);
    for n in 0..10 {
        e.exec(
            Viewer::user(user(n % 4, n as i64)),
            "mutation($p: ID!) { likePost(postId: $p) { id } }",
            json!({"p": p.to_string()}),
        )
        .await;
    }
    assert_eq!(e.relay.run_once().await.unwrap(), 10);
    // The doomed consumer reads everything, applies the first four effects, and dies.
    let doomed = Counters::new(e.store.clone());
    let mut taken = Vec::new();
    for stream in e.streams.all(NAME) {
        taken.extend(
            e.bus
                .read_new(
                    &[stream],
                    "counters",
                    "doomed",
                    100,
                    Duration::from_millis(5),
                )
                .await
                .unwrap(),
        );
    }
    assert_eq!(taken.len(), 10);
    for delivery in taken.iter().take(4) {
        doomed
            .handle(delivery.event.as_ref().unwrap())
            .await
            .unwrap();
    }
    // Its entries are pending for it: the live worker sees nothing new...
    let round = e.worker.run_once().await.unwrap();
    assert_eq!(round.handled, 0);
    // ...until it claims them (idle time zero here; a minute by default).
    let rescuer = Worker::new(
        e.bus.clone(),
        &e.streams,
        Arc::new(Counters::new(e.store.clone())),
        WorkerOptions {
            claim_idle: Duration::ZERO,
            ..options("rescuer")
        },
    )
    .await
    .unwrap();
    let round = rescuer.run_once().await.unwrap();
    assert_eq!(round.handled, 10, "{round:?}");
    let r = e
        .exec(Viewer::anonymous(), COUNTS, representations(&[p]))
        .await;
    assert_eq!(r["data"]["_entities"][0]["likeCount"], 10, "{r}");
}

async fn comments_list_count_and_delete(config: StoreConfig) {
    let e = Engagement::new(config).await;
    let (author, other) = (user(0, 1), user(3, 2));
    let p = post(1, 3);
    let add = "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id body author { id } post { id } } }";
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = e
            .exec(
                Viewer::user(author),
                add,
                json!({"p": p.to_string(), "b": format!(" comment {i} ")}),
            )
            .await;
        assert_eq!(
            r["data"]["addComment"]["body"],
            format!("comment {i}"),
            "{r}"
        );
        ids.push(r["data"]["addComment"]["id"].as_str().unwrap().to_owned());
    }
    let r = e
        .exec(
            Viewer::user(author),
            add,
            json!({"p": p.to_string(), "b": "   "}),
        )
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{r}"
    );
    let delete = "mutation($id: ID!) { deleteComment(id: $id) }";
    let r = e
        .exec(Viewer::user(other), delete, json!({"id": ids[0]}))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    let r = e
        .exec(Viewer::user(author), delete, json!({"id": ids[0]}))
        .await;
    assert_eq!(r["data"]["deleteComment"], ids[0].as_str(), "{r}");
    e.settle().await;
    let r = e
        .exec(
            Viewer::anonymous(),
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Post { commentCount comments(first: 1) { edges { node { body } } pageInfo { hasNextPage endCursor } } } } }",
            representations(&[p]),
        )
        .await;
    let post_json = &r["data"]["_entities"][0];
    assert_eq!(post_json["commentCount"], 2, "{r}");
    assert_eq!(
        post_json["comments"]["edges"][0]["node"]["body"],
        "comment 2"
    );
    assert_eq!(post_json["comments"]["pageInfo"]["hasNextPage"], true);
}

async fn follows_count_and_list_both_ways(config: StoreConfig) {
    let e = Engagement::new(config).await;
    let (ada, grace, linus) = (user(0, 1), user(1, 2), user(2, 3));
    let follow = "mutation($u: ID!) { follow(userId: $u) { id viewerFollows } }";
    for (who, whom) in [(ada, grace), (linus, grace), (ada, linus), (ada, grace)] {
        let r = e
            .exec(Viewer::user(who), follow, json!({"u": whom.to_string()}))
            .await;
        assert_eq!(r["data"]["follow"]["viewerFollows"], true, "{r}");
    }
    let r = e
        .exec(Viewer::user(ada), follow, json!({"u": ada.to_string()}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{r}"
    );
    e.settle().await;
    let users = |ids: &[i64]| json!({"r": ids.iter().map(|id| json!({"__typename": "User", "id": id.to_string()})).collect::<Vec<_>>()});
    let query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id followerCount followingCount viewerFollows followers { edges { node { id } } } following { edges { node { id } } } } } }";
    let r = e.exec(Viewer::user(ada), query, users(&[grace, ada])).await;
    let grace_json = &r["data"]["_entities"][0];
    assert_eq!(grace_json["followerCount"], 2, "{r}");
    assert_eq!(grace_json["viewerFollows"], true);
    let followers: Vec<&str> = grace_json["followers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        followers,
        [linus.to_string(), ada.to_string()],
        "newest first"
    );
    let ada_json = &r["data"]["_entities"][1];
    assert_eq!(ada_json["followingCount"], 2, "{r}");
    assert_eq!(ada_json["following"]["edges"].as_array().unwrap().len(), 2);

    let unfollow = "mutation($u: ID!) { unfollow(userId: $u) { viewerFollows } }";
    let r = e
        .exec(Viewer::user(ada), unfollow, json!({"u": grace.to_string()}))
        .await;
    assert_eq!(r["data"]["unfollow"]["viewerFollows"], false, "{r}");
    e.settle().await;
    let r = e.exec(Viewer::user(ada), query, users(&[grace])).await;
    assert_eq!(r["data"]["_entities"][0]["followerCount"], 1, "{r}");
    assert_eq!(
        r["data"]["_entities"][0]["followers"]["edges"][0]["node"]["id"],
        linus.to_string()
    );
}

/// A page of 40 posts on 4 shards, with their counts and the viewer's likes: one statement per
/// shard per loader, not per post.
async fn a_page_of_posts_costs_one_statement_per_shard_per_field(config: StoreConfig) {
    let e = Engagement::new(config).await;
    let ids: Vec<i64> = (0..40).map(|n| post(n % 4, n as i64)).collect();
    let before = e.store.statements().total();
    let r = e
        .exec(Viewer::user(user(0, 1)), COUNTS, representations(&ids))
        .await;
    assert_eq!(r["data"]["_entities"].as_array().unwrap().len(), 40, "{r}");
    let statements = e.store.statements().total() - before;
    eprintln!("40 posts, counts and viewerHasLiked: {statements} statements");
    assert_eq!(statements, 8, "4 shards x (counts, viewer's likes)");
}

/// `switchyard events replay counters`: the counts rebuilt from the event history equal the
/// live ones after the pipeline ran; a counter that drifted is reported, and fixed on request.
async fn replay_rebuilds_the_counters(config: StoreConfig) {
    let e = Engagement::new(config).await;
    let p = post(0, 9);
    for n in 0..5 {
        e.exec(
            Viewer::user(user(n % 4, n as i64)),
            "mutation($p: ID!) { likePost(postId: $p) { id } }",
            json!({"p": p.to_string()}),
        )
        .await;
    }
    e.exec(
        Viewer::user(user(0, 0)),
        "mutation($p: ID!) { unlikePost(postId: $p) { id } }",
        json!({"p": p.to_string()}),
    )
    .await;
    e.exec(
        Viewer::user(user(1, 1)),
        "mutation($u: ID!) { follow(userId: $u) { id } }",
        json!({"u": user(2, 2).to_string()}),
    )
    .await;
    e.settle().await;
    let report = switchyard_engagement::projections::replay(&e.store, false)
        .await
        .unwrap();
    assert_eq!(report.events, 7);
    assert!(report.differences.is_empty(), "{report:?}");

    // A counter drifts (a bad manual fix, a bug): reported, then repaired.
    use sea_orm::{ConnectionTrait, Statement};
    let conn = e.store.primary(0);
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        format!("UPDATE post_counters SET likes = 40 WHERE post_id = {p}"),
    ))
    .await
    .unwrap();
    let report = switchyard_engagement::projections::replay(&e.store, true)
        .await
        .unwrap();
    assert_eq!(
        report.differences,
        [switchyard_engagement::projections::Difference {
            counter: "post_counters.likes".into(),
            id: p,
            live: 40,
            replayed: 4
        }]
    );
    let report = switchyard_engagement::projections::replay(&e.store, false)
        .await
        .unwrap();
    assert!(report.differences.is_empty(), "repaired: {report:?}");
}

backend_tests!(
    replay_rebuilds_the_counters,
    likes_count_once_and_unlike_reverses,
    a_dead_worker_loses_and_doubles_nothing,
    comments_list_count_and_delete,
    follows_count_and_list_both_ways,
    a_page_of_posts_costs_one_statement_per_shard_per_field
);

/// Each post of an entity fetch is tagged by itself (`PostEngagement:<id>`, and the viewer's
/// part `ViewerLike:<viewer>.<id>`), so the router's entity cache drops one post on a like
/// and one viewer's answer on their own like; a follower inside a user's list tags the user
/// around it, not itself.
#[tokio::test]
async fn each_entity_carries_its_own_tags() {
    use switchyard_kit::cache::entity_hints;
    use switchyard_kit::testing::execute_with_cache_headers;
    let dir = tempfile::tempdir().unwrap();
    let e = Engagement::new(StoreConfig::sqlite(dir.path(), "entity-tags", 2)).await;
    let (a, b) = (post(0, 1), post(1, 2));
    let viewer = user(0, 1);
    let (r, headers) = execute_with_cache_headers(
        &schema(),
        prepare,
        &e.store,
        Viewer::user(viewer),
        COUNTS,
        representations(&[a, b]),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(headers["cache-control"], "max-age=10, private");
    let hints = entity_hints::decode(headers["x-switchyard-cache-entities"].as_bytes()).unwrap();
    assert!(hints.shared.is_empty(), "{hints:?}");
    for id in [a, b] {
        let (tags, _) = hints.of(Some(&format!("Post:{id}")));
        // The counts change with anyone's like, the viewer's part only with their own.
        assert_eq!(
            tags,
            [
                format!("PostEngagement:{id}"),
                format!("ViewerLike:{viewer}.{id}")
            ]
        );
    }

    let (_, headers) = execute_with_cache_headers(
        &schema(),
        prepare,
        &e.store,
        Viewer::user(viewer),
        "mutation($p: ID!) { likePost(postId: $p) { id } }",
        json!({"p": a.to_string()}),
    )
    .await;
    assert_eq!(
        headers["x-switchyard-cache-invalidate"],
        format!("PostEngagement:{a} ViewerLike:{viewer}.{a}")
    );

    let follower = user(1, 2);
    let me = user(0, 3);
    let follow = "mutation($u: ID!) { follow(userId: $u) { id } }";
    let r = e
        .exec(Viewer::user(follower), follow, json!({"u": me.to_string()}))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    e.settle().await;
    let followers = "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { followerCount followers(first: 5) { edges { node { id followerCount } } } } } }";
    let (r, headers) = execute_with_cache_headers(
        &schema(),
        prepare,
        &e.store,
        Viewer::anonymous(),
        followers,
        json!({"r": [{"__typename": "User", "id": me.to_string()}]}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let hints = entity_hints::decode(headers["x-switchyard-cache-entities"].as_bytes()).unwrap();
    let (tags, _) = hints.of(Some(&format!("User:{me}")));
    assert!(tags.contains(&format!("UserFollows:{me}")), "{hints:?}");
    assert!(
        tags.contains(&format!("UserFollows:{follower}")),
        "the follower's count inside the list belongs to the user's entry: {hints:?} {r}"
    );
}
