//! Every way the safelist refuses a request, with its GraphQL error code and HTTP status.

use http::StatusCode;

use crate::pipeline::refusal::Refusal;

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
    #[error("there is no operation to run: send a persisted operation id")]
    NoOperation,
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
            PqError::NoOperation => "INVALID_GRAPHQL_REQUEST",
        }
    }

    /// APQ's "not found" is an expected step of the protocol (the client resends with the
    /// text), so it is a 200 like apollo-router's own; the rest are client errors.
    pub fn status(&self) -> StatusCode {
        match self {
            PqError::NotFound => StatusCode::OK,
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

    /// The refusal the pipeline answers with (`no-store`, like every refusal).
    pub fn into_refusal(self) -> Refusal {
        Refusal::new(self.status(), self.code(), self.to_string())
    }
}
