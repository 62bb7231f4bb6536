//! The connection behind the Redis store: one server (`redis://`, or `rediss://` over TLS)
//! through a connection manager that reconnects by itself, or a Redis Cluster
//! (`redis+cluster://host:port,host:port,…`) through redis-rs' cluster client, which follows
//! `MOVED`/`ASK` and refreshes its slot map.
//!
//! Every script touches the keys of one `{s<shard>}` hash tag, so every call is for one slot
//! and no command ever needs keys of two nodes.
//!
//! Or a primary found through Redis Sentinel (`redis+sentinel://host:port,…/name`), followed
//! across failovers (see `sentinel.rs`).

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

use super::sentinel::{SentinelConn, SentinelTarget, SENTINEL_SCHEME};
use crate::store::{StoreError, StoreResult};

/// URL scheme of a Redis Cluster: the seed nodes, comma-separated.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// URL scheme of a single server over TLS.
pub const TLS_SCHEME: &str = "rediss://";

/// Reconnect attempts per call before it fails; with the per-call deadline this keeps a dead
/// Redis a fast `UNAVAILABLE` instead of a long retry loop.
const RETRIES: u32 = 2;
/// Longest pause between reconnect attempts, so a Redis that is back is used again quickly.
const MAX_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A cheap-to-clone handle on a single server or a cluster.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

impl RedisConn {
    /// Opens `url` lazily: nothing is dialled until the first command, so a Redis that is down
    /// at start only makes calls fail until it is up.
    pub fn open(url: &str, timeout: Duration) -> StoreResult<RedisConn> {
        RedisConn::open_with_ca(url, timeout, None)
    }

    /// Like [`RedisConn::open`]; a `rediss://` server must present a certificate signed by a
    /// CA in `root_ca_pem` when given, else one the system trusts.
    pub fn open_with_ca(
        url: &str,
        timeout: Duration,
        root_ca_pem: Option<&[u8]>,
    ) -> StoreResult<RedisConn> {
        let bad_url = |e: ::redis::RedisError| {
            StoreError::invalid_argument("store", format!("bad Redis URL `{url}`: {e}"))
        };
        if url.starts_with(CLUSTER_SCHEME) {
            let nodes = cluster_nodes(url)
                .map_err(|message| StoreError::invalid_argument("store", message))?;
            let client = ClusterClient::builder(nodes)
                .retries(RETRIES)
                .max_retry_wait(MAX_RETRY_DELAY.as_millis() as u64)
                .build()
                .map_err(bad_url)?;
            let config = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            return Ok(RedisConn::Cluster(
                client.get_pending_async_connection_with_config(config),
            ));
        }
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(RETRIES as usize)
            .set_max_delay(MAX_RETRY_DELAY);
        if url.starts_with(SENTINEL_SCHEME) {
            let target = SentinelTarget::parse(url)
                .map_err(|message| StoreError::invalid_argument("store", message))?;
            // A failed call already means "ask Sentinel again"; retrying the old primary
            // would only spend the call's deadline on it.
            let config = manager_config.set_number_of_retries(0);
            return SentinelConn::new(&target, config)
                .map(|c| RedisConn::Sentinel(Arc::new(c)))
                .map_err(bad_url);
        }
        if url.starts_with(TLS_SCHEME) {
            crate::tls::install_crypto_provider();
        }
        let client = match root_ca_pem {
            Some(ca) => ::redis::Client::build_with_tls(
                url,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                },
            ),
            None => ::redis::Client::open(url),
        }
        .map_err(bad_url)?;
        ConnectionManager::new_lazy_with_config(client, manager_config)
            .map(RedisConn::Single)
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

/// The seed nodes of `redis+cluster://[user:password@]host:port,host:port,…` as `redis://`
/// URLs, each with the credentials.
pub fn cluster_nodes(url: &str) -> Result<Vec<String>, String> {
    let rest = url
        .strip_prefix(CLUSTER_SCHEME)
        .ok_or_else(|| format!("expected {CLUSTER_SCHEME}HOST:PORT,HOST:PORT,..."))?;
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts: Vec<&str> = hosts
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        return Err("names no node; use redis+cluster://HOST:PORT,HOST:PORT".into());
    }
    if hosts.iter().any(|h| h.contains('/')) {
        return Err("a cluster has only database 0; drop the /DB part".into());
    }
    Ok(hosts
        .iter()
        .map(|h| format!("redis://{credentials}{h}"))
        .collect())
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
            RedisConn::Sentinel(c) => Box::pin(c.clone().command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Sentinel(c) => Box::pin(c.clone().commands(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
            // A Sentinel URL names no database: always 0.
            RedisConn::Sentinel(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        assert_eq!(
            cluster_nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7000").unwrap(),
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
        );
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@a:1,b:2").unwrap(),
            ["redis://u:p@a:1", "redis://u:p@b:2"]
        );
        assert!(cluster_nodes("redis+cluster://").is_err());
        assert!(cluster_nodes("redis+cluster://a:1/2").is_err());
        assert!(cluster_nodes("redis://a:1").is_err());
    }
}
