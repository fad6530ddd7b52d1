//! The manifest and retired-versions files, polled and hot-swapped.
//!
//! Polling the content (not inotify) works the same on every filesystem, including the
//! ConfigMap volumes Kubernetes updates by symlink swap; reading a manifest once a second is
//! negligible. A new file is parsed and validated completely before it replaces the old one,
//! so requests in flight keep the snapshot they started with and a bad file changes nothing.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

use super::manifest::{Manifest, ManifestError};
use super::retired::Retired;
use crate::plugins::background::{self, AbortOnDrop};

/// What requests are checked against.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub manifest: Manifest,
    pub retired: Retired,
}

#[derive(Debug)]
pub struct Watched {
    manifest_path: PathBuf,
    retired_path: Option<PathBuf>,
    current: RwLock<Arc<Snapshot>>,
    /// Content hashes of the files last looked at (taken or refused): a refused file is logged
    /// and counted once, not on every poll until someone fixes it.
    seen: Mutex<(u64, u64)>,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|source| {
        ManifestError::Read {
            path: path.display().to_string(),
            source,
        }
        .to_string()
    })
}

fn hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

impl Watched {
    /// Loads both files; a problem here stops the router from starting.
    pub fn load(manifest_path: PathBuf, retired_path: Option<PathBuf>) -> Result<Self, String> {
        let watched = Self {
            manifest_path,
            retired_path,
            current: RwLock::new(Arc::default()),
            seen: Mutex::new((0, 0)),
        };
        watched.reload_if_changed().unwrap_or(Ok(()))?;
        Ok(watched)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock").clone()
    }

    /// `None` when neither file changed; otherwise whether the new files were taken.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let manifest_text = match read(&self.manifest_path) {
            Ok(text) => text,
            Err(e) => return Some(Err(e)),
        };
        let retired_text = match &self.retired_path {
            Some(path) => match read(path) {
                Ok(text) => text,
                Err(e) => return Some(Err(e)),
            },
            None => String::new(),
        };
        let hashes = (hash(&manifest_text), hash(&retired_text));
        let mut seen = self.seen.lock().expect("seen lock");
        if *seen == hashes {
            return None;
        }
        *seen = hashes;
        let manifest = match Manifest::parse(&manifest_text) {
            Ok(m) => m,
            Err(e) => {
                return Some(Err(format!(
                    "manifest {}: {e}",
                    self.manifest_path.display()
                )));
            }
        };
        let retired = match Retired::parse(&retired_text) {
            Ok(r) => r,
            Err(e) => {
                let path = self
                    .retired_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                return Some(Err(format!("retired file {path}: {e}")));
            }
        };
        *self.current.write().expect("snapshot lock") = Arc::new(Snapshot { manifest, retired });
        Some(Ok(()))
    }
}

/// Polls `watched` every `interval` while it is alive.
pub fn spawn(watched: Weak<Watched>, interval: Duration, reloads: Counter<u64>) -> AbortOnDrop {
    background::every(interval, watched, move |watched| {
        let reloads = reloads.clone();
        async move {
            let outcome = tokio::task::spawn_blocking(move || watched.reload_if_changed()).await;
            match outcome {
                Ok(None) => {}
                Ok(Some(Ok(()))) => {
                    tracing::info!("persisted queries: reloaded manifest");
                    reloads.add(1, &[KeyValue::new("outcome", "ok")]);
                }
                Ok(Some(Err(e))) => {
                    tracing::error!("persisted queries: keeping the previous manifest: {e}");
                    reloads.add(1, &[KeyValue::new("outcome", "rejected")]);
                }
                Err(e) => tracing::error!("persisted queries: reload task failed: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::persisted_queries::manifest::{
        ManifestFile, ManifestOperation, operation_id,
    };

    fn manifest_with(body: &str) -> String {
        ManifestFile::new(vec![ManifestOperation {
            id: operation_id(body),
            name: "Op".into(),
            kind: "query".into(),
            body: body.into(),
            client_name: None,
            client_names: vec![],
        }])
        .to_json()
    }

    #[test]
    fn swaps_good_files_and_reports_a_bad_one_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, manifest_with("{ a }")).unwrap();
        let watched = Watched::load(path.clone(), None).unwrap();
        assert!(watched.reload_if_changed().is_none(), "unchanged");
        assert!(
            watched
                .snapshot()
                .manifest
                .get(&operation_id("{ a }"))
                .is_some()
        );

        std::fs::write(&path, "{ broken").unwrap();
        assert!(matches!(watched.reload_if_changed(), Some(Err(_))));
        assert!(
            watched.reload_if_changed().is_none(),
            "the same bad file is reported once"
        );
        assert!(
            watched
                .snapshot()
                .manifest
                .get(&operation_id("{ a }"))
                .is_some(),
            "old one kept"
        );

        std::fs::write(&path, manifest_with("{ b }")).unwrap();
        assert!(matches!(watched.reload_if_changed(), Some(Ok(()))));
        assert!(
            watched
                .snapshot()
                .manifest
                .get(&operation_id("{ b }"))
                .is_some()
        );
        assert!(
            watched
                .snapshot()
                .manifest
                .get(&operation_id("{ a }"))
                .is_none()
        );
    }

    #[test]
    fn a_bad_file_at_start_up_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, "[]").unwrap();
        assert!(Watched::load(path, None).unwrap_err().contains("manifest"));
        assert!(
            Watched::load(dir.path().join("missing.json"), None)
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
