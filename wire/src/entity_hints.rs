//! Per-entity cache hints: what an `_entities` response says about each entity by itself,
//! in [`crate::names::ENTITY_HINTS_HEADER`]. The response's own `Cache-Control` and tag
//! header cover the whole fetch; these let the router's entity cache tag each entity with
//! only what it was built from (a like drops `PostEngagement:1`, not every post of the same
//! fetch) and give one entity a shorter life or a private scope than its neighbours.
//!
//! Entities are named the way the router's representations name them, `Type:id`. Tags the
//! subgraph recorded for no entity in particular are `shared`: every entity of the fetch
//! carries them, so nothing is ever cached without a tag it depends on.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Most entities one header describes; longer lists are refused whole.
pub const MAX_ENTITIES: usize = 10_000;

/// One entity's own hints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityHints {
    /// The entities it was built from (`Type:id`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<String>,
    /// A shorter life than the response's `Cache-Control` gives (seconds; 0: not cacheable).
    #[serde(default, rename = "maxAge", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    /// Only the user it was made for may reuse it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// The hints of one `_entities` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchHints {
    /// Tags of every entity of the fetch.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub shared: BTreeSet<String>,
    /// By entity (`Type:id`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entities: BTreeMap<String, EntityHints>,
}

impl FetchHints {
    /// Every tag, shared or not.
    pub fn tag_count(&self) -> usize {
        self.shared.len() + self.entities.values().map(|e| e.tags.len()).sum::<usize>()
    }

    /// The tags an entity carries (its own and the shared ones), and its own hints.
    pub fn of(&self, entity: Option<&str>) -> (Vec<String>, Option<&EntityHints>) {
        let own = entity.and_then(|e| self.entities.get(e));
        let tags = self
            .shared
            .iter()
            .chain(own.into_iter().flat_map(|h| &h.tags))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        (tags, own)
    }
}

/// The header value.
pub fn encode(hints: &FetchHints) -> String {
    serde_json::to_string(hints).unwrap_or_else(|_| "{}".into())
}

/// Why a header value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntityHintsError {
    #[error("the entity hints header is not an object of hints: {0}")]
    Malformed(String),
    #[error("the entity hints header describes more than {MAX_ENTITIES} entities")]
    TooMany,
    #[error("the entity hints header has an invalid tag or entity name")]
    BadTag,
}

/// Reads a header value. A value that cannot be read exactly is refused whole: the caller
/// then caches none of the fetch's entities, rather than caching one without its tags.
pub fn decode(value: &[u8]) -> Result<FetchHints, EntityHintsError> {
    // serde would also read a struct from a JSON array of its fields.
    if value.trim_ascii_start().first() != Some(&b'{') {
        return Err(EntityHintsError::Malformed("not a JSON object".into()));
    }
    let hints: FetchHints =
        serde_json::from_slice(value).map_err(|e| EntityHintsError::Malformed(e.to_string()))?;
    if hints.entities.len() > MAX_ENTITIES {
        return Err(EntityHintsError::TooMany);
    }
    let names_ok = hints
        .shared
        .iter()
        .chain(hints.entities.keys())
        .chain(hints.entities.values().flat_map(|h| &h.tags))
        .all(|t| valid_tag(t));
    if !names_ok {
        return Err(EntityHintsError::BadTag);
    }
    Ok(hints)
}

/// A tag is `Type:id`: printable ASCII, no spaces or commas, at most 256 bytes.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 256
        && tag.contains(':')
        && tag.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_gives_each_entity_its_tags() {
        let mut hints = FetchHints {
            shared: ["Feed:1".to_string()].into(),
            ..Default::default()
        };
        hints.entities.insert(
            "Post:1".into(),
            EntityHints {
                tags: ["PostEngagement:1".to_string()].into(),
                max_age: Some(5),
                private: true,
            },
        );
        let encoded = encode(&hints);
        assert_eq!(
            encoded,
            r#"{"shared":["Feed:1"],"entities":{"Post:1":{"tags":["PostEngagement:1"],"maxAge":5,"private":true}}}"#
        );
        assert_eq!(decode(encoded.as_bytes()), Ok(hints.clone()));
        let (tags, own) = hints.of(Some("Post:1"));
        assert_eq!(tags, ["Feed:1", "PostEngagement:1"]);
        assert_eq!(own.and_then(|h| h.max_age), Some(5));
        // An entity the subgraph said nothing about carries the shared tags only.
        assert_eq!(hints.of(Some("Post:2")), (vec!["Feed:1".to_string()], None));
        assert_eq!(hints.of(None).0, ["Feed:1"]);
        assert_eq!(hints.tag_count(), 2);
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for bad in [
            &b"[]"[..],
            b"{\"entity\":{}}",
            b"{\"entities\":{\"Post:1\":{\"maxAge\":-1}}}",
            b"{\"entities\":{\"Post:1\":{\"tag\":[]}}}",
            b"not json",
            b"{\"shared\":[\"no colon\"]}",
            b"{\"entities\":{\"nocolon\":{}}}",
            b"{\"entities\":{\"Post:1\":{\"tags\":[\"a:b,c\"]}}}",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many: BTreeMap<String, EntityHints> = (0..=MAX_ENTITIES)
            .map(|i| (format!("Post:{i}"), EntityHints::default()))
            .collect();
        let encoded = encode(&FetchHints {
            entities: many,
            ..Default::default()
        });
        assert_eq!(decode(encoded.as_bytes()), Err(EntityHintsError::TooMany));
    }
}
