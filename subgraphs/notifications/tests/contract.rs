//! Local servers that implement the push services' documented contracts, for the tests: they
//! check what we send (transport, headers, JWT claims and signature, payload) and answer as
//! the real services do, chosen by the device token.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use switchyard_notifications::push::apns::{Apns, ApnsConfig};
use switchyard_notifications::push::fcm::{Fcm, SCOPE, ServiceAccount};

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub const KEY_ID: &str = "ABC123DEFG";
pub const TEAM_ID: &str = "DEF123GHIJ";
pub const TOPIC: &str = "dev.switchyard.app";
pub const PROJECT: &str = "switchyard-test";
pub const CLIENT_EMAIL: &str = "push@switchyard-test.iam.gserviceaccount.com";

/// An FCM registration token the FCM server answers with `answer`.
pub fn fcm_token(answer: &str) -> String {
    format!("{answer}-{}", "x".repeat(40))
}

/// An APNs device token (hex) the APNs server answers by its first byte: `aa` 200, `bb` 410,
/// `cc` 400 BadDeviceToken, `dd` 500, `ee` 403 ExpiredProviderToken once, `ff` 429.
pub fn apns_token(answer: &str, n: u8) -> String {
    format!("{answer}{}{n:02x}", "0".repeat(60))
}

#[derive(Default)]
pub struct Recorded {
    /// The claims of every accepted FCM assertion.
    pub assertions: Vec<Value>,
    pub issued: HashSet<String>,
    /// Every FCM send: the body.
    pub fcm_sends: Vec<Value>,
    /// Every APNs request: (device token, headers, body).
    pub apns_sends: Vec<(String, HeaderMap, Value)>,
    /// Contract violations seen (the tests assert there are none).
    pub violations: Vec<String>,
    refused_once: HashSet<String>,
}

pub type Shared = Arc<Mutex<Recorded>>;

fn violation(recorded: &Shared, what: String) -> Response {
    recorded.lock().unwrap().violations.push(what.clone());
    (StatusCode::BAD_REQUEST, what).into_response()
}

// ---- FCM HTTP v1 ----------------------------------------------------------------------

pub struct FcmServer {
    pub addr: SocketAddr,
    pub recorded: Shared,
}

impl FcmServer {
    pub async fn start() -> Self {
        let recorded = Shared::default();
        let app = axum::Router::new()
            .fallback(fcm_route)
            .with_state(recorded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, recorded }
    }

    pub fn account(&self) -> ServiceAccount {
        ServiceAccount::parse(
            &json!({
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "key-1",
                "private_key": fixture("test-only-fcm-service-account.pem"),
                "client_email": CLIENT_EMAIL,
                "token_uri": format!("http://{}/token", self.addr),
            })
            .to_string(),
        )
        .unwrap()
    }

    pub fn provider(&self) -> Fcm {
        Fcm::new(self.account(), &format!("http://{}", self.addr)).unwrap()
    }
}

fn fcm_error(status: StatusCode, code: &str, headers: &[(&'static str, &'static str)]) -> Response {
    let body = json!({"error": {
        "code": status.as_u16(),
        "message": format!("{code} (contract server)"),
        "status": match status.as_u16() { 404 => "NOT_FOUND", 400 => "INVALID_ARGUMENT", 403 => "PERMISSION_DENIED", 429 => "RESOURCE_EXHAUSTED", 401 => "UNAUTHENTICATED", _ => "UNAVAILABLE" },
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}],
    }});
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

async fn fcm_route(
    State(recorded): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match uri.path() {
        "/token" => fcm_token_endpoint(recorded, headers, body),
        path if path == format!("/v1/projects/{PROJECT}/messages:send") => {
            fcm_send(recorded, headers, body)
        }
        path => violation(&recorded, format!("FCM: no such endpoint {path}")),
    }
}

fn fcm_token_endpoint(recorded: Shared, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return violation(&recorded, "token request is not a form".into());
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return violation(&recorded, format!("grant_type {:?}", field("grant_type")));
    }
    let Some(assertion) = field("assertion") else {
        return violation(&recorded, "no assertion".into());
    };
    let header = jsonwebtoken::decode_header(&assertion).unwrap();
    if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some("key-1") {
        return violation(&recorded, format!("assertion header {header:?}"));
    }
    let key =
        DecodingKey::from_rsa_pem(fixture("test-only-fcm-service-account.pub.pem").as_bytes())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!(
        "http://{}/token",
        headers["host"].to_str().unwrap()
    )]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Value>(&assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return violation(&recorded, format!("assertion: {e}")),
    };
    if claims["scope"] != SCOPE {
        return violation(&recorded, format!("scope {}", claims["scope"]));
    }
    if claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() != 3600 {
        return violation(&recorded, "assertion lifetime is not one hour".into());
    }
    let mut recorded = recorded.lock().unwrap();
    let token = format!("ya29.contract-{}", recorded.assertions.len() + 1);
    recorded.assertions.push(claims);
    recorded.issued.insert(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

fn fcm_send(recorded: Shared, headers: HeaderMap, body: Bytes) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    if !recorded.lock().unwrap().issued.contains(&bearer) {
        return fcm_error(StatusCode::UNAUTHORIZED, "THIRD_PARTY_AUTH_ERROR", &[]);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return violation(&recorded, "FCM body is not JSON".into());
    };
    let message = &body["message"];
    let token = message["token"].as_str().unwrap_or("").to_owned();
    for (path, value) in [
        ("android.collapse_key", &message["android"]["collapse_key"]),
        ("android.priority", &message["android"]["priority"]),
        (
            "android.notification.body_loc_key",
            &message["android"]["notification"]["body_loc_key"],
        ),
        ("data.notification_id", &message["data"]["notification_id"]),
    ] {
        if !value.is_string() {
            return violation(&recorded, format!("FCM message without {path}: {body}"));
        }
    }
    // FCM's data values must all be strings.
    if message["data"]
        .as_object()
        .is_some_and(|d| d.values().any(|v| !v.is_string()))
    {
        return violation(
            &recorded,
            format!("FCM data with a non-string value: {body}"),
        );
    }
    let mut r = recorded.lock().unwrap();
    r.fcm_sends.push(body.clone());
    let answer = token.split('-').next().unwrap_or("").to_owned();
    // An access token Google revoked early: the first send with it is refused.
    if answer == "expired" && r.refused_once.insert(token.clone()) {
        r.issued.remove(&bearer);
        return fcm_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &[]);
    }
    drop(r);
    match answer.as_str() {
        "dead" => fcm_error(StatusCode::NOT_FOUND, "UNREGISTERED", &[]),
        "mismatch" => fcm_error(StatusCode::FORBIDDEN, "SENDER_ID_MISMATCH", &[]),
        "busy" => fcm_error(
            StatusCode::TOO_MANY_REQUESTS,
            "QUOTA_EXCEEDED",
            &[("retry-after", "7")],
        ),
        "down" => fcm_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", &[]),
        "bad" => fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &[]),
        _ => {
            axum::Json(json!({"name": format!("projects/{PROJECT}/messages/0:1")})).into_response()
        }
    }
}

// ---- APNs (HTTP/2 over TLS) -------------------------------------------------------------

pub struct ApnsServer {
    pub addr: SocketAddr,
    pub recorded: Shared,
}

impl ApnsServer {
    pub async fn start() -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(fixture("test-only-tls.crt").as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(fixture("test-only-tls.key").as_bytes()).unwrap();
        let mut config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        // APNs speaks HTTP/2 only.
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = Shared::default();
        let shared = recorded.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let recorded = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                        recorded
                            .lock()
                            .unwrap()
                            .violations
                            .push("APNs: ALPN did not choose h2".into());
                        return;
                    }
                    let service = hyper::service::service_fn(move |request| {
                        let recorded = recorded.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(apns_route(recorded, request).await)
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, recorded }
    }

    pub fn provider(&self) -> Apns {
        Apns::new(ApnsConfig {
            key_pem: fixture("test-only-apns-AuthKey.p8"),
            key_id: KEY_ID.into(),
            team_id: TEAM_ID.into(),
            topic: TOPIC.into(),
            endpoint: format!("https://127.0.0.1:{}", self.addr.port()),
            ca_pem: Some(fixture("test-only-ca.crt").into_bytes()),
        })
        .unwrap()
    }
}

type HyperResponse = hyper::Response<http_body_util::Full<Bytes>>;

fn apns_answer(status: u16, reason: Option<&str>) -> HyperResponse {
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5B");
    let body = match reason {
        Some(reason) => {
            builder = builder.header("content-type", "application/json");
            if status == 410 {
                json!({"reason": reason, "timestamp": 1_700_000_000_000u64}).to_string()
            } else {
                json!({"reason": reason}).to_string()
            }
        }
        None => String::new(),
    };
    builder
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap()
}

async fn apns_route(
    recorded: Shared,
    request: hyper::Request<hyper::body::Incoming>,
) -> HyperResponse {
    use http_body_util::BodyExt;
    let fail = |what: String| {
        recorded.lock().unwrap().violations.push(what);
        apns_answer(400, Some("BadRequest (contract violation)"))
    };
    if request.version() != hyper::Version::HTTP_2 {
        return fail(format!("APNs over {:?}", request.version()));
    }
    if request.method() != hyper::Method::POST {
        return fail(format!("APNs method {}", request.method()));
    }
    let Some(token) = request
        .uri()
        .path()
        .strip_prefix("/3/device/")
        .map(str::to_owned)
    else {
        return fail(format!("APNs path {}", request.uri().path()));
    };
    let headers = request.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let Some(jwt) = header("authorization")
        .strip_prefix("bearer ")
        .map(str::to_owned)
    else {
        return apns_answer(403, Some("MissingProviderToken"));
    };
    let Ok(jwt_header) = jsonwebtoken::decode_header(&jwt) else {
        return apns_answer(403, Some("InvalidProviderToken"));
    };
    if jwt_header.alg != Algorithm::ES256 || jwt_header.kid.as_deref() != Some(KEY_ID) {
        return fail(format!("provider token header {jwt_header:?}"));
    }
    let key =
        DecodingKey::from_ec_pem(fixture("test-only-apns-AuthKey.pub.pem").as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[TEAM_ID]);
    validation.set_required_spec_claims(&["iss"]);
    validation.validate_exp = false;
    let claims = match jsonwebtoken::decode::<Value>(&jwt, &key, &validation) {
        Ok(data) => data.claims,
        Err(_) => return apns_answer(403, Some("InvalidProviderToken")),
    };
    let iat = claims["iat"].as_i64().unwrap_or(0);
    if (chrono::Utc::now().timestamp() - iat).abs() > 3600 {
        return apns_answer(403, Some("ExpiredProviderToken"));
    }
    if header("apns-topic") != TOPIC {
        return apns_answer(400, Some("BadTopic"));
    }
    if header("apns-push-type") != "alert" || header("apns-priority") != "10" {
        return fail(format!(
            "push type {:?} priority {:?}",
            header("apns-push-type"),
            header("apns-priority")
        ));
    }
    if header("apns-collapse-id").len() > 64 || header("apns-expiration").parse::<i64>().is_err() {
        return fail("collapse id or expiration".into());
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    if body.len() > 4096 {
        return apns_answer(413, Some("PayloadTooLarge"));
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return apns_answer(400, Some("PayloadEmpty"));
    };
    if !payload["aps"]["alert"]["loc-key"].is_string() {
        return fail(format!("payload without aps.alert.loc-key: {payload}"));
    }
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return apns_answer(400, Some("BadDeviceToken"));
    }
    let mut r = recorded.lock().unwrap();
    r.apns_sends.push((token.clone(), headers, payload));
    let first_refusal = r.refused_once.insert(token.clone());
    drop(r);
    match &token[..2] {
        "bb" => apns_answer(410, Some("Unregistered")),
        "cc" => apns_answer(400, Some("BadDeviceToken")),
        "dd" => apns_answer(500, Some("InternalServerError")),
        "ee" if first_refusal => apns_answer(403, Some("ExpiredProviderToken")),
        "ff" => apns_answer(429, Some("TooManyRequests")),
        _ => apns_answer(200, None),
    }
}
