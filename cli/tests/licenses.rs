//! The licences operators inherit: every crate linked into the `switchyard` binary (from
//! `cargo metadata`, normal dependencies only: build tools and test crates are not shipped)
//! and every npm package bundled into the explorer (from its lockfile), each licence checked
//! against the allowed list, and the whole list compared with the committed
//! `docs/third-party-licenses.md`.
//!
//! After a dependency change: `SWITCHYARD_UPDATE_LICENSES=1 cargo test -p switchyard --test licenses`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// SPDX identifiers we ship under. Elastic-2.0 is apollo-router's and apollo-federation's
/// (docs/deploy.md#licences says what it means for operators).
const ALLOWED: &[&str] = &[
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "BSL-1.0",
    "CC0-1.0",
    "MPL-2.0",
    "MPL-2.0+",
    "Python-2.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "CDLA-Permissive-2.0",
    "OpenSSL",
    "Elastic-2.0",
];

/// Crates that name no SPDX licence, only a licence file, read by hand (by version: a new
/// version must be read again).
const CLARIFIED: &[(&str, &str)] = &[("jsonpath-rust 0.3.5", "MIT")];

/// Whether an SPDX expression can be met with allowed licences: `A OR B` needs one side,
/// `A AND B` both, parentheses group, `X WITH Y` is one licence; `A/B` (old crates) is `OR`.
fn allowed(expression: &str) -> bool {
    let expression = expression.trim_end_matches(" (its licence file, read by hand)");
    let spaced = expression
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ");
    let mut tokens: Vec<String> = Vec::new();
    let mut words = spaced.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if words.peek() == Some(&"WITH") {
            words.next();
            let exception = words.next().unwrap_or_default();
            tokens.push(format!("{word} WITH {exception}"));
        } else {
            tokens.push(word.to_owned());
        }
    }
    let mut at = 0;
    let ok = or(&tokens, &mut at);
    ok == Some(true) && at == tokens.len()
}

fn or(tokens: &[String], at: &mut usize) -> Option<bool> {
    let mut value = and(tokens, at)?;
    while tokens.get(*at).map(String::as_str) == Some("OR") {
        *at += 1;
        value |= and(tokens, at)?;
    }
    Some(value)
}

fn and(tokens: &[String], at: &mut usize) -> Option<bool> {
    let mut value = term(tokens, at)?;
    while tokens.get(*at).map(String::as_str) == Some("AND") {
        *at += 1;
        value &= term(tokens, at)?;
    }
    Some(value)
}

fn term(tokens: &[String], at: &mut usize) -> Option<bool> {
    let token = tokens.get(*at)?;
    *at += 1;
    if token == "(" {
        let value = or(tokens, at)?;
        (tokens.get(*at).map(String::as_str) == Some(")")).then(|| *at += 1)?;
        return Some(value);
    }
    Some(ALLOWED.contains(&token.as_str()))
}

fn crates() -> BTreeMap<String, String> {
    let repo = switchyard_kit::testing::repo_root();
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(&repo)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages: HashMap<&str, &Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == "switchyard" && p["source"].is_null())
        .map(|p| p["id"].as_str().unwrap())
        .unwrap();
    // What the binary links: normal dependencies, transitively.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.into_iter()
        .map(|id| packages[id])
        .filter(|p| !p["source"].is_null())
        .map(|p| {
            let package = format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            );
            let licence = match p["license"].as_str() {
                Some(licence) => licence.to_owned(),
                None => CLARIFIED
                    .iter()
                    .find(|(name, _)| *name == package)
                    .map(|(_, licence)| format!("{licence} (its licence file, read by hand)"))
                    .unwrap_or_else(|| "(none: only a licence file)".to_owned()),
            };
            (package, licence)
        })
        .collect()
}

fn npm_packages() -> BTreeMap<String, String> {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(
            switchyard_kit::testing::repo_root().join("router/explorer/package-lock.json"),
        )
        .unwrap(),
    )
    .unwrap();
    lock["packages"]
        .as_object()
        .unwrap()
        .iter()
        // Only what the bundle contains: production dependencies.
        .filter(|(path, p)| !path.is_empty() && p["dev"] != true)
        .map(|(path, p)| {
            let name = path.rsplit("node_modules/").next().unwrap();
            (
                format!("{name} {}", p["version"].as_str().unwrap_or("?")),
                p["license"].as_str().unwrap_or("(none)").to_owned(),
            )
        })
        .collect()
}

fn render(crates: &BTreeMap<String, String>, npm: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Third-party licences\n\n\
         Generated by `cli/tests/licenses.rs` (`SWITCHYARD_UPDATE_LICENSES=1 cargo test -p switchyard --test licenses`);\n\
         the test fails when this file is out of date or a licence is not on its allowed list.\n\
         What they mean for operators: [deploy.md](deploy.md#licences).\n\n",
    );
    for (title, list) in [
        ("Crates linked into the `switchyard` binary", crates),
        (
            "npm packages bundled into the explorer (`router/explorer/dist`)",
            npm,
        ),
    ] {
        let mut by_licence: BTreeMap<&str, usize> = BTreeMap::new();
        for licence in list.values() {
            *by_licence.entry(licence.as_str()).or_default() += 1;
        }
        out.push_str(&format!(
            "## {title}: {}\n\n| licence | packages |\n|---|---|\n",
            list.len()
        ));
        for (licence, count) in &by_licence {
            out.push_str(&format!("| {licence} | {count} |\n"));
        }
        out.push_str("\n| package | licence |\n|---|---|\n");
        for (package, licence) in list {
            out.push_str(&format!("| {package} | {licence} |\n"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn every_shipped_licence_is_allowed_and_listed() {
    let (crates, npm) = (crates(), npm_packages());
    assert!(crates.len() > 300, "{} crates", crates.len());
    assert!(npm.keys().any(|k| k.starts_with("graphiql ")), "{npm:?}");
    let refused: Vec<String> = crates
        .iter()
        .chain(&npm)
        .filter(|(_, licence)| !allowed(licence))
        .map(|(package, licence)| format!("{package}: {licence}"))
        .collect();
    assert!(
        refused.is_empty(),
        "licences not on the allowed list: {refused:#?}"
    );
    for apollo in ["apollo-router", "apollo-federation"] {
        let licence = crates
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{apollo} ")))
            .map(|(_, l)| l.as_str());
        assert_eq!(licence, Some("Elastic-2.0"), "{apollo}");
    }
    let path = switchyard_kit::testing::repo_root().join("docs/third-party-licenses.md");
    let expected = render(&crates, &npm);
    if std::env::var_os("SWITCHYARD_UPDATE_LICENSES").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/third-party-licenses.md is out of date: run SWITCHYARD_UPDATE_LICENSES=1 cargo test -p switchyard --test licenses"
    );
}

#[test]
fn licence_expressions() {
    assert!(allowed("MIT OR Apache-2.0"));
    assert!(allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(allowed("MIT/Apache-2.0"));
    assert!(!allowed("GPL-3.0"));
    assert!(!allowed("MIT AND GPL-3.0"));
    assert!(allowed("GPL-3.0 OR MIT"));
    assert!(!allowed("(MIT OR Apache-2.0) AND GPL-3.0"));
    assert!(allowed("Apache-2.0 WITH LLVM-exception OR MIT"));
    assert!(!allowed("MIT OR"));
    assert!(!allowed("(MIT"));
}
