//! Push delivery (`switchyard worker push`): reads `PushRequested` events (the push queue),
//! checks the recipient's preferences, and sends to each of their devices through the
//! provider of its platform: APNs for iOS, FCM for Android, or the log provider in
//! development.
//!
//! Providers' answers are honoured: a token reported dead is pruned; a throttled or failing
//! provider (429, 5xx, a network error) makes the event fail with the provider's
//! `Retry-After`, so the worker retries it with back-off and dead-letters it after
//! `max_deliveries`; a message the provider rejects for good is not retried. A device already
//! reached is remembered per event, so a retry only goes to the devices that were not.

pub mod apns;
pub mod config;
pub mod fcm;
pub mod log;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_kit::ShardedStore;
use switchyard_kit::events::worker::{Handler, HandlerError};
use switchyard_kit::events::{Event, kinds, processed};
use switchyard_kit::id::shard_of;
use tracing::Instrument;

use crate::kind::{Kind, Platform};
use crate::{repo, worker_error};

/// The consumer group, and its name in `processed_events`.
pub const GROUP: &str = "push";

/// What a device is sent. The app renders the text from `loc_key` and `loc_args` in the
/// user's language (both APNs and FCM carry localisation keys), so no user content and no
/// names travel through the push services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    pub kind: Kind,
    /// Pushes with the same key replace each other on the device (`apns-collapse-id`,
    /// FCM `collapse_key` and `tag`).
    pub collapse_key: String,
    /// `notification.LIKE`, `notification.FOLLOW`, ...
    pub loc_key: String,
    /// The number of people the entry is about (`alice and 9 others`: the app names the
    /// latest actor after fetching the entry).
    pub loc_args: Vec<String>,
    /// The recipient's unread count.
    pub badge: i64,
    /// For the app: which entry to open.
    pub data: BTreeMap<String, String>,
}

/// What a provider made of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The token is dead (app uninstalled, token rotated): forget the device.
    Unregistered(String),
    /// Try again later (throttled, provider down, network): after `after` if it said.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The provider will never accept this message (logged, not retried).
    Rejected(String),
}

impl Outcome {
    /// The `outcome` label of `switchyard_push_sends_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Unregistered(_) => "unregistered",
            Outcome::Rejected(_) => "rejected",
            Outcome::Retry { .. } => "retry",
        }
    }
}

/// One push service.
#[async_trait::async_trait]
pub trait PushProvider: Send + Sync {
    /// `apns`, `fcm`, `log`: for logs and metrics.
    fn name(&self) -> &'static str;
    async fn send(&self, token: &str, message: &PushMessage) -> Outcome;
}

/// The provider for each platform.
#[derive(Clone)]
pub struct Providers {
    pub ios: Arc<dyn PushProvider>,
    pub android: Arc<dyn PushProvider>,
}

impl Providers {
    /// The log provider for both platforms (development).
    pub fn log() -> Self {
        Self {
            ios: Arc::new(log::LogProvider::new("apns")),
            android: Arc::new(log::LogProvider::new("fcm")),
        }
    }

    fn of(&self, platform: Platform) -> &Arc<dyn PushProvider> {
        match platform {
            Platform::Ios => &self.ios,
            Platform::Android => &self.android,
        }
    }
}

/// What one event's sends came to (for tests and logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub delivered: usize,
    pub pruned: usize,
    pub rejected: usize,
    pub retry: usize,
}

pub struct Pusher {
    store: Arc<ShardedStore>,
    providers: Providers,
}

impl Pusher {
    pub fn new(store: Arc<ShardedStore>, providers: Providers) -> Self {
        Self { store, providers }
    }

    /// Sends one `PushRequested` event to the recipient's devices.
    pub async fn push(&self, event: &Event) -> Result<Sent, HandlerError> {
        let recipient = event.id_field("recipient_id")?;
        let notification = event.id_field("notification_id")?;
        let shard = shard_of(recipient);
        if shard >= self.store.shard_count() {
            return Err(format!("shard {shard} does not exist here").into());
        }
        let Some(kind) = event
            .data
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(Kind::parse)
        else {
            tracing::warn!(event = %event.id, "a push of a kind this version does not know; skipped");
            return Ok(Sent::default());
        };
        let conn = self.store.primary(shard);
        let wants = repo::preferences(conn, recipient)
            .await
            .map_err(worker_error)?;
        if !wants.iter().any(|(k, push)| *k == kind && *push) {
            return Ok(Sent::default());
        }
        let devices = repo::devices_of(conn, recipient)
            .await
            .map_err(worker_error)?;
        if devices.is_empty() {
            return Ok(Sent::default());
        }
        let badge = repo::unread_count(conn, recipient)
            .await
            .map_err(worker_error)?;
        let actors = event
            .data
            .get("actor_count")
            .and_then(|c| c.as_i64())
            .unwrap_or(1);
        let subject = event.data.get("subject_id").and_then(|s| s.as_i64());
        let mut data = BTreeMap::from([
            ("notification_id".to_owned(), notification.to_string()),
            ("kind".to_owned(), kind.as_str().to_owned()),
        ]);
        if let Some(subject) = subject {
            data.insert("post_id".to_owned(), subject.to_string());
        }
        let message = PushMessage {
            kind,
            collapse_key: match subject {
                Some(post) => format!("{}:{post}", kind.as_str()),
                None => kind.as_str().to_owned(),
            },
            loc_key: format!("notification.{}", kind.as_str()),
            loc_args: vec![actors.to_string()],
            badge,
            data,
        };
        let mut sent = Sent::default();
        let mut retry: Option<(String, Option<Duration>)> = None;
        for device in devices {
            let once = format!("{}/{}", event.id, device.id);
            if processed::seen(conn, GROUP, &once)
                .await
                .map_err(worker_error)?
            {
                continue;
            }
            let Some(platform) = Platform::parse(&device.platform) else {
                continue;
            };
            let provider = self.providers.of(platform);
            let span = tracing::info_span!(
                "push.send",
                otel.kind = "client",
                provider = provider.name(),
                outcome = tracing::field::Empty,
            );
            let outcome = provider
                .send(&device.token, &message)
                .instrument(span.clone())
                .await;
            let label = outcome.label();
            span.record("outcome", label);
            switchyard_kit::metrics::metrics()
                .push_sends
                .with_label_values(&[provider.name(), label])
                .inc();
            match outcome {
                Outcome::Delivered => {
                    sent.delivered += 1;
                    processed::first_time(conn, GROUP, &once)
                        .await
                        .map_err(worker_error)?;
                }
                Outcome::Unregistered(reason) => {
                    sent.pruned += 1;
                    tracing::info!(
                        provider = provider.name(),
                        device = device.id,
                        "token pruned: {reason}"
                    );
                    repo::prune_device(&self.store, &device)
                        .await
                        .map_err(worker_error)?;
                }
                Outcome::Rejected(reason) => {
                    sent.rejected += 1;
                    tracing::warn!(
                        provider = provider.name(),
                        device = device.id,
                        "push rejected: {reason}"
                    );
                    processed::first_time(conn, GROUP, &once)
                        .await
                        .map_err(worker_error)?;
                }
                Outcome::Retry { reason, after } => {
                    sent.retry += 1;
                    // The longest wait any provider asked for.
                    let after = [retry.and_then(|(_, a)| a), after]
                        .into_iter()
                        .flatten()
                        .max();
                    retry = Some((format!("{}: {reason}", provider.name()), after));
                }
            }
        }
        match retry {
            Some((reason, after)) => Err(HandlerError::retry_after(reason, after)),
            None => Ok(sent),
        }
    }
}

#[async_trait::async_trait]
impl Handler for Pusher {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn domains(&self) -> &'static [&'static str] {
        &[crate::NAME]
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        if event.kind != kinds::PUSH_REQUESTED {
            return Ok(());
        }
        self.push(event).await.map(|_| ())
    }
}

/// `Retry-After` as seconds (the form FCM and HTTP caches use), bounded to a day.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(86_400)))
}

/// A short, stable, non-reversible name for a token in logs (tokens are credentials to a
/// user's phone and never logged whole).
pub fn token_fingerprint(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..6])
}
