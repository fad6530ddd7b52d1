//! `switchyard seed`: the demo data set, on whatever shards are configured.

use std::time::Instant;

use anyhow::Context;
use switchyard_kit::ShardedStore;

use crate::StoreArgs;

/// `switchyard seed`: connects and migrates both stores, then loads the data set.
pub async fn run(store: &StoreArgs, users: usize, posts: usize) -> anyhow::Result<()> {
    let accounts = store.connect(&switchyard_accounts::SUBGRAPH).await?;
    (switchyard_accounts::SUBGRAPH.migrate)(&accounts)
        .await
        .context("accounts")?;
    let posts_store = store.connect(&switchyard_posts::SUBGRAPH).await?;
    (switchyard_posts::SUBGRAPH.migrate)(&posts_store)
        .await
        .context("posts")?;
    load(&accounts, &posts_store, users, posts).await
}

/// Loads `users` demo users and `posts` demo posts into migrated stores (idempotent).
async fn load(
    accounts: &ShardedStore,
    posts_store: &ShardedStore,
    users: usize,
    posts: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let new_users = switchyard_accounts::seed::seed_users(accounts, users)
        .await
        .context("seeding accounts")?;
    let authors = switchyard_accounts::seed::demo_user_ids(users, accounts.shard_count());
    let new_posts = switchyard_posts::seed::seed_posts(posts_store, &authors, posts)
        .await
        .context("seeding posts")?;
    println!(
        "seeded {new_users} new user(s) of {users} and {new_posts} new post(s) of {posts} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Seeds the demo data set on first start (no users at all), on stores `dev` already
/// connected and migrated.
pub async fn seed_if_empty(accounts: &ShardedStore, posts: &ShardedStore) -> anyhow::Result<()> {
    if switchyard_accounts::repo::has_users(accounts)
        .await
        .context("accounts")?
    {
        return Ok(());
    }
    println!("first start: loading demo data");
    load(accounts, posts, 10_000, 100_000).await
}
