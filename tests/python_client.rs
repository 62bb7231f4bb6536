//! The Python client's own tests (`clients/python/tests`, pytest) against this build's binary,
//! memory store and a private Redis, twice: on the oldest runtimes the package supports
//! (`clients/python/constraints-oldest.txt`, with the stubs' generator, so the committed stubs
//! are checked too) and on the newest. Each virtualenv lives under the target directory and is
//! reused; the package is installed into it as a user would (`pip install
//! ./clients/python[test]`, not editable), so a missing file in the package fails here too.

#[path = "harness/process.rs"]
mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

/// Creating the virtualenv; a fresh machine may also bootstrap pip.
const VENV_LIMIT: Duration = Duration::from_secs(180);
/// Installing the package and its test dependencies (downloads them on a fresh machine).
const INSTALL_LIMIT: Duration = Duration::from_secs(600);
/// One pytest run takes about 30 s.
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

/// One pytest run at a time: the suite has timing-sensitive tests (heartbeats, expiry) and
/// the machine may be small.
static ONE_SUITE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Which runtimes a suite installs.
enum Runtimes {
    /// `clients/python/constraints-oldest.txt`: the oldest grpcio, protobuf and
    /// googleapis-common-protos the package supports, and the stubs' generator.
    Oldest,
    /// Whatever is newest on the index (`pip install --upgrade`).
    Newest,
}

/// Installs the package into a virtualenv of its own for `runtimes` and runs its pytest
/// suite against this build's binary; returns the report.
fn run_suite(runtimes: Runtimes) -> String {
    let _one = ONE_SUITE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = root.join("clients/python");
    let (venv_name, extras) = match runtimes {
        Runtimes::Oldest => ("python-client-venv-oldest", "test,stubs"),
        Runtimes::Newest => ("python-client-venv-newest", "test"),
    };
    let venv = target_dir().join(venv_name);
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
    let mut install = Command::new(&python);
    install.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    match runtimes {
        Runtimes::Oldest => {
            install
                .arg("--constraint")
                .arg(package.join("constraints-oldest.txt"));
        }
        Runtimes::Newest => {
            install.args(["--upgrade", "--upgrade-strategy", "eager"]);
        }
    }
    run(
        &format!("pip install ./clients/python[{extras}]"),
        install.arg(format!("{}[{extras}]", package.display())),
        INSTALL_LIMIT,
    );
    let versions = run(
        "reading the installed runtimes",
        Command::new(&python).args([
            "-c",
            "import grpc, google.protobuf; print(grpc.__version__, google.protobuf.__version__)",
        ]),
        VENV_LIMIT,
    );
    let versions = String::from_utf8_lossy(&versions.stdout).trim().to_string();
    if let Runtimes::Oldest = runtimes {
        assert_eq!(
            versions, "1.49.1 4.21.12",
            "the oldest runtimes are what constraints-oldest.txt pins"
        );
    }
    let mut pytest = Command::new(venv.join("bin/pytest"));
    // The venv's pytest, not `python -m pytest`: the latter would put the working directory
    // first on sys.path and test the source tree instead of the install.
    pytest
        .current_dir(&package)
        .args(["-p", "no:cacheprovider", "-q", "-rs", "--durations=5"])
        .env("QUOTA_SIDECAR_BIN", env!("CARGO_BIN_EXE_quota-sidecar"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("QUOTA_SIDECAR_URL");
    if let Runtimes::Oldest = runtimes {
        // The generator is installed here: the stub check must run, not skip.
        pytest.env("QUOTA_REQUIRE_STUB_CHECK", "1");
    }
    let output = process::output_within(&mut pytest, PYTEST_LIMIT);
    let report = show(&output);
    assert!(
        output.status.success(),
        "the Python client's tests failed on grpcio/protobuf {versions} ({}):\n{report}",
        output.status
    );
    format!("grpcio/protobuf {versions}\n{report}")
}

#[test]
fn python_client_tests_pass_on_the_oldest_runtimes() {
    // Shown with --nocapture: the pass count, timings and what was skipped and why.
    println!("{}", run_suite(Runtimes::Oldest));
}

#[test]
fn python_client_tests_pass_on_the_newest_runtimes() {
    println!("{}", run_suite(Runtimes::Newest));
}
