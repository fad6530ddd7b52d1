//! A TCP proxy a test can cut: the network path to a real database or cache, so a test can
//! make one shard's primary or replica (or a Redis) unreachable without stopping the shared
//! server every other test uses. `cut` closes the listening socket and resets every proxied
//! connection, which is what clients see when the host behind it crashes; `restore` listens on
//! the same address again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    accepted: Arc<AtomicU64>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let accepted = Arc::new(AtomicU64::new(0));
        let serving = Some(tokio::spawn(serve(listener, target, accepted.clone())));
        Self {
            addr,
            target,
            accepted,
            serving,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` replaced by the proxy's (`postgres://u@127.0.0.1:5432/db`).
    pub fn url_for(&self, url: &str) -> String {
        url.replace(&self.target.to_string(), &self.addr.to_string())
    }

    /// Connections accepted so far (to tell which copy of the data a client read from).
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops listening and resets every open connection: the host is gone.
    pub async fn cut(&mut self) {
        if let Some(task) = self.serving.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same address (the host is back).
    pub async fn restore(&mut self) {
        if self.serving.is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr).await.expect("rebind proxy");
        self.serving = Some(tokio::spawn(serve(
            listener,
            self.target,
            self.accepted.clone(),
        )));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = self.serving.take() {
            task.abort();
        }
    }
}

/// Accepts and forwards until aborted; aborting drops the `JoinSet`, which aborts every
/// forwarding task and so closes both sides of every connection.
async fn serve(listener: TcpListener, target: SocketAddr, accepted: Arc<AtomicU64>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = listener.accept() => {
                let Ok((mut client, _)) = incoming else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
