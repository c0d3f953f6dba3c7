//! Records the git revision the binaries are built from, so `--version` of both programs
//! says which commit a deployed binary is (issue 15): `0.1.0 (rev 1a2b3c4d5e6f)`.
//!
//! `AGENT_RUN_GIT_REV` set at build time wins (a build from a source tarball, or a container
//! build without `.git`, passes it); outside a git checkout the revision is "unknown".
//! Cargo reruns this only when HEAD or the branch it points at moves, not on every build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=AGENT_RUN_GIT_REV");
    let rev = std::env::var("AGENT_RUN_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=AGENT_RUN_GIT_REV={rev}");
    // HEAD (its own git dir in a worktree), the branch's ref file and packed-refs (in the
    // common dir). Only existing paths: cargo reruns every time for a missing one.
    let mut watched = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watched.push(Path::new(&dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        watched.push(Path::new(&common).join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(Path::new(&common).join(branch));
        }
    }
    for path in watched.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
