//! Connection abuse against a real router (in this process): 2,000 idle connections, 100
//! slowloris clients trickling their headers, and 20 bodies trickled after complete headers,
//! all held open while normal requests keep being answered. Slowloris connections are cut by
//! apollo-router's `server.http.header_read_timeout`, trickled bodies get 408 from the
//! pipeline's `read.body_timeout` (both set to 1 s here so the test is quick).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

const IDLE: usize = 2_000;
const SLOWLORIS: usize = 100;
const SLOW_BODIES: usize = 20;
/// Far above the 1 s bounds configured below; a connection still open after this was not cut.
const CUT_WITHIN: Duration = Duration::from_secs(8);

/// Reads until the server closes the connection (or `CUT_WITHIN` passes); what it sent.
async fn until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + CUT_WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_connections_are_cut_while_normal_traffic_is_served() {
    let mut router = support::start(|port, _| {
        format!(
            "supergraph:\n  listen: 127.0.0.1:{port}\n  path: /graphql\nhealth_check:\n  enabled: false\n\
             server:\n  http:\n    header_read_timeout: 1s\n\
             plugins:\n  switchyard.pipeline:\n    read:\n      body_timeout: 1s\n"
        )
    })
    .await;
    let port = router.port;
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}/graphql");
    let http = reqwest::Client::new();
    let normal = || {
        http.post(&url)
            .header("content-type", "application/json")
            .body(r#"{"query":"{ __typename }"}"#)
            .send()
    };
    let answered = normal().await.unwrap();
    assert_eq!(answered.status(), 200);

    // The abuse, all at once.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut slowloris = Vec::new();
    for _ in 0..SLOWLORIS {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /graphql HTTP/1.1\r\nhost: localhost\r\n")
            .await
            .unwrap();
        slowloris.push(tokio::spawn(async move {
            // One more header line every 200 ms, never the blank line that ends them.
            let trickle = async {
                for i in 0.. {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if stream
                        .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            };
            let started = Instant::now();
            let _ = tokio::time::timeout(CUT_WITHIN, trickle).await;
            // The server has cut it when writes fail (or reads end).
            let closed = until_closed(&mut stream).await.is_some();
            (closed, started.elapsed())
        }));
    }
    let mut slow_bodies = Vec::new();
    for _ in 0..SLOW_BODIES {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(
                b"POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"query\":",
            )
            .await
            .unwrap();
        slow_bodies.push(tokio::spawn(async move {
            let started = Instant::now();
            (until_closed(&mut stream).await, started.elapsed())
        }));
    }

    // Normal traffic while every abusive connection is open.
    for _ in 0..50 {
        let response = normal().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["data"]["__typename"], "Query", "{body}");
    }

    for handle in slow_bodies {
        let (received, elapsed) = handle.await.unwrap();
        let received = received
            .unwrap_or_else(|| panic!("a trickled body held its connection for {elapsed:?}"));
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    }
    for handle in slowloris {
        let (closed, elapsed) = handle.await.unwrap();
        assert!(closed, "a slowloris connection stayed open for {elapsed:?}");
        assert!(elapsed < CUT_WITHIN + Duration::from_secs(1), "{elapsed:?}");
    }
    // Idle connections that never send a byte are not cut by apollo-router 2.17 (hyper starts
    // the header deadline at the first byte); they cost a file descriptor each and nothing
    // else, as the normal traffic above shows. docs/security.md says what bounds them.
    assert_eq!(idle.len(), IDLE);

    let after = normal().await.unwrap();
    assert_eq!(after.status(), 200);
    router.server.shutdown().await.unwrap();
}
