//! The in-process backend: one arrival time per key, in a sharded map.

use std::collections::HashMap;
use std::sync::Mutex;

use super::gcra::{self, Decision, Quota};

/// Keys are spread over this many locks so concurrent requests rarely wait on each other.
const STRIPES: usize = 64;

pub struct MemoryBackend {
    stripes: Vec<Mutex<HashMap<String, u64>>>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl MemoryBackend {
    pub fn check(&self, key: &str, quota: &Quota, now_ms: u64) -> Decision {
        let stripe = &self.stripes[stripe_of(key)];
        let mut map = stripe.lock().expect("rate limit lock");
        let (decision, tat) = gcra::check(quota, map.get(key).copied(), now_ms);
        if decision.allowed {
            map.insert(key.to_owned(), tat);
        }
        // Forget keys whose bucket is full again, so the map holds only active clients.
        if map.len() > 10_000 {
            map.retain(|_, tat| *tat > now_ms);
        }
        decision
    }
}

fn stripe_of(key: &str) -> usize {
    key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) as usize
        % STRIPES
}
