//! Header names the router and the subgraphs share.

/// The client app's name (Apollo's convention).
pub const CLIENT_NAME_HEADER: &str = "apollographql-client-name";
/// The client app's version.
pub const CLIENT_VERSION_HEADER: &str = "apollographql-client-version";

/// Every internal header starts with this; the router strips client-sent ones first.
pub const INTERNAL_PREFIX: &str = "x-switchyard-";
/// The verified user id the router tells a subgraph.
pub const USER_HEADER: &str = "x-switchyard-user-id";
/// The verified user's scopes, space-separated.
pub const SCOPES_HEADER: &str = "x-switchyard-scopes";
/// The secret shared by the router and the subgraphs: identity headers count only with it.
pub const SECRET_HEADER: &str = "x-switchyard-router-secret";
/// The cache tags of the entities a subgraph response was built from (like Surrogate-Key).
pub const TAGS_HEADER: &str = "x-switchyard-cache-tags";
/// The cache tags a mutation changed.
pub const INVALIDATE_HEADER: &str = "x-switchyard-cache-invalidate";
/// Per entity of an `_entities` response, its own tags and hint: a JSON array with one
/// element per representation (`null`, or `{"tags": [..], "maxAge": n, "private": true}`),
/// so the router's entity cache tags and ages each entity by itself.
pub const ENTITY_HINTS_HEADER: &str = "x-switchyard-cache-entities";

/// The OTLP collector every process sends spans to; tracing is off where it is unset.
pub const OTLP_ENDPOINT_ENV: &str = "SWITCHYARD_OTLP_ENDPOINT";
/// The router YAML's tracing switch, derived from [`OTLP_ENDPOINT_ENV`] when unset.
pub const OTLP_ENABLED_ENV: &str = "SWITCHYARD_OTLP_ENABLED";
