//! Writing generated files, and `--check`ing that committed ones are current.

use std::path::Path;

use anyhow::{Context, bail};

/// Writes `content` to `path`, or with `check` fails when the file differs.
pub fn write_or_check(
    path: &Path,
    content: &str,
    check: bool,
    regenerate: &str,
) -> anyhow::Result<()> {
    if check {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current != content {
            bail!(
                "{} is stale: run `{regenerate}` and commit the result",
                path.display()
            );
        }
        println!("{} is up to date", path.display());
    } else {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
