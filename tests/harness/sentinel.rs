//! A primary, a replica and three Sentinels watching them, all on free loopback ports, with a
//! short failure detection so that a failover takes a few seconds. Everything is killed with
//! the guard.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, RedisServer};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "quota";
/// How long a primary may be silent before a Sentinel thinks it down.
pub const DOWN_AFTER_MS: u64 = 500;
/// How long the Sentinels give one failover attempt.
pub const FAILOVER_TIMEOUT_MS: u64 = 3_000;
/// How long the Sentinels may take to see each other and the replica.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// A primary, its replica and three Sentinels.
pub struct SentinelSetup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    /// Starts everything and waits until every Sentinel knows the replica and the other two.
    pub fn start() -> SentinelSetup {
        // No diskless-sync delay (5 s by default): the replica is in sync at once.
        let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.path().display(),
                    primary = primary.port(),
                ),
            )
            .expect("write the Sentinel config");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server --sentinel");
            sentinels.push((port, child));
        }
        let setup = SentinelSetup {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        let deadline = Instant::now() + DISCOVERY_TIMEOUT;
        while !setup
            .replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        for (port, _) in &setup.sentinels {
            loop {
                let replicas = sentinel_cli(*port, &["SENTINEL", "REPLICAS", MASTER_NAME]);
                let others = sentinel_cli(*port, &["SENTINEL", "SENTINELS", MASTER_NAME]);
                let knows_replica = replicas.contains(&setup.replica.port().to_string());
                if knows_replica && others.matches("127.0.0.1").count() >= 2 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Sentinel {port} did not find the replica and the other Sentinels"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        setup
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/quota`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port of the primary the first Sentinel names now.
    pub fn named_primary_port(&self) -> Option<u16> {
        let answer = sentinel_cli(
            self.sentinels[0].0,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sentinel_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}
