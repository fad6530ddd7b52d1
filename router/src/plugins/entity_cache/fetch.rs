//! The shape of an `_entities` fetch: its representations, the entities and errors a subgraph
//! answered for the ones that were sent, and the merge back into the order the query planner
//! asked for, errors pointing at the right position.

use apollo_router::graphql::{self, JsonPath, JsonPathElement};
use serde_json_bytes::Value;

/// The representations of an entity fetch (`$representations`), when the request is one.
pub fn representations(request: &graphql::Request) -> Option<&Vec<Value>> {
    match request.variables.get("representations") {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    }
}

/// An entity's name as subgraphs give per-entity hints for it: `Type:id`, from its
/// representation (`None` for entities keyed by something other than one `id`).
pub fn entity_name(representation: &Value) -> Option<String> {
    match (representation.get("__typename"), representation.get("id")) {
        (Some(Value::String(type_name)), Some(Value::String(id))) => {
            Some(format!("{}:{}", type_name.as_str(), id.as_str()))
        }
        _ => None,
    }
}

/// The position an error's path points at (`_entities.<i>...`), if any.
pub fn error_position(error: &graphql::Error) -> Option<usize> {
    let path = error.path.as_ref()?;
    match path.0.as_slice() {
        [JsonPathElement::Key(key, _), JsonPathElement::Index(i), ..] if key == "_entities" => {
            Some(*i)
        }
        _ => None,
    }
}

/// Points an error at position `to` instead.
pub fn move_error(error: &mut graphql::Error, to: usize) {
    if let Some(JsonPath(elements)) = error.path.as_mut()
        && let Some(JsonPathElement::Index(i)) = elements.get_mut(1)
    {
        *i = to;
    }
}

/// What a subgraph answered for the representations sent to it, by the position sent.
pub struct Answer {
    pub entities: Vec<Value>,
    /// Errors by the position sent (`None`: errors pointing nowhere in particular, which
    /// spoil every entity of the answer).
    pub errors: Vec<(Option<usize>, graphql::Error)>,
}

impl Answer {
    /// Reads the answer to `sent` representations. An answer whose `_entities` is not a list
    /// of exactly that length cannot be matched to them: every entity is null, and the
    /// subgraph's errors (or one saying so) go on.
    pub fn read(response: graphql::Response, sent: usize) -> Self {
        let mut errors: Vec<(Option<usize>, graphql::Error)> = response
            .errors
            .into_iter()
            .map(|e| (error_position(&e).filter(|i| *i < sent), e))
            .collect();
        let entities = match response.data {
            Some(Value::Object(mut data)) => match data.remove("_entities") {
                Some(Value::Array(items)) if items.len() == sent => Some(items),
                _ => None,
            },
            _ => None,
        };
        let entities = match entities {
            Some(items) => items,
            None => {
                if errors.is_empty() {
                    errors.push((
                        None,
                        graphql::Error::builder()
                            .message(format!(
                                "the subgraph did not answer {sent} entities for {sent} representations"
                            ))
                            .extension_code("SUBGRAPH_INVALID_RESPONSE")
                            .build(),
                    ));
                }
                vec![Value::Null; sent]
            }
        };
        Answer { entities, errors }
    }

    /// Whether the entity sent at `position` may be cached: an object, with no error at it
    /// and no error pointing nowhere.
    pub fn is_clean(&self, position: usize) -> bool {
        matches!(self.entities.get(position), Some(Value::Object(_)))
            && self
                .errors
                .iter()
                .all(|(at, _)| at.is_some_and(|at| at != position))
    }
}

/// Adds one part's fields of an entity to what the other parts gave. An entity one part could
/// not give (null) is null whole, as a subgraph would have answered it unsplit.
pub fn merge_into(target: &mut Option<Value>, part: Value) {
    match (target.as_mut(), part) {
        (None, part) => *target = Some(part),
        (Some(Value::Object(have)), Value::Object(more)) => {
            for (key, value) in more {
                have.insert(key, value);
            }
        }
        (Some(have), _) => *have = Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json_bytes::json;

    fn error_at(path: Option<Value>) -> graphql::Error {
        let mut error = graphql::Error::builder().message("boom").build();
        error.path = path.map(|p| serde_json_bytes::from_value(p).unwrap());
        error
    }

    #[test]
    fn reads_entities_and_errors_by_position() {
        let response = graphql::Response::builder()
            .data(json!({"_entities": [{"a": 1}, null, {"a": 3}]}))
            .errors(vec![
                error_at(Some(json!(["_entities", 1, "a"]))),
                error_at(Some(json!(["_entities", 7]))),
            ])
            .build();
        let answer = Answer::read(response, 3);
        // An error pointing past what was sent points nowhere: it spoils every entity.
        assert!((0..3).all(|i| !answer.is_clean(i)));
        assert_eq!(answer.errors[1].0, None);
        let clean = Answer::read(
            graphql::Response::builder()
                .data(json!({"_entities": [{"a": 1}, {"a": 2}]}))
                .errors(vec![error_at(Some(json!(["_entities", 1])))])
                .build(),
            2,
        );
        assert!(clean.is_clean(0));
        assert!(!clean.is_clean(1));
    }

    #[test]
    fn an_answer_of_the_wrong_length_gives_nothing() {
        let answer = Answer::read(
            graphql::Response::builder()
                .data(json!({"_entities": [{"a": 1}]}))
                .build(),
            2,
        );
        assert_eq!(answer.entities, vec![Value::Null, Value::Null]);
        assert_eq!(answer.errors.len(), 1);
        assert!(!answer.is_clean(0));
        let no_data = Answer::read(graphql::Response::builder().build(), 1);
        assert_eq!(no_data.entities, vec![Value::Null]);
    }

    #[test]
    fn moves_error_paths() {
        let mut error = error_at(Some(json!(["_entities", 0, "viewerHasLiked"])));
        assert_eq!(error_position(&error), Some(0));
        move_error(&mut error, 5);
        assert_eq!(error_position(&error), Some(5));
        assert_eq!(
            serde_json_bytes::to_value(&error.path).unwrap(),
            json!(["_entities", 5, "viewerHasLiked"])
        );
        assert_eq!(error_position(&error_at(None)), None);
        assert_eq!(error_position(&error_at(Some(json!(["feed", 0])))), None);
    }

    #[test]
    fn merges_parts_field_by_field() {
        let mut entity = None;
        merge_into(&mut entity, json!({"__typename": "Post", "likeCount": 3}));
        merge_into(
            &mut entity,
            json!({"__typename": "Post", "viewerHasLiked": true}),
        );
        assert_eq!(
            entity,
            Some(json!({"__typename": "Post", "likeCount": 3, "viewerHasLiked": true}))
        );
        merge_into(&mut entity, Value::Null);
        assert_eq!(entity, Some(Value::Null));
    }
}
