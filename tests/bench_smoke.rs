//! `quota-bench` against the real sidecar on the memory store: it sets its accounts up, drives
//! load, and reports a clean run as JSON on its last stdout line. Targets work with and
//! without a scheme, as in grpcurl.

mod harness;

use std::process::Command;

use harness::sidecar::{wait_serving, Sidecar};

const TOKEN: &str = "bench-smoke-token";

#[tokio::test]
async fn bench_runs_clean_against_the_memory_store() {
    let sidecar = Sidecar::start("memory", Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let output = Command::new(env!("CARGO_BIN_EXE_quota-bench"))
        .args([
            // `host:port`, no scheme.
            "--target",
            &sidecar.worker.to_string(),
            "--admin-target",
            &format!("http://{}", sidecar.admin()),
            "--duration",
            "1s",
            "--concurrency",
            "4",
            "--accounts",
            "4",
            "--json",
        ])
        .env("QUOTA_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run quota-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "quota-bench failed: {stdout}\n{stderr}"
    );
    let last = stdout.lines().last().expect("some output");
    let report: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert!(report["rps"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    for field in ["p50_us", "p99_us", "p999_us"] {
        assert!(report[field].as_u64().unwrap() > 0, "{field}: {report}");
    }
}
