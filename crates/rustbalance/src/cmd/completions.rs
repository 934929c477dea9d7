//! `rustbalance generate man|completions DIR` (hidden): man pages and shell
//! completions generated from the CLI definition itself, so that they never
//! drift from `--help`. `scripts/package.sh` runs it before `cargo deb`, and the
//! Debian package installs the results (docs/OPERATIONS.md, "Debian package").

use crate::cli::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;

/// One man page per command and subcommand (`rustbalance.1`, `rustbalance-run.1`, ...).
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))
}

/// Completions for bash (`rustbalance.bash`), zsh (`_rustbalance`) and fish
/// (`rustbalance.fish`).
pub fn completions(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "rustbalance", dir).with_context(|| {
            format!(
                "cannot write the {shell} completions into {}",
                dir.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_cover_the_cli() {
        let d = tempfile::tempdir().unwrap();
        man(&d.path().join("man")).unwrap();
        completions(&d.path().join("completions")).unwrap();
        let page = std::fs::read_to_string(d.path().join("man/rustbalance.1")).unwrap();
        assert!(page.contains(".TH rustbalance"), "{page}");
        let doctor = std::fs::read_to_string(d.path().join("man/rustbalance-doctor.1")).unwrap();
        assert!(doctor.contains("\\-\\-config"), "{doctor}");
        let bash = std::fs::read_to_string(d.path().join("completions/rustbalance.bash")).unwrap();
        for sub in ["doctor", "run", "init", "join", "status"] {
            assert!(bash.contains(sub), "bash completion lacks {sub}");
        }
        assert!(d.path().join("completions/_rustbalance").exists());
        assert!(d.path().join("completions/rustbalance.fish").exists());
    }
}
