//! Background tasks owned by a plugin instance. apollo-router builds new plugin instances on
//! every configuration or schema reload; a task must end with the instance that started it.

/// Aborts the task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `tick` with the owner every `interval` (first after one interval) for as long as the
/// owner is alive: the task holds it weakly, so it never keeps a replaced plugin instance
/// around. A tick that overruns delays the next one instead of bunching them up.
pub fn every<T, F, Fut>(
    interval: std::time::Duration,
    owner: std::sync::Weak<T>,
    tick: F,
) -> AbortOnDrop
where
    T: Send + Sync + 'static,
    F: Fn(std::sync::Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    AbortOnDrop(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(owner) = owner.upgrade() else { return };
            tick(owner).await;
        }
    }))
}
