//! Test support: real shard databases on the local PostgreSQL, created and dropped per test.

use sea_orm::{ConnectionTrait, Database};

use crate::store::StoreConfig;

/// The server the tests use (trust auth). Override with `SWITCHYARD_TEST_PG`.
pub fn pg_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `n` fresh databases on the local PostgreSQL; [`PgShards::drop_all`] removes them.
pub struct PgShards {
    names: Vec<String>,
    pub config: StoreConfig,
}

impl PgShards {
    pub async fn create(tag: &str, n: usize) -> Self {
        let admin = Database::connect(pg_admin_url())
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 is needed for this test (see .ci/run)");
        let run: u32 = rand::random();
        let names: Vec<String> = (0..n)
            .map(|i| format!("sy_test_{tag}_{}_{run:08x}_{i}", std::process::id()))
            .collect();
        for name in &names {
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
        }
        let base = pg_admin_url();
        let base = base
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(base);
        let config = StoreConfig::from_urls(names.iter().map(|n| format!("{base}/{n}")));
        Self { names, config }
    }

    /// Drops the databases (call at the end of the test, after closing the store).
    pub async fn drop_all(self) {
        let admin = Database::connect(pg_admin_url())
            .await
            .expect("connect to PostgreSQL");
        for name in &self.names {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop test database");
        }
    }
}
