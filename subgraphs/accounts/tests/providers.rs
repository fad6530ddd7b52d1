//! Sign in with Apple and Google against a local JWKS server holding keys this test generates
//! (the real providers cannot be reached from here): what a valid ID token does, and every way
//! an ID token is refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard_accounts::config::AccountsConfig;
use switchyard_accounts::providers::{IdentityProvider, ProviderSettings, Providers};
use switchyard_accounts::{Migrator, prepare};
use switchyard_kit::{ShardedStore, StoreConfig, Viewer, backend_tests};

const APPLE_CLIENT: &str = "com.example.switchyard";
const GOOGLE_CLIENT: &str = "1234-abcd.apps.googleusercontent.com";

/// A P-256 key pair: the private half signs test tokens, the public half is served as a JWK.
struct TestKey {
    kid: String,
    signing: EncodingKey,
    jwk: Value,
}

fn new_key(kid: &str) -> TestKey {
    let secret = loop {
        if let Ok(key) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
            break key;
        }
    };
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    TestKey {
        kid: kid.to_owned(),
        signing: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }),
    }
}

/// The local JWKS endpoint: the keys it serves can change (rotation), and it counts fetches.
#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn serve(&self) -> String {
        let state = self.clone();
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let state = state.clone();
                async move {
                    state.fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": *state.keys.lock().unwrap()}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/keys")
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.signing).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Apple's claims for `sub`, issued for `nonce` (Apple carries its SHA-256).
fn apple_claims(sub: &str, nonce: &str, email: Option<(&str, &str)>) -> Value {
    let mut claims = json!({
        "iss": "https://appleid.apple.com", "aud": APPLE_CLIENT, "sub": sub,
        "iat": now(), "exp": now() + 600, "nonce": sha256_hex(nonce),
    });
    if let Some((address, verified)) = email {
        claims["email"] = json!(address);
        claims["email_verified"] = json!(verified);
    }
    claims
}

const SIGN_IN: &str = "mutation($p: IdentityProvider!, $t: String!, $n: String!) { signInWithProvider(provider: $p, idToken: $t, nonce: $n) { accessToken refreshToken user { id handle displayName } } }";

struct Setup {
    store: Arc<ShardedStore>,
    config: AccountsConfig,
    jwks: Jwks,
    key: TestKey,
}

impl Setup {
    async fn new(store_config: StoreConfig) -> Self {
        Self::with_refresh_gap(store_config, std::time::Duration::from_secs(60)).await
    }

    async fn with_refresh_gap(store_config: StoreConfig, gap: std::time::Duration) -> Self {
        let store = switchyard_kit::testing::migrated_store::<Migrator>(store_config).await;
        let jwks = Jwks::default();
        let key = new_key("k1");
        jwks.publish(&[&key]);
        let url = jwks.serve().await;
        let mut apple =
            ProviderSettings::published(IdentityProvider::Apple, vec![APPLE_CLIENT.into()]);
        apple.jwks_url = url.clone();
        apple.jwks_min_refresh_gap = gap;
        let mut google =
            ProviderSettings::published(IdentityProvider::Google, vec![GOOGLE_CLIENT.into()]);
        google.jwks_url = url;
        let mut config = AccountsConfig::development();
        config.providers = Providers::new(vec![apple, google]).unwrap();
        Self {
            store,
            config,
            jwks,
            key,
        }
    }

    async fn exec(&self, query: &str, vars: Value) -> Value {
        let schema = switchyard_accounts::schema::schema_with(self.config.clone());
        switchyard_kit::testing::execute(
            &schema,
            prepare,
            &self.store,
            Viewer::anonymous(),
            query,
            vars,
        )
        .await
    }

    async fn sign_in(&self, provider: &str, token: &str, nonce: &str) -> Value {
        self.exec(SIGN_IN, json!({"p": provider, "t": token, "n": nonce}))
            .await
    }
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

fn user_id(response: &Value) -> String {
    response["data"]["signInWithProvider"]["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_owned()
}

async fn a_provider_identity_signs_in_to_one_account(store: StoreConfig) {
    let setup = Setup::new(store).await;
    let first = setup
        .sign_in(
            "APPLE",
            &sign(
                &setup.key,
                &apple_claims(
                    "001234.abcd",
                    "n-1",
                    Some(("Kim@PrivateRelay.AppleID.com", "true")),
                ),
            ),
            "n-1",
        )
        .await;
    let kim = user_id(&first);
    assert!(
        first["data"]["signInWithProvider"]["user"]["handle"]
            .as_str()
            .unwrap()
            .starts_with("kim_"),
        "{first}"
    );
    // Our own tokens: the refresh token rotates like any other.
    let refresh = first["data"]["signInWithProvider"]["refreshToken"]
        .as_str()
        .unwrap();
    let r = setup
        .exec(
            "mutation($t: String!) { refreshSession(refreshToken: $t) { refreshToken } }",
            json!({"t": refresh}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");

    // The same identity again (a new token, a new nonce): the same account.
    let again = setup
        .sign_in(
            "APPLE",
            &sign(&setup.key, &apple_claims("001234.abcd", "n-2", None)),
            "n-2",
        )
        .await;
    assert_eq!(user_id(&again), kim);

    // Google with the same verified email links to that account too (the email directory).
    let google = json!({
        "iss": "https://accounts.google.com", "aud": GOOGLE_CLIENT, "sub": "1098",
        "iat": now(), "exp": now() + 600, "nonce": "g-1",
        "email": "kim@privaterelay.appleid.com", "email_verified": true, "name": "Kim",
    });
    let r = setup
        .sign_in("GOOGLE", &sign(&setup.key, &google), "g-1")
        .await;
    assert_eq!(user_id(&r), kim, "linked by verified email: {r}");
}

/// An account whose email was only typed in is never linked to a provider identity, however
/// verified the provider's email: the sign-up could have been someone squatting the owner's
/// address, waiting for them to sign in with Apple ("pre-hijacking"). The owner gets an
/// account of their own, and the squatter's password never reaches it.
async fn a_typed_in_email_is_never_linked(store: StoreConfig) {
    let setup = Setup::new(store).await;
    let r = setup
        .exec(
            "mutation($i: SignUpInput!) { signUp(input: $i) { user { id } } }",
            json!({"i": {"handle": "squatter", "email": "lin@example.com", "password": "correct horse battery"}}),
        )
        .await;
    let squatter = r["data"]["signUp"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let owner = setup
        .sign_in(
            "APPLE",
            &sign(
                &setup.key,
                &apple_claims("a.2", "n-2", Some(("LIN@example.com", "true"))),
            ),
            "n-2",
        )
        .await;
    let owner = user_id(&owner);
    assert_ne!(owner, squatter, "not linked to the typed-in address");
    // Unverified provider emails never link either, not even to a verified one.
    let other = setup
        .sign_in(
            "GOOGLE",
            &sign(
                &setup.key,
                &json!({
                    "iss": "accounts.google.com", "aud": GOOGLE_CLIENT, "sub": "g-9",
                    "iat": now(), "exp": now() + 600, "nonce": "g-9",
                    "email": "lin@example.com", "email_verified": false,
                }),
            ),
            "g-9",
        )
        .await;
    assert_ne!(user_id(&other), owner);
    assert_ne!(user_id(&other), squatter);
    // The squatter's password signs in to the squatter's account only.
    let r = setup
        .exec(
            "mutation($i: SignInInput!) { signIn(input: $i) { user { id } } }",
            json!({"i": {"login": "lin@example.com", "password": "correct horse battery"}}),
        )
        .await;
    assert_eq!(r["data"]["signIn"]["user"]["id"], squatter.as_str(), "{r}");
}

async fn id_tokens_are_refused_precisely(store: StoreConfig) {
    let setup = Setup::new(store).await;
    let key = &setup.key;
    let valid = |nonce: &str| apple_claims("refused.1", nonce, None);
    let with = |nonce: &str, field: &str, value: Value| {
        let mut claims = valid(nonce);
        claims[field] = value;
        claims
    };
    let stranger = new_key("k1");
    let hashed = sha256_hex("c6");
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            sign(key, &with("c1", "aud", json!("com.someone.else"))),
            "c1",
            "INVALID_ID_TOKEN",
            "audience",
        ),
        (
            sign(
                key,
                &with("c2", "iss", json!("https://accounts.google.com")),
            ),
            "c2",
            "INVALID_ID_TOKEN",
            "issuer",
        ),
        (
            sign(key, &with("c3", "exp", json!(now() - 3600))),
            "c3",
            "INVALID_ID_TOKEN",
            "expired",
        ),
        (
            sign(key, &with("c4", "iat", json!(now() + 3600))),
            "c4",
            "INVALID_ID_TOKEN",
            "future",
        ),
        (
            sign(key, &valid("c5")),
            "not-c5",
            "INVALID_ID_TOKEN",
            "nonce",
        ),
        // Apple carries the hash; the hash itself sent as the nonce does not match.
        (
            sign(key, &valid("c6")),
            &hashed,
            "INVALID_ID_TOKEN",
            "nonce",
        ),
        (
            sign(&stranger, &valid("c7")),
            "c7",
            "INVALID_ID_TOKEN",
            "signature",
        ),
        (
            {
                let mut claims = valid("c8");
                claims.as_object_mut().unwrap().remove("nonce");
                sign(key, &claims)
            },
            "c8",
            "INVALID_ID_TOKEN",
            "nonce",
        ),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &valid("c9"),
                &EncodingKey::from_secret(b"an hmac secret anyone could pick for this"),
            )
            .unwrap(),
            "c9",
            "INVALID_ID_TOKEN",
            "HS256",
        ),
        (
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
                URL_SAFE_NO_PAD.encode(valid("c10").to_string())
            ),
            "c10",
            "INVALID_ID_TOKEN",
            "malformed",
        ),
        ("not a token".into(), "c11", "INVALID_ID_TOKEN", "malformed"),
        ("x".repeat(9000), "c12", "INVALID_ID_TOKEN", "longer than"),
        (sign(key, &valid("c13")), "", "BAD_USER_INPUT", "nonce"),
    ];
    for (token, nonce, expected, says) in &cases {
        let r = setup.sign_in("APPLE", token, nonce).await;
        assert_eq!(code(&r), *expected, "{says}: {r}");
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{says}: {message}");
        assert!(r["data"].is_null(), "{r}");
    }

    // A token signs in once: its nonce is spent.
    let token = sign(key, &valid("once"));
    assert!(setup.sign_in("APPLE", &token, "once").await["errors"].is_null());
    let r = setup.sign_in("APPLE", &token, "once").await;
    assert_eq!(code(&r), "ID_TOKEN_REUSED", "{r}");

    // An Apple token is not a Google token.
    let r = setup.sign_in("GOOGLE", &sign(key, &valid("g")), "g").await;
    assert_eq!(code(&r), "INVALID_ID_TOKEN", "{r}");

    // A provider without client ids is off.
    let mut off = setup.config.clone();
    off.providers = Providers::default();
    let schema = switchyard_accounts::schema::schema_with(off);
    let r = switchyard_kit::testing::execute(
        &schema,
        prepare,
        &setup.store,
        Viewer::anonymous(),
        SIGN_IN,
        json!({"p": "APPLE", "t": sign(key, &valid("off")), "n": "off"}),
    )
    .await;
    assert_eq!(code(&r), "PROVIDER_NOT_CONFIGURED", "{r}");
}

/// The provider rotates its key: a token with the new `kid` re-reads the JWKS (here with no
/// minimum gap between re-reads).
async fn key_rotation_is_followed(store: StoreConfig) {
    let setup = Setup::with_refresh_gap(store, std::time::Duration::ZERO).await;
    let r = setup
        .sign_in(
            "APPLE",
            &sign(&setup.key, &apple_claims("rot", "r-1", None)),
            "r-1",
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        setup.jwks.fetches.load(Ordering::SeqCst),
        1,
        "read once, then cached"
    );
    let r = setup
        .sign_in(
            "APPLE",
            &sign(&setup.key, &apple_claims("rot", "r-2", None)),
            "r-2",
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        setup.jwks.fetches.load(Ordering::SeqCst),
        1,
        "a known key is not fetched again"
    );

    let next = new_key("k2");
    setup.jwks.publish(&[&setup.key, &next]);
    let r = setup
        .sign_in(
            "APPLE",
            &sign(&next, &apple_claims("rot", "r-3", None)),
            "r-3",
        )
        .await;
    assert!(
        r["errors"].is_null(),
        "the new key is fetched on demand: {r}"
    );
    assert_eq!(setup.jwks.fetches.load(Ordering::SeqCst), 2);
}

/// Made-up key ids do not make us fetch the JWKS again within the minimum gap (a minute).
async fn unknown_key_ids_are_bounded(store: StoreConfig) {
    let setup = Setup::new(store).await;
    let r = setup
        .sign_in(
            "APPLE",
            &sign(&setup.key, &apple_claims("g", "g-0", None)),
            "g-0",
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    for i in 0..5 {
        let unknown = new_key(&format!("garbage-{i}"));
        let nonce = format!("g-{}", i + 1);
        let r = setup
            .sign_in(
                "APPLE",
                &sign(&unknown, &apple_claims("g", &nonce, None)),
                &nonce,
            )
            .await;
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("key id is unknown"),
            "{r}"
        );
    }
    assert_eq!(
        setup.jwks.fetches.load(Ordering::SeqCst),
        1,
        "{:?}",
        setup.jwks.fetches
    );
}

backend_tests!(
    a_provider_identity_signs_in_to_one_account,
    a_typed_in_email_is_never_linked,
    id_tokens_are_refused_precisely,
    key_rotation_is_followed,
    unknown_key_ids_are_bounded
);
