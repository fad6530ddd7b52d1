//! Sign-up, sign-in, refresh rotation with reuse detection, sign-out and TOTP, on real shards.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_accounts::{Migrator, prepare, schema};
use switchyard_kit::{ShardedStore, StoreConfig, Viewer, backend_tests};

async fn store(config: StoreConfig) -> Arc<ShardedStore> {
    switchyard_kit::testing::migrated_store::<Migrator>(config).await
}

async fn exec_as(store: &Arc<ShardedStore>, viewer: Viewer, query: &str, vars: Value) -> Value {
    switchyard_kit::testing::execute(&schema(), prepare, store, viewer, query, vars).await
}

async fn exec(store: &Arc<ShardedStore>, query: &str, vars: Value) -> Value {
    exec_as(store, Viewer::anonymous(), query, vars).await
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

const SIGN_UP: &str = "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken refreshToken expiresIn user { id handle } } }";
const SIGN_IN: &str =
    "mutation($i: SignInInput!) { signIn(input: $i) { accessToken refreshToken user { id } } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";

async fn sign_up(store: &Arc<ShardedStore>, handle: &str, email: &str) -> Value {
    let r = exec(
        store,
        SIGN_UP,
        json!({"i": {"handle": handle, "email": email, "password": "correct horse battery"}}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["signUp"].clone()
}

async fn full_session_lifecycle(config: StoreConfig) {
    let store = store(config).await;
    let account = sign_up(&store, "grace", "Grace@Example.com").await;
    assert_eq!(account["user"]["handle"], "grace");
    assert_eq!(account["expiresIn"], 900);
    let user_id = account["user"]["id"].as_str().unwrap().to_owned();

    // Sign in by handle and by email (case-insensitively).
    for login in ["grace", "GRACE@example.com"] {
        let r = exec(
            &store,
            SIGN_IN,
            json!({"i": {"login": login, "password": "correct horse battery"}}),
        )
        .await;
        assert_eq!(
            r["data"]["signIn"]["user"]["id"],
            user_id.as_str(),
            "{login}: {r}"
        );
    }

    // Wrong password, unknown user, unknown email: one indistinguishable answer.
    for (login, password) in [
        ("grace", "wrong horse battery"),
        ("nobody_here", "correct horse battery"),
        ("x@y.example", "whatever whatever"),
    ] {
        let r = exec(
            &store,
            SIGN_IN,
            json!({"i": {"login": login, "password": password}}),
        )
        .await;
        assert_eq!(code(&r), "INVALID_CREDENTIALS", "{login}: {r}");
        assert_eq!(
            r["errors"][0]["message"],
            "the sign-in name or password is wrong"
        );
    }

    // Refresh rotates: the new token works, the old one is now a theft signal.
    let first = account["refreshToken"].as_str().unwrap().to_owned();
    let r = exec(&store, REFRESH, json!({"t": first})).await;
    let second = r["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    assert_ne!(first, second);
    let r = exec(&store, REFRESH, json!({"t": first})).await;
    assert_eq!(code(&r), "REFRESH_TOKEN_REUSED", "{r}");
    // ... which revoked the whole family, including the token the thief did not have.
    let r = exec(&store, REFRESH, json!({"t": second})).await;
    assert_eq!(code(&r), "INVALID_REFRESH_TOKEN", "{r}");

    // Sign-out ends a fresh session.
    let r = exec(
        &store,
        SIGN_IN,
        json!({"i": {"login": "grace", "password": "correct horse battery"}}),
    )
    .await;
    let token = r["data"]["signIn"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = exec(
        &store,
        "mutation($t: String!) { signOut(refreshToken: $t) }",
        json!({"t": token}),
    )
    .await;
    assert_eq!(r["data"]["signOut"], true);
    let r = exec(&store, REFRESH, json!({"t": token})).await;
    assert_eq!(code(&r), "INVALID_REFRESH_TOKEN");
    for garbage in ["", "abc", "1.2", &format!("{user_id}.{}", "A".repeat(43))] {
        let r = exec(&store, REFRESH, json!({"t": garbage})).await;
        assert_eq!(code(&r), "INVALID_REFRESH_TOKEN", "{garbage:?}: {r}");
    }
}

async fn sign_up_rejects_bad_and_duplicate_input(config: StoreConfig) {
    let store = store(config).await;
    sign_up(&store, "hopper", "grace@navy.example").await;
    let cases = [
        (
            json!({"handle": "hopper", "email": "other@navy.example", "password": "correct horse battery"}),
            "CONFLICT",
        ),
        (
            json!({"handle": "hopper2", "email": "GRACE@navy.example", "password": "correct horse battery"}),
            "CONFLICT",
        ),
        (
            json!({"handle": "hopper3", "email": "not-an-email", "password": "correct horse battery"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"handle": "hopper4", "email": "h4@navy.example", "password": "short"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"handle": "hopper5", "email": "h5@navy.example", "password": "x".repeat(300)}),
            "BAD_USER_INPUT",
        ),
    ];
    for (input, expected) in cases {
        let r = exec(&store, SIGN_UP, json!({"i": input})).await;
        assert_eq!(code(&r), expected, "{input}: {r}");
    }
    // The failed sign-ups left nothing behind: their handles and emails are still free.
    sign_up(&store, "hopper2", "h2@navy.example").await;
    sign_up(&store, "hopper3", "other@navy.example").await;
}

async fn totp_second_factor(config: StoreConfig) {
    let store = store(config).await;
    let account = sign_up(&store, "linus", "linus@example.com").await;
    let user_id: i64 = account["user"]["id"].as_str().unwrap().parse().unwrap();
    let me = Viewer::user(user_id);

    let r = exec(
        &store,
        "mutation { enrollTotp { secret otpauthUri } }",
        json!({}),
    )
    .await;
    assert_eq!(
        code(&r),
        "UNAUTHENTICATED",
        "anonymous callers cannot enrol"
    );
    let r = exec_as(
        &store,
        me.clone(),
        "mutation { enrollTotp { secret otpauthUri } }",
        json!({}),
    )
    .await;
    let secret = r["data"]["enrollTotp"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    assert!(
        r["data"]["enrollTotp"]["otpauthUri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );

    let now = || chrono::Utc::now().timestamp() as u64;
    let r = exec_as(
        &store,
        me.clone(),
        "mutation($c: String!) { confirmTotp(code: $c) }",
        json!({"c": "000000"}),
    )
    .await;
    if code(&r) != "INVALID_TOTP" {
        // 000000 could, one time in a million, be the right code.
        assert_eq!(
            switchyard_accounts::totp::code_at(&secret, now() / 30).as_deref(),
            Some("000000")
        );
    }
    let good = switchyard_accounts::totp::code_at(&secret, now() / 30).unwrap();
    let r = exec_as(
        &store,
        me.clone(),
        "mutation($c: String!) { confirmTotp(code: $c) }",
        json!({"c": good}),
    )
    .await;
    let recovery: Vec<String> =
        serde_json::from_value(r["data"]["confirmTotp"].clone()).unwrap_or_else(|_| panic!("{r}"));
    assert_eq!(recovery.len(), 10);

    let password = json!({"login": "linus", "password": "correct horse battery"});
    let r = exec(&store, SIGN_IN, json!({"i": password})).await;
    assert_eq!(code(&r), "TOTP_REQUIRED", "{r}");
    let mut with_code = password.clone();
    with_code["totpCode"] = json!("123456x");
    let r = exec(&store, SIGN_IN, json!({"i": with_code})).await;
    assert_eq!(code(&r), "INVALID_TOTP", "{r}");
    // Regression (issue 11): a code could be replayed within its window. The confirming
    // code is spent; the next step's code (inside the window) signs in once, then not again.
    with_code["totpCode"] = json!(good.clone());
    let r = exec(&store, SIGN_IN, json!({"i": with_code})).await;
    assert_eq!(code(&r), "TOTP_CODE_REUSED", "{r}");
    let next = switchyard_accounts::totp::code_at(&secret, now() / 30 + 1).unwrap();
    with_code["totpCode"] = json!(next);
    let r = exec(&store, SIGN_IN, json!({"i": with_code})).await;
    assert!(r["data"]["signIn"]["accessToken"].is_string(), "{r}");
    let r = exec(&store, SIGN_IN, json!({"i": with_code})).await;
    assert_eq!(code(&r), "TOTP_CODE_REUSED", "{r}");

    // A recovery code works exactly once.
    with_code["totpCode"] = json!(recovery[3].to_uppercase());
    let r = exec(&store, SIGN_IN, json!({"i": with_code})).await;
    assert!(r["data"]["signIn"]["accessToken"].is_string(), "{r}");
    let r = exec(&store, SIGN_IN, json!({"i": with_code})).await;
    assert_eq!(code(&r), "INVALID_TOTP", "{r}");
}

backend_tests!(
    full_session_lifecycle,
    sign_up_rejects_bad_and_duplicate_input,
    totp_second_factor
);

#[tokio::test]
async fn me_is_the_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "me", 2)).await;
    let account = sign_up(&store, "ada", "ada@example.com").await;
    let id: i64 = account["user"]["id"].as_str().unwrap().parse().unwrap();
    let r = exec_as(&store, Viewer::user(id), "{ me { handle } }", json!({})).await;
    assert_eq!(r["data"]["me"]["handle"], "ada");
    let r = exec(&store, "{ me { handle } }", json!({})).await;
    assert!(r["data"]["me"].is_null());
}
