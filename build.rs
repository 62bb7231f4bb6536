//! Generates the gRPC code and the reflection descriptor from `proto/` with a pure-Rust
//! protobuf compiler, so building needs no system `protoc`; and records the git revision the
//! binary is built from (`QUOTA_GIT_REVISION`, shown by `quota_build_info`).

use std::path::PathBuf;
use std::process::Command;

const PROTOS: [&str; 3] = [
    "proto/quota/v1/quota.proto",
    "proto/quota/v1/admin.proto",
    "proto/quota/v1/events.proto",
];

/// Names the revision when it cannot be read from git (a source archive, an image build
/// without `.git`) and none is given in the environment.
const UNKNOWN_REVISION: &str = "unknown";

/// Environment variable that names the revision instead of git (e.g. a `docker build` arg).
const REVISION_ENV: &str = "QUOTA_GIT_REVISION";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("quota_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;

    println!("cargo:rerun-if-env-changed={REVISION_ENV}");
    let revision = std::env::var(REVISION_ENV)
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| UNKNOWN_REVISION.to_string());
    println!("cargo:rustc-env={REVISION_ENV}={}", revision.trim());
    Ok(())
}

/// Output of `git args`, trimmed; `None` when git is missing or fails (not a checkout).
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The checked-out commit; rebuilds when HEAD moves (a commit, a checkout).
fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names a branch whose ref file moves on commit; watch both (and packed refs).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(revision)
}
