//! `switchyard dev` as a child process (release build, beside the bench): the whole platform
//! as a user first runs it, for workloads that measure the platform's own CPU and memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::ProcessTree;

/// `router/router.yaml` as shipped, minus `remove`'s stages or `stage.key`s (written to
/// `dir/<name>`): the rate limits, say, whose development rules refuse one client's 1,200th
/// request in a minute, or `response_cache.entities`.
pub fn router_config_without(
    repo: &Path,
    dir: &Path,
    name: &str,
    remove: &[&str],
) -> anyhow::Result<PathBuf> {
    let source = repo.join("router/router.yaml");
    let mut config: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(&source).with_context(|| format!("{}", source.display()))?,
    )?;
    let pipeline = config
        .get_mut("plugins")
        .and_then(|p| p.get_mut("switchyard.pipeline"))
        .and_then(|p| p.as_mapping_mut())
        .context("router/router.yaml has no plugins.switchyard.pipeline")?;
    for path in remove {
        // `stage`, or `stage.key` for one key of a stage.
        let (parent, key) = match path.split_once('.') {
            Some((stage, key)) => (
                pipeline
                    .get_mut(stage)
                    .and_then(|s| s.as_mapping_mut())
                    .with_context(|| format!("router/router.yaml configures no {stage}"))?,
                key,
            ),
            None => (&mut *pipeline, *path),
        };
        parent
            .remove(key)
            .with_context(|| format!("router/router.yaml configures no {path}"))?;
    }
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

/// One `switchyard dev` process (and its router child).
pub struct Dev {
    child: Child,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    /// Starts `switchyard dev` on `data` with `config`; `configure` adds arguments and
    /// environment. Returns once it printed that it is up.
    pub fn start(
        binary: &Path,
        repo: &Path,
        config: &Path,
        data: &Path,
        name: &str,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command
            .current_dir(repo)
            .arg("dev")
            .arg("--data-dir")
            .arg(data)
            .arg("--router-config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in [
            "SWITCHYARD_OTLP_ENDPOINT",
            "SWITCHYARD_OTLP_PROTOCOL",
            "SWITCHYARD_TRACE_SAMPLE_RATIO",
            "SWITCHYARD_OTLP_ENABLED",
        ] {
            command.env_remove(name);
        }
        configure(&mut command);
        let mut child = command.spawn().context("starting switchyard dev")?;
        let (up_tx, up) = mpsc::channel();
        // Both streams are drained for the process's whole life (one log line per request);
        // the last lines are kept for an error message.
        let (tail_tx, tail) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().context("stdout")?) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().context("stderr")?),
        ] {
            let (up_tx, tail_tx) = (up_tx.clone(), tail_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("Ctrl-C stops everything") {
                        let _ = up_tx.send(());
                    }
                    if !line.contains("switchyard::request") {
                        let _ = tail_tx.send(line);
                    }
                }
            });
        }
        let dev = Self { child };
        if up.recv_timeout(Duration::from_secs(300)).is_err() {
            let lines: Vec<String> = tail.try_iter().collect();
            bail!(
                "{name}: switchyard dev did not come up:\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        Ok(dev)
    }

    /// The process and its descendants (the router).
    pub fn tree(&self) -> ProcessTree {
        ProcessTree(self.child.id())
    }

    /// User plus system CPU of the process tree so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        self.tree().cpu()
    }

    /// Resident memory of the process tree now.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.tree().rss_bytes()
    }

    /// SIGTERM (the router drains, every process flushes its exporter) and wait.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "switchyard dev exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("switchyard dev did not stop within 30 s of SIGTERM")
    }
}
