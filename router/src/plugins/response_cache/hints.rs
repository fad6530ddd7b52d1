//! What the subgraph responses of one request allow: the smallest `max-age`, whether any part
//! is private, and the entities the parts were built from. Recorded per subgraph fetch into
//! the request's context, read once the whole response is assembled.

use std::collections::BTreeSet;

use http::HeaderMap;

pub use switchyard_wire::entity_hints::valid_tag;
pub use switchyard_wire::names::{INVALIDATE_HEADER, TAGS_HEADER};

/// The hints of every subgraph fetch of one request, merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHints {
    /// Subgraph fetches seen.
    pub fetches: u32,
    /// The smallest `max-age` of any fetch (seconds).
    pub max_age: Option<u32>,
    /// Some fetch was `private`.
    pub private: bool,
    /// Why some fetch forbids caching (`no-store`, `no-cache`, no hint, `max-age=0`).
    pub refused: Option<&'static str>,
    pub tags: BTreeSet<String>,
}

impl RequestHints {
    /// Merges one subgraph response's headers. `default_max_age` stands in for a missing
    /// `Cache-Control`; without it a fetch with no hint makes the response uncacheable.
    pub fn record(&mut self, headers: &HeaderMap, default_max_age: Option<u32>) {
        self.fetches += 1;
        let hint = parse_cache_control(headers);
        let max_age = match hint {
            Hint::Refused(why) => {
                self.refused.get_or_insert(why);
                None
            }
            Hint::Missing => match default_max_age {
                Some(age) => Some(age),
                None => {
                    self.refused
                        .get_or_insert("a subgraph response had no cache hint");
                    None
                }
            },
            Hint::Cacheable { max_age, private } => {
                self.private |= private;
                Some(max_age)
            }
        };
        if let Some(age) = max_age {
            self.max_age = Some(self.max_age.map_or(age, |a| a.min(age)));
        }
        self.tags.extend(tags(headers, TAGS_HEADER));
    }
}

/// One subgraph response's `Cache-Control`, as far as a shared cache cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Hint {
    Missing,
    Refused(&'static str),
    Cacheable { max_age: u32, private: bool },
}

pub fn parse_cache_control(headers: &HeaderMap) -> Hint {
    let values: Vec<&str> = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Hint::Missing;
    }
    let mut max_age = None;
    let mut private = false;
    for directive in values.iter().flat_map(|v| v.split(',')) {
        let directive = directive.trim().to_ascii_lowercase();
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (
                n.trim().to_owned(),
                Some(v.trim().trim_matches('"').to_owned()),
            ),
            None => (directive.clone(), None),
        };
        match name.as_str() {
            "no-store" => return Hint::Refused("a subgraph response said no-store"),
            "no-cache" => return Hint::Refused("a subgraph response said no-cache"),
            "private" => private = true,
            "max-age" => match value.and_then(|v| v.parse::<u32>().ok()) {
                Some(age) => max_age = Some(age),
                None => return Hint::Refused("a subgraph response had a malformed max-age"),
            },
            _ => {}
        }
    }
    match max_age {
        None if private => Hint::Refused("a private subgraph response had no max-age"),
        None => Hint::Missing,
        Some(0) => Hint::Refused("a subgraph response had max-age=0"),
        Some(max_age) => Hint::Cacheable { max_age, private },
    }
}

/// The tags in a tag header: space- or comma-separated `Type:id` words.
pub fn tags<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([' ', ',']))
        .filter(|t| valid_tag(t))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn parses_what_subgraphs_send() {
        let h = |v| parse_cache_control(&headers(&[("cache-control", v)]));
        assert_eq!(
            h("max-age=30"),
            Hint::Cacheable {
                max_age: 30,
                private: false
            }
        );
        assert_eq!(
            h("max-age=30, private"),
            Hint::Cacheable {
                max_age: 30,
                private: true
            }
        );
        assert_eq!(
            h("public, MAX-AGE=\"5\""),
            Hint::Cacheable {
                max_age: 5,
                private: false
            }
        );
        assert!(matches!(h("no-cache"), Hint::Refused(_)));
        assert!(matches!(h("max-age=10, no-store"), Hint::Refused(_)));
        assert!(matches!(h("max-age=0"), Hint::Refused(_)));
        assert!(matches!(h("max-age=ten"), Hint::Refused(_)));
        assert!(matches!(h("private"), Hint::Refused(_)));
        assert_eq!(parse_cache_control(&HeaderMap::new()), Hint::Missing);
    }

    #[test]
    fn merges_to_the_strictest() {
        let mut hints = RequestHints::default();
        hints.record(
            &headers(&[
                ("cache-control", "max-age=60"),
                (TAGS_HEADER, "User:1 User:2"),
            ]),
            None,
        );
        hints.record(
            &headers(&[
                ("cache-control", "max-age=10, private"),
                (TAGS_HEADER, "Post:9"),
            ]),
            None,
        );
        assert_eq!(hints.fetches, 2);
        assert_eq!(hints.max_age, Some(10));
        assert!(hints.private);
        assert_eq!(hints.refused, None);
        assert_eq!(
            hints.tags.iter().map(String::as_str).collect::<Vec<_>>(),
            ["Post:9", "User:1", "User:2"]
        );

        // A fetch without a hint spoils the lot, unless a default age is configured.
        hints.record(&HeaderMap::new(), None);
        assert!(hints.refused.is_some());
        let mut lenient = RequestHints::default();
        lenient.record(&HeaderMap::new(), Some(5));
        assert_eq!((lenient.max_age, lenient.refused), (Some(5), None));
    }

    #[test]
    fn drops_malformed_tags() {
        let map = headers(&[
            (TAGS_HEADER, "Post:1  nocolon ,User:2,"),
            (TAGS_HEADER, "Post:3"),
        ]);
        assert_eq!(
            tags(&map, TAGS_HEADER).collect::<Vec<_>>(),
            ["Post:1", "User:2", "Post:3"]
        );
    }
}
