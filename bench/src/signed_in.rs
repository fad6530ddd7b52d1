//! What the signed-in workloads (`mobile`, `personalised`) share: the Android app's persisted
//! operations, 1,000 demo users with their own access tokens, a deterministic draw (every
//! variant sees the same mix), persisted requests as the app sends them, and the rounds
//! through `switchyard dev` (release build, SQLite shards, the demo data), variants
//! alternating, each measured for throughput, latency, the platform's CPU and memory, and
//! the subgraph requests each answer cost.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use switchyard_router::plugins::persisted_queries::manifest::ManifestFile;

use crate::Settings;
use crate::dev::{Dev, router_config_without};
use crate::load::{self, Request, median};
use crate::report::Row;

pub const ROUTER: &str = "http://127.0.0.1:4000/graphql";
/// The subgraphs of `switchyard dev` share one process, so one `/metrics` has them all.
const SUBGRAPH_METRICS: &str = "http://127.0.0.1:4001/metrics";
pub const USERS: usize = 1_000;

/// One configuration measured: `router/router.yaml` minus `remove` (stages, or `stage.key`).
pub struct Variant {
    pub name: &'static str,
    pub short: &'static str,
    pub remove: &'static [&'static str],
}

/// One variant's measurement in one round.
pub struct Round {
    pub rps: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub cpu_per_1000: f64,
    pub rss: f64,
    /// Requests the subgraphs served per answer.
    pub subgraph_calls: f64,
}

/// What the mix draws from: the operations' ids, and posts and users that exist.
#[derive(Clone)]
pub struct World {
    pub ops: HashMap<&'static str, String>,
    /// The public feed's posts, newest first.
    pub posts: Vec<String>,
    pub users: Vec<(i64, String)>,
    /// The simulated users' ids and access tokens, by index.
    pub ids: Vec<i64>,
    pub tokens: Vec<String>,
}

/// The Android app's operations `names`, by name, from the manifest.
pub fn android_ops(
    repo: &Path,
    names: &[&'static str],
) -> anyhow::Result<HashMap<&'static str, String>> {
    let manifest: ManifestFile = serde_json::from_str(
        &std::fs::read_to_string(repo.join("persisted-queries/manifest.json"))
            .context("persisted-queries/manifest.json")?,
    )?;
    let mut ops = HashMap::new();
    for name in names {
        let op = manifest
            .operations
            .iter()
            .find(|o| o.name == *name && o.client_name.as_deref() == Some("android"))
            .with_context(|| format!("the android {name} operation"))?;
        ops.insert(*name, op.id.clone());
    }
    Ok(ops)
}

/// Every variant, `settings.rounds` times, alternating; `pick` draws each request (worker,
/// step) and names its kind. Returns the rounds by variant and the answers by kind.
pub async fn measure<P>(
    settings: &Settings,
    variants: &[Variant],
    ops: HashMap<&'static str, String>,
    pick: P,
) -> anyhow::Result<(Vec<Vec<Round>>, BTreeMap<&'static str, u64>)>
where
    P: Fn(&World, usize, u64) -> (&'static str, Request) + Clone + Send + Sync + 'static,
{
    let binary = std::env::current_exe()?.with_file_name("switchyard");
    anyhow::ensure!(binary.exists(), "{} not found", binary.display());
    let repo = settings.repo.canonicalize().context("--repo")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let configs: Vec<_> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            router_config_without(&repo, dir.path(), &format!("router-{i}.yaml"), v.remove)
        })
        .collect::<anyhow::Result<_>>()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.workers)
        .gzip(true)
        .build()?;
    println!(
        "switchyard dev (release, {} workers, {} s per measurement, {} rounds); the first start seeds the demo data",
        settings.workers,
        settings.duration.as_secs(),
        settings.rounds
    );
    let mut world: Option<World> = None;
    let mut measured: Vec<Vec<Round>> = variants.iter().map(|_| Vec::new()).collect();
    let mut mix_seen = BTreeMap::<&'static str, u64>::new();
    for round in 1..=settings.rounds {
        for (v, variant) in variants.iter().enumerate() {
            let dev = Dev::start(&binary, &repo, &configs[v], &data, variant.name, |_| {})?;
            let w = match &world {
                Some(w) => w.clone(),
                None => {
                    let w = discover(&client, ops.clone()).await?;
                    world = Some(w.clone());
                    w
                }
            };
            let next = {
                let pick = pick.clone();
                move |worker: usize, i: u64| pick(&w, worker, i)
            };
            let (warm, _) = load::run_mix(
                &client,
                settings.workers,
                settings.duration / 5,
                next.clone(),
            )
            .await;
            warm.all_ok(&format!("{} warm-up", variant.name))?;
            let cpu_before = dev.cpu()?;
            let calls_before = subgraph_requests(&client).await?;
            let (mut run, kinds) =
                load::run_mix(&client, settings.workers, settings.duration, next).await;
            let calls = subgraph_requests(&client).await? - calls_before;
            let cpu = dev.cpu()? - cpu_before;
            let rss = dev.rss_bytes()? as f64 / 1e6;
            dev.stop()?;
            run.all_ok(variant.name)?;
            for (kind, n) in kinds {
                *mix_seen.entry(kind).or_default() += n;
            }
            let mut ms = |p| run.percentile(p).as_secs_f64() * 1e3;
            let (p50, p95, p99) = (ms(0.50), ms(0.95), ms(0.99));
            let cpu_per_1000 = cpu.as_secs_f64() * 1000.0 / run.ok as f64;
            let subgraph_calls = calls / run.ok as f64;
            println!(
                "  round {round} {:<32} {:>7.0} req/s  p50 {p50:>6.2} ms  p99 {p99:>7.2} ms  {cpu_per_1000:>5.2} CPU s/1000 (platform)  RSS {rss:>4.0} MB  {subgraph_calls:.2} subgraph requests/answer",
                variant.name,
                run.throughput(),
            );
            measured[v].push(Round {
                rps: run.throughput(),
                p50,
                p95,
                p99,
                cpu_per_1000,
                rss,
                subgraph_calls,
            });
        }
    }
    Ok((measured, mix_seen))
}

/// The report's rows: each variant's medians, throughput as a ratio against the first.
pub fn rows(variants: &[Variant], measured: &[Vec<Round>]) -> Vec<Row> {
    let column = |v: usize, f: fn(&Round) -> f64| median(measured[v].iter().map(f).collect());
    let base = column(0, |m| m.rps);
    variants
        .iter()
        .enumerate()
        .map(|(v, variant)| Row {
            name: variant.name.to_owned(),
            short: variant.short.to_owned(),
            rps: column(v, |m| m.rps),
            ratio: column(v, |m| m.rps) / base,
            p50_ms: column(v, |m| m.p50),
            p95_ms: column(v, |m| m.p95),
            p99_ms: column(v, |m| m.p99),
            cpu_s_per_1000: column(v, |m| m.cpu_per_1000),
            peak_rss_mb: column(v, |m| m.rss),
            failed: 0,
        })
        .collect()
}

/// The median subgraph requests per answer of each variant.
pub fn subgraph_calls(measured: &[Vec<Round>]) -> Vec<f64> {
    measured
        .iter()
        .map(|rounds| median(rounds.iter().map(|r| r.subgraph_calls).collect()))
        .collect()
}

/// "feed 35%, profile 25%, …": the answers by kind.
pub fn mix_line(mix_seen: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = mix_seen.values().sum();
    mix_seen
        .iter()
        .map(|(k, n)| format!("{k} {:.0}%", *n as f64 * 100.0 / total.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Requests the subgraphs have served so far (`switchyard_subgraph_requests_total`).
async fn subgraph_requests(client: &reqwest::Client) -> anyhow::Result<f64> {
    let text = client
        .get(SUBGRAPH_METRICS)
        .send()
        .await
        .context("the subgraphs' /metrics")?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("switchyard_subgraph_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Posts and users that exist, read through the router's public feed.
async fn discover(
    client: &reqwest::Client,
    ops: HashMap<&'static str, String>,
) -> anyhow::Result<World> {
    let mut posts = Vec::new();
    let mut users = Vec::new();
    let mut after: Option<String> = None;
    while posts.len() < 500 {
        let variables = match &after {
            Some(cursor) => serde_json::json!({ "first": 25, "after": cursor }),
            None => serde_json::json!({ "first": 25 }),
        };
        let request = persisted(&ops, "HomeFeed", &variables, None);
        let body: serde_json::Value = request.send(client).await?.json().await?;
        let feed = &body["data"]["feed"];
        let nodes = feed["nodes"]
            .as_array()
            .with_context(|| format!("the feed answered no nodes: {body}"))?;
        for node in nodes {
            posts.push(node["id"].as_str().context("post id")?.to_owned());
            let author = (
                node["author"]["id"]
                    .as_str()
                    .context("author id")?
                    .parse::<i64>()?,
                node["author"]["handle"]
                    .as_str()
                    .context("handle")?
                    .to_owned(),
            );
            if !users.contains(&author) {
                users.push(author);
            }
        }
        after = feed["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        if after.is_none() || nodes.is_empty() {
            break;
        }
    }
    let ids = switchyard_accounts::seed::demo_user_ids(USERS, 4);
    let tokens = ids
        .iter()
        .map(|id| switchyard_accounts::tokens::TokenConfig::development().access_token(*id))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(World {
        ops,
        posts,
        users,
        ids,
        tokens,
    })
}

/// A small deterministic mixer (SplitMix64): the same worker and step draw the same request
/// in every variant, so variants see the same mix.
pub fn draw(worker: usize, i: u64, salt: u64) -> u64 {
    let mut z = (worker as u64) << 40 ^ i ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The operations that are queries (sent as GETs); the others are mutations.
const QUERIES: [&str; 4] = ["PersonalFeed", "HomeFeed", "Profile", "PostDetail"];

/// One persisted operation as the app sends it: a query as a GET (`documentId`, variables in
/// the query string), a mutation as a POST, with the user's token when signed in.
pub fn persisted(
    ops: &HashMap<&'static str, String>,
    name: &str,
    variables: &serde_json::Value,
    token: Option<&str>,
) -> Request {
    let mut headers = vec![("apollographql-client-name".to_owned(), "android".to_owned())];
    if let Some(token) = token {
        headers.push(("authorization".to_owned(), format!("Bearer {token}")));
    }
    if QUERIES.contains(&name) {
        let query = crate::workloads::url_encode(&[
            ("documentId", ops[name].as_str()),
            ("variables", &variables.to_string()),
        ]);
        // Apollo Kotlin names the operation on GETs, which also satisfies the router's CSRF
        // check.
        headers.push(("x-apollo-operation-name".to_owned(), name.to_owned()));
        Request {
            method: reqwest::Method::GET,
            url: format!("{ROUTER}?{query}"),
            headers,
            body: None,
            gzip: true,
        }
    } else {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        Request {
            method: reqwest::Method::POST,
            url: ROUTER.to_owned(),
            headers,
            body: Some(
                serde_json::json!({ "documentId": ops[name], "variables": variables }).to_string(),
            ),
            gzip: true,
        }
    }
}
