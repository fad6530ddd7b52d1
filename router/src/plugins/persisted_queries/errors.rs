//! Every way the plugin refuses a request, with its GraphQL error code and HTTP status.

use apollo_router::graphql;
use apollo_router::services::router;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum PqError {
    #[error("{}", match client {
        Some(client) => format!("this operation is not in the safelist of client {client:?}"),
        None => "only persisted operations may run here; this one is not in the manifest".to_owned(),
    })]
    NotInList { client: Option<String> },
    #[error("unknown persisted operation id: it is not in the manifest")]
    UnknownId,
    #[error("PersistedQueryNotFound")]
    NotFound,
    #[error("the operation's sha256 does not match the id sent with it")]
    HashMismatch,
    #[error("a persisted operation id is 64 hexadecimal digits (sha256)")]
    InvalidId,
    #[error("persistedQuery.version {0} is not supported; use 1")]
    UnsupportedVersion(String),
    #[error("send either `documentId` or `query`, not both")]
    IdAndQuery,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("{client} {version} is no longer supported; please update the app")]
    ClientVersionRetired { client: String, version: String },
    #[error("operation {name} is no longer supported; please update the app")]
    OperationRetired { name: String },
    #[error("the apollographql-client-name header is required")]
    ClientNameRequired,
    #[error("the query string is longer than {limit} bytes; send the operation by id or use POST")]
    UriTooLong { limit: usize },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
}

impl PqError {
    pub fn code(&self) -> &'static str {
        match self {
            PqError::NotInList { .. } | PqError::UnknownId => "PERSISTED_QUERY_NOT_IN_LIST",
            PqError::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            PqError::HashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            PqError::InvalidId => "PERSISTED_QUERY_ID_INVALID",
            PqError::UnsupportedVersion(_) => "PERSISTED_QUERY_VERSION_UNSUPPORTED",
            PqError::IdAndQuery => "PERSISTED_QUERY_ID_AND_QUERY",
            PqError::Malformed(_) => "INVALID_GRAPHQL_REQUEST",
            PqError::ClientVersionRetired { .. } | PqError::OperationRetired { .. } => {
                "UPGRADE_REQUIRED"
            }
            PqError::ClientNameRequired => "CLIENT_NAME_REQUIRED",
            PqError::UriTooLong { .. } => "URI_TOO_LONG",
            PqError::BodyTooLarge { .. } => "REQUEST_TOO_LARGE",
        }
    }

    /// APQ's "not found" is an expected step of the protocol (the client resends with the
    /// text), so it is a 200 like apollo-router's own; the rest are client errors.
    pub fn status(&self) -> StatusCode {
        match self {
            PqError::NotFound => StatusCode::OK,
            PqError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            PqError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The metric outcome.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PqError::NotInList { .. } => "rejected_not_in_list",
            PqError::UnknownId | PqError::NotFound => "unknown_id",
            PqError::ClientVersionRetired { .. } | PqError::OperationRetired { .. } => {
                "rejected_retired"
            }
            _ => "rejected_malformed",
        }
    }

    /// The GraphQL response. `no-store`: a CDN must never cache a refusal.
    pub fn into_response(self, context: apollo_router::Context) -> router::Response {
        let error = graphql::Error::builder()
            .message(self.to_string())
            .extension_code(self.code())
            .build();
        router::Response::error_builder()
            .error(error)
            .status_code(self.status())
            .header(http::header::CACHE_CONTROL, "no-store")
            .context(context)
            .build()
            .expect("error response builds")
    }
}
