//! A primary found through Redis Sentinel (`redis+sentinel://HOST:PORT,…/MASTER_NAME`), followed
//! across failovers.
//!
//! Sentinel names the primary; calls go to it through a connection manager. When a call shows
//! the primary is gone or no longer primary (connection refused or dropped, `READONLY`,
//! `MASTERDOWN`, or a call abandoned at its deadline), the manager is dropped and the next call
//! asks Sentinel again, so the sidecar follows a promotion by itself: calls fail `UNAVAILABLE`
//! until Sentinel names a primary that answers as one. A promoted replica has the Functions
//! library (functions replicate); one that lacks it gets it at its first "Function not found".

use std::sync::{Arc, Mutex};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{Cmd, ConnectionAddr, Pipeline, RedisError, RedisResult, Value};

use crate::store::unavailable::UnavailableKind;

/// URL scheme of a primary found through Sentinel.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// What a `redis+sentinel://` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// The Sentinels, `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The monitored primary's name (`sentinel monitor <name> …`).
    pub master_name: String,
    /// Credentials of the primary (not of the Sentinels): `USER:PASSWORD` or `:PASSWORD`.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl SentinelTarget {
    /// Parses `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME`; the
    /// error is one line an operator can act on.
    pub fn parse(url: &str) -> Result<SentinelTarget, String> {
        let usage = "use redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME";
        let rest = url
            .strip_prefix(SENTINEL_SCHEME)
            .ok_or_else(|| format!("expected {SENTINEL_SCHEME}...; {usage}"))?;
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (hosts, master_name) = rest
            .split_once('/')
            .ok_or_else(|| format!("names no primary; {usage}"))?;
        if master_name.is_empty() || master_name.contains(['/', ',', ' ']) {
            return Err(format!("`{master_name}` is not a primary name; {usage}"));
        }
        let sentinels = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let (host, port) = h
                    .rsplit_once(':')
                    .ok_or_else(|| format!("Sentinel `{h}` has no port; {usage}"))?;
                let port: u16 = port
                    .parse()
                    .map_err(|_| format!("Sentinel `{h}` has no valid port; {usage}"))?;
                if host.is_empty() {
                    return Err(format!("Sentinel `{h}` has no host; {usage}"));
                }
                Ok((host.to_string(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if sentinels.is_empty() {
            return Err(format!("names no Sentinel; {usage}"));
        }
        let (username, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_string()),
                    Some(password.to_string()),
                ),
                None => (Some(c.to_string()), None),
            },
        };
        Ok(SentinelTarget {
            sentinels,
            master_name: master_name.to_string(),
            username,
            password,
        })
    }
}

/// The primary's connection, found and re-found through Sentinel. Cheap to share.
pub struct SentinelConn {
    /// Asks the Sentinels; one lookup at a time.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    config: ConnectionManagerConfig,
    /// The connection to the primary Sentinel named last, with a number that changes with it,
    /// so that a failure seen on an old connection does not drop a newer one.
    current: Mutex<Option<(u64, ConnectionManager)>>,
    next_number: std::sync::atomic::AtomicU64,
}

impl SentinelConn {
    /// A connection to `target`'s primary; nothing is dialled until the first call.
    pub fn new(
        target: &SentinelTarget,
        config: ConnectionManagerConfig,
    ) -> RedisResult<SentinelConn> {
        let addrs = target
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(addrs, &target.master_name, SentinelServerType::Master)?;
        if let Some(user) = &target.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &target.password {
            builder = builder.set_client_to_redis_password(password);
        }
        Ok(SentinelConn {
            sentinel: tokio::sync::Mutex::new(builder.build()?),
            config,
            current: Mutex::new(None),
            next_number: Default::default(),
        })
    }

    /// The primary's connection: the current one, or one to the primary Sentinel names now.
    async fn primary(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let Some(current) = self.current.lock().expect("lock").clone() {
            return Ok(current);
        }
        let mut sentinel = self.sentinel.lock().await;
        // Another call may have found it while this one waited.
        if let Some(current) = self.current.lock().expect("lock").clone() {
            return Ok(current);
        }
        // Sentinel checks that the node it names answers ROLE as a primary.
        let client = sentinel.async_get_client().await?;
        let manager = ConnectionManager::new_lazy_with_config(client, self.config.clone())?;
        let number = self
            .next_number
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let found = (number, manager);
        *self.current.lock().expect("lock") = Some(found.clone());
        tracing::info!("Sentinel named the Redis primary; connected");
        Ok(found)
    }

    /// Forgets connection `number`, so that the next call asks Sentinel.
    fn forget(&self, number: u64) {
        let mut current = self.current.lock().expect("lock");
        if current.as_ref().is_some_and(|(n, _)| *n == number) {
            *current = None;
            tracing::warn!("the Redis primary is gone or demoted; asking Sentinel again");
        }
    }

    /// Sends one command to the primary (see [`SentinelConn::watch`]).
    pub async fn command(self: Arc<Self>, cmd: &Cmd) -> RedisResult<Value> {
        let (number, mut manager) = self.primary().await?;
        let guard = self.watch(number);
        guard.finish(manager.req_packed_command(cmd).await)
    }

    /// Sends a pipeline to the primary (see [`SentinelConn::watch`]).
    pub async fn commands(
        self: Arc<Self>,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let (number, mut manager) = self.primary().await?;
        let guard = self.watch(number);
        guard.finish(manager.req_packed_commands(pipeline, offset, count).await)
    }

    /// Forgets connection `number` when the call shows the primary is gone, or is abandoned
    /// before it ends (its deadline passed: the primary may be unreachable, not refusing).
    fn watch(self: &Arc<Self>, number: u64) -> ForgetUnlessDone {
        ForgetUnlessDone {
            conn: self.clone(),
            number,
            done: false,
        }
    }
}

/// Forgets the connection when dropped before the call finished well.
struct ForgetUnlessDone {
    conn: Arc<SentinelConn>,
    number: u64,
    done: bool,
}

impl ForgetUnlessDone {
    fn finish<T>(mut self, result: RedisResult<T>) -> RedisResult<T> {
        self.done = !matches!(&result, Err(e) if primary_lost(e));
        result
    }
}

impl Drop for ForgetUnlessDone {
    fn drop(&mut self) {
        if !self.done {
            self.conn.forget(self.number);
        }
    }
}

/// Whether `e` means the node is not (or no longer) a usable primary.
fn primary_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            UnavailableKind::of_redis_error(e),
            Some(UnavailableKind::ReadOnly | UnavailableKind::MasterDown)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let t = SentinelTarget::parse("redis+sentinel://10.0.0.1:26379,s2:26380/mymaster").unwrap();
        assert_eq!(
            t.sentinels,
            [("10.0.0.1".to_string(), 26379), ("s2".to_string(), 26380)]
        );
        assert_eq!(t.master_name, "mymaster");
        assert_eq!((t.username, t.password), (None, None));
        let t = SentinelTarget::parse("redis+sentinel://u:p@a:1/m").unwrap();
        assert_eq!(
            (t.username.as_deref(), t.password.as_deref()),
            (Some("u"), Some("p"))
        );
        let t = SentinelTarget::parse("redis+sentinel://:p@a:1/m").unwrap();
        assert_eq!((t.username, t.password.as_deref()), (None, Some("p")));
        for bad in [
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "redis+sentinel:///m",
            "redis+sentinel://a/m",
            "redis+sentinel://a:x/m",
            "redis+sentinel://a:1/m/0",
            "redis://a:1/m",
        ] {
            assert!(SentinelTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
