//! The federation workload: the public gateway benchmark's four subgraphs and its nested
//! query (87,327 bytes of JSON per answer) through five routers in the same run, rounds
//! alternating between them:
//! - Switchyard with every request-path stage on (safelist, JWT, operation limits, rate
//!   limits), the response cache off;
//! - the same binary with none of our stages (stock apollo-router 2.17 behaviour), the baseline;
//! - Switchyard with the response cache on as well;
//! - Hive Router with inbound request deduplication on (as that benchmark configures it) and
//!   off (both with its default subgraph deduplication).
//!
//! Each router is its own process, so its CPU seconds and peak RSS (`VmHWM`) are its own; the
//! subgraphs and the load generator share this process. Closed loop and open loop, with and
//! without `Accept-Encoding: gzip`; every answer is checked for status and `errors`, and the
//! first answer of every router must equal the others' byte for byte once parsed.

mod subgraphs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::Digest;

use crate::Settings;
use crate::load::{self, Outcome, Request, median};
use crate::process::ProcessTree;
use crate::report::{Report, Row};

/// The benchmark's query, as its k6 script sends it (fragments, no variables).
pub const QUERY: &str = "fragment User on User { id username name }
fragment Review on Review { id body }
fragment Product on Product { inStock name price shippingEstimate upc weight }
query TestQuery {
  users { ...User reviews { ...Review product { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } } }
  topProducts { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } }
}";

/// Where to find Hive Router, and how fast the open loop sends.
pub struct FederationOptions {
    pub hive_router: Option<PathBuf>,
    /// Measure only Switchyard's three routers (no Hive Router build needed).
    pub no_hive: bool,
    pub rate: f64,
}

/// One router under test.
struct Router {
    name: &'static str,
    short: &'static str,
    url: String,
    child: Child,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How load is offered.
#[derive(Clone, Copy)]
struct Mode {
    name: &'static str,
    open: bool,
    gzip: bool,
}

const MODES: [Mode; 4] = [
    Mode {
        name: "closed loop, gzip",
        open: false,
        gzip: true,
    },
    Mode {
        name: "closed loop, identity",
        open: false,
        gzip: false,
    },
    Mode {
        name: "open loop, gzip",
        open: true,
        gzip: true,
    },
    Mode {
        name: "open loop, identity",
        open: true,
        gzip: false,
    },
];

#[derive(Default, Clone)]
struct Measured {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p95: Vec<f64>,
    p99: Vec<f64>,
    cpu_per_1000: Vec<f64>,
    failed: u64,
}

/// What both workloads run against: the subgraphs (served from this process), the
/// supergraph composed for them and the manifest holding the query, in a temporary directory.
struct Setup {
    binary: PathBuf,
    dir: tempfile::TempDir,
    supergraph: PathBuf,
    manifest: PathBuf,
}

impl Setup {
    async fn start() -> anyhow::Result<Self> {
        let binary = std::env::current_exe()?.with_file_name("switchyard");
        anyhow::ensure!(
            binary.exists(),
            "{} not found: build it beside the bench (`./scripts/bench` does)",
            binary.display()
        );
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let subgraphs_at = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, subgraphs::router()).await });
        let supergraph = dir.path().join("supergraph.graphql");
        std::fs::write(&supergraph, compose(subgraphs_at)?)?;
        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, manifest_json())?;
        Ok(Self {
            binary,
            dir,
            supergraph,
            manifest,
        })
    }
}

pub async fn federation(settings: &Settings, options: &FederationOptions) -> anyhow::Result<()> {
    let hive = match (&options.hive_router, options.no_hive) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => bail!(
            "no --hive-router: `./scripts/bench federation` installs Hive Router and passes it (or pass --no-hive)"
        ),
    };
    let setup = Setup::start().await?;
    let (binary, dir, supergraph) = (&setup.binary, &setup.dir, &setup.supergraph);
    let stages = every_stage(&setup.manifest);
    let cached = format!("{stages}  response_cache:\n    memory_bytes: 67108864\n");
    let mut routers = vec![
        switchyard(
            binary,
            dir.path(),
            supergraph,
            "plugin-free",
            "",
            (
                "Switchyard, no plugins (stock apollo-router 2.17)",
                "no plugins",
            ),
        )?,
        switchyard(
            binary,
            dir.path(),
            supergraph,
            "every-stage",
            &stages,
            ("Switchyard, every stage on, cache off", "every stage"),
        )?,
        switchyard(
            binary,
            dir.path(),
            supergraph,
            "cache-on",
            &cached,
            ("Switchyard, every stage on, response cache on", "cache on"),
        )?,
    ];
    if let Some(hive) = &hive {
        routers.push(hive_router(hive, dir.path(), supergraph, true)?);
        routers.push(hive_router(hive, dir.path(), supergraph, false)?);
    }
    let expected = wait_until_answering(&mut routers).await?;
    println!(
        "{} routers answer the same {} bytes; {} s per measurement, {} rounds, {} connections closed loop, {} req/s open loop",
        routers.len(),
        expected.len(),
        settings.duration.as_secs(),
        settings.rounds,
        settings.workers,
        options.rate
    );

    let mut results: Vec<Vec<Measured>> = MODES
        .iter()
        .map(|_| vec![Measured::default(); routers.len()])
        .collect();
    for (m, mode) in MODES.iter().enumerate() {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.workers.max(64))
            .gzip(mode.gzip)
            .build()?;
        for router in &routers {
            let warm = load::run(
                &client,
                &request(router, mode),
                settings.workers,
                settings.duration / 5,
            )
            .await;
            if warm.ok == 0 {
                bail!("{}: warm-up failed: {:?}", router.name, warm.first_failure);
            }
        }
        for round in 0..settings.rounds {
            // Alternate the order too, so no router always runs right after the same one.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..routers.len()).collect()
            } else {
                (0..routers.len()).rev().collect()
            };
            for r in order {
                let router = &routers[r];
                let tree = ProcessTree(router.child.id());
                let cpu_before = tree.cpu()?;
                let mut outcome = if mode.open {
                    load::run_open(
                        &client,
                        &request(router, mode),
                        options.rate,
                        settings.duration,
                        1024,
                    )
                    .await
                } else {
                    load::run(
                        &client,
                        &request(router, mode),
                        settings.workers,
                        settings.duration,
                    )
                    .await
                };
                let cpu = tree.cpu()? - cpu_before;
                record(&mut results[m][r], &mut outcome, cpu);
                println!(
                    "  {:<22} round {} {:<48} {:>7.0} req/s  p50 {:>7.2} ms  p99 {:>8.2} ms  {:>5.2} CPU s/1000{}",
                    mode.name,
                    round + 1,
                    router.name,
                    outcome.throughput(),
                    ms(outcome.percentile(0.50)),
                    ms(outcome.percentile(0.99)),
                    cpu.as_secs_f64() * 1000.0 / outcome.ok.max(1) as f64,
                    match outcome.failed {
                        0 => String::new(),
                        n => format!("  {n} FAILED, first: {:?}", outcome.first_failure),
                    }
                );
            }
        }
    }
    let peak_rss: Vec<f64> = routers
        .iter()
        .map(|r| {
            ProcessTree(r.child.id())
                .peak_rss_bytes()
                .map(|b| b as f64 / 1e6)
        })
        .collect::<anyhow::Result<_>>()?;

    let mut report = Report::new(
        "federation",
        "Federation workload: the public gateway benchmark's subgraphs and query (87,327 bytes)",
    );
    report.note(&format!(
        "{} rounds of {} s per router and mode, alternating; closed loop with {} connections, open loop at {} req/s (latency from each request's due time); medians. CPU is the router process's user+system seconds per 1,000 answers; peak RSS is its VmHWM over the whole run. Ratios are against the plugin-free build (stock apollo-router behaviour).",
        settings.rounds,
        settings.duration.as_secs(),
        settings.workers,
        options.rate
    ));
    let mut failures = 0;
    for (m, mode) in MODES.iter().enumerate() {
        let base_rps = median(results[m][0].rps.clone());
        let rows = routers
            .iter()
            .zip(&results[m])
            .zip(&peak_rss)
            .map(|((router, measured), rss)| {
                failures += measured.failed;
                let rps = median(measured.rps.clone());
                Row {
                    name: router.name.to_owned(),
                    short: router.short.to_owned(),
                    rps,
                    ratio: rps / base_rps,
                    p50_ms: median(measured.p50.clone()),
                    p95_ms: median(measured.p95.clone()),
                    p99_ms: median(measured.p99.clone()),
                    cpu_s_per_1000: median(measured.cpu_per_1000.clone()),
                    peak_rss_mb: *rss,
                    failed: measured.failed,
                }
            })
            .collect();
        report.table(mode.name, rows);
    }
    let closed = &report.tables[0].1;
    let rps = |i: usize| closed[i].rps;
    let against_hive = if closed.len() == 5 {
        format!(
            "cache on vs Hive Router with deduplication: {:.2}x (target 1.5x); vs Hive Router without: {:.2}x (target 4x)",
            rps(2) / rps(3),
            rps(2) / rps(4)
        )
    } else {
        "Hive Router not measured in this run (--no-hive)".to_owned()
    };
    report.note(&format!(
        "Targets (closed loop, gzip): every stage on within 3% of the plugin-free build: {:.3}x; {against_hive}; Switchyard peak RSS no plugins {:.0} MB, every stage {:.0} MB, cache on {:.0} MB (target at most 100 MB).",
        rps(1) / rps(0),
        closed[0].peak_rss_mb,
        closed[1].peak_rss_mb,
        closed[2].peak_rss_mb,
    ));
    report.publish(&settings.repo)?;
    anyhow::ensure!(failures == 0, "{failures} requests failed (see above)");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn record(into: &mut Measured, outcome: &mut Outcome, cpu: Duration) {
    into.rps.push(outcome.throughput());
    into.p50.push(ms(outcome.percentile(0.50)));
    into.p95.push(ms(outcome.percentile(0.95)));
    into.p99.push(ms(outcome.percentile(0.99)));
    into.cpu_per_1000
        .push(cpu.as_secs_f64() * 1000.0 / outcome.ok.max(1) as f64);
    into.failed += outcome.failed;
}

fn request(router: &Router, mode: &Mode) -> Request {
    Request {
        method: reqwest::Method::POST,
        url: router.url.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(serde_json::json!({ "query": QUERY }).to_string()),
        gzip: mode.gzip,
    }
}

/// The supergraph of the four subgraphs, composed by the same code as `switchyard compose`.
fn compose(subgraphs_at: std::net::SocketAddr) -> anyhow::Result<String> {
    let sources = subgraphs::sources(&format!("http://{subgraphs_at}"));
    switchyard_router::composition::compose(&sources)
        .map(|c| c.supergraph_sdl)
        .map_err(|issues| anyhow::anyhow!("composition failed: {issues:?}"))
}

/// An Apollo persisted query manifest holding the query, so the safelist runs in `enforce`.
fn manifest_json() -> String {
    let id = hex(&sha2::Sha256::digest(QUERY.as_bytes()));
    serde_json::json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{ "id": id, "name": "TestQuery", "type": "query", "body": QUERY }],
    })
    .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every request-path stage, configured so the workload passes them (the safelist holds the
/// query; the limits admit its depth and list fan-out; the rate limits are out of reach).
fn every_stage(manifest: &Path) -> String {
    use switchyard_accounts::tokens::{DEV_AUDIENCE, DEV_HMAC_SECRET, DEV_ISSUER};
    format!(
        r#"  persisted_queries:
    mode: enforce
    manifest: {manifest}
  jwt_auth:
    issuer: {DEV_ISSUER}
    audiences: [{DEV_AUDIENCE}]
    algorithms: [HS256]
    allow_anonymous: true
    subgraph_secret: bench-router-secret-0123456789
    keys:
      - {{ kid: dev, alg: HS256, secret: {DEV_HMAC_SECRET} }}
  operation_limits:
    max_depth: 16
    max_cost: 100000000
  rate_limit:
    rules:
      - {{ name: per-ip, key: ip, limit: 100000000, per: 1m }}
"#,
        manifest = manifest.display()
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn switchyard(
    binary: &Path,
    dir: &Path,
    supergraph: &Path,
    tag: &str,
    stages: &str,
    (name, short): (&'static str, &'static str),
) -> anyhow::Result<Router> {
    let port = free_port()?;
    let config = dir.join(format!("router-{tag}.yaml"));
    std::fs::write(
        &config,
        format!(
            "supergraph:\n  listen: 127.0.0.1:{port}\n  path: /graphql\nhealth_check:\n  enabled: false\n{}",
            switchyard_router::pipeline::plugins_yaml(stages)
        ),
    )?;
    let child = Command::new(binary)
        .arg("router")
        .arg("--config")
        .arg(&config)
        .arg("--supergraph")
        .arg(supergraph)
        .env("APOLLO_TELEMETRY_DISABLED", "true")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting switchyard router")?;
    Ok(Router {
        name,
        short,
        url: format!("http://127.0.0.1:{port}/graphql"),
        child,
    })
}

fn hive_router(
    binary: &Path,
    dir: &Path,
    supergraph: &Path,
    dedupe: bool,
) -> anyhow::Result<Router> {
    let port = free_port()?;
    let config = dir.join(format!(
        "hive-{}.yaml",
        if dedupe { "dedupe" } else { "plain" }
    ));
    std::fs::write(
        &config,
        format!(
            "supergraph:\n  source: file\n  path: {}\nhttp:\n  host: 127.0.0.1\n  port: {port}\n  graphql_endpoint: /graphql\nlog:\n  level: error\nlaboratory:\n  enabled: false\ntraffic_shaping:\n  router:\n    dedupe:\n      enabled: {dedupe}\n",
            supergraph.display()
        ),
    )?;
    let child = Command::new(binary)
        .env("ROUTER_CONFIG_FILE_PATH", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let (name, short) = if dedupe {
        ("Hive Router, inbound deduplication on", "Hive, dedupe")
    } else {
        ("Hive Router, inbound deduplication off", "Hive, no dedupe")
    };
    Ok(Router {
        name,
        short,
        url: format!("http://127.0.0.1:{port}/graphql"),
        child,
    })
}

/// Waits for every router to answer the query, and checks they all answer the same data.
async fn wait_until_answering(routers: &mut [Router]) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().no_gzip().build()?;
    let mut first: Option<(String, serde_json::Value)> = None;
    for router in routers.iter_mut() {
        let started = Instant::now();
        let body = loop {
            if let Some(status) = router.child.try_wait()? {
                bail!("{} exited during start-up: {status}", router.name);
            }
            let request = request(router, &MODES[1]);
            if let Ok(response) = request.send(&client).await
                && response.status() == 200
            {
                break response.text().await?;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "{} did not answer within 120 s",
                router.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let value: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("{} answered no JSON", router.name))?;
        anyhow::ensure!(value["errors"].is_null(), "{}: {body:.300}", router.name);
        match &first {
            None => first = Some((body, value)),
            Some((_, expected)) if *expected == value => {}
            Some(_) => bail!(
                "{} answered different data than the first router",
                router.name
            ),
        }
    }
    let (body, _) = first.context("no routers")?;
    Ok(body)
}

/// The soak: one Switchyard router with every stage on (cache off) in front of the
/// federation subgraphs; its capacity measured closed loop, then `--seconds` of open-loop load
/// at 70% of it, RSS sampled every second. Memory that grows with requests served shows as a
/// slope; the report gives the first and last minute's medians and the peak.
pub async fn soak(settings: &Settings) -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let (binary, dir, supergraph) = (&setup.binary, &setup.dir, &setup.supergraph);
    let mut routers = vec![switchyard(
        binary,
        dir.path(),
        supergraph,
        "soak",
        &every_stage(&setup.manifest),
        ("Switchyard, every stage on, cache off", "every stage"),
    )?];
    wait_until_answering(&mut routers).await?;
    let router = &routers[0];
    let tree = ProcessTree(router.child.id());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .gzip(true)
        .build()?;
    let mode = MODES[0];
    let capacity = load::run(
        &client,
        &request(router, &mode),
        settings.workers,
        Duration::from_secs(10),
    )
    .await;
    anyhow::ensure!(
        capacity.failed == 0,
        "capacity run failed: {:?}",
        capacity.first_failure
    );
    let rate = capacity.throughput() * 0.7;
    println!(
        "capacity {:.0} req/s closed loop ({} connections); soaking {} s at {rate:.0} req/s (70%), RSS every second",
        capacity.throughput(),
        settings.workers,
        settings.duration.as_secs()
    );
    let started = Instant::now();
    let sampler = {
        let duration = settings.duration;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while started.elapsed() < duration {
                tick.tick().await;
                if let Ok(bytes) = tree.rss_bytes() {
                    samples.push((started.elapsed().as_secs_f64(), bytes as f64 / 1e6));
                }
            }
            samples
        })
    };
    let cpu_before = tree.cpu()?;
    let mut outcome = load::run_open(
        &client,
        &request(router, &mode),
        rate,
        settings.duration,
        4096,
    )
    .await;
    let cpu = tree.cpu()? - cpu_before;
    let samples = sampler.await?;
    let peak = tree.peak_rss_bytes()? as f64 / 1e6;
    let minute = |from: f64, to: f64| {
        median(
            samples
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, mb)| *mb)
                .collect(),
        )
    };
    let end = samples.last().map_or(0.0, |(t, _)| *t);
    let (first, last) = (minute(0.0, 60.0), minute(end - 60.0, end + 1.0));
    let (p50, p99) = (ms(outcome.percentile(0.50)), ms(outcome.percentile(0.99)));
    let summary = format!(
        "{} answers at {:.0} req/s ({} failed); p50 {:.2} ms, p99 {:.2} ms; {:.3} CPU s per 1,000; RSS median first minute {first:.1} MB, last minute {last:.1} MB ({:+.1}%), peak {peak:.1} MB",
        outcome.ok,
        outcome.throughput(),
        outcome.failed,
        p50,
        p99,
        cpu.as_secs_f64() * 1000.0 / outcome.ok.max(1) as f64,
        (last / first - 1.0) * 100.0
    );
    println!("{summary}");
    let results = settings.repo.join("bench/results");
    std::fs::create_dir_all(&results)?;
    let csv: String = std::iter::once("seconds,rss_mb\n".to_owned())
        .chain(samples.iter().map(|(t, mb)| format!("{t:.0},{mb:.2}\n")))
        .collect();
    std::fs::write(results.join("soak.csv"), csv)?;
    std::fs::write(
        results.join("soak.svg"),
        crate::report::line_chart(
            &format!(
                "Soak: router RSS, {} s at {rate:.0} req/s (70% of capacity)",
                settings.duration.as_secs()
            ),
            &samples,
        ),
    )?;
    std::fs::write(
        results.join("soak.md"),
        format!(
            "# Soak: the federation query through Switchyard (every stage on, cache off)\n\nWritten by `./scripts/bench soak --seconds {}`. Capacity {:.0} req/s closed loop with {} connections; then open loop at 70% of it.\n\n{summary}.\n\n![RSS per second](soak.svg)\n\nSamples: [soak.csv](soak.csv).\n",
            settings.duration.as_secs(),
            capacity.throughput(),
            settings.workers
        ),
    )?;
    println!("wrote bench/results/soak.md, soak.svg, soak.csv");
    anyhow::ensure!(
        outcome.failed == 0,
        "{} requests failed: {:?}",
        outcome.failed,
        outcome.first_failure
    );
    Ok(())
}
