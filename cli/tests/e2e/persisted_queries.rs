//! The persisted query plugin through the real router: every mode, both wire formats, GET and
//! POST, per-client safelists, retired versions, hot reload. (Metrics need apollo-router's
//! telemetry, which only the real binary sets up: see tests/router_binary.rs.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_router::plugins::persisted_queries::manifest::{ManifestFile, operation_id};

use crate::harness::{Options, Platform, codes, read, repo_root};

/// The manifest the repository ships.
fn shipped_manifest() -> ManifestFile {
    let text =
        std::fs::read_to_string(repo_root().join("persisted-queries/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn id_of(manifest: &ManifestFile, name: &str, client: &str) -> String {
    manifest
        .operations
        .iter()
        .find(|op| {
            op.name == name
                && (op.client_name.as_deref() == Some(client)
                    || op.client_names.iter().any(|c| c == client))
        })
        .unwrap_or_else(|| panic!("{client} ships {name}"))
        .id
        .clone()
}

struct PqFiles {
    _dir: tempfile::TempDir,
    manifest: PathBuf,
    retired: PathBuf,
}

fn pq_files(manifest: &ManifestFile, retired: &str) -> PqFiles {
    let dir = tempfile::tempdir().unwrap();
    let files = PqFiles {
        manifest: dir.path().join("manifest.json"),
        retired: dir.path().join("retired.yaml"),
        _dir: dir,
    };
    std::fs::write(&files.manifest, manifest.to_json()).unwrap();
    std::fs::write(&files.retired, retired).unwrap();
    files
}

fn plugin_yaml(mode: &str, files: &PqFiles) -> String {
    format!(
        "  persisted_queries:\n    mode: {mode}\n    manifest: {}\n    retired: {}\n    reload_interval: 100ms\n  read:\n    max_query_string_bytes: 2048\n",
        files.manifest.display(),
        files.retired.display()
    )
}

async fn start(mode: &str, files: &PqFiles) -> Platform {
    Platform::start(Options {
        plugins: plugin_yaml(mode, files),
        ..Options::default()
    })
    .await
}

fn by_hash(id: &str) -> Value {
    json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": id}}})
}

async fn get(
    platform: &Platform,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut request = platform
        .http
        .get(&platform.url)
        .query(params)
        .header("x-apollo-operation-name", "Op");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(request.send().await.unwrap()).await
}

const IOS: (&str, &str) = ("apollographql-client-name", "ios");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_mode_runs_manifest_operations_only() {
    let manifest = shipped_manifest();
    let files = pq_files(&manifest, "");
    let platform = start("enforce", &files).await;
    let home = id_of(&manifest, "HomeFeed", "ios");

    // By Apollo hash, by documentId, POST and GET.
    let (status, _, body) = platform.post_with(by_hash(&home), &[IOS]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["feed"]["edges"].as_array().unwrap().len(),
        20,
        "{body}"
    );
    let (status, _, body) = platform
        .post_with(
            json!({"documentId": format!("sha256:{home}"), "variables": {"first": 2}}),
            &[IOS],
        )
        .await;
    assert_eq!(
        (
            status,
            body["data"]["feed"]["edges"].as_array().map(Vec::len)
        ),
        (200, Some(2)),
        "{body}"
    );
    let (status, _, body) = get(
        &platform,
        &[("documentId", &home), ("variables", "{\"first\":3}")],
        &[IOS],
    )
    .await;
    assert_eq!(
        (
            status,
            body["data"]["feed"]["edges"].as_array().map(Vec::len)
        ),
        (200, Some(3)),
        "{body}"
    );
    let ext = by_hash(&home)["extensions"].to_string();
    let (status, _, body) = get(&platform, &[("extensions", &ext)], &[IOS]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["feed"].is_object(), "{body}");

    // The exact text of a manifest operation is allowed; anything else is not.
    let text = manifest
        .operations
        .iter()
        .find(|o| o.id == home)
        .unwrap()
        .body
        .clone();
    let (status, _, body) = platform.post_with(json!({"query": text}), &[IOS]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = platform
        .post_with(json!({"query": "{ feed { nodes { id } } }"}), &[IOS])
        .await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["PERSISTED_QUERY_NOT_IN_LIST".to_owned()]),
        "{body}"
    );
    let (status, _, body) = get(&platform, &[("query", "{ feed { nodes { id } } }")], &[IOS]).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["PERSISTED_QUERY_NOT_IN_LIST".to_owned()]),
        "{body}"
    );

    // Unknown and malformed ids, mismatching bodies, conflicting fields.
    let unknown = operation_id("query Nope { feed { nodes { id } } }");
    let cases: Vec<(Value, u16, &str)> = vec![
        (by_hash(&unknown), 400, "PERSISTED_QUERY_NOT_IN_LIST"),
        (by_hash("not-hex"), 400, "PERSISTED_QUERY_ID_INVALID"),
        (by_hash(&"a".repeat(63)), 400, "PERSISTED_QUERY_ID_INVALID"),
        (
            json!({"documentId": "zz"}),
            400,
            "PERSISTED_QUERY_ID_INVALID",
        ),
        (json!({"documentId": 42}), 400, "INVALID_GRAPHQL_REQUEST"),
        (
            json!({"query": "{ feed { nodes { id } } }", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": home}}}),
            400,
            "PERSISTED_QUERY_HASH_MISMATCH",
        ),
        (
            json!({"documentId": home, "query": text}),
            400,
            "PERSISTED_QUERY_ID_AND_QUERY",
        ),
        (
            json!({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": home}}}),
            400,
            "PERSISTED_QUERY_VERSION_UNSUPPORTED",
        ),
        (
            json!({"documentId": home, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": unknown}}}),
            400,
            "INVALID_GRAPHQL_REQUEST",
        ),
    ];
    for (request, status, code) in cases {
        let (got_status, _, body) = platform.post_with(request.clone(), &[IOS]).await;
        assert_eq!(
            (got_status, codes(&body)),
            (status, vec![code.to_owned()]),
            "{request}: {body}"
        );
    }

    // Over-long GET query strings are refused before anything else.
    let long = "x".repeat(3000);
    let (status, _, body) = get(
        &platform,
        &[("documentId", &home), ("operationName", &long)],
        &[IOS],
    )
    .await;
    assert_eq!(
        (status, codes(&body)),
        (414, vec!["URI_TOO_LONG".to_owned()]),
        "{body}"
    );

    // Malformed bodies still get the router's own precise error.
    let response = platform
        .http
        .post(&platform.url)
        .header("content-type", "application/json")
        .body("{\"documentId\":")
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["INVALID_GRAPHQL_REQUEST".to_owned()]),
        "{body}"
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_run_only_their_own_operations() {
    let manifest = shipped_manifest();
    let files = pq_files(&manifest, "");
    let platform = start("enforce", &files).await;
    let hovercards = id_of(&manifest, "UserHovercards", "web");
    let some_user = switchyard_accounts::seed::demo_user_ids(1, 2)[0].to_string();
    let request = json!({"documentId": hovercards, "variables": {"ids": [some_user]}});

    let (status, _, body) = platform
        .post_with(request.clone(), &[("apollographql-client-name", "web")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["users"][0]["id"], some_user.as_str());
    let (status, _, body) = platform.post_with(request.clone(), &[IOS]).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["PERSISTED_QUERY_NOT_IN_LIST".to_owned()]),
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"ios\""),
        "{body}"
    );

    // An operation all three clients ship (same body) is allowed for each of them.
    let shared = manifest
        .operations
        .iter()
        .find(|o| o.client_names.len() == 3)
        .expect("a shared operation");
    for client in ["ios", "android", "web"] {
        let (status, _, body) = platform
            .post_with(
                json!({"documentId": shared.id, "variables": {"id": "1"}}),
                &[("apollographql-client-name", client)],
            )
            .await;
        assert_ne!(
            codes(&body),
            ["PERSISTED_QUERY_NOT_IN_LIST"],
            "{client}: {status} {body}"
        );
    }
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_versions_and_operations_get_upgrade_required() {
    let manifest = shipped_manifest();
    let profile = id_of(&manifest, "Profile", "android");
    let files = pq_files(
        &manifest,
        &format!("operations: [\"{profile}\"]\nclient_versions:\n  ios: \"<2.0.0\"\n"),
    );
    let platform = start("enforce", &files).await;
    let home = id_of(&manifest, "HomeFeed", "ios");

    let old_app = [IOS, ("apollographql-client-version", "1.9.4")];
    let (status, _, body) = platform
        .post_with(json!({"documentId": home}), &old_app)
        .await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["UPGRADE_REQUIRED".to_owned()]),
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ios 1.9.4"),
        "{body}"
    );
    let new_app = [IOS, ("apollographql-client-version", "2.3.0")];
    let (status, _, body) = platform
        .post_with(json!({"documentId": home}), &new_app)
        .await;
    assert_eq!(status, 200, "{body}");

    let android = [("apollographql-client-name", "android")];
    let (status, _, body) = platform
        .post_with(
            json!({"documentId": profile, "variables": {"handle": "x"}}),
            &android,
        )
        .await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["UPGRADE_REQUIRED".to_owned()]),
        "{body}"
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_unknown_runs_free_form() {
    let manifest = shipped_manifest();
    let files = pq_files(&manifest, "");
    let platform = start("log_unknown", &files).await;
    let (status, _, body) = platform
        .post_with(
            json!({"query": "{ feed(first: 1) { nodes { id } } }"}),
            &[IOS],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["feed"]["nodes"].as_array().unwrap().len(), 1);
    let (status, _, body) = platform
        .post_with(by_hash(&operation_id("query X { a }")), &[IOS])
        .await;
    assert_eq!(
        (status, codes(&body)),
        (200, vec!["PERSISTED_QUERY_NOT_FOUND".to_owned()]),
        "{body}"
    );
    let (status, _, _) = platform
        .post_with(
            json!({"documentId": id_of(&manifest, "HomeFeed", "ios")}),
            &[IOS],
        )
        .await;
    assert_eq!(status, 200);

    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_apq_registers_with_hash_verification() {
    let files = pq_files(&ManifestFile::new(vec![]), "");
    let platform = start("allow_apq", &files).await;
    let query = "query Newest { feed(first: 2) { nodes { id } } }";
    let id = operation_id(query);

    let (status, _, body) = platform.post(by_hash(&id)).await;
    assert_eq!(
        (status, codes(&body)),
        (200, vec!["PERSISTED_QUERY_NOT_FOUND".to_owned()]),
        "{body}"
    );
    let mut register = by_hash(&id);
    register["query"] = json!(query);
    let (status, _, body) = platform.post(register).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["feed"]["nodes"].as_array().unwrap().len(), 2);
    let (status, _, body) = platform.post(by_hash(&id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["feed"]["nodes"].as_array().unwrap().len(), 2);
    let (status, _, body) = get(
        &platform,
        &[("extensions", &by_hash(&id)["extensions"].to_string())],
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mut wrong = by_hash(&operation_id("something else"));
    wrong["query"] = json!(query);
    let (status, _, body) = platform.post(wrong).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["PERSISTED_QUERY_HASH_MISMATCH".to_owned()]),
        "{body}"
    );
    platform.shutdown().await;
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The manifest changes under load: no request fails during the swap, the new operation
/// starts working, and a malformed manifest afterwards changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_hot_reload_under_concurrent_requests() {
    let full = shipped_manifest();
    let hovercards = id_of(&full, "UserHovercards", "web");
    let without = ManifestFile::new(
        full.operations
            .iter()
            .filter(|o| o.id != hovercards)
            .cloned()
            .collect(),
    );
    let files = pq_files(&without, "");
    let platform = start("enforce", &files).await;
    let home = id_of(&full, "HomeFeed", "ios");
    let web = [("apollographql-client-name", "web")];

    let (_, _, body) = platform
        .post_with(
            json!({"documentId": hovercards, "variables": {"ids": []}}),
            &web,
        )
        .await;
    assert_eq!(codes(&body), ["PERSISTED_QUERY_NOT_IN_LIST"]);

    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (platform.http.clone(), platform.url.clone());
            let (ok, failed, home) = (ok.clone(), failed.clone(), home.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let response = http
                        .post(&url)
                        .header(IOS.0, IOS.1)
                        .json(&json!({"documentId": home, "variables": {"first": 1}}))
                        .send()
                        .await
                        .unwrap();
                    let (status, _, body) = read(response).await;
                    if status == 200 && body["errors"].is_null() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.lock().unwrap().push(format!("{status} {body}"));
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    write_atomically(&files.manifest, &full.to_json());
    let started = Instant::now();
    loop {
        let (status, _, body) = platform
            .post_with(
                json!({"documentId": hovercards, "variables": {"ids": []}}),
                &web,
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "manifest was not reloaded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write_atomically(
        &files.manifest,
        "{\"format\": \"apollo-persisted-query-manifest\", \"version\": 1, \"operations\": [",
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = platform
        .post_with(
            json!({"documentId": hovercards, "variables": {"ids": []}}),
            &web,
        )
        .await;
    assert_eq!(status, 200, "the previous manifest stays in force: {body}");

    for worker in workers {
        worker.await.unwrap();
    }
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    let ran = ok.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failed.len(),
        ran + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ran > 50, "only {ran} requests ran");
    println!("{ran} requests during two reloads, none failed");
    platform.shutdown().await;
}

/// A manifest that fails validation stops the router from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifest_at_start_up_is_refused() {
    let manifest = shipped_manifest();
    let mut twice = manifest.operations.clone();
    twice.push(manifest.operations[0].clone());
    let files = pq_files(&ManifestFile::new(twice), "");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "supergraph:\n  listen: 127.0.0.1:0\nhealth_check:\n  enabled: false\nplugins:\n{}",
            plugin_yaml("enforce", &files)
        ),
    )
    .unwrap();
    let router = switchyard_router::start(&switchyard_router::RouterOptions {
        config,
        supergraph: repo_root().join("schema/supergraph.graphql"),
        hot_reload: false,
    })
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), router)
        .await
        .expect("the router gives up");
    assert!(
        result.is_err(),
        "a manifest with a duplicate id must not start"
    );
}
