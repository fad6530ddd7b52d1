//! CPU and memory of a process tree, read from `/proc` (Linux): steadier than throughput on a
//! shared machine, and what an operator sizes pods by.

use std::time::Duration;

use anyhow::Context;

/// A process and its descendants, by the root's pid.
#[derive(Debug, Clone, Copy)]
pub struct ProcessTree(pub u32);

impl ProcessTree {
    /// The root and every descendant alive now.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.0];
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            let children =
                std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
                    .unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
            i += 1;
        }
        pids
    }

    /// User plus system CPU of the tree so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        let ticks_per_second = 100.0; // USER_HZ on Linux
        let mut ticks = 0u64;
        for pid in self.pids() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .with_context(|| format!("/proc/{pid}/stat"))?;
            // Fields after the parenthesised command name; utime and stime are the 14th and
            // 15th fields of the whole line.
            let rest = stat.rsplit_once(')').context("stat format")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for index in [11, 12] {
                ticks += fields
                    .get(index)
                    .and_then(|f| f.parse::<u64>().ok())
                    .context("stat utime/stime")?;
            }
        }
        Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second))
    }

    /// Resident memory of the tree now.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.status_kb("VmRSS:")
    }

    /// The largest resident memory each process of the tree has had, summed (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        self.status_kb("VmHWM:")
    }

    fn status_kb(&self, field: &str) -> anyhow::Result<u64> {
        let mut bytes = 0;
        for pid in self.pids() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .with_context(|| format!("{field} of {pid}"))?;
            bytes += kb * 1024;
        }
        Ok(bytes)
    }
}
