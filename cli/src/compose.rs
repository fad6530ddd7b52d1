//! `switchyard compose`: supergraph.yaml → schema/supergraph.graphql, in-process (the
//! composition itself is `switchyard_router::composition`, shared with the explorer's checks).

use std::path::Path;

use anyhow::bail;
use switchyard_router::composition;

/// Reads the config and composes; errors list every composition problem with its code.
pub fn compose_file(config_path: &Path) -> anyhow::Result<String> {
    let sources = composition::read_config(config_path)?;
    match composition::compose(&sources) {
        Ok(composed) => Ok(composed.supergraph_sdl),
        Err(problems) => {
            let mut msg = format!("composition failed with {} error(s):", problems.len());
            for problem in &problems {
                msg.push_str(&format!("\n  - [{}] {}", problem.code, problem.message));
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
