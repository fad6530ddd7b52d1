//! Traces and logs of a subgraph or worker process: `tracing` spans exported over OTLP (gRPC
//! or HTTP) through `tracing-opentelemetry`, on the opentelemetry 0.31 family apollo-router
//! uses, and one log line per event, JSON with the trace and span ids when read by a machine.
//!
//! Export is off by default: a process with no OTLP endpoint keeps no span data at all, so the
//! embedded defaults pay nothing. Sampling is by trace-id ratio and follows the parent's
//! decision, so one sampled request is sampled in every process it crosses.
//!
//! Trace context crosses processes as W3C `traceparent`: on HTTP from the router
//! ([`context_from_headers`], believed only from the router, see [`crate::viewer`]), and
//! through the event pipeline as the `traceparent` stored with each outbox row
//! ([`current_traceparent`], [`context_from_traceparent`]).

mod json_log;

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use json_log::JsonLines;

/// The log filter when `RUST_LOG` is unset: our own crates and apollo-router at info, the SQL
/// drivers (which would log every statement) at warn.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

/// How OTLP is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// gRPC (the collector's port 4317).
    Grpc,
    /// HTTP with protobuf bodies (port 4318); `/v1/traces` is appended to the endpoint unless
    /// it is already there, as apollo-router does.
    Http,
}

impl std::str::FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Self::Grpc),
            "http" => Ok(Self::Http),
            other => Err(format!(
                "unknown OTLP protocol {other:?}: expected grpc or http"
            )),
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpOptions {
    /// `http://collector:4317` (gRPC) or `http://collector:4318` (HTTP).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Share of new traces kept, 0.0 to 1.0; a trace already sampled upstream is always kept.
    pub sample_ratio: f64,
    /// How long spans wait to be sent in a batch (the SDK's default is 5 s).
    pub batch_delay: Duration,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with trace and span ids (what a log pipeline reads).
    Json,
    /// Human-readable lines (a terminal).
    Text,
    /// JSON unless standard output is a terminal (apollo-router's own default).
    Auto,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown log format {other:?}: expected json, text or auto"
            )),
        }
    }
}

/// What [`init`] sets up for one process.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryOptions {
    /// `service.name` of every span (`switchyard-posts`, `switchyard-worker-push`, ...).
    pub service_name: String,
    /// `None`: no spans are exported (the default).
    pub otlp: Option<OtlpOptions>,
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("sample ratio must be between 0.0 and 1.0, got {0}")]
    SampleRatio(f64),
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Keeps the exporter alive; dropping it sends the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter (off the async threads: the
    /// SDK's shutdown blocks until the export task has finished).
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                eprintln!("telemetry: flushing spans at exit failed: {e}");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans at exit failed: {e}");
        }
    }
}

/// Installs the process's global subscriber: the log filter (`RUST_LOG`, else
/// [`DEFAULT_LOG_FILTER`]), the log format and, with `otlp`, the span exporter. Call once, from
/// inside the tokio runtime (the exporter's batches run on it).
pub fn init(options: &TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let provider = options
        .otlp
        .as_ref()
        .map(|otlp| tracer_provider(&options.service_name, otlp))
        .transpose()?;
    let otel_layer = provider.as_ref().map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchyard"))
            .with_tracked_inactivity(false)
    });
    let json = match options.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let (json_layer, text_layer) = if json {
        (
            Some(tracing_subscriber::fmt::layer().event_format(JsonLines)),
            None,
        )
    } else {
        (None, Some(tracing_subscriber::fmt::layer()))
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(json_layer)
        .with(text_layer)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(Telemetry { provider })
}

fn tracer_provider(
    service_name: &str,
    otlp: &OtlpOptions,
) -> Result<SdkTracerProvider, TelemetryError> {
    if !(0.0..=1.0).contains(&otlp.sample_ratio) {
        return Err(TelemetryError::SampleRatio(otlp.sample_ratio));
    }
    let exporter = match otlp.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build(),
        OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(http_traces_url(&otlp.endpoint))
            .with_timeout(Duration::from_secs(10))
            .build(),
    }
    .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let batches = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_scheduled_delay(otlp.batch_delay)
        // Bounded: when the collector is slow or down, spans beyond this are dropped, never
        // memory.
        .with_max_queue_size(4096)
        .build();
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .with_batch_config(batches)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            otlp.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// The OTLP/HTTP traces URL for a collector endpoint.
pub fn http_traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

struct OneField<'a>(Option<&'a str>);

impl Extractor for OneField<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent" { self.0 } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[derive(Default)]
struct Captured(Option<String>);

impl Injector for Captured {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

/// The trace context an HTTP request carries (`traceparent`); an empty context when it carries
/// none or one that does not parse (a new trace starts).
pub fn context_from_headers(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Longest `traceparent` accepted from storage or a bus (version 00 is 55 characters).
const MAX_TRACEPARENT_BYTES: usize = 128;

/// The context a stored `traceparent` names; empty when absent, too long or malformed.
pub fn context_from_traceparent(traceparent: Option<&str>) -> opentelemetry::Context {
    let value = traceparent.filter(|t| t.len() <= MAX_TRACEPARENT_BYTES);
    TraceContextPropagator::new().extract(&OneField(value))
}

/// The `traceparent` of the current span, when it is part of a sampled trace: what an outbox
/// row stores so the worker that handles its event continues the request's trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The `traceparent` of `span`, when it is part of a sampled trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    if !context.span().span_context().is_sampled() {
        return None;
    }
    let mut captured = Captured::default();
    TraceContextPropagator::new().inject_context(&context, &mut captured);
    captured.0
}

/// Makes `parent` the parent of `span` (a no-op when tracing is off or `parent` is empty).
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Records a finished client call (a shard statement) as a span under the current context,
/// with the time it really started: SeaORM reports statements after they ran, with their
/// duration, so the span is built from that report rather than around the call. The
/// attributes are only built inside a sampled trace: this runs for every statement.
pub fn record_finished_span(
    name: &'static str,
    elapsed: Duration,
    failed: bool,
    attributes: impl FnOnce() -> Vec<opentelemetry::KeyValue>,
) {
    use opentelemetry::trace::{Span as _, Status, Tracer as _};
    let parent = opentelemetry::Context::current();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let end = std::time::SystemTime::now();
    let tracer = opentelemetry::global::tracer("switchyard.store");
    let mut span = tracer.build_with_context(
        opentelemetry::trace::SpanBuilder::from_name(name)
            .with_kind(opentelemetry::trace::SpanKind::Client)
            .with_start_time(end - elapsed)
            .with_attributes(attributes()),
        &parent,
    );
    if failed {
        span.set_status(Status::error("statement failed"));
    }
    span.end_with_timestamp(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocols_and_formats() {
        assert_eq!("grpc".parse::<OtlpProtocol>(), Ok(OtlpProtocol::Grpc));
        assert_eq!("http".parse::<OtlpProtocol>(), Ok(OtlpProtocol::Http));
        assert!(
            "thrift"
                .parse::<OtlpProtocol>()
                .unwrap_err()
                .contains("grpc or http")
        );
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn http_endpoint_gets_the_traces_path_once() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn stored_traceparent_is_read_strictly() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context_from_traceparent(Some(valid));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "00-zzzz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            &format!("{valid}{}", "0".repeat(200)),
        ] {
            let cx = context_from_traceparent(Some(bad));
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
        assert!(
            !context_from_traceparent(None)
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn a_bad_sample_ratio_is_refused() {
        let err = tracer_provider(
            "t",
            &OtlpOptions {
                endpoint: "http://127.0.0.1:4318".into(),
                protocol: OtlpProtocol::Http,
                sample_ratio: 1.5,
                batch_delay: Duration::from_secs(1),
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("1.5"), "{err}");
    }
}
