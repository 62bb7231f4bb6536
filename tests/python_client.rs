//! The Python client's own tests (`clients/python/tests`, pytest) against this build's binary,
//! memory store and a private Redis. The virtualenv lives under the target directory and is
//! reused; the package is installed into it as a user would (`pip install
//! ./clients/python[test]`, not editable), so a missing file in the package fails here too.

#[path = "harness/process.rs"]
mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Creating the virtualenv; a fresh machine may also bootstrap pip.
const VENV_LIMIT: Duration = Duration::from_secs(180);
/// Installing the package and its test dependencies (downloads them on a fresh machine).
const INSTALL_LIMIT: Duration = Duration::from_secs(600);
/// The pytest run itself takes about 30 s.
const PYTEST_LIMIT: Duration = Duration::from_secs(300);

fn target_dir() -> PathBuf {
    // <target>/<profile>/quota-sidecar
    Path::new(env!("CARGO_BIN_EXE_quota-sidecar"))
        .ancestors()
        .nth(2)
        .expect("the binary lives in <target>/<profile>/")
        .to_path_buf()
}

fn show(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command`, panicking with `what` and its output when it fails.
fn run(what: &str, command: &mut Command, limit: Duration) -> Output {
    let output = process::output_within(command, limit);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        show(&output)
    );
    output
}

#[test]
fn python_client_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = root.join("clients/python");
    let venv = target_dir().join("python-client-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let output = process::output_within(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            VENV_LIMIT,
        );
        assert!(
            output.status.success(),
            "python3 -m venv failed; install Python 3.10+ with venv \
             (apt-get install -y python3-venv):\n{}",
            show(&output)
        );
    }
    run(
        "pip install ./clients/python[test]",
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("{}[test]", package.display())),
        INSTALL_LIMIT,
    );
    let output = process::output_within(
        // The venv's pytest, not `python -m pytest`: the latter would put the working
        // directory first on sys.path and test the source tree instead of the install.
        Command::new(venv.join("bin/pytest"))
            .current_dir(&package)
            .args(["-p", "no:cacheprovider", "-q", "-rs", "--durations=5"])
            .env("QUOTA_SIDECAR_BIN", env!("CARGO_BIN_EXE_quota-sidecar"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        PYTEST_LIMIT,
    );
    let report = show(&output);
    assert!(
        output.status.success(),
        "the Python client's tests failed ({}):\n{report}",
        output.status
    );
    // Shown with --nocapture: the pass count, timings and what was skipped and why.
    println!("{report}");
}
