//! Which app versions send which persisted operations, as this router process has seen them
//! since it started: what the explorer shows as "still sent by ios 1.9.0 (retired)", the
//! impact of removing a field that only old apps select.
//!
//! In-process and per replica (ask each replica, or use the `switchyard.persisted_queries`
//! metrics for fleet-wide counts). Bounded: at most [`MAX_ENTRIES`] operation × client ×
//! version triples; client names are the manifest's (else `other`/`unknown`), versions are
//! kept only when they parse as semver and are short, so clients cannot mint entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether an explorer reads the table: until one is enabled, the safelist stage records
/// nothing (no lock and no allocation on the request path of a router without it).
static WATCHED: AtomicBool = AtomicBool::new(false);

/// The explorer is on in this process: record from now on.
pub fn watch() {
    WATCHED.store(true, Ordering::Relaxed);
}

/// Whether to record.
pub fn watched() -> bool {
    WATCHED.load(Ordering::Relaxed)
}

/// Most (operation, client, version) entries kept; later new ones are counted as dropped.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest version string kept as it is.
const MAX_VERSION_CHARS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    /// Unix seconds of the last request.
    pub last_seen: u64,
}

#[derive(Debug, Default)]
struct Entries {
    /// operation id -> (client, version) -> seen
    by_operation: HashMap<String, HashMap<(String, String), Seen>>,
    len: usize,
    dropped: u64,
}

#[derive(Debug)]
pub struct Usage {
    entries: Mutex<Entries>,
    started: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The version as recorded: itself when it is short semver, else `unparsed` (or `unknown`).
pub fn version_label(version: Option<&str>) -> String {
    match version.map(str::trim) {
        None | Some("") => "unknown".to_owned(),
        Some(v) if v.len() <= MAX_VERSION_CHARS && semver::Version::parse(v).is_ok() => {
            v.to_owned()
        }
        Some(_) => "unparsed".to_owned(),
    }
}

/// One row of [`Usage::rows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub client: String,
    pub version: String,
    pub seen: Seen,
}

impl Usage {
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            started: now(),
        }
    }

    /// The process's table (the safelist stage records, the explorer reads).
    pub fn global() -> &'static Usage {
        static USAGE: LazyLock<Usage> = LazyLock::new(Usage::new);
        &USAGE
    }

    /// Counts one request of manifest operation `id` from `client` (a bounded label) at
    /// `version` (as the client sent it).
    pub fn record(&self, id: &str, client: &str, version: Option<&str>) {
        let version = version_label(version);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let entries = &mut *entries;
        let full = entries.len >= MAX_ENTRIES;
        let key = (client.to_owned(), version);
        let now = now();
        match entries.by_operation.get_mut(id) {
            Some(seen_by) => match seen_by.get_mut(&key) {
                Some(seen) => {
                    seen.count += 1;
                    seen.last_seen = now;
                }
                None if full => entries.dropped += 1,
                None => {
                    seen_by.insert(
                        key,
                        Seen {
                            count: 1,
                            last_seen: now,
                        },
                    );
                    entries.len += 1;
                }
            },
            None if full => entries.dropped += 1,
            None => {
                entries.by_operation.insert(
                    id.to_owned(),
                    HashMap::from([(
                        key,
                        Seen {
                            count: 1,
                            last_seen: now,
                        },
                    )]),
                );
                entries.len += 1;
            }
        }
    }

    /// Everything recorded, sorted by operation, client and version.
    pub fn rows(&self) -> Vec<Row> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        let mut rows: Vec<Row> = entries
            .by_operation
            .iter()
            .flat_map(|(id, seen_by)| {
                seen_by.iter().map(|((client, version), seen)| Row {
                    id: id.clone(),
                    client: client.clone(),
                    version: version.clone(),
                    seen: *seen,
                })
            })
            .collect();
        rows.sort_by(|a, b| (&a.id, &a.client, &a.version).cmp(&(&b.id, &b.client, &b.version)));
        rows
    }

    /// New entries refused because the table was full.
    pub fn dropped(&self) -> u64 {
        self.entries.lock().map(|e| e.dropped).unwrap_or(0)
    }

    /// Unix seconds since when this process records.
    pub fn since(&self) -> u64 {
        self.started
    }
}

impl Default for Usage {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_client_and_version() {
        let usage = Usage::new();
        usage.record("a", "ios", Some("2.1.0"));
        usage.record("a", "ios", Some("2.1.0"));
        usage.record("a", "ios", Some("1.9.0"));
        usage.record("b", "android", None);
        let rows = usage.rows();
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.client.as_str(),
                    r.version.as_str(),
                    r.seen.count,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "ios", "1.9.0", 1),
                ("a", "ios", "2.1.0", 2),
                ("b", "android", "unknown", 1)
            ]
        );
    }

    #[test]
    fn client_input_cannot_grow_the_table_without_bound() {
        assert_eq!(version_label(Some("not a version")), "unparsed");
        assert_eq!(
            version_label(Some(&format!("1.0.0-{}", "x".repeat(40)))),
            "unparsed"
        );
        assert_eq!(version_label(Some(" 2.0.0 ")), "2.0.0");
        let usage = Usage::new();
        for i in 0..(MAX_ENTRIES + 50) {
            usage.record(&format!("op{i}"), "ios", Some("1.0.0"));
        }
        assert_eq!(usage.rows().len(), MAX_ENTRIES);
        assert_eq!(usage.dropped(), 50);
        // Known entries still count when full.
        usage.record("op0", "ios", Some("1.0.0"));
        assert_eq!(
            usage
                .rows()
                .iter()
                .find(|r| r.id == "op0")
                .unwrap()
                .seen
                .count,
            2
        );
    }
}
