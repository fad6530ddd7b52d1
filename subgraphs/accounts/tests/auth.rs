//! Sign-up, sign-in, refresh rotation with reuse detection, sign-out and TOTP, on real shards.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_accounts::config::AccountsConfig;
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

/// With settings of the test's own (an exact grace window, a small password budget).
async fn exec_with(
    config: &AccountsConfig,
    store: &Arc<ShardedStore>,
    viewer: Viewer,
    query: &str,
    vars: Value,
) -> Value {
    let schema = switchyard_accounts::schema::schema_with(config.clone());
    switchyard_kit::testing::execute(&schema, prepare, store, viewer, query, vars).await
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
    let r = exec(&store, REFRESH, json!({"t": second})).await;
    let third = r["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let r = exec(&store, REFRESH, json!({"t": first})).await;
    assert_eq!(code(&r), "REFRESH_TOKEN_REUSED", "{r}");
    // ... which revoked the whole family, including the token the thief did not have.
    let r = exec(&store, REFRESH, json!({"t": third})).await;
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

    const ENROLL: &str = "mutation($p: String!) { enrollTotp(password: $p) { secret otpauthUri } }";
    let r = exec(&store, ENROLL, json!({"p": "correct horse battery"})).await;
    assert_eq!(
        code(&r),
        "UNAUTHENTICATED",
        "anonymous callers cannot enrol"
    );
    // Regression (issue 11): enrolling needed only an access token, so a stolen one could
    // lock the owner out. Now it needs the password.
    let r = exec_as(
        &store,
        me.clone(),
        ENROLL,
        json!({"p": "wrong horse battery"}),
    )
    .await;
    assert_eq!(code(&r), "INVALID_CREDENTIALS", "{r}");
    assert!(r["data"].is_null(), "{r}");
    let r = exec_as(
        &store,
        me.clone(),
        ENROLL,
        json!({"p": "correct horse battery"}),
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

    // Turning it off needs the password and a code; a code of a spent step does not do.
    const DISABLE: &str =
        "mutation($p: String!, $c: String!) { disableTotp(password: $p, code: $c) }";
    let r = exec_as(
        &store,
        me.clone(),
        DISABLE,
        json!({"p": "wrong horse battery", "c": recovery[0]}),
    )
    .await;
    assert_eq!(code(&r), "INVALID_CREDENTIALS", "{r}");
    let r = exec_as(
        &store,
        me.clone(),
        DISABLE,
        json!({"p": "correct horse battery", "c": next}),
    )
    .await;
    assert_eq!(code(&r), "TOTP_CODE_REUSED", "{r}");
    let r = exec_as(
        &store,
        me.clone(),
        DISABLE,
        json!({"p": "correct horse battery", "c": recovery[0]}),
    )
    .await;
    assert_eq!(r["data"]["disableTotp"], true, "{r}");
    let r = exec(&store, SIGN_IN, json!({"i": password})).await;
    assert!(
        r["data"]["signIn"]["accessToken"].is_string(),
        "the password alone signs in again: {r}"
    );
    let r = exec_as(
        &store,
        me,
        DISABLE,
        json!({"p": "correct horse battery", "c": recovery[1]}),
    )
    .await;
    assert_eq!(code(&r), "CONFLICT", "{r}");
}

/// Regression (issue 11): a handle and an email of one account had two budgets, and nothing
/// in the subgraph bounded password checks. Now every check of an account is counted before it
/// runs, whatever name it came by and however many run at once; past the free ones the
/// account is locked (no password checked, the right one neither) for a doubling back-off, and
/// a full sign-in resets the count.
async fn password_checks_are_bounded_per_account(config: StoreConfig) {
    let store = store(config).await;
    let account = sign_up(&store, "victim", "victim@example.com").await;
    let user_id: i64 = account["user"]["id"].as_str().unwrap().parse().unwrap();
    let free = AccountsConfig::development().sign_in.free_attempts as usize;
    let names = [
        "victim",
        "VICTIM",
        "victim@example.com",
        " Victim@Example.COM ",
    ];
    let guesses = (0..24).map(|i| {
        let store = &store;
        let login = names[i % names.len()];
        async move {
            let r = exec(
                store,
                SIGN_IN,
                json!({"i": {"login": login, "password": format!("guess number {i}")}}),
            )
            .await;
            code(&r).to_owned()
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|c| *c == "INVALID_CREDENTIALS")
        .count();
    let refused = answers.iter().filter(|c| *c == "RATE_LIMITED").count();
    assert_eq!((checked, refused), (free, 24 - free), "{answers:?}");

    // Locked: even the right password is not checked.
    let right = json!({"i": {"login": "victim", "password": "correct horse battery"}});
    let r = exec(&store, SIGN_IN, right.clone()).await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
    let message = r["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("try again in"), "{message}");

    // The lock ends (the clock is moved by moving the lock into the past): one check, wrong,
    // locks again for twice as long.
    let move_lock_back = || async {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        use switchyard_accounts::entities::credential;
        credential::Entity::update_many()
            .col_expr(
                credential::Column::LockedUntil,
                Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
            )
            .filter(credential::Column::UserId.eq(user_id))
            .exec(store.primary(switchyard_kit::id::shard_of(user_id)))
            .await
            .unwrap();
    };
    move_lock_back().await;
    let wrong = json!({"i": {"login": "victim@example.com", "password": "one more guess"}});
    let r = exec(&store, SIGN_IN, wrong.clone()).await;
    assert_eq!(code(&r), "INVALID_CREDENTIALS", "{r}");
    let r = exec(&store, SIGN_IN, right.clone()).await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
    let secs: u64 = r["errors"][0]["message"]
        .as_str()
        .unwrap()
        .split("try again in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        (55..=60).contains(&secs),
        "the second lock is twice the first: {secs} s"
    );

    // The owner gets in once it ends, and that resets the count.
    move_lock_back().await;
    let r = exec(&store, SIGN_IN, right.clone()).await;
    assert!(r["data"]["signIn"]["accessToken"].is_string(), "{r}");
    for i in 0..free {
        let r = exec(&store, SIGN_IN, wrong.clone()).await;
        assert_eq!(
            code(&r),
            "INVALID_CREDENTIALS",
            "free again after a success, {i}: {r}"
        );
    }

    // The budget covers every password check: confirming the password to enrol counts too.
    let r = exec_as(
        &store,
        Viewer::user(user_id),
        "mutation($p: String!) { enrollTotp(password: $p) { secret } }",
        json!({"p": "guess via enrolment"}),
    )
    .await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
}

/// Regression (issue 11): two concurrent uses of one refresh token could leave the winner's
/// successor valid after the family was revoked. With no grace window, one of two concurrent
/// exchanges wins and the other revokes the family; then the winner's successor is refused.
async fn concurrent_reuse_revokes_every_successor(config: StoreConfig) {
    let store = store(config).await;
    let mut settings = AccountsConfig::development();
    settings.tokens.refresh_grace = std::time::Duration::ZERO;
    for round in 0..8 {
        let account = sign_up(
            &store,
            &format!("racer{round}"),
            &format!("racer{round}@example.com"),
        )
        .await;
        let token = account["refreshToken"].as_str().unwrap().to_owned();
        let exchange = |t: String| {
            let (settings, store) = (&settings, &store);
            async move {
                exec_with(
                    settings,
                    store,
                    Viewer::anonymous(),
                    REFRESH,
                    json!({"t": t}),
                )
                .await
            }
        };
        let (a, b) = tokio::join!(exchange(token.clone()), exchange(token.clone()));
        let mut outcomes = [code(&a).to_owned(), code(&b).to_owned()];
        outcomes.sort();
        assert_eq!(
            outcomes,
            ["<none>", "REFRESH_TOKEN_REUSED"],
            "round {round}: {a} {b}"
        );
        let winner = if a["errors"].is_null() { &a } else { &b };
        let successor = winner["data"]["refreshSession"]["refreshToken"]
            .as_str()
            .unwrap();
        let r = exchange(successor.to_owned()).await;
        assert_eq!(
            code(&r),
            "INVALID_REFRESH_TOKEN",
            "round {round}: the successor died with its family: {r}"
        );
    }
}

/// Regression (issue 11): a phone that lost the response and retried the same refresh was
/// treated as a thief and every device was signed out. Within the grace window a retry (or
/// several at once) gets the same successor; once the successor is used, or after the window,
/// presenting the old token again is reuse.
async fn a_retried_refresh_gets_the_same_successor(config: StoreConfig) {
    let store = store(config).await;
    let account = sign_up(&store, "retrier", "retrier@example.com").await;
    let first = account["refreshToken"].as_str().unwrap().to_owned();
    let (a, b, c) = tokio::join!(
        exec(&store, REFRESH, json!({"t": first})),
        exec(&store, REFRESH, json!({"t": first})),
        exec(&store, REFRESH, json!({"t": first})),
    );
    let successors: Vec<&str> = [&a, &b, &c]
        .iter()
        .map(|r| {
            r["data"]["refreshSession"]["refreshToken"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
        })
        .collect();
    assert!(
        successors.iter().all(|s| *s == successors[0]),
        "{successors:?}"
    );
    assert_ne!(successors[0], first);
    assert_ne!(
        a["data"]["refreshSession"]["accessToken"], b["data"]["refreshSession"]["accessToken"],
        "each answer has its own access token"
    );

    // The successor is used: the old token is now a theft signal.
    let r = exec(&store, REFRESH, json!({"t": successors[0]})).await;
    let third = r["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let r = exec(&store, REFRESH, json!({"t": first})).await;
    assert_eq!(code(&r), "REFRESH_TOKEN_REUSED", "{r}");
    let r = exec(&store, REFRESH, json!({"t": third})).await;
    assert_eq!(
        code(&r),
        "INVALID_REFRESH_TOKEN",
        "the family is revoked: {r}"
    );

    // Past the window (none here), a second use is reuse even if the successor is unused.
    let mut settings = AccountsConfig::development();
    settings.tokens.refresh_grace = std::time::Duration::ZERO;
    let account = sign_up(&store, "retrier2", "retrier2@example.com").await;
    let token = account["refreshToken"].as_str().unwrap().to_owned();
    let r = exec_with(
        &settings,
        &store,
        Viewer::anonymous(),
        REFRESH,
        json!({"t": token}),
    )
    .await;
    let next = r["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = exec_with(
        &settings,
        &store,
        Viewer::anonymous(),
        REFRESH,
        json!({"t": token}),
    )
    .await;
    assert_eq!(code(&r), "REFRESH_TOKEN_REUSED", "{r}");
    let r = exec_with(
        &settings,
        &store,
        Viewer::anonymous(),
        REFRESH,
        json!({"t": next}),
    )
    .await;
    assert_eq!(code(&r), "INVALID_REFRESH_TOKEN", "{r}");
}

backend_tests!(
    full_session_lifecycle,
    sign_up_rejects_bad_and_duplicate_input,
    totp_second_factor,
    password_checks_are_bounded_per_account,
    concurrent_reuse_revokes_every_successor,
    a_retried_refresh_gets_the_same_successor
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

/// What sign-in and refresh cost in statements (one shard; BEGIN and COMMIT are not counted).
/// Sign-in: the handle, the credentials, the budget's count (read, compare-and-set) and reset,
/// the new family and its token, the user for `user { id }`. Refresh: claim, token, family,
/// successor.
#[tokio::test]
async fn statement_counts_of_sign_in_and_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "counts", 1)).await;
    let account = sign_up(&store, "counted", "counted@example.com").await;
    let before = store.statements().total();
    let r = exec(
        &store,
        SIGN_IN,
        json!({"i": {"login": "counted", "password": "correct horse battery"}}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let sign_in = store.statements().total() - before;
    let before = store.statements().total();
    let r = exec(&store, REFRESH, json!({"t": account["refreshToken"]})).await;
    assert!(r["errors"].is_null(), "{r}");
    let refresh = store.statements().total() - before;
    eprintln!("statements: signIn {sign_in}, refreshSession {refresh}");
    assert_eq!((sign_in, refresh), (8, 4));
}
