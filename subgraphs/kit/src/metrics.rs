//! The Prometheus metrics of subgraph and worker processes, in one registry per process, served
//! as `/metrics` (subgraphs on their own port, workers on `--metrics-listen`).
//!
//! Every label has a bounded set of values: subgraph and consumer-group names, shard numbers,
//! roles, statement kinds, outcomes, stream names. The one label fed by requests, the GraphQL
//! operation name, is bounded by [`BoundedNames`]: names that are not plain GraphQL names, and
//! every name after the first [`MAX_OPERATION_NAMES`], count as `other`. No user ids, no raw
//! client input.
//!
//! Some values are read when scraped rather than counted (pool usage, replica lag, outbox
//! lag, consumer-group lag): [`watch`] registers what to read, once per key.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Distinct operation names kept as label values; later ones count as `other`.
pub const MAX_OPERATION_NAMES: usize = 200;
/// Longest operation name kept as a label value.
pub const MAX_OPERATION_NAME_CHARS: usize = 100;
/// The longest a scrape waits for the values read at scrape time.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every metric a subgraph or worker process exports.
pub struct Metrics {
    registry: Registry,
    /// GraphQL requests served, by subgraph, operation and outcome (`ok`, `error`).
    pub requests: IntCounterVec,
    /// Time to answer a GraphQL request, by subgraph and operation.
    pub request_duration: HistogramVec,
    /// Keys per loader batch, by subgraph and loader.
    pub loader_batch_keys: HistogramVec,
    /// Shard statement time, by subgraph, shard, role and statement kind.
    pub statement_duration: HistogramVec,
    /// Shard statements that failed, by subgraph, shard, role and statement kind.
    pub statement_errors: IntCounterVec,
    /// Pool connections, by subgraph, shard, role and state (`idle`, `in_use`).
    pub pool_connections: IntGaugeVec,
    /// Pool size limit, by subgraph, shard and role.
    pub pool_max_connections: IntGaugeVec,
    /// How far a PostgreSQL replica's replay is behind (0 when caught up), by subgraph, shard.
    pub replica_lag: GaugeVec,
    /// Times a replica was found unreachable and taken out of rotation, by subgraph, shard.
    pub replica_failovers: IntCounterVec,
    /// 1 while a shard's replica is in rotation, 0 while its reads go to the primary.
    pub replica_up: IntGaugeVec,
    /// Outbox rows not yet relayed, by subgraph and shard.
    pub outbox_unsent: IntGaugeVec,
    /// Age of the oldest unrelayed outbox row, by subgraph and shard.
    pub outbox_oldest_age: GaugeVec,
    /// 1 when the last scrape could read a subgraph's outbox, 0 when a shard did not answer.
    pub outbox_lag_up: IntGaugeVec,
    /// Outbox rows the relay published, by subgraph.
    pub relay_published: IntCounterVec,
    /// Relay rounds that failed (a shard or the bus unreachable), by subgraph.
    pub relay_errors: IntCounterVec,
    /// Worker rounds that failed on the bus (Redis down), by group.
    pub bus_errors: IntCounterVec,
    /// Events a consumer group finished with, by group and outcome (`handled`, `failed`:
    /// retries exhausted and left pending for redelivery, `dead`: moved to the dead letters).
    pub worker_events: IntCounterVec,
    /// Handler attempts after the first, by group.
    pub worker_retries: IntCounterVec,
    /// Handler time per attempt, by group.
    pub handler_duration: HistogramVec,
    /// Entries of a stream a group has not read yet, by group and stream.
    pub group_lag: IntGaugeVec,
    /// Entries read but not acknowledged, by group and stream.
    pub group_pending: IntGaugeVec,
    /// Entries in a group's dead-letter stream.
    pub dead_letters: IntGaugeVec,
    /// Push sends, by provider (`fcm`, `apns`, `log`) and outcome.
    pub push_sends: IntCounterVec,
    operations: BoundedNames,
    watched: Mutex<BTreeMap<String, Arc<dyn Watch>>>,
}

/// Something read at scrape time.
#[async_trait::async_trait]
pub trait Watch: Send + Sync {
    async fn read(&self, metrics: &Metrics);
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Reads `watch` at every scrape from now on; a second watch with the same key is ignored
/// (`switchyard dev` runs a subgraph and the relay of its outbox in one process).
pub fn watch(key: String, watch: Arc<dyn Watch>) {
    metrics()
        .watched
        .lock()
        .expect("metrics lock")
        .entry(key)
        .or_insert(watch);
}

/// The Prometheus text exposition of every metric, after reading the watched values.
pub async fn render() -> String {
    let metrics = metrics();
    let watched: Vec<Arc<dyn Watch>> = metrics
        .watched
        .lock()
        .expect("metrics lock")
        .values()
        .cloned()
        .collect();
    let reads = futures::future::join_all(watched.iter().map(|w| w.read(metrics)));
    if tokio::time::timeout(SCRAPE_TIMEOUT, reads).await.is_err() {
        tracing::warn!("metrics: values read at scrape time took over {SCRAPE_TIMEOUT:?}");
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&metrics.registry.gather(), &mut out) {
        tracing::warn!("metrics: encoding failed: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// An axum handler serving [`render`] in the text format.
pub async fn handler() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render().await,
    )
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let float_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let shard = &["subgraph", "shard", "role", "statement"];
        Self {
            requests: counter(
                "switchyard_subgraph_requests_total",
                "GraphQL requests a subgraph served, by operation and outcome (ok, error)",
                &["subgraph", "operation", "outcome"],
            ),
            request_duration: histogram(
                "switchyard_subgraph_request_duration_seconds",
                "Time a subgraph took to answer a GraphQL request, by operation",
                &["subgraph", "operation"],
                LATENCY_BUCKETS,
            ),
            loader_batch_keys: histogram(
                "switchyard_loader_batch_keys",
                "Keys per loader batch (one batch is one statement per shard touched)",
                &["subgraph", "loader"],
                SIZE_BUCKETS,
            ),
            statement_duration: histogram(
                "switchyard_store_statement_duration_seconds",
                "Shard statement time, by shard, role (primary, replica) and statement kind",
                shard,
                LATENCY_BUCKETS,
            ),
            statement_errors: counter(
                "switchyard_store_statement_errors_total",
                "Shard statements that failed, by shard, role and statement kind",
                shard,
            ),
            pool_connections: gauge(
                "switchyard_store_pool_connections",
                "Connections in a shard's pool, by role and state (idle, in_use)",
                &["subgraph", "shard", "role", "state"],
            ),
            pool_max_connections: gauge(
                "switchyard_store_pool_max_connections",
                "The most connections a shard's pool opens, by role",
                &["subgraph", "shard", "role"],
            ),
            replica_lag: float_gauge(
                "switchyard_store_replica_lag_seconds",
                "How far a PostgreSQL replica's replay is behind its primary (0 when caught up)",
                &["subgraph", "shard"],
            ),
            replica_failovers: counter(
                "switchyard_store_replica_failovers_total",
                "Times a shard's replica was found unreachable and its reads moved to the primary",
                &["subgraph", "shard"],
            ),
            replica_up: gauge(
                "switchyard_store_replica_up",
                "1 while a shard's replica serves reads, 0 while it is out of rotation",
                &["subgraph", "shard"],
            ),
            outbox_unsent: gauge(
                "switchyard_outbox_unsent_events",
                "Outbox rows not yet relayed to the event bus",
                &["subgraph", "shard"],
            ),
            outbox_oldest_age: float_gauge(
                "switchyard_outbox_oldest_unsent_age_seconds",
                "Age of the oldest outbox row not yet relayed (0 when none)",
                &["subgraph", "shard"],
            ),
            outbox_lag_up: gauge(
                "switchyard_outbox_lag_up",
                "1 when the last scrape read the subgraph's outbox lag, 0 when a shard failed",
                &["subgraph"],
            ),
            relay_published: counter(
                "switchyard_relay_published_events_total",
                "Outbox rows the relay published to the event bus",
                &["subgraph"],
            ),
            relay_errors: counter(
                "switchyard_relay_errors_total",
                "Relay rounds that failed (a shard or the event bus did not answer)",
                &["subgraph"],
            ),
            bus_errors: counter(
                "switchyard_worker_bus_errors_total",
                "Worker rounds that failed on the event bus (Redis unreachable)",
                &["group"],
            ),
            worker_events: counter(
                "switchyard_worker_events_total",
                "Events a consumer group finished with, by outcome (handled, failed, dead)",
                &["group", "outcome"],
            ),
            worker_retries: counter(
                "switchyard_worker_retries_total",
                "Handler attempts after the first",
                &["group"],
            ),
            handler_duration: histogram(
                "switchyard_worker_handler_duration_seconds",
                "Time of one handler attempt",
                &["group"],
                LATENCY_BUCKETS,
            ),
            group_lag: gauge(
                "switchyard_consumer_group_lag_entries",
                "Entries of a stream the consumer group has not read yet",
                &["group", "stream"],
            ),
            group_pending: gauge(
                "switchyard_consumer_group_pending_entries",
                "Entries the consumer group read but has not acknowledged",
                &["group", "stream"],
            ),
            dead_letters: gauge(
                "switchyard_dead_letter_entries",
                "Entries in the consumer group's dead-letter stream",
                &["group"],
            ),
            push_sends: counter(
                "switchyard_push_sends_total",
                "Push notifications handed to a provider, by provider and outcome",
                &["provider", "outcome"],
            ),
            operations: BoundedNames::new(MAX_OPERATION_NAMES),
            watched: Mutex::new(BTreeMap::new()),
            registry,
        }
    }

    /// The label value for a request's operation name (see [`BoundedNames`]).
    pub fn operation_label(&self, name: Option<&str>) -> String {
        match name {
            None | Some("") => "anonymous".to_owned(),
            Some(name) => self.operations.label(name),
        }
    }
}

/// A label fed by outside input, kept bounded: plain GraphQL names up to
/// [`MAX_OPERATION_NAME_CHARS`], the first `max` distinct ones; everything else is `other`.
pub struct BoundedNames {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl BoundedNames {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    pub fn label(&self, name: &str) -> String {
        let plain = name.len() <= MAX_OPERATION_NAME_CHARS
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return "other".to_owned();
        }
        let mut seen = self.seen.lock().expect("names lock");
        if seen.contains(name) {
            return name.to_owned();
        }
        if seen.len() < self.max {
            seen.insert(name.to_owned());
            return name.to_owned();
        }
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded() {
        let names = BoundedNames::new(2);
        assert_eq!(names.label("Feed__posts__0"), "Feed__posts__0");
        assert_eq!(names.label("Profile"), "Profile");
        assert_eq!(names.label("Third"), "other");
        assert_eq!(names.label("Feed__posts__0"), "Feed__posts__0");
        for hostile in ["user 42", "a\"b", "1abc", &"x".repeat(101), "ü"] {
            assert_eq!(names.label(hostile), "other", "{hostile}");
        }
        assert_eq!(metrics().operation_label(None), "anonymous");
    }

    #[tokio::test]
    async fn renders_the_text_format() {
        metrics()
            .requests
            .with_label_values(&["t", "Q", "ok"])
            .inc();
        let text = render().await;
        assert!(
            text.contains(
                r#"switchyard_subgraph_requests_total{operation="Q",outcome="ok",subgraph="t"}"#
            ),
            "{text}"
        );
    }
}
