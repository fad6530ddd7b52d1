//! The `switchyard` binary's tooling commands, run as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn switchyard(args: &[&str], dir: impl AsRef<Path>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(dir.as_ref())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchyard")
}

fn repo_root() -> std::path::PathBuf {
    switchyard_kit::testing::repo_root()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn committed_schemas_are_current() {
    let out = switchyard(&["schema", "export", "--check"], repo_root());
    assert!(
        out.status.success(),
        "schema export --check: {}",
        stderr(&out)
    );
    let out = switchyard(&["compose", "--check"], repo_root());
    assert!(out.status.success(), "compose --check: {}", stderr(&out));
    let out = switchyard(&["pq", "build", "--check"], repo_root());
    assert!(out.status.success(), "pq build --check: {}", stderr(&out));
    let out = switchyard(&["pq", "check"], repo_root());
    assert!(out.status.success(), "pq check: {}", stderr(&out));
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn pq_check_names_client_operation_and_field_a_schema_change_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("operations");
    write(
        &ops,
        "ios/Feed.graphql",
        "query Feed { feed { nodes { id body } } }\n",
    );
    write(
        &ops,
        "android/Gone.graphql",
        "query Gone { feed { nodes { id shareCount } } }\n",
    );
    let supergraph = repo_root().join("schema/supergraph.graphql");
    let out = switchyard(
        &[
            "pq",
            "check",
            "--operations",
            ops.to_str().unwrap(),
            "--supergraph",
            supergraph.to_str().unwrap(),
        ],
        repo_root(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("client android, operation Gone") && err.contains("shareCount"),
        "{err}"
    );
    assert!(!err.contains("operation Feed"), "{err}");
}

#[test]
fn pq_build_is_deterministic_and_refuses_ambiguous_files() {
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("operations");
    write(
        &ops,
        "ios/Feed.graphql",
        "query Feed { feed { nodes { id } } }\n",
    );
    write(
        &ops,
        "web/Feed.graphql",
        "query Feed { feed { nodes { id } } }",
    );
    let manifest = dir.path().join("manifest.json");
    let args = [
        "pq",
        "build",
        "--operations",
        ops.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ];
    assert!(switchyard(&args, repo_root()).status.success());
    let first = std::fs::read(&manifest).unwrap();
    assert!(switchyard(&args, repo_root()).status.success());
    assert_eq!(first, std::fs::read(&manifest).unwrap(), "byte for byte");
    let text = String::from_utf8(first).unwrap();
    assert_eq!(
        text.matches("\"id\"").count(),
        1,
        "one body, one entry: {text}"
    );
    assert!(
        text.contains("\"clientNames\": [\n        \"ios\",\n        \"web\"\n      ]"),
        "{text}"
    );

    for (file, body, expected) in [
        (
            "ios/Two.graphql",
            "query A { feed { nodes { id } } } query B { feed { nodes { id } } }",
            "exactly one operation",
        ),
        (
            "ios/Anon.graphql",
            "{ feed { nodes { id } } }",
            "needs a name",
        ),
        (
            "ios/Again.graphql",
            "query Feed { post(id: 1) { id } }",
            "defined twice",
        ),
        (
            "ios/Broken.graphql",
            "query Broken { feed {",
            "Broken.graphql",
        ),
    ] {
        write(&ops, file, body);
        let out = switchyard(&args, repo_root());
        assert!(!out.status.success(), "{file}");
        assert!(stderr(&out).contains(expected), "{file}: {}", stderr(&out));
        std::fs::remove_file(ops.join(file)).unwrap();
    }
}

#[test]
fn stale_files_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("accounts.graphql"),
        "type Query { stale: Int }",
    )
    .unwrap();
    let out = switchyard(
        &[
            "schema",
            "export",
            "--check",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
        repo_root(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("accounts.graphql is stale"),
        "{}",
        stderr(&out)
    );

    let output = dir.path().join("supergraph.graphql");
    std::fs::write(&output, "old").unwrap();
    let out = switchyard(
        &["compose", "--check", "--output", output.to_str().unwrap()],
        repo_root(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is stale: run `switchyard compose`"),
        "{}",
        stderr(&out)
    );
    // Without --check the file is rewritten and then passes.
    assert!(
        switchyard(
            &["compose", "--output", output.to_str().unwrap()],
            repo_root()
        )
        .status
        .success()
    );
    assert!(
        switchyard(
            &["compose", "--check", "--output", output.to_str().unwrap()],
            repo_root()
        )
        .status
        .success()
    );
}

const FED: &str = r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
"#;

#[test]
fn composition_errors_name_subgraph_type_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.graphql"),
        format!("{FED}type Query {{ me: User }}\ntype User @key(fields: \"id\") {{ id: ID! name: String }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.graphql"),
        format!("{FED}type Query {{ you: User }}\ntype User @key(fields: \"id\") {{ id: ID! name: String }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("supergraph.yaml"),
        "federation_version: =2.9.0\nsubgraphs:\n  a:\n    routing_url: http://a/graphql\n    schema:\n      file: a.graphql\n  b:\n    routing_url: http://b/graphql\n    schema:\n      file: b.graphql\n",
    )
    .unwrap();
    let out = switchyard(&["compose", "--output", "out.graphql"], dir.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("composition failed"), "{err}");
    assert!(
        err.contains("\"User.name\"") && err.contains("\"a\"") && err.contains("\"b\""),
        "{err}"
    );
    assert!(
        !dir.path().join("out.graphql").exists(),
        "nothing is written on failure"
    );
}

#[test]
fn malformed_supergraph_config_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "subgraphs:\n  a:\n    routing_url: http://a\n    schema:\n      fiel: a.graphql\n",
            "unknown field `fiel`",
        ),
        ("subgraphs: {}\n", "lists no subgraphs"),
        ("federation_version: =1.0\nsubgraphs: {}\n", "not supported"),
        (
            "subgraphs:\n  a:\n    routing_url: http://a\n    schema:\n      file: missing.graphql\n",
            "subgraph a: reading",
        ),
        (": : :", "not a valid supergraph config"),
    ];
    for (yaml, expected) in cases {
        std::fs::write(dir.path().join("supergraph.yaml"), yaml).unwrap();
        let out = switchyard(&["compose"], dir.path());
        assert!(!out.status.success(), "{yaml}");
        assert!(stderr(&out).contains(expected), "{yaml}: {}", stderr(&out));
    }
    std::fs::write(dir.path().join("a.graphql"), "type Query { broken(: Int }").unwrap();
    std::fs::write(
        dir.path().join("supergraph.yaml"),
        "subgraphs:\n  a:\n    routing_url: http://a\n    schema:\n      file: a.graphql\n",
    )
    .unwrap();
    let out = switchyard(&["compose"], dir.path());
    assert!(
        stderr(&out).contains("subgraph a: invalid schema"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unreachable_shard_is_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["subgraph", "accounts", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env(
            "SWITCHYARD_ACCOUNTS_SHARDS",
            "sqlite://a.db?mode=rwc,postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("shard 1 (primary, postgres://nobody@127.0.0.1:1/none): cannot connect"),
        "{err}"
    );

    for (env, expected) in [
        (
            ("SWITCHYARD_ACCOUNTS_SHARDS", "mysql://x"),
            "unsupported URL scheme",
        ),
        (
            ("SWITCHYARD_ACCOUNTS_REPLICAS", "sqlite://r.db"),
            "SWITCHYARD_ACCOUNTS_SHARDS is not",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["subgraph", "accounts"])
            .current_dir(dir.path())
            .env(env.0, env.1)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
    let out = switchyard(&["subgraph", "nope"], dir.path());
    assert!(stderr(&out).contains("unknown subgraph \"nope\""));
    let out = switchyard(&["migrate", "--shards", "0"], dir.path());
    assert!(
        stderr(&out).contains("--shards must be between 1 and 1024"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn seed_is_idempotent_and_quick() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "seed",
        "--data-dir",
        data.to_str().unwrap(),
        "--users",
        "500",
        "--posts",
        "3000",
    ];
    let out = switchyard(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("seeded 500 new user(s) of 500 and 3000 new post(s) of 3000")
    );
    let out = switchyard(&args, dir.path());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("seeded 0 new user(s) of 500 and 0 new post(s) of 3000")
    );
}

#[test]
fn bad_environment_is_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value, subgraph, expected) in [
        (
            "SWITCHYARD_SUBGRAPH_MAX_RPS",
            "lots",
            "posts",
            "SWITCHYARD_SUBGRAPH_MAX_RPS must be a positive number",
        ),
        (
            "SWITCHYARD_SUBGRAPH_BURST",
            "0",
            "posts",
            "SWITCHYARD_SUBGRAPH_BURST must be a positive number",
        ),
        (
            "SWITCHYARD_JWT_KEY",
            "not a pem",
            "accounts",
            "SWITCHYARD_JWT_KEY is not a valid ES256 private key",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "subgraph",
                subgraph,
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                dir.path().to_str().unwrap(),
            ])
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value}");
        assert!(
            stderr(&out).contains(expected),
            "{name}={value}: {}",
            stderr(&out)
        );
    }
}

/// `switchyard events replay counters` on an empty deployment: nothing to differ, exit 0; an
/// unknown projection is refused with the list of known ones.
#[test]
fn events_replay_reports_and_refuses_unknown_projections() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(
        switchyard(&["migrate", "--data-dir", data], dir.path())
            .status
            .success()
    );
    let out = switchyard(
        &["events", "replay", "counters", "--data-dir", data],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "replayed 0 event(s); compared 0 counter(s); 0 difference(s)\n"
    );
    let out = switchyard(&["events", "replay", "likes"], dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("[possible values: counters]"),
        "{}",
        stderr(&out)
    );
}
