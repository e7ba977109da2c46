// The build script of both binaries (each crate's build.rs includes this
// file): sets HEARTBEAT_VERSION, "<package version> (commit <12 hex>)", which
// their --version prints.
//
// Where the commit comes from, first found wins:
//   1. HEARTBEAT_COMMIT in the build's environment (a packager's override);
//   2. packaging/commit, which `git archive` fills in (export-subst in
//      .gitattributes), so a source archive without .git still knows it;
//   3. `git rev-parse` in a checkout;
//   4. "unknown": a build never fails for want of git.

use std::path::{Path, PathBuf};
use std::process::Command;

const SHORT: usize = 12;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().unwrap_or(&manifest).to_path_buf();
    let archived = workspace.join("packaging/commit");
    println!("cargo:rerun-if-env-changed=HEARTBEAT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", workspace.join("packaging/version.rs").display());
    if archived.exists() {
        println!("cargo:rerun-if-changed={}", archived.display());
    }
    let commit = std::env::var("HEARTBEAT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(|| from_archive(&archived))
        .or_else(|| from_git(&workspace))
        .unwrap_or_else(|| "unknown".to_owned());
    let commit: String = commit.trim().chars().take(SHORT).collect();
    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    println!("cargo:rustc-env=HEARTBEAT_VERSION={version} (commit {commit})");
}

/// The commit `git archive` wrote into the file; in a checkout the file
/// still holds the unexpanded placeholder.
fn from_archive(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())).then(|| text.to_owned())
}

fn from_git(workspace: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", &format!("--short={SHORT}"), "HEAD"])?;
    // Build again when HEAD moves: HEAD itself (a branch switch) and the
    // branch's ref, loose or packed. Only files that exist: cargo treats a
    // missing one as changed and would rebuild every time.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        let path = workspace.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
