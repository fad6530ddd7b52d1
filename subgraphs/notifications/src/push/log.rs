//! The development provider: logs what would be sent and counts it, reaching no one.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Outcome, PushMessage, PushProvider, token_fingerprint};

pub struct LogProvider {
    /// Which real provider it stands in for.
    stands_in_for: &'static str,
    sent: AtomicU64,
}

impl LogProvider {
    pub fn new(stands_in_for: &'static str) -> Self {
        Self {
            stands_in_for,
            sent: AtomicU64::new(0),
        }
    }

    /// Pushes "sent" so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl PushProvider for LogProvider {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, token: &str, message: &PushMessage) -> Outcome {
        self.sent.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            instead_of = self.stands_in_for,
            device = %token_fingerprint(token),
            loc_key = %message.loc_key,
            collapse_key = %message.collapse_key,
            badge = message.badge,
            "push (log provider: not sent)"
        );
        Outcome::Delivered
    }
}
