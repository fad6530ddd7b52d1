//! graphql-http's server audit (npm `graphql-http`, pinned in `cli/tests/graphql-http/`)
//! against the real router with the development pipeline: no failures and no warnings. The
//! notices it prints are `MAY` items our CSRF protection declines (GETs without a preflight
//! header).

use crate::harness::{Options, Platform, dev_jwt_plugin, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_over_http_audit_passes_without_warnings() {
    let dir = repo_root().join("cli/tests/graphql-http");
    if !dir.join("node_modules/graphql-http").is_dir() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed (see scripts/prereqs.sh)");
        assert!(status.success(), "npm ci in {}", dir.display());
    }
    let manifest = repo_root().join("persisted-queries/manifest.json");
    let platform = Platform::start(Options {
        plugins: format!(
            "{}  persisted_queries:\n    mode: allow_apq\n    manifest: {}\n  operation_limits: {{}}\n  response_cache: {{}}\n",
            dev_jwt_plugin(),
            manifest.display()
        ),
        ..Options::default()
    })
    .await;
    let url = platform.url.clone();
    let output = tokio::process::Command::new("node")
        .arg("audit.mjs")
        .arg(&url)
        .current_dir(&dir)
        .output()
        .await
        .expect("node must be installed (see scripts/prereqs.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 warnings, 0 failures"), "{stdout}");
    platform.shutdown().await;
}
