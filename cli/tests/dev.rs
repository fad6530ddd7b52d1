//! `switchyard dev` as a new user runs it: the real binary, default ports, Ctrl-C to stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_starts_everything_answers_and_stops_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dev", "--data-dir", data.path().to_str().unwrap()])
        .current_dir(switchyard_kit::testing::repo_root())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let mut output = String::new();
    while !output.contains("Ctrl-C stops everything") {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => output.push_str(&(line + "\n")),
            Err(_) => {
                let _ = child.kill();
                panic!("dev did not come up; output so far:\n{output}");
            }
        }
    }
    println!("switchyard dev up in {:?}", started.elapsed());
    assert!(
        output.contains("first start: loading demo data"),
        "{output}"
    );
    assert!(
        output.contains("router      http://127.0.0.1:4000/graphql"),
        "{output}"
    );
    assert!(
        output.contains("accounts    http://127.0.0.1:4001/graphql"),
        "{output}"
    );

    // The README's curl example.
    let body: serde_json::Value = reqwest::Client::new()
        .post("http://127.0.0.1:4000/graphql")
        .header("content-type", "application/json")
        .body(r#"{"query":"{ feed(first: 3) { nodes { body author { handle displayName } } } }"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nodes = body["data"]["feed"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes.iter().all(|n| n["author"]["handle"].is_string()),
        "{body}"
    );

    // Asked again, the feed comes from the response cache, and the metrics say so.
    let http = reqwest::Client::new();
    let again = http
        .post("http://127.0.0.1:4000/graphql")
        .header("content-type", "application/json")
        .body(r#"{"query":"{ feed(first: 3) { nodes { body author { handle displayName } } } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["cache-control"], "public, max-age=10");
    assert!(again.headers().contains_key("age"));
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), body);
    let metrics = http
        .get("http://127.0.0.1:9090/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_response_cache_lookups_total")
                && l.contains("result=\"hit\"")
                && l.contains("level=\"memory\"")),
        "{metrics}"
    );
    // The admin endpoint, with the development token (docs/caching.md).
    let invalidated = http
        .post("http://127.0.0.1:8089/invalidation")
        .bearer_auth("switchyard-dev-cache-admin-token")
        .json(&serde_json::json!({"tags": ["Post:1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalidated.status(), 200);

    // With no servers at all, a like becomes a count: the relay and the counters worker run
    // inside `switchyard dev` on the embedded bus (the README's like example).
    let graphql = |body: serde_json::Value, token: Option<String>| {
        let http = http.clone();
        async move {
            let mut request = http.post("http://127.0.0.1:4000/graphql").json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let signed_up = graphql(
        serde_json::json!({"query": "mutation { signUp(input: {handle: \"dev_liker\", email: \"liker@example.com\", password: \"correct horse battery\"}) { accessToken } }"}),
        None,
    )
    .await;
    let token = signed_up["data"]["signUp"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{signed_up}"))
        .to_owned();
    let post = nodes_first_id(
        &graphql(
            serde_json::json!({"query": "{ feed(first: 1) { nodes { id } } }"}),
            None,
        )
        .await,
    );
    let liked = graphql(
        serde_json::json!({"query": "mutation($p: ID!) { likePost(postId: $p) { viewerHasLiked } }", "variables": {"p": post}}),
        Some(token.clone()),
    )
    .await;
    assert_eq!(liked["data"]["likePost"]["viewerHasLiked"], true, "{liked}");
    let counted = Instant::now();
    loop {
        let feed = graphql(
            serde_json::json!({"query": "{ feed(first: 1) { nodes { likeCount viewerHasLiked } } }"}),
            Some(token.clone()),
        )
        .await;
        if feed["data"]["feed"]["nodes"][0]["likeCount"] == 1 {
            assert_eq!(feed["data"]["feed"]["nodes"][0]["viewerHasLiked"], true);
            break;
        }
        assert!(
            counted.elapsed() < Duration::from_secs(20),
            "the like was not counted: {feed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("like counted in {:?}", counted.elapsed());

    // ...and a like of someone's post becomes their notification (the notifications and push
    // workers run in `switchyard dev` too; the push goes to the log provider).
    let author = graphql(
        serde_json::json!({"query": "mutation { signUp(input: {handle: \"dev_author\", email: \"author@example.com\", password: \"correct horse battery\"}) { accessToken } }"}),
        None,
    )
    .await["data"]["signUp"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = graphql(
        serde_json::json!({"query": "mutation { createPost(input: {body: \"notify me\"}) { id } }"}),
        Some(author.clone()),
    )
    .await;
    let mine = created["data"]["createPost"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let notified = Instant::now();
    loop {
        // Retried until the post's author is known to the notifications worker.
        let liked = graphql(
            serde_json::json!({"query": "mutation($p: ID!) { likePost(postId: $p) { id } }", "variables": {"p": mine}}),
            Some(token.clone()),
        )
        .await;
        assert!(liked["errors"].is_null(), "{liked}");
        let inbox = graphql(
            serde_json::json!({"query": "{ notifications { unreadCount edges { node { kind actor { handle } post { body } } } } }"}),
            Some(author.clone()),
        )
        .await;
        if inbox["data"]["notifications"]["unreadCount"] == 1 {
            let node = &inbox["data"]["notifications"]["edges"][0]["node"];
            assert_eq!(node["kind"], "LIKE", "{inbox}");
            assert_eq!(node["actor"]["handle"], "dev_liker", "{inbox}");
            assert_eq!(node["post"]["body"], "notify me", "{inbox}");
            break;
        }
        assert!(
            notified.elapsed() < Duration::from_secs(20),
            "the like did not become a notification: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("like notified in {:?}", notified.elapsed());

    switchyard_kit::testing::signal(&child, "INT");
    let exit = switchyard_kit::testing::wait_for_exit(&mut child, Duration::from_secs(30))
        .expect("dev did not stop on Ctrl-C");
    assert!(exit.success(), "{exit:?}");
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        output.push_str(&(line + "\n"));
    }
    assert!(output.ends_with("stopped\n"), "{output}");

    // A second start finds the data and does not seed again.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["seed", "--data-dir", data.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("seeded 0 new user(s)"));
}

fn nodes_first_id(feed: &serde_json::Value) -> String {
    feed["data"]["feed"]["nodes"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{feed}"))
        .to_owned()
}
