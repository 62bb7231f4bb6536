//! The real `quota-billing run` binary, with its HTTP address read from its JSON log. The
//! process is killed with the guard (also when a test panics).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::sidecar::STARTUP_TIMEOUT;

/// A running `quota-billing run`.
pub struct Billing {
    child: Child,
    /// `/healthz` and `/metrics`.
    pub http: SocketAddr,
}

impl Billing {
    /// Starts `quota-billing run` against the admin listener `admin_target` and the database
    /// `postgres`, with `extra_args` after the defaults.
    pub fn start(admin_target: &str, postgres: &str, token: &str, extra_args: &[&str]) -> Billing {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quota-billing"));
        command
            .args([
                "run",
                "--admin-target",
                admin_target,
                "--postgres",
                postgres,
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--backoff-max-ms",
                "500",
            ])
            .args(extra_args)
            .env("RUST_LOG", "info")
            .env("QUOTA_ADMIN_TOKEN", token)
            .env_remove("QUOTA_ADMIN_TARGET")
            .env_remove("QUOTA_BILLING_POSTGRES")
            .env_remove("QUOTA_BILLING_GROUP")
            .env_remove("QUOTA_BILLING_CONSUMER")
            .env_remove("QUOTA_BILLING_LISTEN")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start quota-billing");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keeps draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("billing: {line}");
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if json["message"] == "listening" {
                    let addr = json["addr"].as_str().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .expect("quota-billing logs its listening address in time");
        Billing {
            child,
            http: addr.parse().expect("a socket address"),
        }
    }

    /// SIGKILL, as a crash would, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "quota-billing did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Billing {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
