//! `/metrics` of a `switchyard worker` process (`--metrics-listen`): the process's registry
//! ([`switchyard_kit::metrics`]): the relay's outbox lag per shard, each consumer group's
//! outcomes, retries, handler time, lag, pending entries and dead letters, and push sends.

use std::net::SocketAddr;

/// Serves `/metrics` on `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(switchyard_kit::metrics::handler),
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
    use std::sync::Arc;
    use std::time::Duration;

    use switchyard_kit::events::embedded::EmbeddedBus;
    use switchyard_kit::events::relay::Relay;
    use switchyard_kit::events::worker::{Handler, HandlerError, Worker, WorkerOptions};
    use switchyard_kit::events::{Event, EventBus, Streams};
    use switchyard_kit::{ShardedStore, StoreConfig};

    struct Failing;

    #[async_trait::async_trait]
    impl Handler for Failing {
        fn group(&self) -> &'static str {
            "failing-test"
        }
        fn domains(&self) -> &'static [&'static str] {
            &["engagement"]
        }
        async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
            Err(format!("{} fails", event.id).into())
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    /// The relay's outbox lag and a failing group's outcomes, retries, pending entries and
    /// dead letters, as a scrape sees them, before and after.
    #[tokio::test]
    async fn reports_outbox_lag_and_consumer_group_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            ShardedStore::connect_as(
                "engagement",
                &StoreConfig::sqlite(dir.path(), "engagement", 2),
            )
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
        let streams = Streams::default();
        let relay = Arc::new(Relay::new(
            store.clone(),
            "engagement",
            bus.clone(),
            streams.clone(),
        ));
        relay.watch_metrics();
        let options = WorkerOptions {
            attempts: 2,
            retry_base: Duration::from_millis(1),
            max_deliveries: 1,
            block: Duration::from_millis(10),
            ..WorkerOptions::default()
        };
        let worker = Worker::new(bus, &streams, Arc::new(Failing), options)
            .await
            .unwrap();

        let text = switchyard_kit::metrics::render().await;
        let unsent = r#"switchyard_outbox_unsent_events{shard="1",subgraph="engagement"}"#;
        assert_eq!(value(&text, unsent), Some(1.0), "{text}");
        assert_eq!(
            value(
                &text,
                r#"switchyard_outbox_unsent_events{shard="0",subgraph="engagement"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"switchyard_outbox_lag_up{subgraph="engagement"}"#),
            Some(1.0)
        );

        assert_eq!(relay.run_once().await.unwrap(), 1);
        let round = worker.run_once().await.unwrap();
        assert_eq!(round.failed, 1, "{round:?}");
        let text = switchyard_kit::metrics::render().await;
        assert_eq!(value(&text, unsent), Some(0.0), "{text}");
        assert_eq!(
            value(
                &text,
                r#"switchyard_worker_events_total{group="failing-test",outcome="failed"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"switchyard_worker_retries_total{group="failing-test"}"#
            ),
            Some(1.0),
            "{text}"
        );
        let stream = streams.stream_for("engagement", &format!("Post:{post}"));
        let pending = format!(
            r#"switchyard_consumer_group_pending_entries{{group="failing-test",stream="{stream}"}}"#
        );
        assert_eq!(value(&text, &pending), Some(1.0), "{text}");

        // Delivered again past max_deliveries: a dead letter.
        let worker = Worker::new(
            Arc::new(
                EmbeddedBus::open(&dir.path().join("events.db"))
                    .await
                    .unwrap(),
            ),
            &streams,
            Arc::new(Failing),
            WorkerOptions {
                claim_idle: Duration::ZERO,
                max_deliveries: 1,
                block: Duration::from_millis(10),
                ..WorkerOptions::default()
            },
        )
        .await
        .unwrap();
        let round = worker.run_once().await.unwrap();
        assert_eq!(round.dead, 1, "{round:?}");
        let text = switchyard_kit::metrics::render().await;
        assert_eq!(
            value(
                &text,
                r#"switchyard_worker_events_total{group="failing-test",outcome="dead"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"switchyard_dead_letter_entries{group="failing-test"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(value(&text, &pending), Some(0.0), "{text}");
    }
}
