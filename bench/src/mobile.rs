//! The mobile workload: the Android app's persisted operations in the mix a signed-in
//! population sends, through the whole platform as `switchyard dev` runs it (release build,
//! SQLite shards, the 10,000-user / 100,000-post demo data), with the response cache on
//! (router/router.yaml as shipped, rate limits aside) and off, variants alternating.
//!
//! Per request, for simulated user `u` (1,000 users, a quarter of them signed out):
//! - 80% reads: the home feed (`PersonalFeed` signed in, with the viewer's likes and follows,
//!   so PRIVATE; `HomeFeed` signed out), a profile, a post's detail;
//! - 20% writes, signed in: likes, comments, posts, follows.
//!
//! Queries go as persisted GETs (`documentId`), mutations as persisted POSTs, each with the
//! user's own access token. Every answer must be a 200 without `errors`.

use std::collections::HashMap;

use anyhow::{Context, bail};
use switchyard_router::plugins::persisted_queries::manifest::ManifestFile;

use crate::Settings;
use crate::dev::{Dev, router_config_without};
use crate::load::{self, Request, median};
use crate::report::{Report, Row};

const ROUTER: &str = "http://127.0.0.1:4000/graphql";
const USERS: usize = 1_000;

/// A request's kind and its share of the mix, in percent.
const MIX: [(&str, u64); 7] = [
    ("feed", 35),
    ("profile", 25),
    ("post", 20),
    ("like", 8),
    ("comment", 5),
    ("create", 4),
    ("follow", 3),
];

struct Variant {
    name: &'static str,
    short: &'static str,
    remove: &'static [&'static str],
}

const VARIANTS: [Variant; 2] = [
    Variant {
        name: "response cache off",
        short: "cache off",
        remove: &["rate_limit", "response_cache"],
    },
    Variant {
        name: "response cache on (router.yaml)",
        short: "cache on",
        remove: &["rate_limit"],
    },
];

/// One variant's measurement in one round.
struct Round {
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    cpu_per_1000: f64,
    rss: f64,
}

/// What the mix draws from: the operations' ids, and posts and users that exist.
#[derive(Clone)]
struct World {
    ops: HashMap<&'static str, String>,
    posts: Vec<String>,
    users: Vec<(i64, String)>,
    /// The simulated users' ids and access tokens, by index.
    ids: Vec<i64>,
    tokens: Vec<String>,
}

pub async fn mobile(settings: &Settings) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?.with_file_name("switchyard");
    anyhow::ensure!(binary.exists(), "{} not found", binary.display());
    let repo = settings.repo.canonicalize().context("--repo")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let manifest: ManifestFile = serde_json::from_str(
        &std::fs::read_to_string(repo.join("persisted-queries/manifest.json"))
            .context("persisted-queries/manifest.json")?,
    )?;
    let mut ops = HashMap::new();
    for name in [
        "PersonalFeed",
        "HomeFeed",
        "Profile",
        "PostDetail",
        "LikePost",
        "AddComment",
        "CreatePost",
        "FollowUser",
    ] {
        let op = manifest
            .operations
            .iter()
            .find(|o| o.name == name && o.client_name.as_deref() == Some("android"))
            .with_context(|| format!("the android {name} operation"))?;
        ops.insert(name, op.id.clone());
    }
    let configs: Vec<_> = VARIANTS
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
    let mut measured: Vec<Vec<Round>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut mix_seen = std::collections::BTreeMap::<&'static str, u64>::new();
    for round in 1..=settings.rounds {
        for (v, variant) in VARIANTS.iter().enumerate() {
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
                let w = w.clone();
                move |worker: usize, i: u64| pick(&w, worker, i)
            };
            let (warm, _) = load::run_mix(
                &client,
                settings.workers,
                settings.duration / 5,
                next.clone(),
            )
            .await;
            if warm.failed > 0 {
                bail!("{}: warm-up failed: {:?}", variant.name, warm.first_failure);
            }
            let cpu_before = dev.cpu()?;
            let (mut run, kinds) =
                load::run_mix(&client, settings.workers, settings.duration, next).await;
            let cpu = dev.cpu()? - cpu_before;
            let rss = dev.rss_bytes()? as f64 / 1e6;
            dev.stop()?;
            if run.failed > 0 {
                bail!(
                    "{}: {} failures, first: {:?}",
                    variant.name,
                    run.failed,
                    run.first_failure
                );
            }
            for (kind, n) in kinds {
                *mix_seen.entry(kind).or_default() += n;
            }
            let mut ms = |p| run.percentile(p).as_secs_f64() * 1e3;
            let (p50, p95, p99) = (ms(0.50), ms(0.95), ms(0.99));
            let cpu_per_1000 = cpu.as_secs_f64() * 1000.0 / run.ok as f64;
            println!(
                "  round {round} {:<32} {:>7.0} req/s  p50 {p50:>6.2} ms  p99 {p99:>7.2} ms  {cpu_per_1000:>5.2} CPU s/1000 (platform)  RSS {rss:>4.0} MB",
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
            });
        }
    }
    let mut report = Report::new(
        "mobile",
        "Mobile workload: the Android app's persisted mix, signed-in users, response cache off and on",
    );
    let total: u64 = mix_seen.values().sum();
    report.note(&format!(
        "`switchyard dev` (release) on the demo data, {} rounds of {} s per variant, alternating, {} closed-loop workers; {USERS} simulated users (a quarter signed out), each with their own token. Answers by kind: {}. CPU is the whole platform's (router and subgraphs) per 1,000 answers; RSS is the platform's at the end of each round (median). Ratio against the cache off.",
        settings.rounds,
        settings.duration.as_secs(),
        settings.workers,
        mix_seen
            .iter()
            .map(|(k, n)| format!("{k} {:.0}%", *n as f64 * 100.0 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let column = |v: usize, f: fn(&Round) -> f64| median(measured[v].iter().map(f).collect());
    let base = column(0, |m| m.rps);
    let rows = VARIANTS
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
        .collect();
    report.table("closed loop, gzip", rows);
    report.print();
    let written = report.write(&settings.repo.join("bench/results"))?;
    println!("\nwrote {}", written.join(", "));
    Ok(())
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
fn draw(worker: usize, i: u64, salt: u64) -> u64 {
    let mut z = (worker as u64) << 40 ^ i ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick(w: &World, worker: usize, i: u64) -> (&'static str, Request) {
    let user = (draw(worker, i, 1) % USERS as u64) as usize;
    // A quarter of the users are signed out; they only read.
    let signed_in = !user.is_multiple_of(4);
    let token = signed_in.then(|| w.tokens[user].as_str());
    let post = &w.posts[(draw(worker, i, 2) % w.posts.len() as u64) as usize];
    let (other_id, other_handle) = &w.users[(draw(worker, i, 3) % w.users.len() as u64) as usize];
    let mut roll = draw(worker, i, 4) % 100;
    let mut kind = MIX[0].0;
    for (k, share) in MIX {
        if roll < share {
            kind = k;
            break;
        }
        roll -= share;
    }
    if !signed_in && !matches!(kind, "feed" | "profile" | "post") {
        kind = "feed";
    }
    if kind == "follow" && *other_id == w.ids[user] {
        kind = "like"; // nobody follows themselves
    }
    let (op, variables) = match kind {
        "feed" if signed_in => ("PersonalFeed", serde_json::json!({ "first": 20 })),
        "feed" => ("HomeFeed", serde_json::json!({ "first": 25 })),
        "profile" => ("Profile", serde_json::json!({ "handle": other_handle })),
        "post" => ("PostDetail", serde_json::json!({ "id": post })),
        "like" => ("LikePost", serde_json::json!({ "postId": post })),
        "comment" => (
            "AddComment",
            serde_json::json!({ "postId": post, "body": format!("bench comment {worker}-{i}") }),
        ),
        "create" => (
            "CreatePost",
            serde_json::json!({ "input": { "body": format!("bench post {worker}-{i}") } }),
        ),
        _ => (
            "FollowUser",
            serde_json::json!({ "userId": other_id.to_string() }),
        ),
    };
    (kind, persisted(&w.ops, op, &variables, token))
}

/// The operations of the mix that are queries (sent as GETs); the others are mutations.
const QUERIES: [&str; 4] = ["PersonalFeed", "HomeFeed", "Profile", "PostDetail"];

/// One persisted operation as the app sends it: a query as a GET (`documentId`, variables in
/// the query string), a mutation as a POST, with the user's token when signed in.
fn persisted(
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
