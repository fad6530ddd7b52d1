//! `switchyard compose`: supergraph.yaml → schema/supergraph.graphql, in-process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use apollo_federation::composition::compose;
use apollo_federation::subgraph::typestate::Subgraph;
use serde::Deserialize;

/// Rover's supergraph config, the subset we use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupergraphConfig {
    /// Rover's federation version pin (e.g. `=2.9.0`); informational here, since the
    /// composition library is the one linked into this binary.
    pub federation_version: Option<String>,
    pub subgraphs: BTreeMap<String, SubgraphConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubgraphConfig {
    /// Where the router sends this subgraph's requests.
    pub routing_url: String,
    pub schema: SchemaSource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSource {
    /// The subgraph's SDL, relative to the config file.
    pub file: PathBuf,
}

/// Reads the config and composes; errors list every composition problem.
pub fn compose_file(config_path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config: SupergraphConfig = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a valid supergraph config", config_path.display()))?;
    if let Some(version) = &config.federation_version
        && !version.trim_start_matches('=').starts_with("2.")
    {
        bail!("federation_version {version:?} is not supported: Switchyard composes Federation 2");
    }
    if config.subgraphs.is_empty() {
        bail!("{} lists no subgraphs", config_path.display());
    }
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut subgraphs = Vec::new();
    for (name, sub) in &config.subgraphs {
        let path = base.join(&sub.schema.file);
        let sdl = std::fs::read_to_string(&path)
            .with_context(|| format!("subgraph {name}: reading {}", path.display()))?;
        let parsed = Subgraph::parse(name, &sub.routing_url, &sdl)
            .map_err(|e| anyhow::anyhow!("subgraph {name}: invalid schema: {e}"))?;
        subgraphs.push(parsed);
    }
    match compose(subgraphs, Default::default()) {
        Ok(supergraph) => Ok(supergraph.schema().schema().to_string()),
        Err(failure) => {
            let mut msg = format!("composition failed with {} error(s):", failure.errors.len());
            for error in &failure.errors {
                msg.push_str(&format!("\n  - [{:?}] {error}", error.code()));
            }
            bail!(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `supergraph.yaml` is a config file: any text is composed or refused with an error
        /// that names the file, never a panic.
        #[test]
        fn any_config_text_is_refused_or_composed(
            text in prop_oneof![
                "\\PC{0,200}",
                "(federation_version: [=0-9.]{0,6}\n)?subgraphs:\n(  [a-z]{1,6}:\n    routing_url: [a-z:/.]{0,12}\n    schema:\n      file: [a-z./]{0,10}\n){0,3}",
            ]
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("supergraph.yaml");
            std::fs::write(&path, &text).unwrap();
            if let Err(e) = compose_file(&path) {
                let message = format!("{e:#}");
                prop_assert!(!message.is_empty());
            }
        }
    }
}
