//! Push delivery against local servers implementing the FCM HTTP v1 and APNs contracts: what
//! we send (checked by the servers), and how we react to each answer, from the provider up
//! through the push worker (retries, dead letters, pruning, preferences, bursts).

mod contract;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard_kit::events::embedded::EmbeddedBus;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Worker, WorkerOptions};
use switchyard_kit::events::{Event, EventBus, Streams, kinds};
use switchyard_kit::id::{compose_id, shard_of};
use switchyard_kit::{ShardedStore, StoreConfig, Viewer};
use switchyard_notifications::fanout::{Fanout, FanoutOptions};
use switchyard_notifications::kind::Kind;
use switchyard_notifications::push::{Outcome, Providers, PushMessage, PushProvider, Pusher};
use switchyard_notifications::{Migrator, NAME, prepare, schema};

use contract::{ApnsServer, FcmServer, apns_token, fcm_token};

fn message() -> PushMessage {
    PushMessage {
        kind: Kind::Like,
        collapse_key: "LIKE:42".into(),
        loc_key: "notification.LIKE".into(),
        loc_args: vec!["3".into()],
        badge: 2,
        data: [("notification_id".to_owned(), "9".to_owned())].into(),
    }
}

#[tokio::test]
async fn fcm_provider_keeps_the_http_v1_contract() {
    let server = FcmServer::start().await;
    let fcm = server.provider();
    assert_eq!(
        fcm.send(&fcm_token("ok"), &message()).await,
        Outcome::Delivered
    );
    assert_eq!(
        fcm.send(&fcm_token("ok"), &message()).await,
        Outcome::Delivered
    );
    {
        let r = server.recorded.lock().unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.assertions.len(), 1, "the access token is reused");
        let sent = &r.fcm_sends[0]["message"];
        assert_eq!(sent["token"], fcm_token("ok"));
        assert_eq!(sent["android"]["collapse_key"], "LIKE:42");
        assert_eq!(
            sent["android"]["notification"]["body_loc_key"],
            "notification.LIKE"
        );
        assert_eq!(
            sent["android"]["notification"]["body_loc_args"],
            json!(["3"])
        );
        assert_eq!(sent["android"]["notification"]["notification_count"], 2);
        assert_eq!(sent["data"]["notification_id"], "9");
    }
    assert!(
        matches!(fcm.send(&fcm_token("dead"), &message()).await, Outcome::Unregistered(c) if c == "UNREGISTERED")
    );
    assert!(matches!(
        fcm.send(&fcm_token("mismatch"), &message()).await,
        Outcome::Unregistered(_)
    ));
    assert!(matches!(
        fcm.send(&fcm_token("busy"), &message()).await,
        Outcome::Retry { after: Some(after), .. } if after == Duration::from_secs(7)
    ));
    assert!(matches!(
        fcm.send(&fcm_token("down"), &message()).await,
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(
        fcm.send(&fcm_token("bad"), &message()).await,
        Outcome::Rejected(_)
    ));
    // An access token refused early: one new one, then delivered.
    assert_eq!(
        fcm.send(&fcm_token("expired"), &message()).await,
        Outcome::Delivered
    );
    let r = server.recorded.lock().unwrap();
    assert_eq!(r.assertions.len(), 2);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[tokio::test]
async fn fcm_token_endpoint_failures_are_retried_not_dropped() {
    let server = FcmServer::start().await;
    let mut account = server.account();
    account.token_uri = format!("http://{}/no-such-token-endpoint", server.addr);
    let fcm =
        switchyard_notifications::push::fcm::Fcm::new(account, &format!("http://{}", server.addr))
            .unwrap();
    assert!(matches!(
        fcm.send(&fcm_token("ok"), &message()).await,
        Outcome::Retry { .. }
    ));
    // A key that is not a key is refused when the worker starts, not at the first push.
    let mut account = server.account();
    account.private_key = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".into();
    assert!(switchyard_notifications::push::fcm::Fcm::new(account, "http://127.0.0.1:1").is_err());
    assert!(
        switchyard_notifications::push::fcm::ServiceAccount::parse("{\"project_id\": \"\"}")
            .is_err()
    );
}

#[tokio::test]
async fn apns_provider_keeps_the_http2_contract() {
    let server = ApnsServer::start().await;
    let apns = server.provider();
    assert_eq!(
        apns.send(&apns_token("aa", 1), &message()).await,
        Outcome::Delivered
    );
    assert_eq!(
        apns.send(&apns_token("aa", 2), &message()).await,
        Outcome::Delivered
    );
    {
        let r = server.recorded.lock().unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let (token, headers, payload) = &r.apns_sends[0];
        assert_eq!(token, &apns_token("aa", 1));
        assert_eq!(headers["apns-collapse-id"], "LIKE:42");
        assert_eq!(payload["aps"]["alert"]["loc-key"], "notification.LIKE");
        assert_eq!(payload["aps"]["alert"]["loc-args"], json!(["3"]));
        assert_eq!(payload["aps"]["badge"], 2);
        assert_eq!(payload["notification_id"], "9");
        // One provider token for both (Apple throttles tokens minted too often).
        assert_eq!(
            r.apns_sends[0].1["authorization"],
            r.apns_sends[1].1["authorization"]
        );
    }
    assert!(
        matches!(apns.send(&apns_token("bb", 1), &message()).await, Outcome::Unregistered(r) if r == "Unregistered")
    );
    assert!(
        matches!(apns.send(&apns_token("cc", 1), &message()).await, Outcome::Unregistered(r) if r == "BadDeviceToken")
    );
    assert!(matches!(
        apns.send(&apns_token("dd", 1), &message()).await,
        Outcome::Retry { .. }
    ));
    assert!(matches!(
        apns.send(&apns_token("ff", 1), &message()).await,
        Outcome::Retry { .. }
    ));
    // An expired provider token: minted again and sent again.
    assert_eq!(
        apns.send(&apns_token("ee", 1), &message()).await,
        Outcome::Delivered
    );
    let r = server.recorded.lock().unwrap();
    assert_eq!(
        r.apns_sends
            .iter()
            .filter(|(t, _, _)| t == &apns_token("ee", 1))
            .count(),
        2
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[tokio::test]
async fn apns_refuses_what_is_not_http2_over_trusted_tls() {
    let server = ApnsServer::start().await;
    // Without the test CA the server's certificate is not trusted: a retry, never plain text.
    let mut config = switchyard_notifications::push::apns::ApnsConfig {
        key_pem: contract::fixture("test-only-apns-AuthKey.p8"),
        key_id: contract::KEY_ID.into(),
        team_id: contract::TEAM_ID.into(),
        topic: contract::TOPIC.into(),
        endpoint: format!("https://127.0.0.1:{}", server.addr.port()),
        ca_pem: None,
    };
    let untrusted = switchyard_notifications::push::apns::Apns::new(config.clone()).unwrap();
    assert!(matches!(
        untrusted.send(&apns_token("aa", 1), &message()).await,
        Outcome::Retry { .. }
    ));
    assert!(server.recorded.lock().unwrap().apns_sends.is_empty());
    for (field, bad) in [("key id", "short"), ("key", "not a key")] {
        let mut broken = config.clone();
        match field {
            "key id" => broken.key_id = bad.into(),
            _ => broken.key_pem = bad.into(),
        }
        assert!(
            switchyard_notifications::push::apns::Apns::new(broken).is_err(),
            "{field}"
        );
    }
    config.topic = " ".into();
    assert!(switchyard_notifications::push::apns::Apns::new(config).is_err());
}

/// A store, a bus, the notifications fan-out and the push worker, as deployed.
struct Pipeline {
    store: Arc<ShardedStore>,
    bus: Arc<dyn EventBus>,
    streams: Streams,
    relay: Relay,
    fanout: Worker,
    push: Worker,
    seq: std::sync::atomic::AtomicU64,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    async fn new(providers: Providers, options: WorkerOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = switchyard_kit::testing::migrated_store::<Migrator>(StoreConfig::sqlite(
            dir.path(),
            NAME,
            2,
        ))
        .await;
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("events.db"))
                .await
                .unwrap(),
        );
        let streams = Streams::default();
        let fanout = Worker::new(
            bus.clone(),
            &streams,
            Arc::new(Fanout::new(store.clone(), FanoutOptions::default())),
            options.clone(),
        )
        .await
        .unwrap();
        let push = Worker::new(
            bus.clone(),
            &streams,
            Arc::new(Pusher::new(store.clone(), providers)),
            options,
        )
        .await
        .unwrap();
        Self {
            relay: Relay::new(store.clone(), NAME, bus.clone(), streams.clone()),
            store,
            bus,
            streams,
            fanout,
            push,
            seq: Default::default(),
            _dir: dir,
        }
    }

    async fn emit(&self, domain: &str, kind: &str, aggregate: String, data: serde_json::Value) {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = Event {
            id: format!("{domain}:0:{n}"),
            kind: kind.into(),
            domain: domain.into(),
            aggregate: aggregate.clone(),
            occurred_at: Utc::now(),
            data,
            traceparent: None,
        };
        let stream = self.streams.stream_for(domain, &aggregate);
        self.bus.publish(&stream, &[event.encode()]).await.unwrap();
    }

    /// Runs fan-out, relay and push until a round does nothing; the push rounds' totals.
    async fn settle(&self) -> switchyard_kit::events::worker::Round {
        let mut total = switchyard_kit::events::worker::Round::default();
        loop {
            let fanned = self.fanout.run_once().await.unwrap();
            let relayed = self.relay.run_once().await.unwrap();
            let pushed = self.push.run_once().await.unwrap();
            total.handled += pushed.handled;
            total.failed += pushed.failed;
            total.dead += pushed.dead;
            if fanned.handled + relayed + pushed.handled + pushed.failed + pushed.dead == 0 {
                return total;
            }
        }
    }

    async fn register(&self, user: i64, platform: &str, token: &str) {
        let r = switchyard_kit::testing::execute(
            &schema(),
            prepare,
            &self.store,
            Viewer::user(user),
            "mutation($p: DevicePlatform!, $t: String!) { registerDevice(platform: $p, token: $t) { id } }",
            json!({"p": platform, "t": token}),
        )
        .await;
        assert!(r.get("errors").is_none(), "{r}");
    }

    async fn devices(&self, user: i64) -> Vec<String> {
        switchyard_notifications::repo::devices_of(self.store.primary(shard_of(user)), user)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.token)
            .collect()
    }
}

fn fast(max_deliveries: u64) -> WorkerOptions {
    WorkerOptions {
        consumer: "w1".into(),
        block: Duration::from_millis(5),
        retry_base: Duration::from_millis(1),
        attempts: 2,
        max_deliveries,
        claim_idle: Duration::ZERO,
        ..WorkerOptions::default()
    }
}

fn user(shard: usize, n: i64) -> i64 {
    compose_id(switchyard_kit::id::EPOCH_MS + 2_000 + n, shard, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_reach_every_device_once_and_dead_tokens_are_pruned() {
    let (apns, fcm) = (ApnsServer::start().await, FcmServer::start().await);
    let pipeline = Pipeline::new(
        Providers {
            ios: Arc::new(apns.provider()),
            android: Arc::new(fcm.provider()),
        },
        fast(5),
    )
    .await;
    let (author, post) = (user(0, 1), compose_id(Utc::now().timestamp_millis(), 1, 0));
    pipeline.register(author, "IOS", &apns_token("aa", 1)).await;
    pipeline.register(author, "IOS", &apns_token("bb", 1)).await;
    pipeline.register(author, "ANDROID", &fcm_token("ok")).await;
    pipeline
        .register(author, "ANDROID", &fcm_token("dead"))
        .await;
    pipeline
        .emit(
            "posts",
            kinds::POST_CREATED,
            format!("Post:{post}"),
            json!({"post_id": post, "author_id": author}),
        )
        .await;
    pipeline.settle().await;
    // A burst: ten likes within moments.
    for n in 0..10 {
        pipeline
            .emit(
                "engagement",
                kinds::POST_LIKED,
                format!("Post:{post}"),
                json!({"post_id": post, "user_id": user(1, 100 + n)}),
            )
            .await;
    }
    let round = pipeline.settle().await;
    assert_eq!(
        (round.handled, round.failed, round.dead),
        (1, 0, 0),
        "one push for the burst"
    );
    {
        let a = apns.recorded.lock().unwrap();
        let f = fcm.recorded.lock().unwrap();
        assert!(
            a.violations.is_empty() && f.violations.is_empty(),
            "{:?} {:?}",
            a.violations,
            f.violations
        );
        assert_eq!(a.apns_sends.len(), 2, "both iOS devices tried once");
        assert_eq!(f.fcm_sends.len(), 2, "both Android devices tried once");
        let (_, _, payload) = &a.apns_sends[0];
        assert_eq!(payload["aps"]["alert"]["loc-key"], "notification.LIKE");
        assert_eq!(payload["aps"]["badge"], 1, "the unread count");
        assert_eq!(payload["post_id"], post.to_string());
    }
    let mut left = pipeline.devices(author).await;
    left.sort();
    let mut expected = vec![apns_token("aa", 1), fcm_token("ok")];
    expected.sort();
    assert_eq!(left, expected, "the dead tokens were pruned");

    // Likes turned off: the inbox still gets them, the phone does not.
    let r = switchyard_kit::testing::execute(
        &schema(),
        prepare,
        &pipeline.store,
        Viewer::user(author),
        "mutation { setNotificationPreference(kind: COMMENT, push: false) { push } }",
        json!({}),
    )
    .await;
    assert!(r.get("errors").is_none(), "{r}");
    pipeline
        .emit(
            "engagement",
            kinds::COMMENT_ADDED,
            format!("Post:{post}"),
            json!({"comment_id": 1, "post_id": post, "author_id": user(1, 7)}),
        )
        .await;
    let round = pipeline.settle().await;
    assert_eq!(round.handled, 1);
    assert_eq!(
        apns.recorded.lock().unwrap().apns_sends.len(),
        2,
        "no push for a muted kind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_retried_then_dead_lettered_and_reached_devices_are_not_pushed_twice()
{
    let (apns, fcm) = (ApnsServer::start().await, FcmServer::start().await);
    let pipeline = Pipeline::new(
        Providers {
            ios: Arc::new(apns.provider()),
            android: Arc::new(fcm.provider()),
        },
        fast(2),
    )
    .await;
    let (followee, follower) = (user(1, 1), user(0, 2));
    pipeline
        .register(followee, "IOS", &apns_token("aa", 1))
        .await;
    pipeline
        .register(followee, "ANDROID", &fcm_token("down"))
        .await;
    pipeline
        .emit(
            "engagement",
            kinds::USER_FOLLOWED,
            format!("User:{follower}"),
            json!({"follow_id": 9, "follower_id": follower, "followee_id": followee}),
        )
        .await;
    let round = pipeline.settle().await;
    assert_eq!((round.handled, round.dead), (0, 1), "{round:?}");
    // Two deliveries of two attempts each reached FCM; the iOS device got its push once.
    assert_eq!(fcm.recorded.lock().unwrap().fcm_sends.len(), 4);
    assert_eq!(apns.recorded.lock().unwrap().apns_sends.len(), 1);
    let dead = pipeline
        .bus
        .range(
            &pipeline
                .streams
                .dead_letters(switchyard_notifications::push::GROUP),
            10,
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let entry: serde_json::Value = serde_json::from_str(&dead[0].1).unwrap();
    assert_eq!(entry["event"]["kind"], kinds::PUSH_REQUESTED);
    assert_eq!(entry["reason"], "delivered too often");
}
