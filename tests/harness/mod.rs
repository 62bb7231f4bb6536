//! Test harness: a private `redis-server` per test on a free loopback port, which tests may
//! stop, restart and inspect. It never touches a shared Redis, and the process dies with the
//! guard (also when a test panics).
#![allow(dead_code)]

pub mod billing;
pub mod certs;
pub mod cluster;
pub mod corruption;
pub mod events;
pub mod http;
pub mod in_process;
pub mod postgres;
pub mod process;
pub mod process_group;
pub mod proxy;
pub mod sentinel;
pub mod sidecar;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh `redis-server` may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` owned by one test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments added to the defaults (e.g. cluster mode).
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free loopback port; panics with a clear message when
    /// `redis-server` is missing.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Like [`RedisServer::start`], with `extra_args` added to the defaults.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        // Free-port races with other tests are possible: try a few ports.
        for _ in 0..5 {
            if let Some(server) = RedisServer::try_start(free_port(), extra_args) {
                return server;
            }
        }
        panic!("could not start redis-server on a free port with {extra_args:?}");
    }

    /// Starts a server on `port` with `extra_args`; `None` when the port is taken.
    pub fn try_start(port: u16, extra_args: &[&str]) -> Option<RedisServer> {
        let mut server = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn().then_some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server at once (like a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty unless it persisted (it does not).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        // The port may linger briefly after a kill.
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs one command through `redis-cli` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn spawn(&mut self) -> bool {
        let dir: PathBuf = self.dir.path().to_path_buf();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // Lets tests freeze the server with DEBUG SLEEP (loopback clients only).
                "--enable-debug-command",
                "local",
                "--dir",
                dir.to_str().expect("utf-8 temp dir"),
            ])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                panic!("cannot run redis-server ({e}); install it: apt-get install -y redis-server")
            }
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: port taken
            }
            if self.ping() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn ping(&self) -> bool {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"])
            .output()
            .map(|o| o.stdout.starts_with(b"PONG"))
            .unwrap_or(false)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `message` with `authorization: Bearer <token>`, as the admin listener wants it.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    quota_sidecar::client::with_token(message, token).expect("a token that fits a header")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}
