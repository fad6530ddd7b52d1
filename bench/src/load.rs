//! The load generator: closed loop (N workers, each sending one request after another) and
//! open loop (a fixed arrival rate), over keep-alive connections.

use std::time::{Duration, Instant};

/// One request, fixed for a whole run.
#[derive(Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Ask for gzip (`Accept-Encoding: gzip`) and decompress the answer, as phones do.
    pub gzip: bool,
}

impl Request {
    /// Sends it once.
    pub async fn send(&self, client: &reqwest::Client) -> reqwest::Result<reqwest::Response> {
        let mut builder = client.request(self.method.clone(), &self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &self.body {
            builder = builder.body(body.clone());
        }
        builder.send().await
    }

    /// Bytes of the HTTP/1.1 request on the wire: request line, the headers sent (Host and
    /// Content-Length included) and the body.
    pub fn wire_bytes(&self) -> usize {
        let url = reqwest::Url::parse(&self.url).expect("valid url");
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(80)
        );
        let mut bytes = format!("{} {target} HTTP/1.1\r\n", self.method).len();
        bytes += format!("host: {host}\r\n").len();
        for (name, value) in &self.headers {
            bytes += name.len() + 2 + value.len() + 2;
        }
        if let Some(body) = &self.body {
            bytes += format!("content-length: {}\r\n", body.len()).len() + body.len();
        }
        bytes + 2
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub first_failure: Option<String>,
}

impl Outcome {
    /// An error naming `what`, the failures and the first of them, if any request failed.
    pub fn all_ok(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.failed == 0,
            "{what}: {} failures, first: {:?}",
            self.failed,
            self.first_failure
        );
        Ok(())
    }

    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let index =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index]
    }
}

/// Sends `request` once and judges the answer: ok when it is a 200 without GraphQL errors;
/// the body's length (decompressed) when ok.
pub async fn send_checked(client: &reqwest::Client, request: &Request) -> Result<usize, String> {
    match request.send(client).await {
        Ok(response) => {
            let status = response.status();
            match response.text().await {
                Ok(text) if status == 200 && !text.contains("\"errors\"") => Ok(text.len()),
                Ok(text) => Err(format!(
                    "{status}: {}",
                    text.chars().take(300).collect::<String>()
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

impl Outcome {
    fn record(&mut self, latency: Duration, result: Result<usize, String>) {
        match result {
            Ok(_) => {
                self.ok += 1;
                self.latencies.push(latency);
            }
            Err(e) => {
                self.failed += 1;
                self.first_failure.get_or_insert(e);
            }
        }
    }
}

/// Runs `request` from `workers` concurrent loops for `duration` (closed loop: each worker
/// sends its next request when the previous one answered).
pub async fn run(
    client: &reqwest::Client,
    request: &Request,
    workers: usize,
    duration: Duration,
) -> Outcome {
    let request = request.clone();
    run_mix(client, workers, duration, move |_, _| {
        ("request", request.clone())
    })
    .await
    .0
}

/// Closed loop where worker `w`'s `i`-th request is `next(w, i)`, a kind (for the report)
/// and the request; also returns how many answers of each kind were ok.
pub async fn run_mix(
    client: &reqwest::Client,
    workers: usize,
    duration: Duration,
    next: impl Fn(usize, u64) -> (&'static str, Request) + Send + Sync + 'static,
) -> (Outcome, std::collections::BTreeMap<&'static str, u64>) {
    let next = std::sync::Arc::new(next);
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let mut kinds = std::collections::BTreeMap::<&'static str, u64>::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    let (kind, request) = next(worker, i);
                    i += 1;
                    let sent = Instant::now();
                    let result = send_checked(&client, &request).await;
                    if result.is_ok() {
                        *kinds.entry(kind).or_default() += 1;
                    }
                    outcome.record(sent.elapsed(), result.map_err(|e| format!("{kind}: {e}")));
                }
                (outcome, kinds)
            })
        })
        .collect();
    let mut total = Outcome::default();
    let mut kinds = std::collections::BTreeMap::new();
    for handle in handles {
        let (part, part_kinds) = handle.await.expect("worker");
        total.ok += part.ok;
        total.failed += part.failed;
        total.latencies.extend(part.latencies);
        if total.first_failure.is_none() {
            total.first_failure = part.first_failure;
        }
        for (kind, n) in part_kinds {
            *kinds.entry(kind).or_default() += n;
        }
    }
    total.elapsed = started.elapsed();
    (total, kinds)
}

/// Runs `request` open loop: requests start at `rate` per second for `duration` whatever the
/// answers do, and each latency counts from when its request was due, so a server that stalls
/// is charged for every request it delayed (no coordinated omission). A request that would
/// exceed `max_in_flight` is not sent and counts as failed: the server is not keeping up.
pub async fn run_open(
    client: &reqwest::Client,
    request: &Request,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> Outcome {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let total = (duration.as_secs_f64() * rate).ceil() as u32;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let started = Instant::now();
    let mut outcome = Outcome::default();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + interval * i;
        tokio::time::sleep_until(due.into()).await;
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (client, request) = (client.clone(), request.clone());
                tasks.spawn(async move {
                    let result = send_checked(&client, &request).await;
                    drop(slot);
                    (due.elapsed(), result)
                });
            }
            Err(_) => outcome.record(
                Duration::ZERO,
                Err(format!(
                    "over {max_in_flight} requests in flight: not keeping up"
                )),
            ),
        }
        while let Some(Ok((latency, result))) = tasks.try_join_next() {
            outcome.record(latency, result);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((latency, result)) = joined {
            outcome.record(latency, result);
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// The median of a few numbers.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
