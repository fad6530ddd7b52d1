//! `switchyard.rate_limit` through the real router: brute-force sign-in, budgets shared by two
//! routers through the real Redis, and a Redis that dies mid-test.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Options, Platform, codes, read, spawn_redis, unique};

/// The sign-in rules; with `redis`, a shared budget and a small per-client rule as well.
pub fn sign_in_rules(redis: Option<&str>) -> String {
    let redis_yaml = redis
        .map(|url| format!("    redis:\n      url: {url}\n      key_prefix: \"test:{}:\"\n      timeout: 200ms\n", unique()))
        .unwrap_or_default();
    format!(
        r#"  rate_limit:
{redis_yaml}    trusted_proxies: [10.0.0.0/8]
    rules:
      - name: sign-in-per-ip
        root_field: signIn
        key: ip
        limit: 5
        per: 1m
      - name: sign-in-per-login
        root_field: signIn
        key: argument:signIn.input.login
        limit: 5
        per: 1m
{per_client}"#,
        per_client = if redis.is_some() {
            "      - name: per-client\n        key: client\n        limit: 4\n        per: 1m\n"
        } else {
            ""
        }
    )
}

const SIGN_IN: &str = "mutation Login($i: SignInInput!) { signIn(input: $i) { accessToken } }";

async fn attempt(
    platform: &Platform,
    url: &str,
    ip: &str,
    login: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let body = json!({"query": SIGN_IN, "variables": {"i": {"login": login, "password": "wrong wrong wrong"}}});
    forwarded(platform, url, &[&format!("{ip}, 10.1.2.3")], body).await
}

/// POSTs `body` to `url` with these `X-Forwarded-For` lines (one header each).
async fn forwarded(
    platform: &Platform,
    url: &str,
    lines: &[&str],
    body: Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = platform.http.post(url);
    for line in lines {
        request = request.header("x-forwarded-for", *line);
    }
    let response = request.json(&body).send().await.unwrap();
    let headers = response.headers().clone();
    let (status, _, body) = read(response).await;
    (status, body, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_sign_in_hits_429() {
    let platform = Platform::start(Options {
        plugins: sign_in_rules(None),
        ..Options::default()
    })
    .await;
    let url = platform.url.clone();
    for i in 0..5 {
        let (status, body, _) = attempt(&platform, &url, "203.0.113.7", "ada_lovelace_0").await;
        assert_eq!(
            (status, codes(&body)),
            (200, vec!["INVALID_CREDENTIALS".to_owned()]),
            "attempt {i}: {body}"
        );
    }
    let (status, body, headers) = attempt(&platform, &url, "203.0.113.7", "ada_lovelace_0").await;
    assert_eq!(
        (status, codes(&body)),
        (429, vec!["RATE_LIMITED".to_owned()]),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["rule"], "sign-in-per-ip");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert_eq!(headers["ratelimit-limit"], "5");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-policy"], "5;w=60");

    // Another address, same login: the per-login budget is spent too.
    let (status, body, _) = attempt(&platform, &url, "198.51.100.4", "ada_lovelace_0").await;
    assert_eq!(
        (status, body["errors"][0]["extensions"]["rule"].as_str()),
        (429, Some("sign-in-per-login")),
        "{body}"
    );
    // A spoofed X-Forwarded-For entry left of our proxy does not buy a new budget.
    let (status, _, _) = attempt(&platform, &url, "1.1.1.1, 203.0.113.7", "someone_else").await;
    assert_eq!(status, 429, "the client address is what our proxy saw");
    // Renaming the operation does not dodge a rule on its root field.
    let (renamed, _, _) = forwarded(
        &platform,
        &url,
        &["203.0.113.7"],
        json!({"query": "mutation Innocent($i: SignInInput!) { signIn(input: $i) { accessToken } }",
               "variables": {"i": {"login": "x_y_z", "password": "wrong wrong wrong"}}}),
    )
    .await;
    assert_eq!(renamed, 429);
    // Another address and login is untouched.
    let (status, body, _) = attempt(&platform, &url, "198.51.100.5", "grace").await;
    assert_eq!(status, 200, "{body}");
    platform.shutdown().await;
}

/// Two routers, one Redis: one budget. Then Redis dies: requests are still served, by the
/// in-process limits, with no errors and no waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_share_a_budget_in_redis_and_survive_its_death() {
    let (mut redis, url) = spawn_redis();
    // One configuration (and so one key prefix) for both routers.
    let plugins = sign_in_rules(Some(&url));
    let options = || Options {
        plugins: plugins.clone(),
        ..Options::default()
    };
    let platform = Platform::start(options()).await;
    let (mut second, second_url, _second_dir) = platform.second_router(&options()).await;
    let query = json!({"query": "{ feed(first: 1) { nodes { id } } }"});
    let ask = |url: String| {
        let http = platform.http.clone();
        let query = query.clone();
        async move {
            let response = http
                .post(url)
                .header("apollographql-client-name", "web")
                .json(&query)
                .send()
                .await
                .unwrap();
            read(response).await
        }
    };
    // per-client: 4 per minute, across both routers.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 {
            platform.url.clone()
        } else {
            second_url.clone()
        };
        statuses.push(ask(url).await.0);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "one budget across both routers"
    );

    redis.kill().unwrap();
    redis.wait().unwrap();
    let started = Instant::now();
    let (status, _, body) = ask(second_url.clone()).await;
    assert_eq!(status, 200, "in-process limits take over: {body}");
    assert!(body["errors"].is_null(), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no waiting on a dead Redis"
    );
    let mut limited = false;
    for _ in 0..5 {
        limited |= ask(second_url.clone()).await.0 == 429;
    }
    assert!(limited, "limits still apply without Redis");
    second.shutdown().await.unwrap();
    platform.shutdown().await;
}

/// Regression (issue 11): IPv6 clients were counted per /128 (a phone's /64 gave it endless
/// budgets), and only the first `X-Forwarded-For` line was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_count_per_network_and_every_forwarded_line() {
    let platform = Platform::start(Options {
        plugins: sign_in_rules(None),
        ..Options::default()
    })
    .await;
    let url = platform.url.clone();
    for i in 0..5 {
        let ip = format!("2001:db8:1:2::{:x}", i + 1);
        let (status, body, _) = attempt(&platform, &url, &ip, &format!("v6_login_{i}")).await;
        assert_eq!(status, 200, "attempt {i}: {body}");
    }
    let (status, body, _) = attempt(
        &platform,
        &url,
        "2001:db8:1:2:ffff:ffff:ffff:ffff",
        "v6_login_9",
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["extensions"]["rule"].as_str()),
        (429, Some("sign-in-per-ip")),
        "the same /64: {body}"
    );
    let (status, _, _) = attempt(&platform, &url, "2001:db8:1:3::1", "v6_login_10").await;
    assert_eq!(status, 200, "another /64");

    // Five attempts from 203.0.113.50 (as our proxy saw it), then one whose client wrote a
    // line of its own before the one our proxy appended.
    for i in 0..5 {
        let (status, _, _) =
            attempt(&platform, &url, "203.0.113.50", &format!("v4_login_{i}")).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = forwarded(
        &platform,
        &url,
        &["198.51.100.77", "203.0.113.50, 10.1.2.3"],
        json!({"query": SIGN_IN, "variables": {"i": {"login": "v4_login_9", "password": "wrong wrong wrong"}}}),
    )
    .await;
    assert_eq!(status, 429, "the second line is read");
    platform.shutdown().await;
}

/// Regression (issue 11): one mutation with six aliased `signIn` fields checked six passwords
/// while the per-login rule counted one; a login in a variable default skipped that rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_and_variable_defaults_do_not_dodge_sign_in_rules() {
    let platform = Platform::start(Options {
        plugins: sign_in_rules(None),
        ..Options::default()
    })
    .await;
    let aliased: String = (0..6)
        .map(|i| format!(r#"a{i}: signIn(input: {{login: "victim_1", password: "guess {i}"}}) {{ accessToken }} "#))
        .collect();
    let (status, body, _) = forwarded(
        &platform,
        &platform.url,
        &["203.0.113.60, 10.1.2.3"],
        json!({"query": format!("mutation {{ {aliased} }}")}),
    )
    .await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["ROOT_FIELD_REPEATED".to_owned()]),
        "{body}"
    );

    let defaulted = r#"mutation($l: String = "Victim_2") { signIn(input: {login: $l, password: "guess"}) { accessToken } }"#;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let hop = format!("198.51.100.{}, 10.1.2.3", 100 + i);
        let (status, body, _) = forwarded(
            &platform,
            &platform.url,
            &[&hop],
            json!({ "query": defaulted }),
        )
        .await;
        statuses.push((status, body["errors"][0]["extensions"]["rule"].clone()));
    }
    assert!(statuses[..5].iter().all(|(s, _)| *s == 200), "{statuses:?}");
    assert_eq!(statuses[5].0, 429, "{statuses:?}");
    assert_eq!(statuses[5].1, "sign-in-per-login");
    platform.shutdown().await;
}
