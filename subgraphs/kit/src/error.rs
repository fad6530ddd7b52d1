//! The errors a subgraph shows its clients, each with a stable `extensions.code`.
//!
//! Resolvers return [`ApiError`] with plain `?`; async-graphql keeps the original error as the
//! `source` of the GraphQL error, and the [`ErrorCodes`] extension turns it into a code on the
//! way out. Doing it once at the schema boundary keeps resolvers free of conversion noise and
//! means a test that calls `Schema::execute` sees exactly what an HTTP client sees.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Value, Variables};

/// What can go wrong in a resolver. `Clone`, so one failed loader batch can answer every
/// field that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The client sent something we will never accept (malformed id, over-long field, ...).
    #[error("{0}")]
    BadInput(String),
    /// What the client asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with existing data (a taken handle).
    #[error("{0}")]
    Conflict(String),
    /// The caller must sign in (again).
    #[error("{0}")]
    Unauthenticated(String),
    /// A refusal with its own code (`INVALID_CREDENTIALS`, `TOTP_REQUIRED`, ...), for clients
    /// that act on the reason.
    #[error("{1}")]
    Refused(&'static str, String),
    /// The store failed. Logged in full; clients only see that it was our fault.
    #[error(transparent)]
    Store(Arc<crate::store::StoreError>),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        ApiError::Store(Arc::new(err))
    }
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Refused(code, _) => code,
            // A shard that cannot be reached is worth retrying (shortly, or through another
            // replica of the client's choice); any other store failure is ours.
            ApiError::Store(inner) if inner.is_unreachable() => "STORE_UNAVAILABLE",
            ApiError::Store(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The shard this error says could not be reached, if it says so.
    pub fn unreachable_shard(&self) -> Option<usize> {
        match self {
            ApiError::Store(inner) if inner.is_unreachable() => match inner.as_ref() {
                crate::StoreError::Query { shard, .. } => Some(*shard),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        ApiError::BadInput(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::NotFound(msg.into())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        crate::store::StoreError::from(err).into()
    }
}

/// Result type for resolvers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Schema extension that gives every error a code: [`ApiError`]s their own, input coercion
/// failures `BAD_USER_INPUT`, parse and validation failures `GRAPHQL_PARSE_FAILED` /
/// `GRAPHQL_VALIDATION_FAILED` (Apollo's names, which the router passes through).
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            set_code_if_missing(&mut error, "GRAPHQL_PARSE_FAILED");
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                set_code_if_missing(error, "GRAPHQL_VALIDATION_FAILED");
            }
            errors
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        for error in &mut response.errors {
            assign_execution_code(error);
        }
        response
    }
}

fn assign_execution_code(error: &mut ServerError) {
    if let Some(api) = error.source::<ApiError>() {
        let code = api.code();
        if let ApiError::Store(inner) = api {
            tracing::error!(error = %inner, path = ?error.path, "store failure");
            error.message = if inner.is_unreachable() {
                "the data store is unreachable; try again shortly".to_owned()
            } else {
                "internal error: the data store failed; try again".to_owned()
            };
        }
        set_code(error, code);
    } else if error.message.starts_with("Invalid value for argument")
        || error.message.starts_with("Failed to parse")
    {
        set_code_if_missing(error, "BAD_USER_INPUT");
    } else {
        set_code_if_missing(error, "INTERNAL_SERVER_ERROR");
    }
}

fn set_code_if_missing(error: &mut ServerError, code: &str) {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some());
    if !has_code {
        set_code(error, code);
    }
}

fn set_code(error: &mut ServerError, code: &str) {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", Value::from(code));
}
