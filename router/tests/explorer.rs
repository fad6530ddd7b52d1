//! The explorer as the router serves it: embedded assets with their content types, compression
//! and caching headers, deep links, the admin token, and the API's answers to bad requests.
//! A real router (in this process) on one port for GraphQL and the explorer; no subgraph is
//! needed for anything here.

use std::io::Read;

mod support;
use support::repo;

const TOKEN: &str = "explorer-admin-token-0123456789";

struct Running {
    router: support::Router,
    base: String,
}

async fn start() -> Running {
    let repo = repo().canonicalize().unwrap();
    let router = support::start(|port, dir| {
        // iOS before 2.0 is retired here, so a retired version's traffic can be seen.
        let retired = dir.join("retired.yaml");
        std::fs::write(&retired, "client_versions:\n  ios: \"<2.0.0\"\n").unwrap();
        let manifest = repo.join("persisted-queries/manifest.json");
        format!(
            "supergraph:\n  listen: 127.0.0.1:{port}\n  path: /graphql\nhealth_check:\n  enabled: false\n\
             plugins:\n  switchyard.pipeline:\n    persisted_queries:\n      mode: enforce\n      manifest: {manifest}\n      retired: {retired}\n\
             \x20 switchyard.explorer:\n    enabled: true\n    listen: 127.0.0.1:{port}\n    path: /explore\n\
             \x20   admin_token: {TOKEN}\n    manifest: {manifest}\n    retired: {retired}\n    supergraph_config: {supergraph}\n",
            manifest = manifest.display(),
            retired = retired.display(),
            supergraph = repo.join("supergraph.yaml").display(),
        )
    })
    .await;
    Running {
        base: format!("http://127.0.0.1:{}/explore", router.port),
        router,
    }
}

fn client() -> reqwest::Client {
    // No transparent decompression: the test reads Content-Encoding and the bytes as sent.
    reqwest::Client::builder().no_gzip().build().unwrap()
}

/// `GET` with the admin token, as JSON.
async fn api_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_is_served_with_the_right_headers() {
    let mut running = start().await;
    let http = client();
    let base = &running.base;
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("accept-encoding", "gzip")
    };

    // The index: rewritten for this path, never cached without revalidation, locked down.
    let index = get("/").send().await.unwrap();
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("http"),
        "{csp}"
    );
    let body = index.bytes().await.unwrap();
    let html = if headers.get("content-encoding").is_some() {
        String::from_utf8(gunzip(&body)).unwrap()
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    assert!(html.contains("<base href=\"/explore/\" />"), "{html}");
    assert!(html.contains("content=\"/graphql\""));

    // Deep links are the same page; the bare path too.
    for path in [
        "",
        "/type/Post/field/author",
        "/operations/abc",
        "/run?operation=x",
    ] {
        let response = get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-cache", "{path}");
    }

    // Every asset index.html names: typed, immutable, gzip when asked, identical once inflated.
    let names: Vec<String> = html
        .split("./assets/")
        .skip(1)
        .map(|p| p.split('"').next().unwrap().to_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".js")) && names.iter().any(|n| n.ends_with(".css")));
    for name in &names {
        let plain = http
            .get(format!("{base}/assets/{name}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 200, "{name}");
        let expected_type = if name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(plain.headers()["content-type"], expected_type, "{name}");
        assert_eq!(
            plain.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(plain.headers().get("content-encoding").is_none());
        let plain_bytes = plain.bytes().await.unwrap();
        let zipped = get(&format!("/assets/{name}")).send().await.unwrap();
        assert_eq!(
            zipped
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            Some("gzip"),
            "{name} {:?}",
            zipped.headers()
        );
        assert_eq!(zipped.headers()["vary"], "accept-encoding");
        let zipped_bytes = zipped.bytes().await.unwrap();
        assert!(zipped_bytes.len() < plain_bytes.len());
        assert_eq!(gunzip(&zipped_bytes), plain_bytes.to_vec(), "{name}");
    }
    let missing = get("/assets/nope-123.js").send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // The data endpoints.
    let schema: serde_json::Value = api_json(&http, &format!("{base}/api/schema")).await;
    let post = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Post")
        .unwrap();
    assert!(post["keys"].as_array().unwrap().len() >= 2, "{post}");
    let operations: serde_json::Value = api_json(&http, &format!("{base}/api/operations")).await;
    assert_eq!(
        operations["clients"],
        serde_json::json!(["android", "ios", "web"])
    );
    let home = operations["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "HomeFeed" && o["clients"] == serde_json::json!(["ios"]))
        .unwrap();
    assert!(
        home["fields"]
            .as_array()
            .unwrap()
            .contains(&"Post.mediaUrls".into())
    );
    assert!(
        home["subgraphs"]
            .as_array()
            .unwrap()
            .contains(&"accounts".into())
    );
    assert_eq!(home["invalid"], serde_json::json!([]));

    // The safelist stage records who sends what; the explorer shows it, retired versions
    // marked (their requests are refused, but they are still out there).
    let id = home["id"].as_str().unwrap();
    let client = "ios";
    for version in ["2.3.0", "1.9.0", "1.9.0"] {
        http.get(format!(
            "http://{}/graphql?documentId={id}",
            base.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap()
        ))
        .header("apollographql-client-name", client)
        .header("apollographql-client-version", version)
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    }
    let usage: serde_json::Value = api_json(&http, &format!("{base}/api/usage")).await;
    let rows = usage["operations"][id]
        .as_array()
        .unwrap_or_else(|| panic!("{usage}"));
    let row = |version: &str| {
        rows.iter()
            .find(|r| r["version"] == version && r["client"] == client)
            .unwrap_or_else(|| panic!("{version}: {usage}"))
    };
    assert_eq!(row("2.3.0")["count"], 1);
    assert_eq!(row("2.3.0")["retiredVersion"], false);
    assert_eq!(row("1.9.0")["count"], 2);
    assert_eq!(row("1.9.0")["retiredVersion"], true);

    running.router.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything() {
    let mut running = start().await;
    let http = client();
    let base = &running.base;
    for path in [
        "/",
        "/type/Post",
        "/assets/x.js",
        "/api/schema",
        "/api/check",
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
        );
        let wrong = http
            .get(format!("{base}{path}"))
            .bearer_auth("explorer-admin-token-0123456780")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    // A browser's Basic prompt: any user name, the token as password.
    let basic = http
        .get(format!("{base}/api/schema"))
        .basic_auth("frontend", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    running.router.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_requests_get_precise_errors() {
    let mut running = start().await;
    let http = client();
    let base = &running.base;
    let check = |body: String, content_type: &str| {
        http.post(format!("{base}/api/check"))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // A check that runs (200), as JSON.
    let checked = |body: String| {
        let response = check(body, "application/json");
        async move {
            response
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let cases: Vec<(String, &str, u16, &str)> = vec![
        ("{}".into(), "text/plain", 415, "application/json"),
        ("{".into(), "application/json", 400, "the body"),
        (
            r#"{"subgraph":"posts"}"#.into(),
            "application/json",
            400,
            "sdl",
        ),
        (
            r#"{"subgraph":"posts","sdl":"type Query { a: Int }","extra":1}"#.into(),
            "application/json",
            400,
            "extra",
        ),
        (
            r#"{"subgraph":"../x","sdl":"type Query { a: Int }"}"#.into(),
            "application/json",
            400,
            "subgraph",
        ),
        (
            r#"{"subgraph":"posts","sdl":"   "}"#.into(),
            "application/json",
            400,
            "empty",
        ),
        (
            format!(
                r#"{{"subgraph":"posts","sdl":"{}"}}"#,
                "#".repeat(600 * 1024)
            ),
            "application/json",
            413,
            "larger",
        ),
    ];
    for (body, content_type, status, needle) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let response = check(body, content_type).await.unwrap();
        assert_eq!(response.status(), status, "{shown}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{shown}: {error}"
        );
    }
    // A check that runs: an unparseable SDL is a composition failure (200), not a 500.
    let broken = checked(r#"{"subgraph":"posts","sdl":"type Query {"}"#.into()).await;
    assert_eq!(broken["composes"], false, "{broken}");
    assert!(!broken["errors"].as_array().unwrap().is_empty());
    // Removing a field the apps use breaks them, named with their clients.
    let posts = std::fs::read_to_string(repo().join("schema/posts.graphql")).unwrap();
    let proposed = posts.replace("\tmediaUrls: [String!]!\n", "");
    assert_ne!(proposed, posts);
    let result =
        checked(serde_json::json!({"subgraph": "posts", "sdl": proposed}).to_string()).await;
    assert_eq!(result["composes"], true, "{result}");
    assert_eq!(result["sources"], "supergraph.yaml");
    let broken_names: Vec<&str> = result["breaking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(broken_names.contains(&"HomeFeed"), "{result}");
    let change = result["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["coordinate"] == "Post.mediaUrls")
        .unwrap();
    assert_eq!(change["change"], "removed");
    assert!(change["operations"].as_u64().unwrap() >= 1);
    // The unchanged SDL breaks nothing.
    let same = checked(serde_json::json!({"subgraph": "posts", "sdl": posts}).to_string()).await;
    assert_eq!(same["composes"], true);
    assert_eq!(same["breaking"], serde_json::json!([]), "{same}");
    assert_eq!(same["changes"], serde_json::json!([]), "{same}");

    for (method, path, status) in [
        (reqwest::Method::GET, "/api/check", 405),
        (reqwest::Method::POST, "/api/schema", 405),
        (reqwest::Method::GET, "/api/nothing", 404),
        (reqwest::Method::GET, "/api/subgraphs/nothing/sdl", 404),
        (reqwest::Method::DELETE, "/type/Post", 405),
    ] {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
    }
    let api_sdl = http
        .get(format!("{base}/api/sdl"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let api = apollo_compiler::Schema::parse_and_validate(&api_sdl, "api.graphql").unwrap();
    assert!(api.get_object("Post").is_some());
    assert!(
        !api_sdl.contains("join__"),
        "the API schema, not the supergraph"
    );
    let sdl = http
        .get(format!("{base}/api/subgraphs/posts/sdl"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(sdl.status(), 200);
    assert_eq!(sdl.text().await.unwrap(), posts);
    running.router.server.shutdown().await.unwrap();
}
