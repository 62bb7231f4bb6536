//! A real Redis Cluster of three masters (no replicas) on loopback ports, made with
//! `redis-cli --cluster create`, stopped with the guard.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, RedisServer};

/// How long the nodes may take to agree on the slot map after `--cluster create`.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// A node listens on its port and on port + 10000 for the cluster bus.
const BUS_PORT_OFFSET: u16 = 10_000;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters sharing the 16384 slots, ready to serve.
    pub fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        let mut attempts = 0;
        while nodes.len() < 3 {
            attempts += 1;
            assert!(attempts < 50, "no free port pairs for cluster nodes");
            let port = free_port();
            if port >= u16::MAX - BUS_PORT_OFFSET
                || TcpListener::bind(("127.0.0.1", port + BUS_PORT_OFFSET)).is_err()
            {
                continue;
            }
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ];
            if let Some(node) = RedisServer::try_start(port, &args) {
                nodes.push(node);
            }
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster did not converge");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Keys stored on each node.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).parse().unwrap_or(0))
            .collect()
    }
}
