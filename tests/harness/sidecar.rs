//! The real `quota-sidecar` binary on port-0 loopback listeners, with the bound addresses read
//! from its JSON log. The process is killed with the guard (also when a test panics).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long the binary may take to log its listening addresses, and health to turn SERVING.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running sidecar process.
pub struct Sidecar {
    child: Child,
    pub worker: SocketAddr,
    /// Only with an admin token: without one the admin listener does not start.
    pub admin: Option<SocketAddr>,
    /// Only when started with `--health-listen`.
    pub health: Option<SocketAddr>,
    /// The Prometheus endpoint; always started, on a free port.
    pub metrics: Option<SocketAddr>,
    /// Every log line so far (JSON).
    logs: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    /// Starts the binary on `--store store`; `token` becomes `QUOTA_ADMIN_TOKEN`. Returns once
    /// every listener it should open has been logged.
    pub fn start(store: &str, token: Option<&str>) -> Sidecar {
        Sidecar::start_with(store, token, &[], &[])
    }

    /// Like [`Sidecar::start`], with `extra_args` after the defaults (not repeating them: the
    /// binary refuses a flag given twice; `--listen`, `--admin-listen` and `--metrics-listen`
    /// given here replace the port-0 defaults) and `extra_env` set. With `--health-listen` among
    /// them it also waits for the health listener.
    pub fn start_with(
        store: &str,
        token: Option<&str>,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Sidecar {
        let wants_health = extra_args.contains(&"--health-listen");
        let mut command = Command::new(env!("CARGO_BIN_EXE_quota-sidecar"));
        // Fixed listen addresses (to restart on the same ports) replace the port-0 defaults.
        for flag in ["--listen", "--admin-listen", "--metrics-listen"] {
            if !extra_args.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        command
            .args(["--log-format", "json", "--store", store])
            .env("RUST_LOG", "info")
            // Nothing from the caller's environment may redirect the process.
            .env_remove("QUOTA_ADMIN_TOKEN")
            .env_remove("QUOTA_STORE")
            .env_remove("QUOTA_CATALOG")
            .env_remove("QUOTA_LISTEN")
            .env_remove("QUOTA_ADMIN_LISTEN")
            .env_remove("QUOTA_METRICS_LISTEN")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("QUOTA_REDIS_TIMEOUT_MS")
            .env_remove("QUOTA_HEALTH_LISTEN")
            .env_remove("QUOTA_TLS_CERT")
            .env_remove("QUOTA_TLS_KEY")
            .env_remove("QUOTA_ADMIN_CLIENT_CA")
            .env_remove("QUOTA_REDIS_CA")
            .env_remove("QUOTA_SHARDS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(token) = token {
            command.env("QUOTA_ADMIN_TOKEN", token);
        }
        command.args(extra_args);
        command.envs(extra_env.iter().copied());
        let mut child = command.spawn().expect("start the sidecar binary");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = logs.clone();
        // Keeps draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("sidecar: {line}");
                kept.lock().unwrap().push(line.clone());
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                // JSON log lines are flat: the event's fields sit beside `level`.
                let fields = &json;
                if fields["message"] == "listening" {
                    let listener = fields["listener"].as_str().unwrap_or_default().to_string();
                    let addr = fields["addr"].as_str().unwrap_or_default().to_string();
                    let _ = tx.send((listener, addr));
                }
            }
        });
        let mut sidecar = Sidecar {
            child,
            worker: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            health: None,
            metrics: None,
            logs,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut worker = None;
        while worker.is_none()
            || (token.is_some() && sidecar.admin.is_none())
            || (wants_health && sidecar.health.is_none())
            || sidecar.metrics.is_none()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let (listener, addr) = rx
                .recv_timeout(left)
                .expect("the sidecar logs its listening addresses in time");
            let addr: SocketAddr = addr.parse().expect("a socket address");
            match listener.as_str() {
                "worker" => worker = Some(addr),
                "admin" => sidecar.admin = Some(addr),
                "health" => sidecar.health = Some(addr),
                "metrics" => sidecar.metrics = Some(addr),
                other => panic!("unexpected listener {other}"),
            }
        }
        sidecar.worker = worker.unwrap();
        sidecar
    }

    /// The metrics endpoint's address.
    pub fn metrics(&self) -> SocketAddr {
        self.metrics
            .expect("the metrics endpoint is always started")
    }

    /// The admin listener's address; panics when it was started without a token.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("started with an admin token")
    }

    /// The log lines written so far, parsed (the binary logs JSON here).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Sends `signal` (a `kill` name such as `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit. Async, so that the test's client
    /// connections keep answering the server's graceful-shutdown handshake meanwhile.
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
                "sidecar did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connected channel with bounded connect and call times.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

/// The health status of `service`.
pub async fn health_status(ch: Channel, service: &str) -> i32 {
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// Polls health until `""` is SERVING (bounded by [`STARTUP_TIMEOUT`]).
pub async fn wait_serving(addr: SocketAddr) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
        {
            let answer = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if let Ok(answer) = answer {
                if answer.into_inner().status == ServingStatus::Serving as i32 {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "health never answered SERVING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
