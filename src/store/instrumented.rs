//! A [`Store`] that observes the store it wraps: a span per call (`store.<op>`), its latency and
//! failures, reserve denials by reason, and holds opened and closed. See
//! [`crate::telemetry::metrics`] for what each metric means.
//!
//! Calls made within a gRPC call get INFO spans (exported with the call's trace); background
//! calls (health probe, sweeper, trimmer) get DEBUG spans, so that they do not flood the
//! collector with a few root traces a second.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::{Instrument, Span};

use super::unavailable::UnavailableKind;
use super::*;
use crate::telemetry::metrics::{
    HOLDS_CLOSED, HOLDS_OPENED, INSUFFICIENT_FUNDS, RESERVE_DENIALS, STORE_DURATION, STORE_ERRORS,
};

/// A span for store operation `$op`: INFO inside a request, DEBUG in background work.
macro_rules! store_span {
    ($op:literal) => {
        if tracing::Span::current().is_none() {
            tracing::debug_span!(
                concat!("store.", $op),
                otel.status_code = tracing::field::Empty
            )
        } else {
            tracing::info_span!(
                concat!("store.", $op),
                otel.status_code = tracing::field::Empty
            )
        }
    };
}
pub(crate) use store_span;

/// Runs one store call inside `span`, timing it as operation `op`; failures (the store
/// unreachable, or broken) are counted and mark the span as an error.
pub async fn observe<T>(
    op: &'static str,
    span: Span,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    metrics::histogram!(STORE_DURATION, "op" => op).record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        if let Some(kind) = failure_kind(e) {
            metrics::counter!(STORE_ERRORS, "op" => op, "kind" => kind).increment(1);
            span.record("otel.status_code", "error");
        }
    }
    result
}

/// The error label of a failed store call; `None` for refusals, which are answers.
fn failure_kind(err: &StoreError) -> Option<&'static str> {
    match err {
        StoreError::Unavailable(message) => Some(UnavailableKind::of_message(message).label()),
        StoreError::Internal(_) => Some("internal"),
        _ => None,
    }
}

/// Observes every call to the store it wraps.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
}

impl InstrumentedStore {
    /// `inner`, observed.
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(InstrumentedStore { inner })
    }
}

fn hold_closed(how: &'static str) {
    metrics::counter!(HOLDS_CLOSED, "how" => how).increment(1);
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        let result = observe(
            "reserve",
            store_span!("reserve"),
            self.inner.reserve(cmd, now_ms),
        )
        .await;
        match &result {
            Ok(reserved) if !reserved.replayed => metrics::counter!(HOLDS_OPENED).increment(1),
            Ok(_) => {}
            Err(StoreError::Ledger(LedgerError::Denied(denial))) => {
                metrics::counter!(RESERVE_DENIALS, "reason" => denial.code()).increment(1)
            }
            Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => {
                metrics::counter!(RESERVE_DENIALS, "reason" => INSUFFICIENT_FUNDS).increment(1)
            }
            Err(_) => {}
        }
        result
    }

    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        let call = self
            .inner
            .settle(account_id, generation_id, actual_quantity, now_ms);
        let result = observe("settle", store_span!("settle"), call).await;
        if matches!(&result, Ok(settled) if !settled.replayed) {
            hold_closed("settled");
        }
        result
    }

    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        let call = self
            .inner
            .release(account_id, generation_id, reason, now_ms);
        let result = observe("release", store_span!("release"), call).await;
        if matches!(&result, Ok(released) if !released.replayed) {
            hold_closed("released");
        }
        result
    }

    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        let call = self
            .inner
            .extend(account_id, generation_id, ttl_seconds, now_ms);
        observe("extend", store_span!("extend"), call).await
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        let call = self.inner.balance(account_id, now_ms);
        observe("balance", store_span!("balance"), call).await
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        let call = self.inner.account(account_id, now_ms);
        observe("account", store_span!("account"), call).await
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        let call = self.inner.set_plan(cmd, now_ms);
        observe("set_plan", store_span!("set_plan"), call).await
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        let call = self.inner.grant_credits(cmd, now_ms);
        observe("grant_credits", store_span!("grant_credits"), call).await
    }

    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        let call = self.inner.revoke_credits(account_id, grant_id, now_ms);
        observe("revoke_credits", store_span!("revoke_credits"), call).await
    }

    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        let call = self.inner.expire_due(shard, now_ms, max_accounts);
        let result = observe("expire_due", store_span!("expire_due"), call).await;
        if let Ok(expired) = &result {
            metrics::counter!(HOLDS_CLOSED, "how" => "expired").increment(u64::from(*expired));
        }
        result
    }

    async fn quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted> {
        observe("quote", store_span!("quote"), self.inner.quote(cmd, now_ms)).await
    }

    async fn reserve_batch(
        &self,
        cmd: &ReserveBatchCmd,
        now_ms: i64,
    ) -> StoreResult<ReservedBatch> {
        let result = observe(
            "reserve_batch",
            store_span!("reserve_batch"),
            self.inner.reserve_batch(cmd, now_ms),
        )
        .await;
        if let Ok(batch) = &result {
            if !batch.replayed {
                metrics::counter!(HOLDS_OPENED).increment(batch.holds.len() as u64);
            }
        }
        result
    }

    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        observe(
            "refund",
            store_span!("refund"),
            self.inner.refund(cmd, now_ms),
        )
        .await
    }
}

#[async_trait]
impl Fleet for InstrumentedStore {
    fn shards(&self) -> super::keys::Shards {
        self.inner.shards()
    }

    async fn ping(&self) -> StoreResult<()> {
        observe("ping", store_span!("ping"), self.inner.ping()).await
    }

    async fn lease(&self, task: FleetTask, owner: &str, ttl_ms: u64) -> StoreResult<bool> {
        observe(
            "lease",
            store_span!("lease"),
            self.inner.lease(task, owner, ttl_ms),
        )
        .await
    }

    async fn time_ms(&self) -> StoreResult<i64> {
        observe("time", store_span!("time"), self.inner.time_ms()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Catalog;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn answers_are_the_inner_store_s() {
        let catalog = Arc::new(Catalog::builtin());
        let store = InstrumentedStore::wrap(Arc::new(MemoryStore::new(catalog)));
        let balance = store.balance("acct-1", 0).await.unwrap();
        assert_eq!(balance.plan, "none");
        store.ping().await.unwrap();
        assert_eq!(store.expire_due(0, 0, 10).await.unwrap(), 0);
    }

    #[test]
    fn only_failures_count_as_errors() {
        assert_eq!(
            failure_kind(&StoreError::Unavailable("down".into())),
            Some("unavailable")
        );
        assert_eq!(
            failure_kind(&UnavailableKind::OutOfMemory.error("OOM command not allowed")),
            Some("oom")
        );
        assert_eq!(
            failure_kind(&StoreError::Internal("bug".into())),
            Some("internal")
        );
        let refusal = StoreError::Ledger(LedgerError::InsufficientFunds {
            needed: 2,
            available: 1,
        });
        assert_eq!(failure_kind(&refusal), None);
    }
}
