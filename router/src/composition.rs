//! Composition and operation checks, in one place: `switchyard compose`, `switchyard pq check`
//! and the explorer's schema-change check all call these, so "does it compose" and "does this
//! operation still validate" mean the same thing on a laptop, in CI and in the router.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use apollo_federation::ApiSchemaOptions;
use apollo_federation::subgraph::typestate::Subgraph;
use serde::{Deserialize, Serialize};

/// Rover's supergraph config (`supergraph.yaml`), the subset we use.
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

/// One subgraph's schema as composition takes it.
#[derive(Debug, Clone)]
pub struct SubgraphSource {
    pub name: String,
    pub routing_url: String,
    pub sdl: String,
}

/// Why a supergraph config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("subgraph {subgraph}: reading {path}: {source}")]
    ReadSubgraph {
        subgraph: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid supergraph config: {message}")]
    Invalid { path: String, message: String },
    #[error("federation_version {0:?} is not supported: Switchyard composes Federation 2")]
    Version(String),
    #[error("{0} lists no subgraphs")]
    Empty(String),
}

/// One composition error, with its code (`INVALID_FIELD_SHARING`, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub code: String,
    pub message: String,
}

/// A successful composition.
#[derive(Debug)]
pub struct Composed {
    pub supergraph_sdl: String,
    /// Composition hints (warnings), as `CODE: message`.
    pub hints: Vec<String>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads `supergraph.yaml` and every subgraph SDL it names.
pub fn read_config(config_path: &Path) -> Result<Vec<SubgraphSource>, ConfigError> {
    let shown = config_path.display().to_string();
    let config: SupergraphConfig =
        serde_yaml::from_str(&read(config_path)?).map_err(|e| ConfigError::Invalid {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    if let Some(version) = &config.federation_version
        && !version.trim_start_matches('=').starts_with("2.")
    {
        return Err(ConfigError::Version(version.clone()));
    }
    if config.subgraphs.is_empty() {
        return Err(ConfigError::Empty(shown));
    }
    let base = config_path.parent().unwrap_or(Path::new("."));
    config
        .subgraphs
        .into_iter()
        .map(|(name, sub)| {
            let path = base.join(&sub.schema.file);
            let sdl =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadSubgraph {
                    subgraph: name.clone(),
                    path: path.display().to_string(),
                    source,
                })?;
            Ok(SubgraphSource {
                sdl,
                name,
                routing_url: sub.routing_url,
            })
        })
        .collect()
}

fn issues(
    errors: impl IntoIterator<Item = apollo_federation::error::CompositionError>,
) -> Vec<Issue> {
    errors
        .into_iter()
        .map(|e| Issue {
            code: e.code().definition().code().to_owned(),
            message: e.to_string(),
        })
        .collect()
}

/// Composes the subgraphs; on failure, every problem with its code.
pub fn compose(sources: &[SubgraphSource]) -> Result<Composed, Vec<Issue>> {
    let mut subgraphs = Vec::new();
    let mut problems = Vec::new();
    for source in sources {
        match Subgraph::parse(&source.name, &source.routing_url, &source.sdl) {
            Ok(subgraph) => subgraphs.push(subgraph),
            Err(e) => {
                problems.extend(
                    issues(e.to_composition_errors())
                        .into_iter()
                        .map(|issue| Issue {
                            message: format!(
                                "subgraph {}: invalid schema: {}",
                                source.name, issue.message
                            ),
                            ..issue
                        }),
                )
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match apollo_federation::composition::compose(subgraphs, Default::default()) {
        Ok(supergraph) => Ok(Composed {
            supergraph_sdl: supergraph.schema().schema().to_string(),
            hints: supergraph
                .hints()
                .iter()
                .map(|h| format!("{}: {}", h.code(), h.message()))
                .collect(),
        }),
        Err(failure) => Err(issues(failure.errors)),
    }
}

/// The subgraphs recovered from a composed supergraph. Lossy (descriptions, `@cacheControl`,
/// `@tag` and `@inaccessible` are not in the join directives), so only for checking whether a
/// change composes when the sources are not at hand, never for publishing.
pub fn extract_sources(supergraph_sdl: &str) -> Result<Vec<SubgraphSource>, String> {
    let extracted = apollo_federation::Supergraph::new(supergraph_sdl)
        .and_then(|s| s.extract_subgraphs())
        .map_err(|e| e.to_string())?;
    Ok(extracted
        .into_iter()
        .map(|(_, s)| SubgraphSource {
            sdl: s.schema.schema().to_string(),
            name: s.name,
            routing_url: s.url,
        })
        .collect())
}

/// The API schema clients see, derived as the router derives it (`@defer` included, since
/// the router's `defer_support` is on by default).
pub fn api_schema(supergraph_sdl: &str) -> Result<Valid<Schema>, String> {
    let supergraph = apollo_federation::Supergraph::new(supergraph_sdl)
        .map_err(|e| format!("the supergraph is invalid: {e}"))?;
    let api = supergraph
        .to_api_schema(ApiSchemaOptions {
            include_defer: true,
            ..Default::default()
        })
        .map_err(|e| format!("cannot derive the API schema: {e}"))?;
    Ok(api.schema().clone())
}

/// Validates one operation document against the API schema: `Ok` with the parsed document, or
/// every validation error (as the router would report them).
pub fn validate_operation(
    api: &Valid<Schema>,
    body: &str,
    source_name: &str,
) -> Result<Valid<ExecutableDocument>, Vec<String>> {
    ExecutableDocument::parse_and_validate(api, body, source_name)
        .map_err(|invalid| invalid.errors.iter().map(|d| d.error.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The committed supergraph is exactly what the committed sources compose to.
    #[test]
    fn committed_sources_compose_to_the_committed_supergraph() {
        let sources = read_config(&repo().join("supergraph.yaml")).unwrap();
        let composed = compose(&sources).unwrap();
        let committed = std::fs::read_to_string(repo().join("schema/supergraph.graphql")).unwrap();
        assert_eq!(composed.supergraph_sdl.trim(), committed.trim());
    }

    #[test]
    fn a_conflict_is_refused_with_its_code() {
        let mut sources = read_config(&repo().join("supergraph.yaml")).unwrap();
        // `Post.body` redefined with another type in a second subgraph, not shareable.
        sources.push(SubgraphSource {
            name: "rogue".into(),
            routing_url: "http://127.0.0.1:1/graphql".into(),
            sdl: "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.9\", import: [\"@key\"])\n\
                  type Post @key(fields: \"id\") { id: ID! body: Int }"
                .into(),
        });
        let problems = compose(&sources).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.code == "INVALID_FIELD_SHARING" || p.code == "FIELD_TYPE_MISMATCH"),
            "{problems:?}"
        );
    }

    #[test]
    fn unparseable_sdl_is_an_issue_not_a_panic() {
        let problems = compose(&[SubgraphSource {
            name: "broken".into(),
            routing_url: "http://127.0.0.1:1/graphql".into(),
            sdl: "type Query {".into(),
        }])
        .unwrap_err();
        assert!(!problems.is_empty());
        assert!(problems.iter().all(|p| !p.code.is_empty()), "{problems:?}");
    }

    #[test]
    fn extracted_sources_recompose() {
        let committed = std::fs::read_to_string(repo().join("schema/supergraph.graphql")).unwrap();
        let sources = extract_sources(&committed).unwrap();
        assert_eq!(sources.len(), 4);
        let recomposed = compose(&sources).unwrap();
        let api = api_schema(&recomposed.supergraph_sdl).unwrap();
        assert!(api.get_object("Post").is_some());
    }

    #[test]
    fn missing_files_and_bad_yaml_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("supergraph.yaml");
        std::fs::write(
            &config,
            "subgraphs:\n  a:\n    routing_url: x\n    schema:\n      file: missing.graphql\n",
        )
        .unwrap();
        let e = read_config(&config).unwrap_err().to_string();
        assert!(e.contains("missing.graphql"), "{e}");
        std::fs::write(&config, "subgraphs:\n  a:\n    routing_urll: x\n").unwrap();
        let e = read_config(&config).unwrap_err().to_string();
        assert!(e.contains("routing_urll"), "{e}");
    }
}
