//! The Apollo persisted query manifest: the file format, and the validated index the router
//! serves from.
//!
//! ```json
//! {"format":"apollo-persisted-query-manifest","version":1,
//!  "operations":[{"id":"<sha256 hex of body>","name":"HomeFeed","type":"query",
//!                 "body":"query HomeFeed ...","clientName":"ios"}]}
//! ```
//!
//! We add one optional field, `clientNames`, for an operation that several clients ship with
//! the same body (and so the same id); tools that do not know it ignore it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "apollo-persisted-query-manifest";
pub const VERSION: u32 = 1;

/// The file, as written by `switchyard pq build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub format: String,
    pub version: u32,
    pub operations: Vec<ManifestOperation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestOperation {
    pub id: String,
    pub name: String,
    /// `query`, `mutation` or `subscription`.
    #[serde(rename = "type")]
    pub kind: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Every client that ships this exact body, when more than one does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_names: Vec<String>,
}

impl ManifestFile {
    pub fn new(operations: Vec<ManifestOperation>) -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            operations,
        }
    }

    /// The exact bytes `pq build` writes: pretty JSON and a final newline, so the file diffs
    /// well and is byte-for-byte reproducible.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("manifest serializes");
        text.push('\n');
        text
    }
}

/// The id of a body: lower-case hex sha256 of its bytes.
pub fn operation_id(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// Whether `id` looks like an operation id (64 hex digits).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a manifest was refused. The router keeps serving the previous one.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("format is {0:?}, expected {FORMAT:?}")]
    Format(String),
    #[error("version is {0}, expected {VERSION}")]
    Version(u32),
    #[error("operation #{index} ({name}): id {id:?} is not 64 hex digits")]
    MalformedId {
        index: usize,
        name: String,
        id: String,
    },
    #[error("operation #{index} ({name}): id {id} is not the sha256 of its body")]
    IdMismatch {
        index: usize,
        name: String,
        id: String,
    },
    #[error("operation #{index} ({name}): duplicate id {id}")]
    DuplicateId {
        index: usize,
        name: String,
        id: String,
    },
    #[error("operation #{index} ({name}): empty body")]
    EmptyBody { index: usize, name: String },
}

/// One operation the router will run by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: String,
    pub name: String,
    pub body: Arc<str>,
    /// Clients allowed to run it; empty = any client.
    pub clients: Vec<String>,
}

impl Operation {
    pub fn allows_client(&self, client: Option<&str>) -> bool {
        match client {
            _ if self.clients.is_empty() => true,
            Some(client) => self.clients.iter().any(|c| c == client),
            // A request that does not say which client it is cannot be held to a client's list;
            // deployments that need that set `require_client_name`.
            None => true,
        }
    }
}

/// A validated manifest, indexed by id.
#[derive(Debug, Default, Clone)]
pub struct Manifest {
    by_id: HashMap<String, Arc<Operation>>,
    /// Every client the manifest names (the only client names metrics may carry).
    clients: std::collections::BTreeSet<String>,
}

impl Manifest {
    pub fn parse(json: &str) -> Result<Self, ManifestError> {
        let file: ManifestFile = serde_json::from_str(json)?;
        Self::from_file(file)
    }

    pub fn from_file(file: ManifestFile) -> Result<Self, ManifestError> {
        if file.format != FORMAT {
            return Err(ManifestError::Format(file.format));
        }
        if file.version != VERSION {
            return Err(ManifestError::Version(file.version));
        }
        let mut by_id = HashMap::with_capacity(file.operations.len());
        let mut known_clients = std::collections::BTreeSet::new();
        for (index, op) in file.operations.into_iter().enumerate() {
            let name = op.name.clone();
            if !is_valid_id(&op.id) {
                return Err(ManifestError::MalformedId {
                    index,
                    name,
                    id: op.id,
                });
            }
            if op.body.trim().is_empty() {
                return Err(ManifestError::EmptyBody { index, name });
            }
            let id = op.id.to_ascii_lowercase();
            if operation_id(&op.body) != id {
                return Err(ManifestError::IdMismatch { index, name, id });
            }
            let clients = if op.client_names.is_empty() {
                op.client_name.into_iter().collect()
            } else {
                op.client_names
            };
            known_clients.extend(clients.iter().cloned());
            let operation = Operation {
                id: id.clone(),
                name,
                body: op.body.into(),
                clients,
            };
            if by_id.insert(id.clone(), Arc::new(operation)).is_some() {
                return Err(ManifestError::DuplicateId {
                    index,
                    name: op.name,
                    id,
                });
            }
        }
        Ok(Self {
            by_id,
            clients: known_clients,
        })
    }

    /// Whether some operation names `client` (client names outside the manifest are counted
    /// as `other` in metrics, so a client cannot mint label values).
    pub fn knows_client(&self, client: &str) -> bool {
        self.clients.contains(client)
    }

    /// Every operation id (lower-case hex).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Operation>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, body: &str, client: Option<&str>) -> ManifestOperation {
        ManifestOperation {
            id: operation_id(body),
            name: name.into(),
            kind: "query".into(),
            body: body.into(),
            client_name: client.map(str::to_owned),
            client_names: vec![],
        }
    }

    #[test]
    fn round_trips_and_indexes() {
        let file = ManifestFile::new(vec![op(
            "A",
            "query A { feed { nodes { id } } }",
            Some("ios"),
        )]);
        let manifest = Manifest::parse(&file.to_json()).unwrap();
        let a = manifest
            .get(&operation_id("query A { feed { nodes { id } } }"))
            .unwrap();
        assert_eq!(a.name, "A");
        assert!(a.allows_client(Some("ios")));
        assert!(!a.allows_client(Some("android")));
        assert!(file.to_json().ends_with("}\n"));
    }

    #[test]
    fn refuses_bad_manifests() {
        let good = op("A", "query A { x }", None);
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "invalid JSON"),
            (r#"{"format":"x","version":1,"operations":[]}"#.into(), "format is"),
            (r#"{"format":"apollo-persisted-query-manifest","version":2,"operations":[]}"#.into(), "version is 2"),
            (ManifestFile::new(vec![good.clone(), good.clone()]).to_json(), "duplicate id"),
            (ManifestFile::new(vec![ManifestOperation { id: "abc".into(), ..good.clone() }]).to_json(), "not 64 hex"),
            (ManifestFile::new(vec![ManifestOperation { body: "query B { y }".into(), ..good.clone() }]).to_json(), "not the sha256"),
            (r#"{"format":"apollo-persisted-query-manifest","version":1,"operations":[],"extra":1}"#.into(), "unknown field"),
        ];
        for (json, expected) in cases {
            let err = Manifest::parse(&json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn ids_are_sha256_hex() {
        assert_eq!(
            operation_id(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_valid_id(&operation_id("x")));
        assert!(!is_valid_id("xyz"));
    }
}
