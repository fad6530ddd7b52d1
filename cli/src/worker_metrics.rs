//! `/metrics` of a `switchyard worker` process, in the Prometheus text format, when
//! `--metrics-listen` is given: the outbox lag of every shard the relay moves (read from the
//! shards at each scrape, so it is never stale) and each consumer group's handler outcomes.
//! Every label has a bounded set of values: subgraph names, shard numbers, group names.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_kit::events::Event;
use switchyard_kit::events::relay::Relay;
use switchyard_kit::events::worker::{Handler, HandlerError};

/// What one worker process reports.
#[derive(Default)]
pub struct WorkerMetrics {
    relays: Vec<(&'static str, Arc<Relay>)>,
    groups: Vec<Arc<Outcomes>>,
}

/// Handler calls of one consumer group, by outcome.
pub struct Outcomes {
    group: &'static str,
    ok: AtomicU64,
    error: AtomicU64,
}

/// A handler whose calls are counted.
pub struct Counted {
    inner: Arc<dyn Handler>,
    outcomes: Arc<Outcomes>,
}

#[async_trait::async_trait]
impl Handler for Counted {
    fn group(&self) -> &'static str {
        self.inner.group()
    }

    fn domains(&self) -> &'static [&'static str] {
        self.inner.domains()
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let result = self.inner.handle(event).await;
        let counter = if result.is_ok() {
            &self.outcomes.ok
        } else {
            &self.outcomes.error
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

/// The longest a scrape waits for the shards' lag.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

impl WorkerMetrics {
    pub fn relay(&mut self, domain: &'static str, relay: Arc<Relay>) {
        self.relays.push((domain, relay));
    }

    /// `handler`, counted.
    pub fn count(&mut self, handler: Arc<dyn Handler>) -> Arc<dyn Handler> {
        let outcomes = Arc::new(Outcomes {
            group: handler.group(),
            ok: AtomicU64::new(0),
            error: AtomicU64::new(0),
        });
        self.groups.push(outcomes.clone());
        Arc::new(Counted {
            inner: handler,
            outcomes,
        })
    }

    /// The exposition text.
    pub async fn render(&self) -> String {
        let mut out = String::new();
        if !self.relays.is_empty() {
            let mut unsent = String::new();
            let mut age = String::new();
            let mut up = String::new();
            for (domain, relay) in &self.relays {
                match tokio::time::timeout(SCRAPE_TIMEOUT, relay.lag()).await {
                    Ok(Ok(shards)) => {
                        for lag in shards {
                            let labels = format!("domain=\"{domain}\",shard=\"{}\"", lag.shard);
                            let _ = writeln!(
                                unsent,
                                "switchyard_outbox_unsent_events{{{labels}}} {}",
                                lag.unsent
                            );
                            let _ = writeln!(
                                age,
                                "switchyard_outbox_oldest_unsent_age_seconds{{{labels}}} {}",
                                lag.oldest_secs
                            );
                        }
                        let _ = writeln!(up, "switchyard_outbox_lag_up{{domain=\"{domain}\"}} 1");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(domain, "outbox lag: {e}");
                        let _ = writeln!(up, "switchyard_outbox_lag_up{{domain=\"{domain}\"}} 0");
                    }
                    Err(_) => {
                        tracing::warn!(domain, "outbox lag: no answer within {SCRAPE_TIMEOUT:?}");
                        let _ = writeln!(up, "switchyard_outbox_lag_up{{domain=\"{domain}\"}} 0");
                    }
                }
            }
            out.push_str("# HELP switchyard_outbox_unsent_events Outbox rows not yet published to the bus.\n# TYPE switchyard_outbox_unsent_events gauge\n");
            out.push_str(&unsent);
            out.push_str("# HELP switchyard_outbox_oldest_unsent_age_seconds Age of the oldest unpublished outbox row (0 when none).\n# TYPE switchyard_outbox_oldest_unsent_age_seconds gauge\n");
            out.push_str(&age);
            out.push_str("# HELP switchyard_outbox_lag_up Whether every shard of the subgraph answered the lag query.\n# TYPE switchyard_outbox_lag_up gauge\n");
            out.push_str(&up);
        }
        if !self.groups.is_empty() {
            out.push_str("# HELP switchyard_worker_handler_calls_total Event handler calls, by consumer group and outcome (an error is retried).\n# TYPE switchyard_worker_handler_calls_total counter\n");
            for group in &self.groups {
                for (outcome, counter) in [("ok", &group.ok), ("error", &group.error)] {
                    let _ = writeln!(
                        out,
                        "switchyard_worker_handler_calls_total{{group=\"{}\",outcome=\"{outcome}\"}} {}",
                        group.group,
                        counter.load(Ordering::Relaxed)
                    );
                }
            }
        }
        out
    }
}

/// Serves `/metrics` on `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<WorkerMetrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    metrics.render().await,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {listen}: {e}"))?;
    tracing::info!("metrics on http://{listen}/metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_kit::events::embedded::EmbeddedBus;
    use switchyard_kit::events::{EventBus, Streams};
    use switchyard_kit::{ShardedStore, StoreConfig};

    struct Failing;

    #[async_trait::async_trait]
    impl Handler for Failing {
        fn group(&self) -> &'static str {
            "failing"
        }
        fn domains(&self) -> &'static [&'static str] {
            &["engagement"]
        }
        async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
            Err(format!("{} fails", event.id).into())
        }
    }

    #[tokio::test]
    async fn reports_the_outbox_lag_per_shard_and_handler_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            ShardedStore::connect(&StoreConfig::sqlite(dir.path(), "engagement", 2))
                .await
                .unwrap(),
        );
        store
            .migrate::<switchyard_engagement::Migrator>()
            .await
            .unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&dir.path().join("events.db"))
                .await
                .unwrap(),
        );
        let post = switchyard_kit::id::compose_id(switchyard_kit::id::EPOCH_MS + 1, 1, 0);
        switchyard_engagement::repo::like(&store.session(), 7, post)
            .await
            .unwrap();
        let relay = Arc::new(Relay::new(
            store.clone(),
            "engagement",
            bus,
            Streams::default(),
        ));
        let mut metrics = WorkerMetrics::default();
        metrics.relay("engagement", relay.clone());
        let counted = metrics.count(Arc::new(Failing));
        let text = metrics.render().await;
        assert!(
            text.contains("switchyard_outbox_unsent_events{domain=\"engagement\",shard=\"0\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_outbox_unsent_events{domain=\"engagement\",shard=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_outbox_lag_up{domain=\"engagement\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_worker_handler_calls_total{group=\"failing\",outcome=\"error\"} 0\n"
            ),
            "{text}"
        );

        assert_eq!(relay.run_once().await.unwrap(), 1);
        let event = Event {
            id: "engagement:1:1".into(),
            kind: "PostLiked".into(),
            domain: "engagement".into(),
            aggregate: format!("Post:{post}"),
            occurred_at: chrono::Utc::now(),
            data: serde_json::json!({}),
        };
        assert!(counted.handle(&event).await.is_err());
        let text = metrics.render().await;
        assert!(
            text.contains("switchyard_outbox_unsent_events{domain=\"engagement\",shard=\"1\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_outbox_oldest_unsent_age_seconds{domain=\"engagement\",shard=\"1\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_worker_handler_calls_total{group=\"failing\",outcome=\"error\"} 1\n"
            ),
            "{text}"
        );
    }
}
