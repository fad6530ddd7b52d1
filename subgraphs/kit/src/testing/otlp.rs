//! An in-process OTLP collector for tests: accepts traces over HTTP (`POST /v1/traces`,
//! protobuf) and gRPC (`TraceService/Export`), and keeps every span it receives, so a test
//! can check a whole trace across processes: names, services, parent links, attributes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::sync::Notify;

/// One span as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// Attributes, as text.
    pub attributes: BTreeMap<String, String>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
}

impl Received {
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().expect("receiver lock");
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(text)
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| {
                                (
                                    kv.key.clone(),
                                    kv.value.as_ref().map(text).unwrap_or_default(),
                                )
                            })
                            .collect(),
                        start_unix_nanos: span.start_time_unix_nano,
                        end_unix_nanos: span.end_time_unix_nano,
                    });
                }
            }
        }
        drop(spans);
        self.arrived.notify_waiters();
    }
}

fn text(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    match &value.value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The collector; it stops when dropped.
pub struct OtlpReceiver {
    /// `http://…` base for OTLP/HTTP (`/v1/traces` is its path).
    pub http_endpoint: String,
    /// `http://…` for OTLP/gRPC.
    pub grpc_endpoint: String,
    received: Arc<Received>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl OtlpReceiver {
    /// Listens on two ephemeral loopback ports.
    pub async fn start() -> Self {
        let received = Arc::new(Received::default());
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP/HTTP");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP/gRPC");
        let (http_addr, grpc_addr): (SocketAddr, SocketAddr) =
            (http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let on_http = received.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = on_http.clone();
                async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => {
                            received.add(request);
                            (
                                axum::http::StatusCode::OK,
                                [("content-type", "application/x-protobuf")],
                                ExportTraceServiceResponse {
                                    partial_success: None,
                                }
                                .encode_to_vec(),
                            )
                        }
                        Err(e) => (
                            axum::http::StatusCode::BAD_REQUEST,
                            [("content-type", "text/plain")],
                            e.to_string().into_bytes(),
                        ),
                    }
                }
            }),
        );
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let service = TraceServiceServer::new(Grpc(received.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let grpc_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await;
        });
        Self {
            http_endpoint: format!("http://{http_addr}"),
            grpc_endpoint: format!("http://{grpc_addr}"),
            received,
            tasks: vec![http_task, grpc_task],
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("receiver lock").clone()
    }

    /// Every span received so far, forgotten by the receiver (a benchmark counts each
    /// session's spans without keeping them all).
    pub fn take_spans(&self) -> Vec<ReceivedSpan> {
        std::mem::take(&mut *self.received.spans.lock().expect("receiver lock"))
    }

    /// Waits until the spans received satisfy `done` (checked at each arrival), or `timeout`;
    /// returns the spans either way, so the caller's assertion shows what did arrive.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.received.arrived.notified();
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.spans();
            }
        }
    }
}

/// The spans of one trace as an indented tree (for failure messages and the closing note).
pub fn span_tree(spans: &[ReceivedSpan], trace_id: &str) -> String {
    let of_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let ids: std::collections::HashSet<&str> =
        of_trace.iter().map(|s| s.span_id.as_str()).collect();
    let mut out = String::new();
    fn walk(out: &mut String, spans: &[&ReceivedSpan], parent: &ReceivedSpan, depth: usize) {
        let mut children: Vec<&&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .collect();
        children.sort_by_key(|s| s.start_unix_nanos);
        for child in children {
            line(out, child, parent.start_unix_nanos, depth);
            walk(out, spans, child, depth + 1);
        }
    }
    fn line(out: &mut String, span: &ReceivedSpan, origin: u64, depth: usize) {
        let ms = |n: u64| n as f64 / 1e6;
        out.push_str(&format!(
            "{}{} [{}] +{:.2} ms, {:.2} ms\n",
            "  ".repeat(depth),
            span.name,
            span.service,
            ms(span.start_unix_nanos.saturating_sub(origin)),
            ms(span.end_unix_nanos.saturating_sub(span.start_unix_nanos)),
        ));
    }
    let mut roots: Vec<&&ReceivedSpan> = of_trace
        .iter()
        .filter(|s| !ids.contains(s.parent_span_id.as_str()))
        .collect();
    roots.sort_by_key(|s| s.start_unix_nanos);
    for root in roots {
        line(&mut out, root, root.start_unix_nanos, 0);
        walk(&mut out, &of_trace, root, 1);
    }
    out
}
