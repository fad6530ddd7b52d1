//! The accounts subgraph against real shards: SQLite files and the local PostgreSQL.

use std::sync::Arc;

use async_graphql::Request;
use serde_json::{Value, json};
use switchyard_accounts::{Migrator, prepare, schema};
use switchyard_kit::store::ShardConfig;
use switchyard_kit::testing::codes;
use switchyard_kit::{ShardedStore, StoreConfig, Viewer, backend_tests};

async fn store(config: StoreConfig) -> Arc<ShardedStore> {
    switchyard_kit::testing::migrated_store::<Migrator>(config).await
}

/// Runs one request in its own session, as the HTTP server does.
async fn exec(store: &Arc<ShardedStore>, query: &str, vars: Value) -> Value {
    exec_as(store, admin(), query, vars).await
}

async fn exec_as(store: &Arc<ShardedStore>, viewer: Viewer, query: &str, vars: Value) -> Value {
    switchyard_kit::testing::execute(&schema(), prepare, store, viewer, query, vars).await
}

/// Most tests act as an operator (`createUser` needs the `admin` scope); the ownership rules
/// have their own test.
fn admin() -> Viewer {
    Viewer {
        user_id: None,
        scopes: vec!["admin".into()],
    }
}

const CREATE: &str = "mutation($input: CreateUserInput!) { createUser(input: $input) { id handle displayName bio avatarUrl createdAt } }";

async fn create(store: &Arc<ShardedStore>, handle: &str) -> String {
    let r = exec(
        store,
        CREATE,
        json!({"input": {"handle": handle, "displayName": "Test User"}}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["createUser"]["id"].as_str().unwrap().to_owned()
}

async fn create_and_read(config: StoreConfig) {
    let store = store(config).await;
    let r = exec(
        &store,
        CREATE,
        json!({"input": {"handle": "Ada_Lovelace", "displayName": " Ada ", "bio": "First programmer",
                          "avatarUrl": "https://cdn.example.com/ada.png"}}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let user = &r["data"]["createUser"];
    assert_eq!(user["handle"], "ada_lovelace");
    assert_eq!(user["displayName"], "Ada");
    let id = user["id"].as_str().unwrap();

    let r = exec(
        &store,
        "query($id: ID!) { user(id: $id) { handle bio avatarUrl } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        r["data"]["user"],
        json!({"handle": "ada_lovelace", "bio": "First programmer", "avatarUrl": "https://cdn.example.com/ada.png"})
    );

    let r = exec(
        &store,
        r#"{ userByHandle(handle: "ADA_lovelace") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(r["data"]["userByHandle"]["id"], id);
}

async fn handles_are_unique_across_shards(config: StoreConfig) {
    let store = store(config).await;
    create(&store, "grace").await;
    // Case-insensitively, and whatever shard the request lands on.
    let r = exec(
        &store,
        CREATE,
        json!({"input": {"handle": "GRACE", "displayName": "Other"}}),
    )
    .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");

    // A handle change claims the new handle on its own shard; the old one is released.
    let hopper = create(&store, "hopper").await;
    let r = exec(
        &store,
        "mutation($id: ID!) { updateProfile(id: $id, input: {handle: \"grace\"}) { handle } }",
        json!({"id": hopper}),
    )
    .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    let mut renamed = 0;
    for new in ["hopper_2", "amazing_grace", "cobol", "mark_one"] {
        let r = exec(&store, "mutation($id: ID!, $h: String!) { updateProfile(id: $id, input: {handle: $h}) { handle } }", json!({"id": hopper, "h": new})).await;
        assert!(r["errors"].is_null(), "{r}");
        renamed += 1;
    }
    assert_eq!(renamed, 4);
    let r = exec(
        &store,
        r#"{ userByHandle(handle: "mark_one") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(r["data"]["userByHandle"]["id"], hopper.as_str());
    for old in ["hopper", "cobol"] {
        let r = exec(
            &store,
            &format!(r#"{{ userByHandle(handle: "{old}") {{ id }} }}"#),
            json!({}),
        )
        .await;
        assert_eq!(codes(&r), ["NOT_FOUND"], "{old}: {r}");
    }
    // Released handles can be taken again.
    create(&store, "hopper").await;
}

async fn update_profile_fields(config: StoreConfig) {
    let store = store(config).await;
    let id = create(&store, "linus").await;
    let q = "mutation($id: ID!, $input: UpdateProfileInput!) { updateProfile(id: $id, input: $input) { displayName bio avatarUrl } }";
    let r = exec(
        &store,
        q,
        json!({"id": id, "input": {"bio": "kernel", "avatarUrl": "https://x.example/a.png"}}),
    )
    .await;
    assert_eq!(
        r["data"]["updateProfile"],
        json!({"displayName": "Test User", "bio": "kernel", "avatarUrl": "https://x.example/a.png"})
    );
    let r = exec(
        &store,
        q,
        json!({"id": id, "input": {"avatarUrl": null, "displayName": "Linus"}}),
    )
    .await;
    assert_eq!(
        r["data"]["updateProfile"],
        json!({"displayName": "Linus", "bio": "kernel", "avatarUrl": null})
    );
}

async fn bad_input_is_rejected(config: StoreConfig) {
    let store = store(config).await;
    let cases = [
        (json!({"handle": "ab", "displayName": "x"}), "3 to 30"),
        (
            json!({"handle": "has space", "displayName": "x"}),
            "letters, digits",
        ),
        (
            json!({"handle": "okay_handle", "displayName": "   "}),
            "must not be empty",
        ),
        (
            json!({"handle": "okay_handle", "displayName": "x".repeat(65)}),
            "at most 64",
        ),
        (
            json!({"handle": "okay_handle", "displayName": "x", "bio": "b".repeat(281)}),
            "at most 280",
        ),
        (
            json!({"handle": "okay_handle", "displayName": "x", "avatarUrl": "javascript:alert(1)"}),
            "http(s) URL",
        ),
    ];
    for (input, message) in cases {
        let r = exec(&store, CREATE, json!({"input": input})).await;
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{input}: {r}");
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{r}"
        );
    }
    for id in ["abc", "-1", "0", "99999999999999999999", ""] {
        let r = exec(
            &store,
            "query($id: ID!) { user(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{id}: {r}");
    }
    // Well-formed but unknown.
    let id = store.next_id(2).to_string();
    let r = exec(
        &store,
        "query($id: ID!) { user(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(codes(&r), ["NOT_FOUND"], "{r}");
    let r = exec(
        &store,
        r#"{ userByHandle(handle: "nobody_here") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(codes(&r), ["NOT_FOUND"], "{r}");
    // Nothing was written by the rejected requests.
    let r = exec(
        &store,
        r#"{ userByHandle(handle: "okay_handle") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(codes(&r), ["NOT_FOUND"], "{r}");
    // Schema-level mistakes have codes too.
    let r = exec(&store, "{ user(id: 1) { nope } }", json!({})).await;
    assert_eq!(codes(&r), ["GRAPHQL_VALIDATION_FAILED"], "{r}");
    let r = exec(&store, "{ user(id: ", json!({})).await;
    assert_eq!(codes(&r), ["GRAPHQL_PARSE_FAILED"], "{r}");
}

/// 100 `User` representations resolve with at most one statement per shard.
async fn entities_resolve_in_one_batch(config: StoreConfig) {
    let store = store(config).await;
    let inserted = switchyard_accounts::seed::seed_users(&store, 100)
        .await
        .unwrap();
    assert_eq!(inserted, 100);
    let ids = switchyard_accounts::seed::demo_user_ids(100, store.shard_count());
    let reps: Vec<Value> = ids
        .iter()
        .map(|id| json!({"__typename": "User", "id": id.to_string()}))
        .collect();
    let before = store.statements().snapshot();
    let r = exec(
        &store,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id handle } } }",
        json!({"r": reps}),
    )
    .await;
    let after = store.statements().snapshot();
    assert!(r["errors"].is_null(), "{r}");
    let entities = r["data"]["_entities"].as_array().unwrap();
    assert_eq!(entities.len(), 100);
    for (entity, id) in entities.iter().zip(&ids) {
        assert_eq!(entity["id"], id.to_string());
    }
    let per_shard: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        per_shard.iter().all(|n| *n <= 1),
        "statements per shard: {per_shard:?}"
    );
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        4,
        "every shard holds some of 100 users: {per_shard:?}"
    );
    println!("_entities(100 users): statements per shard {per_shard:?}");
}

async fn users_by_ids_keeps_order(config: StoreConfig) {
    let store = store(config).await;
    let a = create(&store, "alpha").await;
    let b = create(&store, "bravo").await;
    let missing = store.next_id(1).to_string();
    let r = exec(
        &store,
        "query($ids: [ID!]!) { users(ids: $ids) { handle } }",
        json!({"ids": [b, missing, a]}),
    )
    .await;
    assert_eq!(
        r["data"]["users"],
        json!([{"handle": "bravo"}, null, {"handle": "alpha"}])
    );
    let too_many: Vec<String> = (0..101).map(|_| a.clone()).collect();
    let r = exec(
        &store,
        "query($ids: [ID!]!) { users(ids: $ids) { handle } }",
        json!({"ids": too_many}),
    )
    .await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"]);
}

async fn seeding_is_idempotent(config: StoreConfig) {
    let store = store(config).await;
    assert_eq!(
        switchyard_accounts::seed::seed_users(&store, 300)
            .await
            .unwrap(),
        300
    );
    assert_eq!(
        switchyard_accounts::seed::seed_users(&store, 300)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        switchyard_accounts::seed::seed_users(&store, 310)
            .await
            .unwrap(),
        10
    );
    let r = exec(
        &store,
        r#"{ userByHandle(handle: "ada_lovelace_0") { displayName } }"#,
        json!({}),
    )
    .await;
    assert_eq!(r["data"]["userByHandle"]["displayName"], "Ada Lovelace");
}

/// Profiles change only by their owner; `createUser` is for operators.
async fn only_owners_edit_profiles(config: StoreConfig) {
    let store = store(config).await;
    let ada: i64 = create(&store, "ada").await.parse().unwrap();
    let bob: i64 = create(&store, "bob").await.parse().unwrap();
    let q = "mutation($id: ID!) { updateProfile(id: $id, input: {bio: \"mine\"}) { bio } }";
    let r = exec_as(
        &store,
        Viewer::anonymous(),
        q,
        json!({"id": ada.to_string()}),
    )
    .await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{r}");
    let r = exec_as(&store, Viewer::user(bob), q, json!({"id": ada.to_string()})).await;
    assert_eq!(codes(&r), ["FORBIDDEN"], "{r}");
    let r = exec_as(&store, Viewer::user(ada), q, json!({"id": ada.to_string()})).await;
    assert_eq!(r["data"]["updateProfile"]["bio"], "mine", "{r}");
    let r = exec_as(
        &store,
        Viewer::user(ada),
        CREATE,
        json!({"input": {"handle": "sneaky", "displayName": "S"}}),
    )
    .await;
    assert_eq!(codes(&r), ["FORBIDDEN"], "{r}");
}

backend_tests!(
    only_owners_edit_profiles,
    create_and_read,
    handles_are_unique_across_shards,
    update_profile_fields,
    bad_input_is_rejected,
    users_by_ids_keeps_order,
    seeding_is_idempotent,
);
backend_tests!(entities_resolve_in_one_batch);

/// Reads go to the replica, except after this request wrote to the shard. The "replica" here
/// is a separate, empty database, so which connection answered is visible in the result.
#[tokio::test]
async fn reads_use_replica_except_after_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::sqlite(dir.path(), "rr", 2);
    for (i, shard) in config.shards.iter_mut().enumerate() {
        shard.replica = Some(format!(
            "sqlite://{}/rr-replica-{i}.db?mode=rwc",
            dir.path().display()
        ));
    }
    // Migrate the replicas too, by treating them as primaries once.
    let replicas = StoreConfig::from_shards(
        config
            .shards
            .iter()
            .map(|s| ShardConfig {
                primary: s.replica.clone().unwrap(),
                replica: None,
            })
            .collect(),
    );
    store(replicas).await;
    let store = store(config).await;

    // One request: create, then read back — read-your-writes sends the read to the primary.
    let query = r#"mutation { createUser(input: {handle: "writer", displayName: "W"}) { id } }"#;
    let session = Arc::new(store.session());
    let response = schema()
        .execute(prepare(Request::new(query).data(admin()), session.clone()))
        .await;
    let id: i64 = response.data.into_json().unwrap()["createUser"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let read = switchyard_accounts::repo::users_by_ids(&session, &[id])
        .await
        .unwrap();
    assert!(read.contains_key(&id), "same session reads the primary");

    // A new request reads the replica, which (not being a real replica) never saw the row.
    let fresh = store.session();
    let read = switchyard_accounts::repo::users_by_ids(&fresh, &[id])
        .await
        .unwrap();
    assert!(read.is_empty(), "a fresh session reads the replica");
}

/// `_service.sdl` is exactly the committed schema/accounts.graphql.
#[tokio::test]
async fn service_sdl_matches_committed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "sdl", 1)).await;
    let r = exec(&store, "{ _service { sdl } }", json!({})).await;
    let committed = std::fs::read_to_string(
        switchyard_kit::testing::repo_root().join("schema/accounts.graphql"),
    )
    .unwrap();
    assert_eq!(r["data"]["_service"]["sdl"].as_str().unwrap(), committed);
}

/// Every type's and field's `cache_control(..)` agrees with its `@cacheControl` in the schema.
#[tokio::test]
async fn cache_hints_match_the_schema() {
    let builder = switchyard_accounts::schema::schema_builder(
        switchyard_accounts::config::AccountsConfig::development(),
    );
    let problems = switchyard_kit::cache::check_hints(builder).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let sdl = switchyard_accounts::sdl();
    assert!(
        sdl.contains("@cacheControl(maxAge: 60, scope: PUBLIC)"),
        "{sdl}"
    );
    assert!(
        sdl.contains("@cacheControl(maxAge: 30, scope: PRIVATE)"),
        "{sdl}"
    );
}

/// Profiles are public for 60 s and tagged with the user; `me` is private; a profile change
/// names the user it changed.
#[tokio::test]
async fn responses_carry_cache_hints_and_tags() {
    use switchyard_kit::testing::execute_with_cache_headers;
    let dir = tempfile::tempdir().unwrap();
    let store = store(StoreConfig::sqlite(dir.path(), "hints", 4)).await;
    let id = create(&store, "hinted").await;
    let run = |viewer: Viewer, query: &'static str, vars: Value| {
        let store = store.clone();
        async move { execute_with_cache_headers(&schema(), prepare, &store, viewer, query, vars).await }
    };
    let (r, headers) = run(
        Viewer::anonymous(),
        "query($h: String!) { userByHandle(handle: $h) { displayName } }",
        json!({"h": "hinted"}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(headers["cache-control"], "max-age=60");
    assert_eq!(headers["x-switchyard-cache-tags"], format!("User:{id}"));

    let user = Viewer::user(id.parse().unwrap());
    let (r, headers) = run(user.clone(), "{ me { handle } }", json!({})).await;
    assert_eq!(r["data"]["me"]["handle"], "hinted");
    assert_eq!(headers["cache-control"], "max-age=30, private");

    let (r, headers) = run(
        user,
        "mutation($id: ID!) { updateProfile(id: $id, input: {bio: \"hi\"}) { bio } }",
        json!({"id": id}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        headers["x-switchyard-cache-invalidate"],
        format!("User:{id}")
    );
}
