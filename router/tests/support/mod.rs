//! A real router in the test's process, on a port of its own, with the repository's
//! supergraph: what the router's integration tests share.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard_router::{RouterHttpServer, RouterOptions};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A router started from the YAML `config` makes for its port; it holds its config file.
pub struct Router {
    pub server: RouterHttpServer,
    pub port: u16,
    /// Files the test writes next to the config (kept until the router is dropped).
    pub _dir: tempfile::TempDir,
}

/// Starts a router whose YAML is `config(port, dir)`, and returns once it listens.
pub async fn start(config: impl FnOnce(u16, &Path) -> String) -> Router {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.path().join("router.yaml");
    std::fs::write(&path, config(port, dir.path())).unwrap();
    let server = switchyard_router::start(&RouterOptions {
        config: path,
        supergraph: repo().join("schema/supergraph.graphql"),
        hot_reload: false,
    })
    .unwrap();
    let started = Instant::now();
    while server.listen_address().await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "router did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Router {
        server,
        port,
        _dir: dir,
    }
}
