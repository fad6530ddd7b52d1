//! The explorer's responses: one shape for pages, assets and API answers, with the headers
//! every one of them needs (content type, caching, `nosniff`, the page's CSP) and gzip when
//! the client accepts it.

use std::sync::OnceLock;

use apollo_router::services::router;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use tower::BoxError;

/// Pages may load only what the router serves: no CDN, no inline script. (GraphiQL sets inline
/// styles, and its fonts are data: URLs in its stylesheet.)
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Whether and how a body may be sent gzip-compressed.
pub enum Gzip {
    Never,
    /// Compressed per response (small dynamic bodies).
    OnTheFly,
    /// A copy compressed once (an embedded asset, a fixed API answer).
    Ready(Bytes),
}

/// A body that does not change for the life of its holder (the schema model, one manifest's
/// catalogue), with its gzip copy made on first use instead of on every response.
pub struct Fixed {
    body: Bytes,
    gzip: OnceLock<Bytes>,
}

impl Fixed {
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            gzip: OnceLock::new(),
        }
    }

    /// A 200 JSON answer with this body.
    pub fn json(&self) -> Reply {
        let gzip = self
            .gzip
            .get_or_init(|| Bytes::from(super::assets::gzip(&self.body)))
            .clone();
        Reply {
            gzip: Gzip::Ready(gzip),
            ..Reply::json(StatusCode::OK, self.body.clone())
        }
    }
}

/// A response under construction.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    pub body: Bytes,
    pub gzip: Gzip,
    pub extra: Vec<(header::HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: "application/json",
            cache_control: "no-store",
            body: body.into(),
            gzip: Gzip::OnTheFly,
            extra: Vec::new(),
        }
    }

    pub fn error(status: StatusCode, message: &str) -> Self {
        Self::json(
            status,
            serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default(),
        )
    }
}

pub fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

pub fn respond(
    reply: Reply,
    gzip_ok: bool,
    context: apollo_router::Context,
) -> Result<router::Response, BoxError> {
    let mut response = http::Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .header(header::CACHE_CONTROL, reply.cache_control)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer");
    if reply.content_type.starts_with("text/html") {
        response = response
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .header(header::X_FRAME_OPTIONS, "DENY");
    }
    for (name, value) in reply.extra {
        response = response.header(name, value);
    }
    if !matches!(reply.gzip, Gzip::Never) {
        response = response.header(header::VARY, "accept-encoding");
    }
    let body = match reply.gzip {
        Gzip::Ready(compressed) if gzip_ok => {
            response = response.header(header::CONTENT_ENCODING, "gzip");
            compressed
        }
        Gzip::OnTheFly if gzip_ok && reply.body.len() >= 1024 => {
            response = response.header(header::CONTENT_ENCODING, "gzip");
            Bytes::from(super::assets::gzip(&reply.body))
        }
        _ => reply.body,
    };
    router::Response::http_response_builder()
        .response(response.body(router::body::from_bytes(body))?)
        .context(context)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation_follows_q_values() {
        let with = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&http::HeaderMap::new()));
    }
}
