//! Steady load for the chaos tests: N clients send requests without pause while the test breaks
//! and repairs a dependency. Every answer is kept with the phase the test was in when the
//! request was sent, so each phase's answers can be judged on their own; tests wait for
//! answers (events), never for time to pass.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

/// One answer the load saw.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Which client sent it.
    pub client: usize,
    /// The test's phase when it was sent (see [`SteadyLoad::phase`]).
    pub phase: usize,
    /// The test's phase when it was answered (a request in flight across a change of phase
    /// has `answered_in > phase`).
    pub answered_in: usize,
    pub status: u16,
    pub body: Value,
    pub took: Duration,
}

impl Answer {
    /// The `extensions.service` of every error (which subgraph failed).
    pub fn error_services(&self) -> Vec<String> {
        service_of_errors(&self.body)
    }

    pub fn has_errors(&self) -> bool {
        !self.body["errors"].is_null()
    }
}

/// Sends client `client`'s `sequence`-th request; answers status and body.
pub type Send = Arc<
    dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = (u16, Value)> + std::marker::Send>>
        + std::marker::Send
        + Sync,
>;

pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    answers: mpsc::UnboundedReceiver<Answer>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    /// Every answer received so far, in arrival order.
    pub seen: Vec<Answer>,
}

/// How long one answer may take before the test calls the load stuck.
const STUCK: Duration = Duration::from_secs(30);

impl SteadyLoad {
    pub fn start(clients: usize, send: Send) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let (tx, answers) = mpsc::unbounded_channel();
        let clients = (0..clients)
            .map(|client| {
                let (stop, phase, tx, send) =
                    (stop.clone(), phase.clone(), tx.clone(), send.clone());
                tokio::spawn(async move {
                    let mut sequence = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let sent_in = phase.load(Ordering::SeqCst);
                        let sent = Instant::now();
                        let (status, body) = send(client, sequence).await;
                        let answer = Answer {
                            client,
                            phase: sent_in,
                            answered_in: phase.load(Ordering::SeqCst),
                            status,
                            body,
                            took: sent.elapsed(),
                        };
                        if tx.send(answer).is_err() {
                            return;
                        }
                        sequence += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            phase,
            answers,
            clients,
            seen: Vec::new(),
        }
    }

    /// Requests sent from now on belong to `phase`.
    pub fn phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// The next answer (panics when none comes: the load is stuck).
    pub async fn next(&mut self) -> &Answer {
        let answer = tokio::time::timeout(STUCK, self.answers.recv())
            .await
            .unwrap_or_else(|_| panic!("no answer for {STUCK:?}: the load is stuck"))
            .expect("every client stopped");
        self.seen.push(answer);
        self.seen.last().expect("just pushed")
    }

    /// Waits for `n` more answers.
    pub async fn take(&mut self, n: usize) {
        for _ in 0..n {
            self.next().await;
        }
    }

    /// Waits for `n` answers to requests sent in `phase`.
    pub async fn take_phase(&mut self, phase: usize, n: usize) {
        let mut found = 0;
        while found < n {
            if self.next().await.phase == phase {
                found += 1;
            }
        }
    }

    /// Waits for an answer that satisfies `matches`, for at most `within`; how long it took.
    pub async fn until(
        &mut self,
        within: Duration,
        what: &str,
        matches: impl Fn(&Answer) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let answer = self.next().await;
            if matches(answer) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{what}: not within {within:?}; last answer: {answer:?}"
            );
        }
    }

    /// Stops the clients and returns every answer.
    pub async fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        for client in std::mem::take(&mut self.clients) {
            client.await.expect("client task");
        }
        while let Ok(answer) = self.answers.try_recv() {
            self.seen.push(answer);
        }
        self.seen
    }
}

/// The `extensions.service` of every error in a GraphQL response.
pub fn service_of_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["service"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The slowest answer to a request sent in `phase`.
pub fn slowest_in(seen: &[Answer], phase: usize) -> Duration {
    seen.iter()
        .filter(|a| a.phase == phase)
        .map(|a| a.took)
        .max()
        .unwrap_or_default()
}

/// A [`Send`] POSTing what `body` gives for each request to `url`, with `headers`.
pub fn posting(
    http: reqwest::Client,
    url: String,
    body: impl Fn(usize, u64) -> (Value, Vec<(String, String)>) + std::marker::Send + Sync + 'static,
) -> Send {
    let body = Arc::new(body);
    Arc::new(move |client, sequence| {
        let (json, headers) = body(client, sequence);
        let mut request = http.post(&url).json(&json);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        Box::pin(async move {
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.json().await.unwrap_or(Value::Null))
                }
                // A refused or reset connection to the router is as bad as a 5xx.
                Err(e) => (599, Value::String(e.to_string())),
            }
        })
    })
}
