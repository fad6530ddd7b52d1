//! Background tasks owned by a plugin instance. apollo-router builds new plugin instances on
//! every configuration or schema reload; a task must end with the instance that started it.

/// Aborts the task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
