//! "Can I change this subgraph's schema?": the proposed SDL recomposed with the other subgraphs,
//! and every persisted operation validated against the resulting API schema: the checks of
//! `switchyard compose` and `switchyard pq check`, with the same code (`crate::composition`).

use std::collections::{BTreeMap, HashMap};

use apollo_compiler::Schema;
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use serde::{Deserialize, Serialize};

use super::catalogue::Catalogue;
use crate::composition::{self, Issue, SubgraphSource};

/// Largest proposed SDL accepted.
pub const MAX_SDL_BYTES: usize = 512 * 1024;

/// The request body of `POST api/check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// An existing subgraph's name, or a new one's.
    pub subgraph: String,
    pub sdl: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    pub composes: bool,
    pub errors: Vec<Issue>,
    pub hints: Vec<String>,
    /// Persisted operations that would no longer validate.
    pub breaking: Vec<Broken>,
    /// Fields of the API schema removed or changed, with how many operations use each.
    pub changes: Vec<Change>,
    pub checked_operations: usize,
    /// `supergraph.yaml` (the committed sources) or `extracted` (recovered from the running
    /// supergraph: descriptions and cache hints of the other subgraphs are not compared).
    pub sources: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Broken {
    pub id: String,
    pub name: String,
    pub clients: Vec<String>,
    pub retired: bool,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub coordinate: String,
    pub change: String,
    pub operations: usize,
}

/// Why a request could not be checked at all (a 400, unlike a failing check).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CheckError {
    #[error("subgraph must be 1 to 64 letters, digits, '_' or '-', starting with a letter")]
    SubgraphName,
    #[error("sdl is empty")]
    EmptySdl,
    #[error("sdl is larger than {MAX_SDL_BYTES} bytes")]
    SdlTooLarge,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl CheckRequest {
    pub fn validate(&self) -> Result<(), CheckError> {
        if !valid_name(&self.subgraph) {
            return Err(CheckError::SubgraphName);
        }
        if self.sdl.trim().is_empty() {
            return Err(CheckError::EmptySdl);
        }
        if self.sdl.len() > MAX_SDL_BYTES {
            return Err(CheckError::SdlTooLarge);
        }
        Ok(())
    }
}

/// Object and interface fields of an API schema: `Type.field` -> its type.
fn fields(api: &Valid<Schema>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, ty) in &api.types {
        if ty.is_built_in() {
            continue;
        }
        let fields = match ty {
            ExtendedType::Object(o) => &o.fields,
            ExtendedType::Interface(i) => &i.fields,
            _ => continue,
        };
        for (field, def) in fields {
            out.insert(format!("{name}.{field}"), def.ty.to_string());
        }
    }
    out
}

/// Runs the check (CPU-bound: call it off the async runtime).
pub fn run(
    request: &CheckRequest,
    mut sources: Vec<SubgraphSource>,
    sources_label: &'static str,
    current_api: &Valid<Schema>,
    catalogue: &Catalogue,
) -> CheckResult {
    match sources.iter_mut().find(|s| s.name == request.subgraph) {
        Some(source) => source.sdl = request.sdl.clone(),
        None => sources.push(SubgraphSource {
            name: request.subgraph.clone(),
            routing_url: format!("http://{}.invalid/graphql", request.subgraph),
            sdl: request.sdl.clone(),
        }),
    }
    let mut result = CheckResult {
        composes: false,
        errors: Vec::new(),
        hints: Vec::new(),
        breaking: Vec::new(),
        changes: Vec::new(),
        checked_operations: catalogue.operations.len(),
        sources: sources_label,
    };
    let composed = match composition::compose(&sources) {
        Ok(composed) => composed,
        Err(errors) => {
            result.errors = errors;
            return result;
        }
    };
    let api = match composition::api_schema(&composed.supergraph_sdl) {
        Ok(api) => api,
        Err(message) => {
            result.errors.push(Issue {
                code: "API_SCHEMA".to_owned(),
                message,
            });
            return result;
        }
    };
    result.composes = true;
    result.hints = composed.hints;
    for op in &catalogue.operations {
        if let Err(errors) =
            composition::validate_operation(&api, &op.body, &format!("{}.graphql", op.name))
        {
            result.breaking.push(Broken {
                id: op.id.clone(),
                name: op.name.clone(),
                clients: op.clients.clone(),
                retired: op.retired,
                errors,
            });
        }
    }
    let mut users: HashMap<&str, usize> = HashMap::new();
    for op in &catalogue.operations {
        for field in &op.fields {
            *users.entry(field.as_str()).or_default() += 1;
        }
    }
    let (before, after) = (fields(current_api), fields(&api));
    for (coordinate, ty) in &before {
        let change = match after.get(coordinate) {
            None => "removed".to_owned(),
            Some(new) if new != ty => format!("type {ty} → {new}"),
            Some(_) => continue,
        };
        result.changes.push(Change {
            operations: users.get(coordinate.as_str()).copied().unwrap_or(0),
            coordinate: coordinate.clone(),
            change,
        });
    }
    for coordinate in after.keys().filter(|c| !before.contains_key(*c)) {
        result.changes.push(Change {
            coordinate: coordinate.clone(),
            change: "added".to_owned(),
            operations: 0,
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_are_bounded() {
        let request = |subgraph: &str, sdl: &str| CheckRequest {
            subgraph: subgraph.into(),
            sdl: sdl.into(),
        };
        assert_eq!(request("posts", "type Query { a: Int }").validate(), Ok(()));
        for bad in ["", "1posts", "po sts", "posts/../x", &"p".repeat(65)] {
            assert_eq!(
                request(bad, "type Query { a: Int }").validate(),
                Err(CheckError::SubgraphName),
                "{bad:?}"
            );
        }
        assert_eq!(
            request("posts", "  \n").validate(),
            Err(CheckError::EmptySdl)
        );
        assert_eq!(
            request("posts", &"#".repeat(MAX_SDL_BYTES + 1)).validate(),
            Err(CheckError::SdlTooLarge)
        );
    }
}
