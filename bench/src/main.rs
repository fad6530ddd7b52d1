//! `switchyard-bench`: workloads against the real platform, each reported as a ratio against a
//! baseline measured in the same run (this machine is small and noisy; absolute numbers from
//! different runs do not compare, ratios from one run do).
//!
//! Run with `./scripts/bench <workload>` (release build).

mod dev;
mod events;
mod federation;
mod load;
mod mobile;
mod personalised;
mod platform;
mod process;
mod report;
mod signed_in;
mod tracing_overhead;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchyard-bench")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5, global = true)]
    seconds: u64,
    /// Alternating baseline/variant rounds; medians are reported.
    #[arg(long, default_value_t = 3, global = true)]
    rounds: usize,
    /// Concurrent client loops.
    #[arg(long, default_value_t = 16, global = true)]
    workers: usize,
    /// Repository root (for the supergraph and the manifest).
    #[arg(long, default_value = ".", global = true)]
    repo: PathBuf,
    /// Open-loop arrival rate, requests per second (federation).
    #[arg(long, default_value_t = 100.0, global = true)]
    rate: f64,
    /// The Hive Router binary (federation; `./scripts/bench federation` installs and passes it).
    #[arg(long, global = true)]
    hive_router: Option<PathBuf>,
    /// Federation without Hive Router (Switchyard's three routers only).
    #[arg(long, global = true)]
    no_hive: bool,
}

#[derive(Subcommand, Clone, Copy)]
enum Workload {
    /// A persisted GET (documentId) versus the same operation sent as text in a POST.
    Pq,
    /// The router with jwt_auth, operation_limits and rate_limit versus without.
    Protection,
    /// The persisted home feed with the response cache versus without.
    Cache,
    /// The pipeline's own cost: every request read, re-encoded and its document prepared, no
    /// other stage (variant), versus stock apollo-router (baseline).
    Pipeline,
    /// The event pipeline: relay throughput and like -> count latency, embedded versus
    /// PostgreSQL + Redis.
    Events,
    /// CPU time of the front stages (read, document, forward) per request, against
    /// apollo-router's own parse of the same body, in one process (no network, no noise from
    /// the platform).
    Reader,
    /// `switchyard dev` with no trace exporter (baseline) versus OTLP export at the production
    /// sample ratio and at 1.0: throughput, latency, CPU per request, spans per request.
    Tracing,
    /// The public gateway benchmark's four subgraphs and nested query through Switchyard (no
    /// plugins, every stage, response cache on) and Hive Router (deduplication on and off):
    /// closed and open loop, gzip and identity; markdown and SVG in bench/results/.
    Federation,
    /// A router with every stage on, the federation query at 70% of its measured capacity for
    /// `--seconds` (600 for the 10-minute soak), RSS sampled every second (not in CI).
    Soak,
    /// The Android app's persisted operations in a signed-in population's mix (80% reads, 20%
    /// writes, own tokens) through `switchyard dev`, response cache off versus on.
    Mobile,
    /// Signed-in home feeds (PRIVATE whole responses) with 5% likes through `switchyard dev`,
    /// the whole-response cache on in both, the entity cache off versus on.
    Personalised,
}

pub struct Settings {
    pub duration: Duration,
    pub rounds: usize,
    pub workers: usize,
    pub repo: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings {
        duration: Duration::from_secs(cli.seconds),
        rounds: cli.rounds.max(1),
        workers: cli.workers.max(1),
        repo: cli.repo,
    };
    match cli.workload {
        Workload::Pq => workloads::persisted_queries(&settings).await,
        Workload::Protection => workloads::protection(&settings).await,
        Workload::Pipeline => workloads::pipeline(&settings).await,
        Workload::Reader => workloads::reader(&settings),
        Workload::Cache => workloads::cache(&settings).await,
        Workload::Events => events::events(&settings).await,
        Workload::Tracing => tracing_overhead::tracing(&settings).await,
        Workload::Federation => {
            let options = federation::FederationOptions {
                hive_router: cli.hive_router,
                no_hive: cli.no_hive,
                rate: cli.rate,
            };
            federation::federation(&settings, &options).await
        }
        Workload::Soak => federation::soak(&settings).await,
        Workload::Mobile => mobile::mobile(&settings).await,
        Workload::Personalised => personalised::personalised(&settings).await,
    }
}
