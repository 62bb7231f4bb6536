//! In-process store: one mutex over a map of accounts and the event log. For development and
//! single-instance use (state dies with the process), and the model the Redis store is held
//! against. The rules are the ledger's state machine ([`crate::ledger::account::Account`]); this
//! is the lock and the log around it: an operation's new state and its events are stored
//! together, or not at all.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::keys::Shards;
use super::sweeper::{due_accounts, SWEEP_ENTRIES_PER_ACCOUNT};
use super::*;
use crate::events::memory_log::MemoryLog;
use crate::events::{self, UsageEvent};
use crate::ledger::account::{Account, LedgerResult, Transition};
use crate::ledger::{Catalog, SharedCatalog};

/// Single-instance store; everything is lost when the process exits.
pub struct MemoryStore {
    catalog: SharedCatalog,
    /// Shards of the event log (as the Redis streams are laid out).
    shards: Shards,
    state: Mutex<State>,
}

/// Accounts and the event log under one lock: a change and its events are one step.
struct State {
    accounts: HashMap<String, Account>,
    log: MemoryLog,
}

impl MemoryStore {
    /// An empty store on `catalog` (a [`SharedCatalog`], or an `Arc<Catalog>` that never
    /// changes).
    pub fn new(catalog: impl Into<SharedCatalog>) -> MemoryStore {
        MemoryStore {
            catalog: catalog.into(),
            shards: Shards::DEFAULT,
            state: Mutex::new(State {
                accounts: HashMap::new(),
                log: MemoryLog::new(Shards::DEFAULT),
            }),
        }
    }

    /// The same (empty) store with its events in `shards` shards.
    pub fn with_shards(self, shards: Shards) -> MemoryStore {
        MemoryStore {
            shards,
            state: Mutex::new(State {
                accounts: HashMap::new(),
                log: MemoryLog::new(shards),
            }),
            ..self
        }
    }

    /// Every retained event, in log order per shard (shard 0 first). For tests and tools.
    pub fn all_events(&self) -> Vec<UsageEvent> {
        self.with_log(|log| log.all())
    }

    /// Runs `op` on the event log, under the store's lock.
    pub(crate) fn with_log<T>(&self, op: impl FnOnce(&mut MemoryLog) -> T) -> T {
        let mut state = self.lock();
        op(&mut state.log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic under the lock cannot leave an account half-changed (a transition is
        // computed on a copy and swapped in whole), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the account through the ledger's state machine on the catalog in force
    /// (the snapshot `op` is given, so one call never mixes two catalogs) and stores the new
    /// state and its events together; an error stores nothing. An account with nothing worth
    /// keeping is not stored.
    fn with_account<T>(
        &self,
        account_id: &str,
        now_ms: i64,
        op: impl FnOnce(&Catalog, &mut Account) -> LedgerResult<T>,
    ) -> StoreResult<T> {
        let catalog = self.catalog.current();
        let mut state = self.lock();
        let State { accounts, log } = &mut *state;
        let transition = transition(accounts, &catalog, account_id, now_ms, op)?;
        let shard = self.shards.of(account_id);
        for event in transition.events {
            log.append(shard, event);
        }
        if transition.account.is_empty() {
            accounts.remove(account_id);
        } else {
            accounts.insert(account_id.to_string(), transition.account);
        }
        Ok(transition.reply)
    }

    /// Runs `op` like [`MemoryStore::with_account`] and keeps nothing: for reads that must not
    /// even store the lazy work (Quote).
    fn peek_account<T>(
        &self,
        account_id: &str,
        now_ms: i64,
        op: impl FnOnce(&Catalog, &mut Account) -> LedgerResult<T>,
    ) -> StoreResult<T> {
        let catalog = self.catalog.current();
        let state = self.lock();
        Ok(transition(&state.accounts, &catalog, account_id, now_ms, op)?.reply)
    }
}

/// `op` run on the stored account (or a new one) through the ledger's state machine.
fn transition<T>(
    accounts: &HashMap<String, Account>,
    catalog: &Catalog,
    account_id: &str,
    now_ms: i64,
    op: impl FnOnce(&Catalog, &mut Account) -> LedgerResult<T>,
) -> LedgerResult<Transition<T>> {
    let op = |a: &mut Account| op(catalog, a);
    match accounts.get(account_id) {
        Some(a) => a.execute(catalog, now_ms, op),
        None => Account::new(account_id).execute(catalog, now_ms, op),
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        self.with_account(&cmd.account_id, now_ms, |catalog, a| {
            a.reserve(catalog, cmd, now_ms)
        })
    }

    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        self.with_account(account_id, now_ms, |catalog, a| {
            a.settle(catalog, generation_id, actual_quantity, now_ms)
        })
    }

    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        self.with_account(account_id, now_ms, |_, a| {
            a.release(generation_id, reason, now_ms)
        })
    }

    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        self.with_account(account_id, now_ms, |_, a| {
            a.extend(generation_id, ttl_seconds, now_ms)
        })
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        self.with_account(account_id, now_ms, |_, a| Ok(a.balance()))
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        self.with_account(account_id, now_ms, |_, a| Ok(a.view()))
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        self.with_account(&cmd.account_id, now_ms, |catalog, a| {
            a.set_plan(catalog, cmd, now_ms)
        })
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        self.with_account(&cmd.account_id, now_ms, |_, a| a.grant_credits(cmd, now_ms))
    }

    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        self.with_account(account_id, now_ms, |_, a| {
            a.revoke_credits(grant_id, now_ms)
        })
    }

    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        // The twin of `RedisStore::expire_due`, so both sweep the same accounts in a pass: the
        // shard's expiry index (`<account>/<generation>` scored by expiry) is read earliest
        // due first, ties in byte order, a window of a few entries per wanted account; the
        // first `max_accounts` accounts in that window are swept.
        let due = {
            let state = self.lock();
            let mut entries: Vec<(i64, String)> = state
                .accounts
                .iter()
                .filter(|(id, _)| self.shards.of(id) == shard)
                .flat_map(|(id, a)| {
                    a.due_holds(now_ms)
                        .into_iter()
                        .map(move |(at, gen)| (at, format!("{id}/{gen}")))
                })
                .collect();
            entries.sort();
            entries.truncate(max_accounts.saturating_mul(SWEEP_ENTRIES_PER_ACCOUNT));
            due_accounts(entries.into_iter().map(|(_, entry)| entry), max_accounts)
        };
        let mut expired = 0;
        for (account_id, _) in due {
            let swept = self.with_account(&account_id, now_ms, |_, a| {
                Ok(a.pending_events()
                    .iter()
                    .filter(|e| e.event_type == events::HOLD_EXPIRED)
                    .count() as u32)
            });
            match swept {
                Ok(n) => expired += n,
                // One broken account must not stop the expiry of every other one.
                Err(e) => super::sweeper::skipped(&account_id, &e),
            }
        }
        Ok(expired)
    }

    fn shards(&self) -> Shards {
        self.shards
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted> {
        self.peek_account(&cmd.account_id, now_ms, |catalog, a| {
            a.quote(catalog, cmd, now_ms)
        })
    }

    async fn reserve_batch(
        &self,
        cmd: &ReserveBatchCmd,
        now_ms: i64,
    ) -> StoreResult<ReservedBatch> {
        self.with_account(&cmd.account_id, now_ms, |catalog, a| {
            a.reserve_batch(catalog, cmd, now_ms)
        })
    }

    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        self.with_account(&cmd.account_id, now_ms, |_, a| a.refund(cmd, now_ms))
    }

    async fn lease(
        &self,
        _task: lease::FleetTask,
        _owner: &str,
        _ttl_ms: u64,
    ) -> StoreResult<bool> {
        // One process is the whole store: it always does the fleet's work.
        Ok(true)
    }

    async fn time_ms(&self) -> StoreResult<i64> {
        // One process is the whole store: its clock is the store's.
        Ok(crate::clock::Clock::now_ms(&crate::clock::SystemClock))
    }
}
