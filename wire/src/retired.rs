//! Retired operations and app versions (the side file `persisted-queries/retired.yaml`).

use std::collections::{BTreeMap, HashSet};

use semver::{Version, VersionReq};
use serde::Deserialize;

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiredFile {
    /// Manifest ids that no longer run.
    #[serde(default)]
    operations: Vec<String>,
    /// Client name → semver requirement that matches its retired versions (e.g. `"<2.0.0"`).
    #[serde(default)]
    client_versions: BTreeMap<String, String>,
}

/// What is retired, validated.
#[derive(Debug, Default, Clone)]
pub struct Retired {
    operations: HashSet<String>,
    client_versions: Vec<(String, VersionReq)>,
}

impl Retired {
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let file: RetiredFile = if yaml.trim().is_empty() {
            RetiredFile::default()
        } else {
            serde_yaml::from_str(yaml).map_err(|e| e.to_string())?
        };
        let mut operations = HashSet::new();
        for id in file.operations {
            if !crate::manifest::is_valid_id(&id) {
                return Err(format!(
                    "operations: {id:?} is not an operation id (64 hex digits)"
                ));
            }
            operations.insert(id.to_ascii_lowercase());
        }
        let client_versions = file
            .client_versions
            .into_iter()
            .map(|(client, req)| {
                VersionReq::parse(&req)
                    .map(|r| (client.clone(), r))
                    .map_err(|e| {
                        format!(
                            "client_versions.{client}: {req:?} is not a semver requirement: {e}"
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            operations,
            client_versions,
        })
    }

    /// Client name and the requirement its retired versions match, for display.
    pub fn client_requirements(&self) -> impl Iterator<Item = (&str, &VersionReq)> {
        self.client_versions
            .iter()
            .map(|(c, req)| (c.as_str(), req))
    }

    pub fn operation(&self, id: &str) -> bool {
        self.operations.contains(id)
    }

    /// Whether this client's version is retired. Versions that do not parse as semver are not
    /// judged (an odd header must not lock out a current app).
    pub fn client_version(&self, client: Option<&str>, version: Option<&str>) -> bool {
        let (Some(client), Some(version)) = (client, version) else {
            return false;
        };
        let Ok(version) = Version::parse(version.trim()) else {
            return false;
        };
        self.client_versions
            .iter()
            .any(|(c, req)| c == client && req.matches(&version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let id = "a".repeat(64);
        let retired = Retired::parse(&format!(
            "operations: [\"{id}\"]\nclient_versions:\n  ios: \"<2.0.0\"\n"
        ))
        .unwrap();
        assert!(retired.operation(&id));
        assert!(retired.client_version(Some("ios"), Some("1.9.3")));
        assert!(!retired.client_version(Some("ios"), Some("2.0.0")));
        assert!(!retired.client_version(Some("android"), Some("1.0.0")));
        assert!(!retired.client_version(Some("ios"), Some("banana")));
        assert!(!retired.client_version(Some("ios"), None));
        assert!(Retired::parse("").unwrap().operations.is_empty());
    }

    #[test]
    fn rejects_bad_files() {
        assert!(
            Retired::parse("operations: [\"nope\"]")
                .unwrap_err()
                .contains("not an operation id")
        );
        assert!(
            Retired::parse("client_versions: {ios: \"<<2\"}")
                .unwrap_err()
                .contains("client_versions.ios")
        );
        assert!(
            Retired::parse("operation: []")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
