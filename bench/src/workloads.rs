//! The workloads, one function each.

use anyhow::Context;
use switchyard_router::plugins::persisted_queries::manifest::{ManifestFile, ManifestOperation};

use crate::Settings;
use crate::load::{self, Request, median};
use crate::platform::Platform;

/// One measured pair of variants.
struct Comparison {
    name: &'static str,
    baseline: Request,
    variant: Request,
}

async fn compare(settings: &Settings, c: Comparison) -> anyhow::Result<()> {
    let client_for = |request: &Request| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(settings.workers)
            .gzip(request.gzip)
            .build()
    };
    let (base_client, var_client) = (client_for(&c.baseline)?, client_for(&c.variant)?);
    // Warm-up: connections, query plan cache, SQLite page cache.
    for (client, request) in [(&base_client, &c.baseline), (&var_client, &c.variant)] {
        let outcome = load::run(client, request, settings.workers, settings.duration / 5).await;
        if outcome.ok == 0 {
            anyhow::bail!("{}: warm-up failed: {:?}", c.name, outcome.first_failure);
        }
    }
    let (mut base_rps, mut var_rps, mut base_p99, mut var_p99) = (vec![], vec![], vec![], vec![]);
    for round in 1..=settings.rounds {
        let mut base = load::run(
            &base_client,
            &c.baseline,
            settings.workers,
            settings.duration,
        )
        .await;
        let mut var = load::run(&var_client, &c.variant, settings.workers, settings.duration).await;
        for (label, outcome) in [("baseline", &base), ("variant", &var)] {
            outcome.all_ok(label)?;
        }
        println!(
            "  round {round}: baseline {:>8.0} req/s p99 {:>6.2} ms | variant {:>8.0} req/s p99 {:>6.2} ms",
            base.throughput(),
            base.percentile(0.99).as_secs_f64() * 1e3,
            var.throughput(),
            var.percentile(0.99).as_secs_f64() * 1e3,
        );
        base_rps.push(base.throughput());
        var_rps.push(var.throughput());
        base_p99.push(base.percentile(0.99).as_secs_f64() * 1e3);
        var_p99.push(var.percentile(0.99).as_secs_f64() * 1e3);
    }
    let (b, v) = (median(base_rps), median(var_rps));
    println!("{}:", c.name);
    println!(
        "  throughput (median of {} rounds): baseline {b:.0} req/s, variant {v:.0} req/s, ratio {:.2}x",
        settings.rounds,
        v / b
    );
    println!(
        "  p99 (median): baseline {:.2} ms, variant {:.2} ms",
        median(base_p99),
        median(var_p99)
    );
    let (bb, vb) = (c.baseline.wire_bytes(), c.variant.wire_bytes());
    println!(
        "  request bytes on the wire: baseline {bb}, variant {vb}, ratio {:.2}x ({:.0}% smaller)",
        vb as f64 / bb as f64,
        100.0 * (1.0 - vb as f64 / bb as f64)
    );
    Ok(())
}

/// The manifest's path (absolute) and the iOS `HomeFeed` operation in it.
fn home_feed(settings: &Settings) -> anyhow::Result<(std::path::PathBuf, ManifestOperation)> {
    let manifest_path = settings
        .repo
        .join("persisted-queries/manifest.json")
        .canonicalize()
        .context("persisted-queries/manifest.json (pass --repo)")?;
    let manifest: ManifestFile = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?,
    )?;
    let home = manifest
        .operations
        .into_iter()
        .find(|o| o.name == "HomeFeed" && o.client_name.as_deref() == Some("ios"))
        .context("the iOS HomeFeed operation")?;
    Ok((manifest_path, home))
}

/// A persisted GET of the iOS home feed versus the same operation's text in a POST.
pub async fn persisted_queries(settings: &Settings) -> anyhow::Result<()> {
    let (manifest_path, home) = home_feed(settings)?;
    let plugins = format!(
        "  persisted_queries:\n    mode: enforce\n    manifest: {}\n",
        manifest_path.display()
    );
    println!(
        "starting the platform (10,000 users, 100,000 posts, 4 SQLite shards per subgraph)..."
    );
    let platform = Platform::start(&settings.repo, 10_000, 100_000, &plugins).await?;
    let variables = r#"{"first":10}"#;
    let client = ("apollographql-client-name".to_owned(), "ios".to_owned());
    let baseline = Request {
        method: reqwest::Method::POST,
        url: platform.url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            client.clone(),
        ],
        body: Some(serde_json::json!({"query": home.body, "variables": {"first": 10}}).to_string()),
        gzip: true,
    };
    let query: String = url_encode(&[("documentId", home.id.as_str()), ("variables", variables)]);
    let variant = Request {
        method: reqwest::Method::GET,
        url: format!("{}?{query}", platform.url),
        headers: vec![
            client,
            ("x-apollo-operation-name".into(), "HomeFeed".into()),
        ],
        body: None,
        gzip: true,
    };
    compare(
        settings,
        Comparison {
            name: "persisted GET (variant) vs text POST (baseline), HomeFeed first:10",
            baseline,
            variant,
        },
    )
    .await?;
    platform.stop().await
}

pub fn url_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = reqwest::Url::parse("http://x/").expect("url");
    out.query_pairs_mut().extend_pairs(pairs);
    out.query().unwrap_or_default().to_owned()
}

/// The same authenticated HomeFeed request through a router with `jwt_auth`, `operation_limits`
/// and `rate_limit` (variant) and through one without them (baseline), same subgraphs.
pub async fn protection(settings: &Settings) -> anyhow::Result<()> {
    use switchyard_accounts::tokens::{DEV_AUDIENCE, DEV_HMAC_SECRET, DEV_ISSUER, TokenConfig};
    let (_, home) = home_feed(settings)?;
    println!(
        "starting the platform (10,000 users, 100,000 posts, 4 SQLite shards per subgraph)..."
    );
    let mut platform = Platform::start(&settings.repo, 10_000, 100_000, "").await?;
    let protected = format!(
        r#"  jwt_auth:
    issuer: {DEV_ISSUER}
    audiences: [{DEV_AUDIENCE}]
    algorithms: [HS256]
    allow_anonymous: false
    subgraph_secret: bench-router-secret-0123456789
    keys:
      - {{ kid: dev, alg: HS256, secret: {DEV_HMAC_SECRET} }}
  operation_limits: {{}}
  rate_limit:
    rules:
      - {{ name: per-user, key: user, limit: 100000000, per: 1m }}
      - {{ name: per-ip, key: ip, limit: 100000000, per: 1m }}
"#
    );
    let protected_url = platform.add_router(&protected).await?;
    let token = TokenConfig::development()
        .access_token(switchyard_accounts::seed::demo_user_ids(1, 4)[0])?;
    let request = |url: &str| Request {
        method: reqwest::Method::POST,
        url: url.to_owned(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ],
        body: Some(serde_json::json!({"query": home.body, "variables": {"first": 10}}).to_string()),
        gzip: true,
    };
    let baseline = request(&platform.url);
    let variant = request(&protected_url);
    compare(
        settings,
        Comparison { name: "jwt_auth + operation_limits + rate_limit on (variant) vs off (baseline), HomeFeed first:10", baseline, variant },
    )
    .await?;
    platform.stop().await
}

/// The same HomeFeed POST through a router with only the pipeline's always-on stages (guard,
/// read, document, forward; variant) and through stock apollo-router (baseline): what reading
/// once and re-encoding costs.
pub async fn pipeline(settings: &Settings) -> anyhow::Result<()> {
    let (_, home) = home_feed(settings)?;
    println!(
        "starting the platform (10,000 users, 100,000 posts, 4 SQLite shards per subgraph)..."
    );
    let mut platform = Platform::start(&settings.repo, 10_000, 100_000, "").await?;
    let pipeline_url = platform.add_router("  headers_guard: {}\n").await?;
    let request = |url: &str| Request {
        method: reqwest::Method::POST,
        url: url.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(serde_json::json!({"query": home.body, "variables": {"first": 10}}).to_string()),
        gzip: true,
    };
    compare(
        settings,
        Comparison {
            name: "the pipeline alone (variant) vs stock apollo-router (baseline), HomeFeed first:10",
            baseline: request(&platform.url),
            variant: request(&pipeline_url),
        },
    )
    .await?;
    platform.stop().await
}

/// The front stages' own work on the iOS HomeFeed POST body (read it strictly, parse and
/// select the operation, normalise variables, re-encode), timed per request against
/// apollo-router's own parse of the same body, which every request pays anyway.
pub fn reader(settings: &Settings) -> anyhow::Result<()> {
    use switchyard_router::pipeline::read::{ReadConfig, from_body};
    use switchyard_router::pipeline::{document, forward};
    let (_, home) = home_feed(settings)?;
    let body = serde_json::json!({"query": home.body, "variables": {"first": 10, "junk": 1}})
        .to_string()
        .into_bytes();
    let config = ReadConfig::default();
    let ours = || -> anyhow::Result<usize> {
        let mut request =
            from_body(&body, Default::default()).map_err(|e| anyhow::anyhow!(e.message))?;
        document::prepare(&config, &mut request).map_err(|e| anyhow::anyhow!(e.message))?;
        anyhow::ensure!(request.operation.is_some(), "the document parsed");
        Ok(forward::body(&request)?.len())
    };
    let bytes = bytes::Bytes::from(body.clone());
    let theirs = || -> anyhow::Result<usize> {
        let request = apollo_router::graphql::Request::deserialize_from_bytes(&bytes)?;
        Ok(request.variables.len())
    };
    let time = |f: &dyn Fn() -> anyhow::Result<usize>| -> anyhow::Result<f64> {
        let n = 20_000;
        let mut samples = Vec::new();
        for _ in 0..settings.rounds.max(3) {
            let started = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(f()?);
            }
            samples.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
        Ok(median(samples))
    };
    ours()?;
    let (a, b) = (time(&theirs)?, time(&ours)?);
    println!(
        "front stages (read + document + forward) on HomeFeed ({} bytes):",
        body.len()
    );
    println!("  apollo-router's own body parse (baseline): {a:.2} us per request");
    println!(
        "  our read + document + forward (variant):   {b:.2} us per request, {:.2}x",
        b / a
    );
    Ok(())
}

/// The persisted iOS home feed (20 posts with authors) by GET through a router with
/// `switchyard.response_cache` (in-process level in front of the local Redis; variant) and
/// through the same router without it (baseline), same subgraphs, same other plugins.
pub async fn cache(settings: &Settings) -> anyhow::Result<()> {
    let (manifest_path, home) = home_feed(settings)?;
    let common = format!(
        r#"  persisted_queries:
    mode: enforce
    manifest: {manifest}
  operation_limits: {{}}
  rate_limit:
    rules:
      - {{ name: per-ip, key: ip, limit: 100000000, per: 1m }}
"#,
        manifest = manifest_path.display()
    );
    let prefix = format!(
        "bench:rc:{}:",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let cached = format!(
        "{common}  response_cache:\n    redis:\n      url: redis://127.0.0.1:6379\n      key_prefix: \"{prefix}\"\n"
    );
    println!(
        "starting the platform (10,000 users, 100,000 posts, 4 SQLite shards per subgraph)..."
    );
    let mut platform = Platform::start(&settings.repo, 10_000, 100_000, &common).await?;
    let cached_url = platform.add_router(&cached).await?;
    let query = url_encode(&[
        ("documentId", home.id.as_str()),
        ("variables", r#"{"first":20}"#),
    ]);
    let request = |url: &str| Request {
        method: reqwest::Method::GET,
        url: format!("{url}?{query}"),
        headers: vec![
            ("apollographql-client-name".into(), "ios".into()),
            ("x-apollo-operation-name".into(), "HomeFeed".into()),
        ],
        body: None,
        gzip: true,
    };
    let (baseline, variant) = (request(&platform.url), request(&cached_url));
    // The variant must really be served from the cache: two requests, the second with `Age`.
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = variant.send(&client).await?;
        anyhow::ensure!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                == Some("public, max-age=10"),
            "the cached router did not cache HomeFeed: {:?}",
            response.headers()
        );
    }
    compare(
        settings,
        Comparison {
            name: "response_cache on (variant) vs off (baseline), persisted HomeFeed first:20 by GET",
            baseline,
            variant: variant.clone(),
        },
    )
    .await?;
    // The same hits by POST (the persisted id in the body, as Apollo Client sends it): the
    // lookup reads the typed request, so POST hits must cost what GET hits cost.
    let post = Request {
        method: reqwest::Method::POST,
        url: cached_url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("apollographql-client-name".into(), "ios".into()),
        ],
        body: Some(
            serde_json::json!({
                "variables": {"first": 20},
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": home.id}},
            })
            .to_string(),
        ),
        gzip: true,
    };
    compare(
        settings,
        Comparison {
            name: "cache hits by POST (variant) vs by GET (baseline), persisted HomeFeed first:20",
            baseline: variant.clone(),
            variant: post,
        },
    )
    .await?;
    // Hits as phones ask for them (gzip) against the same hits uncompressed: apollo-router
    // compresses every answer at its HTTP layer, after our stages.
    let mut plain = variant.clone();
    plain.gzip = false;
    compare(
        settings,
        Comparison {
            name: "cache hits with Accept-Encoding: gzip (variant) vs without (baseline)",
            baseline: plain,
            variant,
        },
    )
    .await?;
    platform.stop().await
}
