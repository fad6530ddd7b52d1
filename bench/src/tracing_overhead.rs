//! What tracing costs: the whole platform as `switchyard dev` runs it (router child process,
//! subgraphs on the embedded SQLite shards, demo data), once with no trace exporter (the default
//! a user gets) and once per sample ratio with every process exporting OTLP to a collector in
//! this process (the router over gRPC, the subgraphs over HTTP, as in `docs/operations.md`).
//!
//! Each variant is a fresh `switchyard dev` on the same data directory, variants alternate
//! within every round, and the medians are compared. Besides throughput and latency the
//! workload reports the CPU the platform's processes spent per request (read from `/proc`,
//! which is steadier than throughput on a shared machine) and the spans exported per request,
//! so a variant that silently exported nothing fails the run instead of flattering it.
//!
//! The collector decodes every export on the same two cores, so the measured overhead is an
//! upper bound of what a remote collector would cost.

use anyhow::{Context, bail};
use switchyard_kit::testing::otlp::OtlpReceiver;

use crate::Settings;
use crate::dev::{Dev, router_config_without};
use crate::load::{self, Request, median};

/// The router's listen address in `router/router.yaml`, which this workload keeps.
const ROUTER: &str = "http://127.0.0.1:4000/graphql";

/// A federated read touching three subgraphs (posts, accounts, engagement), each through a
/// loader batch and shard statements: every span kind a traced request has.
const QUERY: &str =
    "query TraceBench { feed(first: 10) { nodes { id body likeCount author { handle } } } }";

/// One way to run the platform.
struct Variant {
    name: &'static str,
    /// `None`: no exporter configured (the default).
    sample_ratio: Option<f64>,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "tracing off (default)",
        sample_ratio: None,
    },
    Variant {
        name: "OTLP, ratio 0.05 (production)",
        sample_ratio: Some(0.05),
    },
    Variant {
        name: "OTLP, ratio 1.0 (every request)",
        sample_ratio: Some(1.0),
    },
];

/// One measured round of one variant.
#[derive(Default)]
struct Measured {
    rps: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    cpu_us_per_request: Vec<f64>,
    spans_per_request: Vec<f64>,
    rss_mb: Vec<f64>,
}

pub async fn tracing(settings: &Settings) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?.with_file_name("switchyard");
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it beside the bench (`./scripts/bench` does)",
        binary.display()
    );
    let repo = settings.repo.canonicalize().context("--repo")?;
    let dir = tempfile::tempdir()?;
    // The rate limits' development rules would refuse the load; the response cache would
    // answer without reaching a subgraph (little to trace). Everything else stays on.
    let config = router_config_without(
        &repo,
        dir.path(),
        "router.yaml",
        &["rate_limit", "response_cache"],
    )?;
    let data = dir.path().join("data");
    let receiver = OtlpReceiver::start().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.workers)
        .gzip(true)
        .build()?;
    let request = Request {
        method: reqwest::Method::POST,
        url: ROUTER.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(serde_json::json!({ "query": QUERY }).to_string()),
        gzip: true,
    };
    println!(
        "switchyard dev (release, {} workers, {} s per measurement, {} rounds); the first start seeds the demo data",
        settings.workers,
        settings.duration.as_secs(),
        settings.rounds
    );
    let mut measured: Vec<Measured> = VARIANTS.iter().map(|_| Measured::default()).collect();
    for round in 1..=settings.rounds {
        for (variant, out) in VARIANTS.iter().zip(&mut measured) {
            let dev = Dev::start(&binary, &repo, &config, &data, variant.name, |command| {
                if let Some(ratio) = variant.sample_ratio {
                    let ratio = ratio.to_string();
                    command
                        .args(["--otlp-protocol", "http", "--otlp-endpoint"])
                        .arg(&receiver.http_endpoint)
                        .args(["--trace-sample-ratio", &ratio])
                        .env("SWITCHYARD_OTLP_ENDPOINT", &receiver.grpc_endpoint)
                        .env("SWITCHYARD_OTLP_PROTOCOL", "grpc")
                        .env("SWITCHYARD_TRACE_SAMPLE_RATIO", &ratio);
                }
            })?;
            let warm = load::run(&client, &request, settings.workers, settings.duration / 5).await;
            if warm.ok == 0 {
                bail!("{}: warm-up failed: {:?}", variant.name, warm.first_failure);
            }
            let cpu_before = dev.cpu()?;
            let mut run = load::run(&client, &request, settings.workers, settings.duration).await;
            let cpu = dev.cpu()? - cpu_before;
            let rss = dev.rss_bytes()?;
            run.all_ok(variant.name)?;
            // A graceful stop flushes every exporter, so all spans of this session count.
            dev.stop()?;
            let spans = receiver.take_spans().len() as f64 / (warm.ok + run.ok) as f64;
            match variant.sample_ratio {
                None if spans > 0.0 => bail!("{}: {spans} spans per request", variant.name),
                Some(ratio) if spans < ratio => bail!(
                    "{}: only {spans:.3} spans per request exported; is OTLP wired?",
                    variant.name
                ),
                _ => {}
            }
            let p50 = run.percentile(0.50).as_secs_f64() * 1e3;
            let p99 = run.percentile(0.99).as_secs_f64() * 1e3;
            println!(
                "  round {round} {:<32} {:>7.0} req/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  {:>6.0} µs CPU/req  {spans:>5.2} spans/req  RSS {:>4.0} MB",
                variant.name,
                run.throughput(),
                cpu.as_secs_f64() * 1e6 / run.ok as f64,
                rss as f64 / 1e6,
            );
            out.rps.push(run.throughput());
            out.p50_ms.push(p50);
            out.p99_ms.push(p99);
            out.cpu_us_per_request
                .push(cpu.as_secs_f64() * 1e6 / run.ok as f64);
            out.spans_per_request.push(spans);
            out.rss_mb.push(rss as f64 / 1e6);
        }
    }
    let base_rps = median(measured[0].rps.clone());
    let base_cpu = median(measured[0].cpu_us_per_request.clone());
    println!(
        "\ntracing overhead, medians of {} rounds (ratios against tracing off):",
        settings.rounds
    );
    println!(
        "  {:<32} {:>9} {:>7} {:>9} {:>9} {:>12} {:>7} {:>10} {:>8}",
        "variant",
        "req/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "ratio",
        "spans/req",
        "RSS MB"
    );
    for (variant, m) in VARIANTS.iter().zip(&measured) {
        let (rps, cpu) = (median(m.rps.clone()), median(m.cpu_us_per_request.clone()));
        println!(
            "  {:<32} {rps:>9.0} {:>6.2}x {:>9.2} {:>9.2} {cpu:>12.0} {:>6.2}x {:>10.2} {:>8.0}",
            variant.name,
            rps / base_rps,
            median(m.p50_ms.clone()),
            median(m.p99_ms.clone()),
            cpu / base_cpu,
            median(m.spans_per_request.clone()),
            median(m.rss_mb.clone()),
        );
    }
    Ok(())
}
