//! Who is asking: the identity the router vouches for.
//!
//! The router (its `authenticate` stage) validates the client's token and forwards the user as
//! internal headers, together with a secret shared only between router and subgraphs. A
//! subgraph believes those headers only when the secret matches (compared in constant time), so
//! someone who reaches a subgraph directly cannot claim to be anyone.

use axum::http::HeaderMap;

pub use switchyard_wire::names::{SCOPES_HEADER, SECRET_HEADER, USER_HEADER};

/// The environment variable holding the shared secret.
pub const SECRET_ENV: &str = "SWITCHYARD_ROUTER_SECRET";

/// The caller of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The authenticated user, if any.
    pub user_id: Option<i64>,
    pub scopes: Vec<String>,
}

impl Viewer {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn user(user_id: i64) -> Self {
        Self {
            user_id: Some(user_id),
            scopes: Vec::new(),
        }
    }

    /// The signed-in user, or `UNAUTHENTICATED`.
    pub fn require_user(&self) -> Result<i64, crate::ApiError> {
        self.user_id
            .ok_or_else(|| crate::ApiError::Unauthenticated("sign in first".into()))
    }

    /// Passes for `user_id` itself and for operators with the `admin` scope; `FORBIDDEN` else.
    pub fn require_self_or_admin(&self, user_id: i64) -> Result<(), crate::ApiError> {
        if self.has_scope("admin") || self.require_user()? == user_id {
            Ok(())
        } else {
            Err(crate::ApiError::Refused(
                "FORBIDDEN",
                "only the owner may do this".into(),
            ))
        }
    }

    /// Passes for operators with the `admin` scope.
    pub fn require_admin(&self) -> Result<(), crate::ApiError> {
        if self.has_scope("admin") {
            Ok(())
        } else {
            Err(crate::ApiError::Refused(
                "FORBIDDEN",
                "this needs the admin scope".into(),
            ))
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Reads the viewer from request headers; anonymous unless the router's secret is present
    /// and right. With no secret configured, identity headers are never believed.
    pub fn from_headers(headers: &HeaderMap, secret: Option<&str>) -> Self {
        if !from_router(headers, secret) {
            return Self::anonymous();
        }
        let user_id = headers
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|id| *id > 0);
        let scopes = headers
            .get(SCOPES_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Self { user_id, scopes }
    }
}

/// True when the request carries the router's secret (and one is configured): only then are
/// its identity headers, and its trace context, believed.
pub fn from_router(headers: &HeaderMap, secret: Option<&str>) -> bool {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return false;
    };
    let sent = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    constant_time_eq(sent, secret.as_bytes())
}

/// Compares without stopping at the first difference, so response timing does not reveal how
/// much of a guessed secret was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn believes_identity_only_with_the_secret() {
        let secret = Some("s3cret-s3cret-s3cret");
        let good = headers(&[
            (SECRET_HEADER, "s3cret-s3cret-s3cret"),
            (USER_HEADER, "42"),
            (SCOPES_HEADER, "read write"),
        ]);
        assert_eq!(
            Viewer::from_headers(&good, secret),
            Viewer {
                user_id: Some(42),
                scopes: vec!["read".into(), "write".into()]
            }
        );
        let spoofed = headers(&[(SECRET_HEADER, "guess"), (USER_HEADER, "42")]);
        assert_eq!(Viewer::from_headers(&spoofed, secret), Viewer::anonymous());
        let missing = headers(&[(USER_HEADER, "42")]);
        assert_eq!(Viewer::from_headers(&missing, secret), Viewer::anonymous());
        assert_eq!(
            Viewer::from_headers(&good, None),
            Viewer::anonymous(),
            "no secret configured"
        );
        let garbage = headers(&[
            (SECRET_HEADER, "s3cret-s3cret-s3cret"),
            (USER_HEADER, "abc"),
        ]);
        assert_eq!(Viewer::from_headers(&garbage, secret).user_id, None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
