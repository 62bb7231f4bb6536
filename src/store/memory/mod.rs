//! In-process store: one mutex over a map of accounts, their pasts and the event log. For
//! development and single-instance use (state dies with the process), and the model the Redis
//! store is held against. The rules are the ledger's state machine
//! ([`crate::ledger::account::Account`]); this is the lock and the log around it: an
//! operation's new state, the records of the past it made and its events are stored together,
//! or not at all.
//!
//! A call costs the same whatever the account's past: the ledger copies the account's live
//! state (counters, grants, open holds) and the few records of the past the call's ids name;
//! finished holds and the other records wait in [`History`] until retention forgets them, a
//! bounded number per call and per sweep.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

mod event_log;
mod log;

use self::log::MemoryLog;
use super::keys::Shards;
use super::sweeper::{due_accounts, SWEEP_ENTRIES_PER_ACCOUNT};
use super::*;
use crate::events::{self, UsageEvent};
use crate::ledger::account::{Account, LedgerResult, Past, Recall, Transition};
use crate::ledger::{Catalog, SharedCatalog};

/// Single-instance store; everything is lost when the process exits.
pub struct MemoryStore {
    catalog: SharedCatalog,
    /// Shards of the event log (as the Redis streams are laid out).
    shards: Shards,
    state: Mutex<State>,
}

/// Records of the past one call forgets at most, beyond the ones it reads: a call makes a few
/// records at most (a finished hold or two, a request, the tombstones of the grants it drops),
/// so this keeps pace with what calls add while no call pauses for a long forgetting.
pub const FORGOTTEN_PER_CALL: usize = 16;

/// Records of the past one sweep of a shard forgets at most: what idle hours left due, in
/// steps short enough not to hold the store's lock for long.
pub const FORGOTTEN_PER_SWEEP: usize = 4_096;

/// Accounts, their pasts and the event log under one lock: a change, its records and its
/// events are one step.
struct State {
    /// Live state only: counters, grants, open holds.
    accounts: HashMap<String, Account>,
    history: History,
    log: MemoryLog,
}

/// Which map of a [`Past`] a record is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RecordKind {
    Hold,
    Tombstone,
    PlanRequest,
    Refund,
}

/// A record of the past and when it is forgotten.
trait Forgettable {
    fn forget_at_ms(&self) -> i64;
}

impl Forgettable for crate::ledger::account::HoldRecord {
    fn forget_at_ms(&self) -> i64 {
        // Only finished holds are in the past, and every one has a forget time.
        self.forget_at_ms.unwrap_or(i64::MAX)
    }
}

impl Forgettable for crate::ledger::account::Tombstone {
    fn forget_at_ms(&self) -> i64 {
        self.forget_at_ms
    }
}

impl Forgettable for crate::ledger::account::PlanRecord {
    fn forget_at_ms(&self) -> i64 {
        self.forget_at_ms
    }
}

impl Forgettable for crate::ledger::account::RefundRecord {
    fn forget_at_ms(&self) -> i64 {
        self.forget_at_ms
    }
}

/// Every account's past, keyed by account then record id, and an index of every record by
/// forget time: forgetting takes the earliest due records, never a walk over all of them.
#[derive(Default)]
struct History {
    by_account: HashMap<String, Past>,
    /// (forget time, account, kind, id) of every record in `by_account`, earliest first.
    due: BTreeSet<(i64, String, RecordKind, String)>,
}

impl History {
    /// Copies of the records of `account_id`'s past that `recall` names.
    fn recall(&self, account_id: &str, recall: &Recall) -> Past {
        self.by_account
            .get(account_id)
            .map(|past| past.recall(recall))
            .unwrap_or_default()
    }

    /// Keeps `remembered` as `account_id`'s records, replacing those of the same ids.
    fn remember(&mut self, account_id: &str, remembered: Past) {
        if remembered.is_empty() {
            return;
        }
        let past = self.by_account.entry(account_id.to_string()).or_default();
        let due = &mut self.due;
        keep(
            &mut past.holds,
            due,
            account_id,
            RecordKind::Hold,
            remembered.holds,
        );
        keep(
            &mut past.tombstones,
            due,
            account_id,
            RecordKind::Tombstone,
            remembered.tombstones,
        );
        keep(
            &mut past.plan_requests,
            due,
            account_id,
            RecordKind::PlanRequest,
            remembered.plan_requests,
        );
        keep(
            &mut past.refunds,
            due,
            account_id,
            RecordKind::Refund,
            remembered.refunds,
        );
    }

    /// Forgets up to `max` records whose forget time is at or before `now_ms`, earliest first;
    /// returns how many. A record past its forget time that is still here is never answered
    /// (the ledger forgets what it recalls past its time), so this only bounds memory.
    fn forget_due(&mut self, now_ms: i64, max: usize) -> usize {
        let mut forgotten = 0;
        while forgotten < max {
            match self.due.first() {
                Some((at_ms, ..)) if *at_ms <= now_ms => {}
                _ => break,
            }
            let (at_ms, account_id, kind, id) = self.due.pop_first().expect("seen above");
            let Some(past) = self.by_account.get_mut(&account_id) else {
                continue;
            };
            match kind {
                RecordKind::Hold => drop_if_due(&mut past.holds, &id, at_ms),
                RecordKind::Tombstone => drop_if_due(&mut past.tombstones, &id, at_ms),
                RecordKind::PlanRequest => drop_if_due(&mut past.plan_requests, &id, at_ms),
                RecordKind::Refund => drop_if_due(&mut past.refunds, &id, at_ms),
            }
            if past.is_empty() {
                self.by_account.remove(&account_id);
            }
            forgotten += 1;
        }
        forgotten
    }

    /// Records of `account_id`'s past kept now, of every kind.
    fn len_of(&self, account_id: &str) -> usize {
        self.by_account.get(account_id).map_or(0, Past::len)
    }
}

/// Puts `records` into `map`, keeping the forget-time index in step: a record replaced with
/// another forget time leaves its old index entry.
fn keep<R: Forgettable>(
    map: &mut HashMap<String, R>,
    due: &mut BTreeSet<(i64, String, RecordKind, String)>,
    account_id: &str,
    kind: RecordKind,
    records: HashMap<String, R>,
) {
    for (id, record) in records {
        let at_ms = record.forget_at_ms();
        let old_at_ms = map.get(&id).map(Forgettable::forget_at_ms);
        if old_at_ms == Some(at_ms) {
            // Unchanged forget time: the index has it already.
            map.insert(id, record);
            continue;
        }
        if let Some(old_at_ms) = old_at_ms {
            due.remove(&(old_at_ms, account_id.to_string(), kind, id.clone()));
        }
        due.insert((at_ms, account_id.to_string(), kind, id.clone()));
        map.insert(id, record);
    }
}

/// Drops `id` from `map` if its record is the one the index entry at `at_ms` was for.
fn drop_if_due<R: Forgettable>(map: &mut HashMap<String, R>, id: &str, at_ms: i64) {
    if map.get(id).is_some_and(|r| r.forget_at_ms() == at_ms) {
        map.remove(id);
    }
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
                history: History::default(),
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
                history: History::default(),
                log: MemoryLog::new(shards),
            }),
            ..self
        }
    }

    /// Every retained event, in log order per shard (shard 0 first). For tests and tools.
    pub fn all_events(&self) -> Vec<UsageEvent> {
        self.with_log(|log| log.all())
    }

    /// Hold entries `account_id`'s live state keeps (its open holds; finished holds live in
    /// its past). For tests and tools.
    pub fn retained_holds(&self, account_id: &str) -> usize {
        self.lock()
            .accounts
            .get(account_id)
            .map_or(0, Account::retained_holds)
    }

    /// Records of `account_id`'s past kept now (finished holds, tombstones, plan requests,
    /// refunds), forgotten or not yet. For tests and tools.
    pub fn remembered_records(&self, account_id: &str) -> usize {
        self.lock().history.len_of(account_id)
    }

    /// Runs `op` on the event log, under the store's lock.
    fn with_log<T>(&self, op: impl FnOnce(&mut MemoryLog) -> T) -> T {
        let mut state = self.lock();
        op(&mut state.log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic under the lock cannot leave an account half-changed (a transition is
        // computed on a copy and swapped in whole), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the account through the ledger's state machine on the catalog in force
    /// (the snapshot `op` is given, so one call never mixes two catalogs), handing it the
    /// records of the past `recall` names, and stores the new state, the records to keep and
    /// the events together; an error stores nothing. An account with no live state worth
    /// keeping is not stored (its past is kept apart). Then forgets a few records that
    /// retention dropped.
    fn with_account<T>(
        &self,
        account_id: &str,
        recall: &Recall,
        now_ms: i64,
        op: impl FnOnce(&Catalog, &mut Account) -> LedgerResult<T>,
    ) -> StoreResult<T> {
        let catalog = self.catalog.current();
        let mut state = self.lock();
        let State {
            accounts,
            history,
            log,
        } = &mut *state;
        let recalled = history.recall(account_id, recall);
        let transition = transition(accounts, recalled, &catalog, account_id, now_ms, op)?;
        let shard = self.shards.of(account_id);
        for event in transition.events {
            log.append(shard, event);
        }
        history.remember(account_id, transition.remembered);
        if transition.account.is_empty() {
            accounts.remove(account_id);
        } else {
            accounts.insert(account_id.to_string(), transition.account);
        }
        history.forget_due(now_ms, FORGOTTEN_PER_CALL);
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
        let recalled = Past::default();
        Ok(transition(&state.accounts, recalled, &catalog, account_id, now_ms, op)?.reply)
    }
}

/// `op` run on the stored account (or a new one) and the `recalled` records of its past
/// through the ledger's state machine.
fn transition<T>(
    accounts: &HashMap<String, Account>,
    recalled: Past,
    catalog: &Catalog,
    account_id: &str,
    now_ms: i64,
    op: impl FnOnce(&Catalog, &mut Account) -> LedgerResult<T>,
) -> LedgerResult<Transition<T>> {
    let op = |a: &mut Account| op(catalog, a);
    match accounts.get(account_id) {
        Some(a) => a.execute(recalled, catalog, now_ms, op),
        None => Account::new(account_id).execute(recalled, catalog, now_ms, op),
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        let recall = Recall::hold(&cmd.generation_id);
        self.with_account(&cmd.account_id, &recall, now_ms, |catalog, a| {
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
        let recall = Recall::hold(generation_id);
        self.with_account(account_id, &recall, now_ms, |catalog, a| {
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
        let recall = Recall::hold(generation_id);
        self.with_account(account_id, &recall, now_ms, |_, a| {
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
        let recall = Recall::hold(generation_id);
        self.with_account(account_id, &recall, now_ms, |_, a| {
            a.extend(generation_id, ttl_seconds, now_ms)
        })
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        self.with_account(account_id, &Recall::nothing(), now_ms, |_, a| {
            Ok(a.balance())
        })
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        self.with_account(account_id, &Recall::nothing(), now_ms, |_, a| Ok(a.view()))
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        let recall = Recall::plan_request(&cmd.request_id);
        self.with_account(&cmd.account_id, &recall, now_ms, |catalog, a| {
            a.set_plan(catalog, cmd, now_ms)
        })
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        let recall = Recall::grant(&cmd.grant_id);
        self.with_account(&cmd.account_id, &recall, now_ms, |_, a| {
            a.grant_credits(cmd, now_ms)
        })
    }

    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        let recall = Recall::grant(grant_id);
        self.with_account(account_id, &recall, now_ms, |_, a| {
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
        // Retention's forgetting of the past, for accounts no call touches.
        self.lock().history.forget_due(now_ms, FORGOTTEN_PER_SWEEP);
        let mut expired = 0;
        for (account_id, _) in due {
            let swept = self.with_account(&account_id, &Recall::nothing(), now_ms, |_, a| {
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
        let recall = Recall::batch(cmd);
        self.with_account(&cmd.account_id, &recall, now_ms, |catalog, a| {
            a.reserve_batch(catalog, cmd, now_ms)
        })
    }

    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        self.with_account(&cmd.account_id, &Recall::refund(cmd), now_ms, |_, a| {
            a.refund(cmd, now_ms)
        })
    }
}

#[async_trait]
impl Fleet for MemoryStore {
    fn shards(&self) -> Shards {
        self.shards
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn lease(&self, _task: FleetTask, _owner: &str, _ttl_ms: u64) -> StoreResult<bool> {
        // One process is the whole store: it always does the fleet's work.
        Ok(true)
    }

    async fn time_ms(&self) -> StoreResult<i64> {
        // One process is the whole store: its clock is the store's.
        Ok(crate::clock::Clock::now_ms(&crate::clock::SystemClock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::account::Tombstone;
    use crate::ledger::model::Grant;
    use crate::ledger::CreditSource;

    fn tombstone(grant_id: &str, forget_at_ms: i64) -> Tombstone {
        Tombstone {
            grant: Grant {
                grant_id: grant_id.into(),
                source: CreditSource::Promotional,
                units_granted: 1,
                units_remaining: 0,
                units_held: 0,
                expires_at_ms: None,
                created_at_ms: 0,
            },
            revoked_units: None,
            forget_at_ms,
        }
    }

    fn past_of(records: &[(&str, i64)]) -> Past {
        Past {
            tombstones: records
                .iter()
                .map(|&(id, at)| (id.to_string(), tombstone(id, at)))
                .collect(),
            ..Past::default()
        }
    }

    #[test]
    fn forgetting_is_bounded_earliest_first_and_follows_replacements() {
        let mut history = History::default();
        history.remember("a", past_of(&[("x", 30), ("y", 10), ("z", 20)]));
        history.remember("b", past_of(&[("x", 15)]));
        // "x" of "a" kept again with a later forget time: its old index entry goes.
        history.remember("a", past_of(&[("x", 40)]));
        assert_eq!(history.due.len(), 4);

        assert_eq!(history.forget_due(100, 2), 2, "at most the bound");
        let recall = Recall {
            grants: ["x", "y", "z"].map(String::from).to_vec(),
            ..Recall::default()
        };
        let left: Vec<String> = history
            .recall("a", &recall)
            .tombstones
            .into_keys()
            .collect();
        assert_eq!(left.len(), 2, "y (10) went first: {left:?}");
        assert_eq!(history.len_of("b"), 0, "b's x (15) went second");
        assert!(
            !history.by_account.contains_key("b"),
            "an empty past is dropped"
        );

        assert_eq!(history.forget_due(30, 10), 1, "z (20); x waits for 40");
        assert_eq!(history.len_of("a"), 1);
        assert_eq!(history.forget_due(40, 10), 1);
        assert!(history.by_account.is_empty() && history.due.is_empty());
    }
}
