//! The generic cell rate algorithm (GCRA), the algorithm `governor` implements: one timestamp
//! per key (the "theoretical arrival time"), no counters to reset, smooth refill. The same
//! arithmetic runs in-process and inside Redis (see `redis_backend.rs`), so both backends give
//! the same answers.

/// A quota: `limit` requests per `period_ms`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub period_ms: u64,
    pub burst: u64,
}

impl Quota {
    /// Milliseconds between requests at the sustained rate.
    pub fn emission_ms(&self) -> u64 {
        (self.period_ms / self.limit.max(1)).max(1)
    }

    /// How far ahead of now the arrival time may run.
    pub fn tolerance_ms(&self) -> u64 {
        self.emission_ms() * self.burst.max(1).saturating_sub(1)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that would still be allowed right now.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
    /// When refused: milliseconds until a retry can succeed.
    pub retry_after_ms: u64,
}

/// Applies one request at `now_ms` to the stored arrival time `tat_ms` (None for a new key);
/// returns the decision and the arrival time to store.
pub fn check(quota: &Quota, tat_ms: Option<u64>, now_ms: u64) -> (Decision, u64) {
    let emission = quota.emission_ms();
    let tolerance = quota.tolerance_ms();
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let allow_at = tat.saturating_sub(tolerance);
    if now_ms < allow_at {
        let decision = Decision {
            allowed: false,
            remaining: 0,
            reset_ms: tat - now_ms,
            retry_after_ms: allow_at - now_ms,
        };
        return (decision, tat);
    }
    let new_tat = tat + emission;
    let used = new_tat - now_ms;
    let remaining = (tolerance + emission).saturating_sub(used) / emission;
    (
        Decision {
            allowed: true,
            remaining,
            reset_ms: used,
            retry_after_ms: 0,
        },
        new_tat,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_sustained_rate() {
        // 5 per minute, burst 5: five at once, then one every 12 s.
        let quota = Quota {
            limit: 5,
            period_ms: 60_000,
            burst: 5,
        };
        let mut tat = None;
        for i in 0..5 {
            let (d, t) = check(&quota, tat, 1_000);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = Some(t);
        }
        let (d, t) = check(&quota, tat, 1_000);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 12_000);
        tat = Some(t);
        assert!(!check(&quota, tat, 12_999).0.allowed);
        let (d, t) = check(&quota, tat, 13_000);
        assert!(d.allowed, "one refilled after 12 s");
        assert_eq!(d.remaining, 0);
        // Idle for a long time: full burst again, not more.
        let (d, _) = check(&quota, Some(t), 1_000_000);
        assert_eq!(d.remaining, 4);
    }
}
