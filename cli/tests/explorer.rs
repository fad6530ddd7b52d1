//! The schema explorer in a real browser (Debian's headless Chromium driven by playwright-core,
//! `router/explorer/tests/browser.mjs`) against `switchyard dev`: search a field, see its
//! owner, its persisted-operation users, the impact of a breaking change, and run a query.
//! Screenshots are kept in `$CARGO_TARGET_DIR/explorer-screenshots/` as test artifacts.
//!
//! `scripts/test` installs Chromium and the explorer's npm packages (`npm ci`).

use std::process::Command;

mod support;
use support::Dev;

#[test]
fn explorer_works_in_a_browser() {
    let repo = switchyard_kit::testing::repo_root();
    let explorer = repo.join("router/explorer");
    assert!(
        explorer.join("node_modules/playwright-core").exists(),
        "run `npm ci` in router/explorer (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (scripts/test does)"
    );
    let data = tempfile::tempdir().unwrap();
    let _dev = Dev::start(data.path(), |_| {});
    let shots = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| repo.join("target").display().to_string()),
    )
    .join("explorer-screenshots");
    let output = Command::new("node")
        .arg("tests/browser.mjs")
        .arg("http://127.0.0.1:4000/explorer/")
        .arg(&shots)
        .current_dir(&explorer)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(shots.join("08-breaking-change.png").exists());
}
