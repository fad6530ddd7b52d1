//! Per-request batch loading: every key a request asks for "at the same time" becomes one call
//! of the loader (one statement per shard), and every key is loaded at most once per request.
//!
//! async-graphql's own `DataLoader` batches by wall-clock time: the first key starts a timer on
//! another worker thread and the batch fires when it expires. Sibling fields register their keys
//! within one poll of their parent, normally microseconds apart, but when the OS preempts the
//! request's thread mid-pass (a busy 2-core machine does), the timer fires first and one batch
//! becomes two or three. This loader batches by *polls* instead: all sibling resolvers run in
//! the request's one task, so the first key's "leader" yields back to the task a few times,
//! letting every sibling that is ready register its key, and only then queries. No timer, no
//! other thread, and no added latency beyond a few scheduler passes.
//!
//! A batch is one statement per shard. When one shard cannot be reached, the keys on the
//! others still load: the batch is run again without the down shard's keys ([`ShardOf`]
//! says where each key lives), and only those keys answer with the error. One shard's outage
//! costs its own fields, not every field batched with them.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use async_graphql::dataloader::Loader;
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::ApiError;

/// Scheduler passes the leader waits before querying: enough for siblings that reach the
/// loader one or two awaits later than the leader (e.g. after their own parent's batch).
const GATHER_PASSES: usize = 4;

/// `None` while the batch is gathering or loading; then the keys that failed, with their
/// error (every other key of the batch is in the cache, found or known missing).
type BatchResult<K> = Option<Arc<HashMap<K, ApiError>>>;

struct Batch<K> {
    keys: Vec<K>,
    done: watch::Sender<BatchResult<K>>,
}

struct State<K, V> {
    /// What this request already loaded; `None` = known to be missing.
    cache: HashMap<K, Option<V>>,
    /// The batch still gathering keys, if any.
    open: Option<Batch<K>>,
    /// Keys in `open` or in flight, so a key is never queried twice.
    queued: HashMap<K, watch::Receiver<BatchResult<K>>>,
}

/// Where a loader's key lives: the shard its statement runs on.
pub trait ShardOf<K> {
    fn shard_of(&self, key: &K) -> usize;
}

/// A loader for one request. Create one per request and put it in the request data.
pub struct RequestLoader<L: Loader<K>, K: Send + Sync + Hash + Eq + Clone + 'static> {
    loader: Arc<L>,
    state: Mutex<State<K, L::Value>>,
}

/// Builds a [`RequestLoader`] (kept as a function so subgraphs read `request_loader(X(session))`).
pub fn request_loader<K, L>(loader: L) -> RequestLoader<L, K>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K, Error = ApiError> + ShardOf<K>,
{
    RequestLoader {
        loader: Arc::new(loader),
        state: Mutex::new(State {
            cache: HashMap::new(),
            open: None,
            queued: HashMap::new(),
        }),
    }
}

impl<K, L> RequestLoader<L, K>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K, Error = ApiError> + ShardOf<K>,
{
    /// One value; `None` when the loader found nothing for the key.
    pub async fn load_one(&self, key: K) -> Result<Option<L::Value>, ApiError> {
        let mut found = self.load_many([key.clone()]).await?;
        Ok(found.remove(&key))
    }

    /// Several values, batched with every other key requested in the same pass.
    pub async fn load_many(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<K, L::Value>, ApiError> {
        let keys: Vec<K> = keys.into_iter().collect();
        let mut waits = Vec::new();
        let mut lead = false;
        {
            let mut state = self.state.lock().expect("loader lock");
            let mut seen = HashSet::new();
            for key in &keys {
                if state.cache.contains_key(key) || !seen.insert(key.clone()) {
                    continue;
                }
                if let Some(rx) = state.queued.get(key) {
                    waits.push(rx.clone());
                    continue;
                }
                if state.open.is_none() {
                    let (done, _) = watch::channel(None);
                    state.open = Some(Batch {
                        keys: Vec::new(),
                        done,
                    });
                    lead = true;
                }
                let batch = state.open.as_mut().expect("open batch");
                batch.keys.push(key.clone());
                let rx = batch.done.subscribe();
                state.queued.insert(key.clone(), rx.clone());
                waits.push(rx);
            }
        }
        if lead {
            for _ in 0..GATHER_PASSES {
                tokio::task::yield_now().await;
            }
            self.dispatch().await;
        }
        for mut rx in waits {
            let outcome = rx.wait_for(Option::is_some).await.map_err(|_| {
                ApiError::Store(Arc::new(crate::StoreError::Db(sea_orm::DbErr::Custom(
                    "a batch was abandoned before it loaded".into(),
                ))))
            })?;
            if let Some(failed) = outcome.as_ref()
                && let Some(err) = keys.iter().find_map(|k| failed.get(k))
            {
                return Err(err.clone());
            }
        }
        let state = self.state.lock().expect("loader lock");
        Ok(keys
            .into_iter()
            .filter_map(|k| state.cache.get(&k).cloned().flatten().map(|v| (k, v)))
            .collect())
    }

    /// Closes the open batch and loads it. The query runs in its own task, so it completes (and
    /// wakes every waiter) even if the leader's future is dropped mid-way.
    async fn dispatch(&self) {
        let Some(batch) = self.state.lock().expect("loader lock").open.take() else {
            return;
        };
        let loader = self.loader.clone();
        let keys = batch.keys.clone();
        let (subgraph, name) = loader_names::<L>();
        crate::metrics::metrics()
            .loader_batch_keys
            .with_label_values(&[subgraph, name])
            .observe(keys.len() as f64);
        let span = tracing::info_span!(
            "loader.batch",
            subgraph,
            loader = name,
            keys = keys.len(),
            shards = tracing::field::Empty,
        );
        let result = tokio::spawn(load_around_down_shards(loader, keys).instrument(span))
            .await
            .unwrap_or_else(|join| {
                let err = ApiError::Store(Arc::new(crate::StoreError::Db(sea_orm::DbErr::Custom(
                    format!("loader task failed: {join}"),
                ))));
                (
                    HashMap::new(),
                    batch
                        .keys
                        .iter()
                        .map(|k| (k.clone(), err.clone()))
                        .collect(),
                )
            });
        let (mut values, failed) = result;
        {
            let mut state = self.state.lock().expect("loader lock");
            for key in &batch.keys {
                state.queued.remove(key);
                // A failed key is not cached: a later request for it queries again.
                if !failed.contains_key(key) {
                    let value = values.remove(key);
                    state.cache.insert(key.clone(), value);
                }
            }
        }
        batch.done.send_replace(Some(Arc::new(failed)));
    }

    /// Records a value this request just wrote, so later fields see it without a query.
    pub fn prime(&self, key: K, value: L::Value) {
        self.state
            .lock()
            .expect("loader lock")
            .cache
            .insert(key, Some(value));
    }

    /// Forgets a key (after deleting its row).
    pub fn forget(&self, key: &K) {
        self.state.lock().expect("loader lock").cache.remove(key);
    }
}

/// Loads `keys`; when the load fails because one shard is unreachable, loads the keys on the
/// other shards again without it (as often as shards fail). Returns what loaded and the keys
/// that failed, each with its error.
async fn load_around_down_shards<K, L>(
    loader: Arc<L>,
    mut keys: Vec<K>,
) -> (HashMap<K, L::Value>, HashMap<K, ApiError>)
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K, Error = ApiError> + ShardOf<K>,
{
    let mut failed = HashMap::new();
    loop {
        match loader.load(&keys).await {
            Ok(values) => return (values, failed),
            Err(err) => {
                let shard = err.unreachable_shard();
                let (down, up): (Vec<K>, Vec<K>) = keys
                    .into_iter()
                    .partition(|k| Some(loader.shard_of(k)) == shard);
                // Not a shard outage, or none of these keys on that shard: every key failed.
                let (down, up) = if down.is_empty() {
                    (up, Vec::new())
                } else {
                    (down, up)
                };
                failed.extend(down.into_iter().map(|k| (k, err.clone())));
                if up.is_empty() {
                    return (HashMap::new(), failed);
                }
                keys = up;
            }
        }
    }
}

/// The subgraph and loader a loader type belongs to, from its path
/// (`switchyard_posts::loaders::PostLoader` is `posts`, `PostLoader`): static names, so a
/// bounded label set.
fn loader_names<L>() -> (&'static str, &'static str) {
    let path = std::any::type_name::<L>();
    let path = path.split('<').next().unwrap_or(path);
    let crate_name = path.split("::").next().unwrap_or(path);
    let subgraph = crate_name.strip_prefix("switchyard_").unwrap_or(crate_name);
    let name = path.rsplit("::").next().unwrap_or(path);
    (subgraph, name)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn loader_names_come_from_the_type_path() {
        assert_eq!(loader_names::<Squares>(), ("kit", "Squares"));
    }

    struct Squares {
        calls: Arc<AtomicUsize>,
        batches: Batches,
    }

    impl Loader<u32> for Squares {
        type Value = u64;
        type Error = ApiError;

        async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u64>, ApiError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.batches.lock().unwrap().push(keys.to_vec());
            if keys.contains(&13) {
                return Err(ApiError::bad_input("unlucky"));
            }
            // Keys from 1000 up live on two shards (by parity), and shard 1 is down.
            if keys.iter().any(|k| *k >= 1000 && k % 2 == 1) {
                return Err(crate::StoreError::Query {
                    shard: 1,
                    source: sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
                }
                .into());
            }
            Ok(keys
                .iter()
                .filter(|k| **k % 100 != 7)
                .map(|k| (*k, u64::from(*k) * u64::from(*k)))
                .collect())
        }
    }

    impl ShardOf<u32> for Squares {
        fn shard_of(&self, key: &u32) -> usize {
            (*key % 2) as usize
        }
    }

    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    fn squares() -> (RequestLoader<Squares, u32>, Arc<AtomicUsize>, Batches) {
        let calls = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(Mutex::new(Vec::new()));
        (
            request_loader(Squares {
                calls: calls.clone(),
                batches: batches.clone(),
            }),
            calls,
            batches,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn siblings_share_one_batch_even_when_the_thread_stalls() {
        let (loader, calls, batches) = squares();
        // 200 sibling resolvers polled by one join, one of them stalling the thread for 20 ms
        // mid-pass (what preemption looks like): still one batch.
        let results = futures::future::join_all((14..214u32).map(|k| {
            let loader = &loader;
            async move {
                if k == 100 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                loader.load_one(k).await
            }
        }))
        .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{:?}",
            batches.lock().unwrap().len()
        );
        assert_eq!(results[9].as_ref().unwrap(), &Some(23 * 23));
        assert_eq!(results[107 - 14].as_ref().unwrap(), &None);

        // Cached for the rest of the request: no new call for known keys, missing ones included.
        assert_eq!(loader.load_one(23).await.unwrap(), Some(23 * 23));
        assert_eq!(loader.load_one(107).await.unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn duplicates_and_errors() {
        let (loader, calls, batches) = squares();
        let (a, b) = tokio::join!(loader.load_many([1, 2, 2, 3]), loader.load_many([3, 4]));
        assert_eq!(a.unwrap().len(), 3);
        assert_eq!(b.unwrap().len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(batches.lock().unwrap()[0], vec![1, 2, 3, 4]);

        let (x, y) = tokio::join!(loader.load_one(13), loader.load_one(14));
        assert!(matches!(x, Err(ApiError::BadInput(_))));
        assert!(y.is_err(), "a failed batch fails every key in it");
        // A failed key is not cached as missing: a later request for it queries again.
        assert!(loader.load_one(14).await.is_ok());
    }

    #[tokio::test]
    async fn primed_values_skip_the_query() {
        let (loader, calls, _) = squares();
        loader.prime(5, 999);
        assert_eq!(loader.load_one(5).await.unwrap(), Some(999));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        loader.forget(&5);
        assert_eq!(loader.load_one(5).await.unwrap(), Some(25));
    }

    /// Shard 1 down: its key answers STORE_UNAVAILABLE, the key batched with it on shard 0
    /// still loads (the batch runs again without shard 1's keys), and nothing is cached for
    /// the failed key.
    #[tokio::test]
    async fn a_down_shard_fails_only_its_keys() {
        let (loader, calls, batches) = squares();
        let (up, down) = tokio::join!(loader.load_one(1000), loader.load_one(1001));
        assert_eq!(up.unwrap(), Some(1_000_000));
        let err = down.unwrap_err();
        assert_eq!(err.code(), "STORE_UNAVAILABLE");
        assert_eq!(err.unreachable_shard(), Some(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(batches.lock().unwrap()[1], vec![1000]);
        assert!(
            loader.load_one(1001).await.is_err(),
            "not cached as missing"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
