//! `switchyard.jwt_auth` through the real router: valid tokens reach the subgraphs as a
//! trusted identity; every kind of bad token is refused before any subgraph is called.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::harness::{Options, Platform, ROUTER_SECRET, codes, repo_root};

const HS_SECRET: &str = "dev-only-hmac-secret-0123456789abcdef";
const ISSUER: &str = "https://auth.switchyard.test";
const AUDIENCE: &str = "switchyard-api";

fn fixture(name: &str) -> String {
    repo_root()
        .join("cli/tests/fixtures/jwt")
        .join(name)
        .display()
        .to_string()
}

fn plugin_yaml(allow_anonymous: bool, jwks: &str) -> String {
    format!(
        r#"  jwt_auth:
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    algorithms: [ES256, HS256]
    allow_anonymous: {allow_anonymous}
    max_token_bytes: 2048
    subgraph_secret: {ROUTER_SECRET}
    keys:
      - kid: dev
        alg: HS256
        secret: {HS_SECRET}
    jwks:
      file: {jwks}
      refresh_interval: 1h
      min_refresh_gap: 1s
  operation_limits:
    max_depth: 6
    max_aliases: 5
"#
    )
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300, "iat": now(), "scope": "read write"})
}

fn hs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("dev".into());
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn es256(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let pem = std::fs::read(fixture(&format!("es256-{kid}.key.pem"))).unwrap();
    encode(&header, claims, &EncodingKey::from_ec_pem(&pem).unwrap()).unwrap()
}

async fn me(
    platform: &Platform,
    authorization: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    let (status, _, body) = platform
        .post_with(json!({"query": "{ me { id handle } }"}), &headers)
        .await;
    (status, body)
}

fn user(platform: &Platform, i: usize) -> String {
    switchyard_accounts::seed::demo_user_ids(i + 1, platform.subgraphs[0].store.shard_count())[i]
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_identify_the_user_to_subgraphs() {
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks = jwks_dir.path().join("jwks.json");
    std::fs::copy(fixture("jwks-k1.json"), &jwks).unwrap();
    let platform = Platform::start(Options {
        plugins: plugin_yaml(false, &jwks.display().to_string()),
        ..Options::default()
    })
    .await;
    let ada = user(&platform, 0);

    let (status, body) = me(
        &platform,
        Some(&format!("Bearer {}", hs256(&claims(&ada)))),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["me"]["id"], ada.as_str(), "{body}");
    let (status, body) = me(
        &platform,
        Some(&format!("Bearer {}", es256("k1", &claims(&ada)))),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["data"]["me"]["id"].as_str()),
        (200, Some(ada.as_str())),
        "{body}"
    );

    // A client cannot speak for someone else: its own identity headers are replaced.
    let other = user(&platform, 1);
    let spoof = [
        ("x-switchyard-user-id", other.as_str()),
        ("x-switchyard-router-secret", "guess"),
    ];
    let (_, body) = me(
        &platform,
        Some(&format!("Bearer {}", hs256(&claims(&ada)))),
        &spoof,
    )
    .await;
    assert_eq!(body["data"]["me"]["id"], ada.as_str(), "{body}");

    // Key rotation: the issuer publishes k2, then signs with it; no restart needed.
    let k2 = format!("Bearer {}", es256("k2", &claims(&ada)));
    let (status, body) = me(&platform, Some(&k2), &[]).await;
    assert_eq!(
        (status, codes(&body)),
        (401, vec!["UNAUTHENTICATED".to_owned()]),
        "not published yet: {body}"
    );
    std::fs::copy(fixture("jwks-k1-k2.json"), &jwks).unwrap();
    // The refused k2 token above triggered a refresh; the next refresh may wait out the gap.
    let started = std::time::Instant::now();
    loop {
        let (status, body) = me(&platform, Some(&k2), &[]).await;
        if status == 200 {
            assert_eq!(body["data"]["me"]["id"], ada.as_str());
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(45),
            "k2 never accepted: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // A subgraph reached directly never believes identity headers without the router's secret.
    let accounts = platform.subgraphs[0].addr;
    let direct: Value = platform
        .http
        .post(format!("http://{accounts}/graphql"))
        .header("x-switchyard-user-id", &ada)
        .header("x-switchyard-router-secret", "not-the-secret")
        .json(&json!({"query": "{ me { id } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(direct["data"]["me"].is_null(), "{direct}");
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_any_subgraph_call() {
    let platform = Platform::start(Options {
        plugins: plugin_yaml(false, &fixture("jwks-k1.json")),
        ..Options::default()
    })
    .await;
    let ada = user(&platform, 0);
    let good = hs256(&claims(&ada));
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let mut expired = claims(&ada);
    expired["exp"] = json!(now() - 3600);
    let mut future_nbf = claims(&ada);
    future_nbf["nbf"] = json!(now() + 3600);
    let mut future_iat = claims(&ada);
    future_iat["iat"] = json!(now() + 3600);
    let mut wrong_aud = claims(&ada);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(&ada);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_sub = claims(&ada);
    no_sub.as_object_mut().unwrap().remove("sub");
    let wrong_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("dev".into());
        encode(
            &header,
            &claims(&ada),
            &EncodingKey::from_secret(b"another-secret-another-secret-123"),
        )
        .unwrap()
    };
    // An HS256 token naming the ES256 key: the classic algorithm-confusion attack.
    let confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        encode(
            &header,
            &claims(&ada),
            &EncodingKey::from_secret(
                std::fs::read(fixture("es256-k1.pub.pem"))
                    .unwrap()
                    .as_slice(),
            ),
        )
        .unwrap()
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "dev"})),
        b64(&claims(&ada))
    );
    let tampered = {
        let mut bytes = good.clone().into_bytes();
        let i = bytes.len() - 20;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let cases: Vec<(String, &str)> = vec![
        (format!("Bearer {tampered}"), "signature"),
        (format!("Bearer {}", &good[..good.len() - 10]), "malformed"),
        (format!("Bearer {}", &good[..20]), "malformed"),
        (format!("Bearer {unsigned}"), "malformed"),
        (format!("Bearer {wrong_key}"), "signature"),
        (format!("Bearer {confused}"), "not accepted"),
        (format!("Bearer {}", hs256(&expired)), "expired"),
        (format!("Bearer {}", hs256(&future_nbf)), "not valid yet"),
        (
            format!("Bearer {}", hs256(&future_iat)),
            "issued in the future",
        ),
        (format!("Bearer {}", hs256(&wrong_aud)), "audience"),
        (format!("Bearer {}", hs256(&wrong_iss)), "issuer"),
        (format!("Bearer {}", hs256(&no_sub)), "`sub`"),
        (format!("Bearer {}", "a".repeat(3000)), "longer than 2048"),
        (
            format!("Basic {}", b64(&json!("user:pass"))),
            "Bearer <token>",
        ),
        ("Bearer ".to_owned(), "Bearer <token>"),
    ];
    platform.subgraphs[0].spy.headers.lock().unwrap().clear();
    for (authorization, expected) in cases {
        let (status, body) = me(&platform, Some(&authorization), &[]).await;
        assert_eq!(
            (status, codes(&body)),
            (401, vec!["UNAUTHENTICATED".to_owned()]),
            "{authorization}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{authorization}: {message}");
    }
    let (status, body) = me(&platform, None, &[]).await;
    assert_eq!(
        (status, codes(&body)),
        (401, vec!["UNAUTHENTICATED".to_owned()]),
        "{body}"
    );
    assert!(
        platform.subgraphs[0].spy.headers.lock().unwrap().is_empty(),
        "no refused request reached accounts"
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_when_allowed_and_limits_on_documents() {
    let platform = Platform::start(Options {
        plugins: plugin_yaml(true, &fixture("jwks-k1.json")),
        ..Options::default()
    })
    .await;
    let (status, body) = me(&platform, None, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["me"].is_null(), "{body}");

    platform.subgraphs[1].spy.headers.lock().unwrap().clear();
    let deep = "{ feed { nodes { author { posts { nodes { author { id } } } } } } }";
    let (status, _, body) = platform.post(json!({"query": deep})).await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["MAX_DEPTH_LIMIT".to_owned()]),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["measured"], 7);
    assert_eq!(body["errors"][0]["extensions"]["limit"], 6);
    let aliases: String = (0..6)
        .map(|i| format!("f{i}: feed(first: 1) {{ nodes {{ id }} }} "))
        .collect();
    let (status, _, body) = platform
        .post(json!({"query": format!("{{ {aliases} }}")}))
        .await;
    assert_eq!(
        (status, codes(&body)),
        (400, vec!["MAX_ALIASES_LIMIT".to_owned()]),
        "{body}"
    );
    assert!(
        platform.subgraphs[1].spy.headers.lock().unwrap().is_empty(),
        "refused documents never reach posts"
    );
    platform.shutdown().await;
}

/// The whole session lifecycle through the router, with the accounts subgraph's own tokens:
/// sign up, query as the user, refresh, reuse the old refresh token, and find the session
/// family revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_to_revocation_through_the_router() {
    let plugins = crate::harness::dev_jwt_plugin();
    let platform = Platform::start(Options {
        plugins,
        ..Options::default()
    })
    .await;
    let call = |query: &'static str, variables: Value, token: Option<String>| {
        let platform = &platform;
        async move {
            let headers: Vec<(&str, String)> = token
                .map(|t| vec![("authorization", format!("Bearer {t}"))])
                .unwrap_or_default();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            platform
                .post_with(json!({"query": query, "variables": variables}), &headers)
                .await
        }
    };
    let (status, _, body) = call(
        "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken refreshToken user { id handle } } }",
        json!({"i": {"handle": "new_person", "email": "new@example.com", "password": "correct horse battery"}}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = &body["data"]["signUp"];
    let access = session["accessToken"].as_str().unwrap().to_owned();
    let refresh = session["refreshToken"].as_str().unwrap().to_owned();

    let (_, _, body) = call("{ me { handle } }", json!({}), Some(access)).await;
    assert_eq!(body["data"]["me"]["handle"], "new_person", "{body}");

    let refresh_query =
        "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";
    let (_, _, body) = call(refresh_query, json!({"t": refresh}), None).await;
    let newer = body["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let fresh_access = body["data"]["refreshSession"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, body) = call("{ me { handle } }", json!({}), Some(fresh_access)).await;
    assert_eq!(body["data"]["me"]["handle"], "new_person");

    // Rotated on (the grace window for retries ends once the successor is used): the first
    // token is now a copy, and presenting it signs the family out.
    let (_, _, body) = call(refresh_query, json!({"t": newer}), None).await;
    let newest = body["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let (_, _, body) = call(refresh_query, json!({"t": refresh}), None).await;
    assert_eq!(codes(&body), ["REFRESH_TOKEN_REUSED"], "{body}");
    let (_, _, body) = call(refresh_query, json!({"t": newest}), None).await;
    assert_eq!(
        codes(&body),
        ["INVALID_REFRESH_TOKEN"],
        "the family is revoked: {body}"
    );
    platform.shutdown().await;
}
