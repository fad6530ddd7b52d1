//! Single flight: concurrent misses for one key make one subgraph round. The first request
//! (the leader) runs; the others wait for its result and reuse it when it was cacheable. If
//! it was not (errors, no hints), or the leader was cancelled, each waiter runs on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::entry::Entry;

/// What a leader hands its followers: the cached entry, or `None` when there is none to share.
type Outcome = Option<Arc<Entry>>;

#[derive(Default)]
pub struct Flights {
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
}

pub enum Role {
    Leader(Leader),
    Follower(watch::Receiver<Option<Outcome>>),
}

/// Held by the request that runs; finishing or dropping it releases the followers.
pub struct Leader {
    flights: Arc<Flights>,
    key: String,
    sender: watch::Sender<Option<Outcome>>,
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = inflight.get(key) {
            return Role::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        inflight.insert(key.to_owned(), receiver);
        Role::Leader(Leader {
            flights: self.clone(),
            key: key.to_owned(),
            sender,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Leader {
    pub fn finish(self, outcome: Outcome) {
        let _ = self.sender.send(Some(outcome));
        // Drop removes the flight.
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.flights
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        // A leader dropped without finishing (cancelled) releases followers with nothing.
        self.sender.send_if_modified(|value| {
            if value.is_none() {
                *value = Some(None);
                true
            } else {
                false
            }
        });
    }
}

/// Waits for the leader: its entry, or `None` when the follower must run itself.
pub async fn wait(mut receiver: watch::Receiver<Option<Outcome>>) -> Outcome {
    match receiver.wait_for(|v| v.is_some()).await {
        Ok(value) => value.clone().flatten(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::Meta;
    use super::*;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            meta: Meta {
                stored_at_ms: 0,
                max_age: 1,
                private: false,
                tags: vec![],
                etag: String::new(),
            },
            body: bytes::Bytes::from_static(b"{}"),
        })
    }

    #[tokio::test]
    async fn followers_get_the_leaders_entry() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(leader) = flights.join("k") else {
            panic!("first is the leader")
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| match flights.join("k") {
                Role::Follower(rx) => tokio::spawn(wait(rx)),
                Role::Leader(_) => panic!("only one leader"),
            })
            .collect();
        leader.finish(Some(entry()));
        for waiter in waiters {
            assert!(waiter.await.unwrap().is_some());
        }
        assert_eq!(flights.in_flight(), 0);
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_followers_empty_handed() {
        let flights = Arc::new(Flights::default());
        let leader = flights.join("k");
        let Role::Follower(rx) = flights.join("k") else {
            panic!("second follows")
        };
        drop(leader);
        assert!(wait(rx).await.is_none());
        assert_eq!(flights.in_flight(), 0);
    }
}
