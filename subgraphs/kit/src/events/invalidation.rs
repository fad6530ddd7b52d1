//! Telling the routers' response caches what changed when the change did not pass through a
//! router (a worker's projection, a back-office job): the router's admin endpoint,
//! `POST {"tags": [...]}` with its bearer token, which reaches every replica.

use std::time::Duration;

use switchyard_wire::deployment::Secret;

#[derive(Clone)]
pub struct CacheInvalidator {
    url: String,
    token: Secret,
    http: reqwest::Client,
}

impl std::fmt::Debug for CacheInvalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheInvalidator")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Most tags per call (the router's endpoint takes 1000).
const MAX_TAGS_PER_CALL: usize = 500;

impl CacheInvalidator {
    pub fn new(url: impl Into<String>, token: Secret) -> Result<Self, String> {
        let url = url.into();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("cache invalidation URL {url:?} is not http(s)"));
        }
        Ok(Self {
            url,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// Drops every cached response tagged with one of `tags`; an error is retried by the
    /// caller (invalidating twice is harmless).
    pub async fn invalidate(&self, tags: &[String]) -> Result<(), String> {
        for chunk in tags.chunks(MAX_TAGS_PER_CALL) {
            let response = self
                .http
                .post(&self.url)
                .bearer_auth(self.token.expose())
                .json(&serde_json::json!({ "tags": chunk }))
                .send()
                .await
                .map_err(|e| format!("cache invalidation: {e}"))?;
            if !response.status().is_success() {
                return Err(format!(
                    "cache invalidation: the router answered {}",
                    response.status()
                ));
            }
        }
        Ok(())
    }
}

/// Which cache tags an event makes stale (each subgraph knows its own tags).
pub type TagsOf = fn(&super::Event) -> Vec<String>;

/// The cache worker (`switchyard worker cache`): every event of `domains` becomes the
/// invalidation of the tags `tags_of` names, so a change made anywhere (a back-office job, a
/// migration script, another worker) drops the cached responses that showed the old data. A
/// change that did pass through a router was invalidated there already; doing it again is
/// cheap and harmless.
pub struct CacheWorker {
    invalidator: CacheInvalidator,
    domains: &'static [&'static str],
    tags_of: TagsOf,
}

impl CacheWorker {
    pub fn new(
        invalidator: CacheInvalidator,
        domains: &'static [&'static str],
        tags_of: TagsOf,
    ) -> Self {
        Self {
            invalidator,
            domains,
            tags_of,
        }
    }
}

/// The consumer group of the cache worker.
pub const CACHE_GROUP: &str = "cache";

#[async_trait::async_trait]
impl super::worker::Handler for CacheWorker {
    fn group(&self) -> &'static str {
        CACHE_GROUP
    }

    fn domains(&self) -> &'static [&'static str] {
        self.domains
    }

    async fn handle(&self, event: &super::Event) -> Result<(), super::worker::HandlerError> {
        let tags = (self.tags_of)(event);
        if tags.is_empty() {
            return Ok(());
        }
        Ok(self.invalidator.invalidate(&tags).await?)
    }
}
