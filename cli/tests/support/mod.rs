//! `switchyard dev` as a child process for the end-to-end tests that need the whole platform
//! on dev's default ports (one such test binary at a time: cargo runs test binaries one by one).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub struct Dev {
    pub child: Child,
    /// Every line it wrote to stdout and stderr so far.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    /// Starts `switchyard dev --data-dir <data>` plus what `configure` adds, in the repository
    /// root, and returns once it says it is up (its "Ctrl-C stops everything" line).
    pub fn start(data: &std::path::Path, configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["dev", "--data-dir", data.to_str().unwrap()])
            .current_dir(switchyard_kit::testing::repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (up_tx, up) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (lines, up_tx) = (lines.clone(), up_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("Ctrl-C stops everything") {
                        let _ = up_tx.send(());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let dev = Self { child, lines };
        if up.recv_timeout(Duration::from_secs(180)).is_err() {
            panic!(
                "dev did not come up:\n{}",
                dev.lines.lock().unwrap().join("\n")
            );
        }
        dev
    }
}
