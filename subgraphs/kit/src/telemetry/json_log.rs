//! One JSON object per log line: time, level, target, the event's fields, the innermost span's
//! name and, when the span belongs to a trace, its `trace_id` and `span_id`, so a log search
//! jumps to the trace and back. tracing-subscriber's own JSON format has no trace ids.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format (see the module docs).
pub struct JsonLines;

/// Longest field value written; longer values are cut (a log line stays a line).
const MAX_FIELD_CHARS: usize = 4096;

struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value: String = value.chars().take(MAX_FIELD_CHARS).collect();
        self.put(field, Value::String(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut Fields(&mut line));
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
            if let Some(otel) = span.extensions().get::<tracing_opentelemetry::OtelData>() {
                if let Some(trace_id) = otel.trace_id() {
                    line.insert("trace_id".into(), trace_id.to_string().into());
                }
                if let Some(span_id) = otel.span_id() {
                    line.insert("span_id".into(), span_id.to_string().into());
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}
