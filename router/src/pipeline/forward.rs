//! Stage `forward`: the typed request, encoded again as the HTTP request apollo-router parses.
//!
//! apollo-router never reads the client's bytes: it reads this encoding of exactly the value
//! every stage checked (the persisted text expanded, variables normalised). POST bodies are
//! written as one JSON object with a `Content-Length`; GET requests keep their method (so
//! apollo-router's rule that mutations need POST still holds) with a rebuilt query string.

use apollo_router::graphql;
use apollo_router::services::router;
use http::{HeaderValue, Method};

use super::read::GraphqlRequest;
use super::refusal::Refusal;

/// What apollo-router's own parsers read back from [`encode`].
pub fn to_apollo(request: &GraphqlRequest) -> graphql::Request {
    graphql::Request::builder()
        .and_query(request.query.clone())
        .and_operation_name(request.operation_name.clone())
        .variables(request.variables.clone())
        .extensions(request.extensions.clone())
        .build()
}

/// The POST body for `request`.
pub fn body(request: &GraphqlRequest) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&to_apollo(request))
}

/// The GET query string for `request`.
pub fn query_string(request: &GraphqlRequest) -> Result<String, serde_json::Error> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Some(query) = &request.query {
        out.append_pair("query", query);
    }
    if let Some(name) = &request.operation_name {
        out.append_pair("operationName", name);
    }
    if !request.variables.is_empty() {
        out.append_pair("variables", &serde_json::to_string(&request.variables)?);
    }
    if !request.extensions.is_empty() {
        out.append_pair("extensions", &serde_json::to_string(&request.extensions)?);
    }
    Ok(out.finish())
}

/// Rewrites `parts` for `request` and returns the body to send with them.
pub fn encode(
    parts: &mut http::request::Parts,
    request: &GraphqlRequest,
) -> Result<router::Body, Refusal> {
    let failed = |_| {
        Refusal::new(
            http::StatusCode::BAD_REQUEST,
            "INVALID_GRAPHQL_REQUEST",
            "the request could not be encoded",
        )
    };
    if request.method == Method::GET {
        let path = parts.uri.path();
        let query = query_string(request).map_err(failed)?;
        let path_and_query = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let mut uri = http::uri::Parts::from(parts.uri.clone());
        uri.path_and_query = Some(path_and_query.parse().map_err(|_| {
            Refusal::new(
                http::StatusCode::BAD_REQUEST,
                "INVALID_GRAPHQL_REQUEST",
                "the query string could not be encoded",
            )
        })?);
        parts.uri = http::Uri::from_parts(uri).map_err(|_| {
            Refusal::new(
                http::StatusCode::BAD_REQUEST,
                "INVALID_GRAPHQL_REQUEST",
                "the request URI could not be encoded",
            )
        })?;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        return Ok(router::body::from_bytes(bytes::Bytes::new()));
    }
    let bytes = body(request).map_err(failed)?;
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    Ok(router::body::from_bytes(bytes))
}

/// The encoding round-trips through apollo-router's own parsers, and the reader never accepts
/// a request that apollo-router would read differently (generated encodings: duplicates,
/// trailing data, escapes, nesting, BOMs, arrays, GET and POST).
#[cfg(test)]
mod differential {
    use proptest::prelude::*;
    use serde_json_bytes::{ByteString, Value};

    use super::*;
    use crate::pipeline::read::{Client, Object, from_body, from_query_string};

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            prop::sample::select(vec![0.5f64, -1.25, 1e10, 3.0])
                .prop_map(|f| { Value::Number(serde_json::Number::from_f64(f).expect("finite")) }),
            "\\PC{0,12}".prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,6}", inner), 0..4).prop_map(|entries| {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (ByteString::from(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Object> {
        prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,5}|\\PC{1,4}", json()), 0..4).prop_map(
            |entries| {
                entries
                    .into_iter()
                    .map(|(k, v)| (ByteString::from(k), v))
                    .collect()
            },
        )
    }

    fn typed() -> impl Strategy<Value = GraphqlRequest> {
        (
            any::<bool>(),
            proptest::option::of("\\PC{0,40}"),
            proptest::option::of("\\PC{0,10}"),
            object(),
            object(),
        )
            .prop_map(|(get, query, operation_name, variables, extensions)| {
                let mut request = if get {
                    from_query_string("", Client::default()).expect("empty query string")
                } else {
                    from_body(b"{}", Client::default()).expect("empty object")
                };
                request.query = query;
                request.operation_name = operation_name;
                request.variables = variables;
                request.extensions = extensions;
                request
            })
    }

    /// A JSON member value as text, valid or not for its key.
    fn member_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,10}".prop_map(|s| serde_json::to_string(&s).expect("string")),
            Just(r#""{ a }""#.to_owned()),
            Just(r#""\u007b b \u007d""#.to_owned()),
            Just("null".to_owned()),
            Just("1".to_owned()),
            Just("[]".to_owned()),
            Just(r#"{"x":1}"#.to_owned()),
            Just(r#"{"persistedQuery":{"version":1,"sha256Hash":"ab"}}"#.to_owned()),
        ]
    }

    fn raw_body() -> impl Strategy<Value = Vec<u8>> {
        let key = prop::sample::select(vec![
            r#""query""#,
            r#""qu\u0065ry""#,
            r#""operationName""#,
            r#""variables""#,
            r#""extensions""#,
            r#""documentId""#,
            r#""other""#,
            r#""Query""#,
        ]);
        (
            prop::sample::select(vec!["", " ", "\u{feff}", "\n\t", "["]),
            prop::collection::vec((key, member_value()), 0..5),
            prop::sample::select(vec!["", " ", "x", "{}", "]", "\n", ","]),
        )
            .prop_map(|(prefix, members, suffix)| {
                let members: Vec<String> =
                    members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{prefix}{{{}}}{suffix}", members.join(",")).into_bytes()
            })
    }

    fn raw_query_string() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "query",
            "qu%65ry",
            "operationName",
            "variables",
            "extensions",
            "documentId",
            "foo",
        ]);
        prop::collection::vec((key, member_value()), 0..5).prop_map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| {
                    let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    /// Regression (fuzz/query_string, on a build without serde_json's `float_roundtrip`): a
    /// long number read as 2e74 was written back as `2e+74` and read again as
    /// 2.0000000000000002e+74, so what would run was not what was checked.
    #[test]
    fn numbers_survive_the_re_encoding() {
        let long = format!("1{}", "9".repeat(74));
        for number in [
            long.as_str(),
            "0.1",
            "1e-7",
            "123456789012345678901234567890",
            "-0.0",
        ] {
            let text = format!(r#"{{"query":"{{ a }}","variables":{{"n":{number}}}}}"#);
            let request = from_body(text.as_bytes(), Client::default()).expect("reads");
            let theirs = graphql::Request::deserialize_from_bytes(&body(&request).unwrap().into())
                .expect("apollo-router reads it");
            assert_eq!(theirs.variables, request.variables, "{number}");
            let original = graphql::Request::deserialize_from_bytes(&text.clone().into()).unwrap();
            assert_eq!(original.variables, request.variables, "{number}");
            let get = format!(
                "variables={}",
                url::form_urlencoded::byte_serialize(format!(r#"{{"n":{number}}}"#).as_bytes())
                    .collect::<String>()
            );
            let request = from_query_string(&get, Client::default()).expect("reads");
            let theirs = graphql::Request::from_urlencoded_query(query_string(&request).unwrap())
                .expect("apollo-router reads it");
            assert_eq!(theirs.variables, request.variables, "{number}");
        }
    }

    const ALLOWED: &str = "query Allowed { feed(first: 1) { nodes { id } } }";
    const FORBIDDEN: &str = "{ feed(first: 100) { nodes { id body } } }";

    /// A safelist in `enforce` mode whose manifest lists only [`ALLOWED`].
    fn enforcing() -> (
        tempfile::TempDir,
        crate::plugins::persisted_queries::PersistedQueries,
    ) {
        use crate::plugins::persisted_queries::manifest::{
            ManifestFile, ManifestOperation, operation_id,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = dir.path().join("manifest.json");
        let file = ManifestFile::new(vec![ManifestOperation {
            id: operation_id(ALLOWED),
            name: "Allowed".into(),
            kind: "query".into(),
            body: ALLOWED.into(),
            client_name: None,
            client_names: vec![],
        }]);
        std::fs::write(&manifest, file.to_json()).expect("manifest written");
        let config = serde_json::from_value(serde_json::json!({
            "mode": "enforce",
            "manifest": manifest,
        }))
        .expect("config");
        let safelist = crate::plugins::persisted_queries::PersistedQueries::new(config)
            .expect("safelist starts");
        (dir, safelist)
    }

    /// A request encoding mixing the allowed and the forbidden operation, by text and by id,
    /// in every way a body can be written twice.
    fn mixed_body() -> impl Strategy<Value = Vec<u8>> {
        use crate::plugins::persisted_queries::manifest::operation_id;
        let allowed = serde_json::to_string(ALLOWED).expect("string");
        let forbidden = serde_json::to_string(FORBIDDEN).expect("string");
        let member = prop::sample::select(vec![
            format!(r#""query":{allowed}"#),
            format!(r#""query":{forbidden}"#),
            format!(r#""qu\u0065ry":{forbidden}"#),
            format!(r#""documentId":"{}""#, operation_id(ALLOWED)),
            format!(r#""documentId":"sha256:{}""#, operation_id(FORBIDDEN)),
            format!(
                r#""extensions":{{"persistedQuery":{{"version":1,"sha256Hash":"{}"}}}}"#,
                operation_id(ALLOWED)
            ),
            r#""operationName":"Allowed""#.to_owned(),
            r#""variables":{"first":100}"#.to_owned(),
        ]);
        (
            prop::collection::vec(member, 0..4),
            prop::sample::select(vec!["", "x", " {}", "\n"]),
        )
            .prop_map(|(members, suffix)| format!("{{{}}}{suffix}", members.join(",")).into_bytes())
    }

    /// `read` through the safelist (in `enforce` mode, [`ALLOWED`] only): the request when it
    /// passes.
    fn passed(read: Result<GraphqlRequest, Refusal>) -> Option<GraphqlRequest> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let (_dir, safelist) = enforcing();
        let mut request = read.ok()?;
        safelist.check(&mut request).ok()?;
        Some(request)
    }

    /// The properties below are not vacuous: the mixes hold requests the safelist lets pass.
    #[test]
    fn some_mixed_requests_pass() {
        use crate::plugins::persisted_queries::manifest::operation_id;
        let allowed = serde_json::to_string(ALLOWED).unwrap();
        let post = format!(r#"{{"query":{allowed}}}"#);
        assert!(passed(from_body(post.as_bytes(), Client::default())).is_some());
        let get = format!("documentId={}", operation_id(ALLOWED));
        let get = passed(from_query_string(&get, Client::default())).expect("passes");
        assert_eq!(get.query.as_deref(), Some(ALLOWED));
        assert!(passed(from_body(br#"{"query":"{ a }"}"#, Client::default())).is_none());
    }

    /// The same mix as a GET query string.
    fn mixed_query_string() -> impl Strategy<Value = String> {
        use crate::plugins::persisted_queries::manifest::operation_id;
        let enc =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        let pair = prop::sample::select(vec![
            format!("query={}", enc(ALLOWED)),
            format!("query={}", enc(FORBIDDEN)),
            format!("qu%65ry={}", enc(FORBIDDEN)),
            format!("documentId={}", operation_id(ALLOWED)),
            format!("documentId=sha256%3A{}", operation_id(FORBIDDEN)),
            format!(
                "extensions={}",
                enc(&format!(
                    r#"{{"persistedQuery":{{"version":1,"sha256Hash":"{}"}}}}"#,
                    operation_id(ALLOWED)
                ))
            ),
            "operationName=Allowed".to_owned(),
            "variables=%7B%22first%22%3A100%7D".to_owned(),
            "variables=x".to_owned(),
        ]);
        prop::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join("&"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The same for GET: what passes is, as apollo-router reads the forwarded query
        /// string, exactly the manifest operation.
        #[test]
        fn what_runs_by_get_is_what_the_safelist_allowed(raw in mixed_query_string()) {
            let Some(request) = passed(from_query_string(&raw, Client::default())) else {
                return Ok(());
            };
            let forwarded = query_string(&request).expect("encodes");
            let executed = graphql::Request::from_urlencoded_query(forwarded)
                .expect("apollo-router reads what is forwarded");
            prop_assert_eq!(executed.query.as_deref(), Some(ALLOWED), "{}", raw);
        }

        /// The safelist's decision and what apollo-router executes never disagree: whenever the
        /// pipeline lets a request through, apollo-router parses, from what is forwarded,
        /// exactly a manifest operation.
        #[test]
        fn what_runs_is_what_the_safelist_allowed(raw in mixed_body()) {
            let Some(request) = passed(from_body(&raw, Client::default())) else {
                return Ok(());
            };
            let forwarded = body(&request).expect("encodes");
            let executed = graphql::Request::deserialize_from_bytes(&forwarded.into())
                .expect("apollo-router reads what is forwarded");
            prop_assert_eq!(executed.query.as_deref(), Some(ALLOWED), "{}", String::from_utf8_lossy(&raw));
        }

        #[test]
        fn encodings_round_trip_through_apollo_router(request in typed()) {
            let expected = to_apollo(&request);
            if request.method == Method::GET {
                let text = query_string(&request).expect("encodes");
                let parsed = graphql::Request::from_urlencoded_query(text.clone());
                prop_assert_eq!(parsed.ok(), Some(expected), "{}", text);
                let again = from_query_string(&text, Client::default()).expect("reads back");
                prop_assert_eq!(again, request);
            } else {
                let bytes = body(&request).expect("encodes");
                let parsed = graphql::Request::deserialize_from_bytes(&bytes.clone().into());
                prop_assert_eq!(parsed.ok(), Some(expected));
                let again = from_body(&bytes, Client::default()).expect("reads back");
                prop_assert_eq!(again, request);
            }
        }

        #[test]
        fn post_bodies_we_accept_mean_the_same_to_apollo_router(raw in raw_body()) {
            if let Ok(ours) = from_body(&raw, Client::default()) {
                let theirs = graphql::Request::deserialize_from_bytes(&raw.clone().into());
                prop_assert!(theirs.is_ok(), "{}", String::from_utf8_lossy(&raw));
                let expected = to_apollo(&ours);
                prop_assert_eq!(theirs.ok(), Some(expected));
            }
        }

        #[test]
        fn query_strings_we_accept_mean_the_same_to_apollo_router(raw in raw_query_string()) {
            if let Ok(ours) = from_query_string(&raw, Client::default()) {
                match graphql::Request::from_urlencoded_query(raw.clone()) {
                    Ok(theirs) => prop_assert_eq!(theirs, to_apollo(&ours), "{}", raw),
                    // The one leniency: `variables=null` / `extensions=null` read as absent.
                    Err(_) => prop_assert!(
                        raw.contains("variables=null") || raw.contains("extensions=null"),
                        "{}", raw
                    ),
                }
            }
        }
    }
}
