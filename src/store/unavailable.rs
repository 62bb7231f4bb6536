//! Why Redis cannot serve now. A server that answers but refuses (full, a replica, loading its
//! data, stuck in a script) is as unusable as one that does not answer: the call fails closed
//! with [`StoreError::Unavailable`], whose message names the reason, and health turns
//! NOT_SERVING. The reason is also the `kind` label of `quota_store_errors_total`.

use super::StoreError;

/// Why a store call could not be served; each has a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableKind {
    /// `OOM`: `maxmemory` reached under `noeviction`; writes are refused.
    OutOfMemory,
    /// `READONLY`: the server is a replica (e.g. a demoted primary after a failover).
    ReadOnly,
    /// `MASTERDOWN`: a replica lost its primary and serves no stale data.
    MasterDown,
    /// `LOADING`: the server is loading its dataset into memory.
    Loading,
    /// `BUSY`: a script ran past `busy-reply-threshold`; nothing else is served.
    Busy,
    /// `NOREPLICAS`: fewer replicas than `min-replicas-to-write`; writes are refused.
    NoReplicas,
    /// `MISCONF`: the last snapshot to disk failed under `stop-writes-on-bgsave-error`; writes
    /// are refused until one succeeds.
    CannotPersist,
    /// Unreachable, too slow, or any other reason to retry later.
    Unreachable,
}

impl UnavailableKind {
    /// Every kind, refusals first.
    pub const ALL: [UnavailableKind; 8] = [
        UnavailableKind::OutOfMemory,
        UnavailableKind::ReadOnly,
        UnavailableKind::MasterDown,
        UnavailableKind::Loading,
        UnavailableKind::Busy,
        UnavailableKind::NoReplicas,
        UnavailableKind::CannotPersist,
        UnavailableKind::Unreachable,
    ];

    const REFUSALS: [UnavailableKind; 7] = [
        UnavailableKind::OutOfMemory,
        UnavailableKind::ReadOnly,
        UnavailableKind::MasterDown,
        UnavailableKind::Loading,
        UnavailableKind::Busy,
        UnavailableKind::NoReplicas,
        UnavailableKind::CannotPersist,
    ];

    /// The Redis error code of a refusal (`None` for [`UnavailableKind::Unreachable`]).
    pub fn code(self) -> Option<&'static str> {
        match self {
            UnavailableKind::OutOfMemory => Some("OOM"),
            UnavailableKind::ReadOnly => Some("READONLY"),
            UnavailableKind::MasterDown => Some("MASTERDOWN"),
            UnavailableKind::Loading => Some("LOADING"),
            UnavailableKind::Busy => Some("BUSY"),
            UnavailableKind::NoReplicas => Some("NOREPLICAS"),
            UnavailableKind::CannotPersist => Some("MISCONF"),
            UnavailableKind::Unreachable => None,
        }
    }

    /// The `kind` label of `quota_store_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            UnavailableKind::OutOfMemory => "oom",
            UnavailableKind::ReadOnly => "readonly",
            UnavailableKind::MasterDown => "masterdown",
            UnavailableKind::Loading => "loading",
            UnavailableKind::Busy => "busy",
            UnavailableKind::NoReplicas => "noreplicas",
            UnavailableKind::CannotPersist => "misconf",
            UnavailableKind::Unreachable => "unavailable",
        }
    }

    /// What an operator reads first in the error message: the reason and its Redis code.
    fn headline(self) -> &'static str {
        match self {
            UnavailableKind::OutOfMemory => "Redis is out of memory (OOM): writes refused",
            UnavailableKind::ReadOnly => "Redis is a read-only replica (READONLY): writes refused",
            UnavailableKind::MasterDown => {
                "Redis replica lost its primary (MASTERDOWN): calls refused"
            }
            UnavailableKind::Loading => "Redis is loading its dataset (LOADING): calls refused",
            UnavailableKind::Busy => "Redis is busy running a script (BUSY): calls refused",
            UnavailableKind::NoReplicas => {
                "Redis has too few replicas (NOREPLICAS): writes refused"
            }
            UnavailableKind::CannotPersist => "Redis cannot save to disk (MISCONF): writes refused",
            UnavailableKind::Unreachable => "Redis cannot be reached",
        }
    }

    /// The refusal a Redis error reports, if it is one. Scripts pass the error of the
    /// command that failed inside them on, so the code may also follow a script prefix.
    pub fn of_redis_error(e: &::redis::RedisError) -> Option<UnavailableKind> {
        if let Some(code) = e.code() {
            if let Some(kind) = Self::REFUSALS.into_iter().find(|k| k.code() == Some(code)) {
                return Some(kind);
            }
        }
        let text = e.to_string();
        Self::REFUSALS.into_iter().find(|k| {
            let code = k.code().unwrap_or_default();
            text.starts_with(&format!("{code} ")) || text.contains(&format!(": {code} "))
        })
    }

    /// The error of a refusal: its headline, then Redis's own words.
    pub fn error(self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{}: {detail}", self.headline()))
    }

    /// The kind an [`StoreError::Unavailable`] message was built with (see
    /// [`UnavailableKind::error`]); any other message is [`UnavailableKind::Unreachable`].
    pub fn of_message(message: &str) -> UnavailableKind {
        Self::REFUSALS
            .into_iter()
            .find(|k| message.starts_with(k.headline()))
            .unwrap_or(UnavailableKind::Unreachable)
    }
}

/// The error of a Redis call that did not answer within `timeout`: fail closed, retry later.
pub fn no_answer_within(timeout: std::time::Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "Redis did not answer within {} ms",
        timeout.as_millis()
    ))
}

/// The store error of a failed Redis call: "cannot serve now" (unreachable, or refusing, with
/// the reason named; fail closed, retry later) or a problem with the request or the data.
pub fn store_error(e: &::redis::RedisError) -> StoreError {
    if let Some(kind) = UnavailableKind::of_redis_error(e) {
        return kind.error(e);
    }
    if is_unavailable(e) {
        return StoreError::Unavailable(e.to_string());
    }
    // A script raised an error (a broken invariant), a bug, or a reply we cannot read.
    StoreError::Internal(e.to_string())
}

/// Whether an error means Redis cannot be reached now (refusals are [`UnavailableKind`]s).
fn is_unavailable(e: &::redis::RedisError) -> bool {
    use ::redis::{ErrorKind, ServerErrorKind};
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return true;
    }
    matches!(
        e.kind(),
        ErrorKind::Io
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::AuthenticationFailed
            // No primary Sentinel can vouch for: mid-failover, or a wrong primary name.
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::Server(ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::redis::{ErrorKind, RedisError};

    #[test]
    fn every_refusal_is_named_in_message_and_label() {
        for kind in UnavailableKind::REFUSALS {
            let StoreError::Unavailable(message) = kind.error("details") else {
                panic!("not unavailable");
            };
            assert!(
                message.contains(&format!("({})", kind.code().unwrap())),
                "{message}"
            );
            assert_eq!(UnavailableKind::of_message(&message), kind);
        }
        assert_eq!(
            UnavailableKind::of_message("Redis did not answer within 50 ms"),
            UnavailableKind::Unreachable
        );
        assert_eq!(UnavailableKind::OutOfMemory.label(), "oom");
    }

    #[test]
    fn all_is_every_refusal_and_unreachable() {
        let mut expected = UnavailableKind::REFUSALS.to_vec();
        expected.push(UnavailableKind::Unreachable);
        assert_eq!(UnavailableKind::ALL.to_vec(), expected);
    }

    #[test]
    fn an_unrelated_error_is_no_refusal() {
        let e = RedisError::from((ErrorKind::Parse, "bad reply"));
        assert_eq!(UnavailableKind::of_redis_error(&e), None);
    }
}
