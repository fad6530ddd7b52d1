//! `switchyard pq build` and `switchyard pq check`: the manifest from the operations clients
//! ship, and the proof that the supergraph still serves every one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use apollo_compiler::ast::{Definition, Document, OperationType};
use switchyard_router::plugins::persisted_queries::manifest::{
    ManifestFile, ManifestOperation, operation_id,
};

/// One operation file: `operations/<client>/<Name>.graphql`.
#[derive(Debug, Clone)]
pub struct OperationFile {
    pub client: String,
    pub path: PathBuf,
    pub name: String,
    pub kind: OperationType,
    /// The document as written, without leading/trailing whitespace (so an editor's final
    /// newline does not change the id).
    pub body: String,
}

/// Reads every operation under `dir`, checking each file holds exactly one named operation
/// (plus any fragments it uses) and that names are unique per client.
pub fn read_operations(dir: &Path) -> anyhow::Result<Vec<OperationFile>> {
    let mut clients: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    clients.sort();
    let mut operations = Vec::new();
    for client_dir in clients {
        let client = client_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&client_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "graphql"))
            .collect();
        files.sort();
        let mut names = BTreeMap::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let body = text.trim().to_owned();
            let document = Document::parse(body.as_str(), &path)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.errors))?;
            let ops: Vec<_> = document
                .definitions
                .iter()
                .filter_map(|d| match d {
                    Definition::OperationDefinition(op) => Some(op),
                    _ => None,
                })
                .collect();
            let [op] = ops.as_slice() else {
                bail!(
                    "{}: expected exactly one operation, found {}",
                    path.display(),
                    ops.len()
                );
            };
            let Some(name) = &op.name else {
                bail!(
                    "{}: the operation needs a name (clients and metrics identify it by name)",
                    path.display()
                );
            };
            if let Some(other) = names.insert(name.to_string(), path.clone()) {
                bail!(
                    "client {client}: operation {name} is defined twice ({} and {})",
                    other.display(),
                    path.display()
                );
            }
            operations.push(OperationFile {
                client: client.clone(),
                path,
                name: name.to_string(),
                kind: op.operation_type,
                body,
            });
        }
    }
    Ok(operations)
}

/// The manifest: one entry per distinct body (several clients shipping the same body share an
/// id and list every client), sorted by name then id, so the file is the same byte for byte for
/// the same operations.
pub fn build_manifest(operations: &[OperationFile]) -> anyhow::Result<ManifestFile> {
    let mut by_id: BTreeMap<String, ManifestOperation> = BTreeMap::new();
    for op in operations {
        let id = operation_id(&op.body);
        let entry = by_id
            .entry(id.clone())
            .or_insert_with(|| ManifestOperation {
                id,
                name: op.name.clone(),
                kind: op.kind.to_string(),
                body: op.body.clone(),
                client_name: Some(op.client.clone()),
                client_names: vec![],
            });
        if entry.name != op.name {
            bail!(
                "{}: same body as operation {} of another client, under another name ({}); give them one name",
                op.path.display(),
                entry.name,
                op.name
            );
        }
        if entry.client_name.as_deref() != Some(op.client.as_str())
            || !entry.client_names.is_empty()
        {
            if entry.client_names.is_empty() {
                entry.client_names.extend(entry.client_name.clone());
            }
            entry.client_names.push(op.client.clone());
        }
    }
    let mut operations: Vec<ManifestOperation> = by_id.into_values().collect();
    operations.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(ManifestFile::new(operations))
}

/// Validates every operation against the supergraph's API schema; returns one line per
/// problem, naming the client, the operation and the file.
pub fn check_operations(
    operations: &[OperationFile],
    supergraph_sdl: &str,
) -> anyhow::Result<Vec<String>> {
    let api =
        switchyard_router::composition::api_schema(supergraph_sdl).map_err(anyhow::Error::msg)?;
    let mut problems = Vec::new();
    for op in operations {
        let source = op.path.display().to_string();
        if let Err(errors) =
            switchyard_router::composition::validate_operation(&api, &op.body, &source)
        {
            for error in errors {
                problems.push(format!(
                    "client {}, operation {} ({source}): {error}",
                    op.client, op.name
                ));
            }
        }
    }
    Ok(problems)
}
