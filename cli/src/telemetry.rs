//! The flags (and environment variables) every long-running `switchyard` process reads for its
//! traces and logs; the router reads the same variables through its YAML.

use std::time::Duration;

use clap::Args;
use switchyard_kit::telemetry::{
    LogFormat, OtlpOptions, OtlpProtocol, Telemetry, TelemetryOptions,
};
use switchyard_kit::wire_names::OTLP_ENDPOINT_ENV;

#[derive(Args, Clone, Debug)]
pub struct TelemetryArgs {
    /// Send spans to this OTLP collector: `http://collector:4317` for gRPC, `:4318` for HTTP.
    /// Unset (the default), nothing is traced.
    #[arg(long, env = OTLP_ENDPOINT_ENV, global = true)]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http` (protobuf over HTTP; `/v1/traces` is appended to the endpoint).
    #[arg(
        long,
        env = "SWITCHYARD_OTLP_PROTOCOL",
        default_value = "grpc",
        global = true
    )]
    pub otlp_protocol: OtlpProtocol,
    /// Share of new traces kept (0.0 to 1.0); a trace the caller sampled is always kept.
    #[arg(
        long,
        env = "SWITCHYARD_TRACE_SAMPLE_RATIO",
        default_value_t = 1.0,
        global = true
    )]
    pub trace_sample_ratio: f64,
    /// How long finished spans wait to be sent in one batch (`5s`, `200ms`).
    #[arg(long, env = "SWITCHYARD_OTLP_BATCH_DELAY", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub otlp_batch_delay: Duration,
    /// `json` (one object per line, with trace ids), `text`, or `auto`: JSON unless standard
    /// output is a terminal.
    #[arg(
        long,
        env = "SWITCHYARD_LOG_FORMAT",
        default_value = "auto",
        global = true
    )]
    pub log_format: LogFormat,
}

impl TelemetryArgs {
    /// Installs the process's logging and, with an endpoint, span export.
    pub fn init(&self, service_name: String) -> anyhow::Result<Telemetry> {
        let otlp = self
            .otlp_endpoint
            .as_ref()
            .filter(|e| !e.trim().is_empty())
            .map(|endpoint| OtlpOptions {
                endpoint: endpoint.clone(),
                protocol: self.otlp_protocol,
                sample_ratio: self.trace_sample_ratio,
                batch_delay: self.otlp_batch_delay,
            });
        Ok(switchyard_kit::telemetry::init(&TelemetryOptions {
            service_name,
            otlp,
            log_format: self.log_format,
        })?)
    }
}
