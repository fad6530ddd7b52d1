//! `switchyard seed`: the demo data set, on whatever shards are configured.

use std::time::Instant;

use anyhow::Context;

use crate::StoreArgs;

pub async fn run(store: &StoreArgs, users: usize, posts: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let accounts = store.connect(&switchyard_accounts::SUBGRAPH).await?;
    accounts
        .migrate::<switchyard_accounts::Migrator>()
        .await
        .context("accounts")?;
    let new_users = switchyard_accounts::seed::seed_users(&accounts, users)
        .await
        .context("seeding accounts")?;

    let posts_store = store.connect(&switchyard_posts::SUBGRAPH).await?;
    posts_store
        .migrate::<switchyard_posts::Migrator>()
        .await
        .context("posts")?;
    let authors = switchyard_accounts::seed::demo_user_ids(users, accounts.shard_count());
    let new_posts = switchyard_posts::seed::seed_posts(&posts_store, &authors, posts)
        .await
        .context("seeding posts")?;
    println!(
        "seeded {new_users} new user(s) of {users} and {new_posts} new post(s) of {posts} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Seeds the demo data set on first start: when the accounts store has no users at all.
pub async fn seed_if_empty(store: &StoreArgs) -> anyhow::Result<()> {
    let accounts = store.connect(&switchyard_accounts::SUBGRAPH).await?;
    if switchyard_accounts::repo::has_users(&accounts)
        .await
        .context("accounts")?
    {
        return Ok(());
    }
    println!("first start: loading demo data");
    run(store, 10_000, 100_000).await
}
