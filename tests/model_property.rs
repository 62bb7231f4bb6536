//! Property test: the memory store is the model the Redis store is held against. Random
//! sequences of every ledger operation over a few accounts, with the clock moving forward
//! between them, run on both stores; every answer must be identical, and after every step both
//! stores must agree on the touched accounts and keep the ledger's invariants:
//! - allowance: used + held ≤ total, available = total - used - held;
//! - credits: no grant goes below zero (remaining + held ≤ granted), the balance's credit
//!   counters are the sums over grants, open holds' draws add up to what grants hold;
//! - events: per-account sequences run 1..n, ids never repeat, and Σ `hold.settled` equals
//!   what the ledger charged and what first Settle answers said.
//!
//! `PROPTEST_CASES` runs more cases (CI runs [`DEFAULT_CASES`]); `PROPTEST_RNG_SEED` replays a
//! run. A failure is shrunk to a short sequence and printed.

mod harness;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

use quota_sidecar::events::{self, UsageEvent};
use quota_sidecar::ledger::{Catalog, CreditSource, Kind, MAX_GRANT_UNITS};
use quota_sidecar::store::keys::Shards;
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::*;

/// Cases per run unless `PROPTEST_CASES` says otherwise: a few seconds in CI.
const DEFAULT_CASES: u32 = 32;
const S: i64 = 1_000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-01-15 00:00 UTC; each case starts up to a year later, so cycles meet every month
/// length.
const START_MS: i64 = 1_768_435_200_000;
/// Two accounts share a shard (stream and expiry index), the third has its own.
const ACCOUNTS: [&str; 3] = ["acct-9", "acct-10", "acct-2"];
const MODELS: [&str; 4] = ["standard", "standard", "pro", "cinema"];
const PLANS: [&str; 4] = ["none", "microbudget", "independent", "hollywood"];
const REASONS: [ReleaseReason; 4] = [
    ReleaseReason::Failed,
    ReleaseReason::ContentFiltered,
    ReleaseReason::SystemError,
    ReleaseReason::Cancelled,
];

/// Which earlier hold, grant or request an operation is about: `0` is the newest of the
/// account's, higher counts back (wrapping). Workers mostly finish what they just started.
type Pick = usize;

/// A retry of an earlier request: the same terms (a replay) or changed ones (a conflict).
#[derive(Debug, Clone, Copy)]
struct Again {
    pick: Pick,
    same: bool,
}

#[derive(Debug, Clone)]
enum Action {
    Reserve {
        account: usize,
        again: Option<Again>,
        kind: Kind,
        model: usize,
        quantity: u32,
        ttl_seconds: u32,
    },
    Settle {
        account: usize,
        pick: Pick,
        actual: Option<u32>,
    },
    Release {
        account: usize,
        pick: Pick,
        reason: usize,
    },
    Extend {
        account: usize,
        pick: Pick,
        ttl_seconds: u32,
    },
    Grant {
        account: usize,
        again: Option<Again>,
        units: u64,
        promotional: bool,
        expires_in_ms: Option<i64>,
    },
    Revoke {
        account: usize,
        pick: Pick,
    },
    SetPlan {
        account: usize,
        again: Option<Again>,
        plan: usize,
        anchor_back_ms: Option<i64>,
    },
    /// The expiry sweeper's pass over every shard.
    Sweep {
        max_accounts: usize,
    },
    Balance {
        account: usize,
    },
    Quote {
        account: usize,
        kind: Kind,
        model: usize,
        quantity: u32,
    },
    /// A batch of new generations (sizes 1-4), or an earlier batch again.
    ReserveBatch {
        account: usize,
        again: Option<Again>,
        sizes: Vec<u32>,
        ttl_seconds: u32,
    },
    /// Part (or all, `units` 0) of a settled generation's charge back; or an earlier refund
    /// again.
    Refund {
        account: usize,
        pick: Pick,
        again: Option<Again>,
        units: u64,
    },
}

/// One operation, after the clock moved `advance_ms` forward. The clock moves as part of the
/// step (not as a step of its own) so that lazy work — rollover, reclaiming expired holds — is
/// done by the operations themselves rather than by the checks between steps.
#[derive(Debug, Clone)]
struct Step {
    advance_ms: i64,
    action: Action,
}

#[derive(Debug, Clone)]
struct Case {
    start_offset_ms: i64,
    steps: Vec<Step>,
}

fn ttl_seconds() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 30..=900u32, 1 => 1..=3_600u32]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![3 => Just(0usize), 1 => 0..8usize]
}

fn again(one_in: u32) -> impl Strategy<Value = Option<Again>> {
    prop_oneof![
        one_in - 1 => Just(None),
        1 => (pick(), any::<bool>()).prop_map(|(pick, same)| Some(Again { pick, same })),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let account = 0..ACCOUNTS.len();
    let reserve = (
        account.clone(),
        again(8),
        0..Kind::ALL.len(),
        0..MODELS.len(),
        prop_oneof![3 => 1..=4u32, 1 => 1..=25u32],
        ttl_seconds(),
    )
        .prop_map(|(account, again, kind, model, quantity, ttl_seconds)| {
            let kind = Kind::ALL[kind];
            // Images are 1-16 at the API; seconds beyond a plan's maximum are denied.
            let quantity = if kind.is_video() {
                quantity
            } else {
                quantity.min(16)
            };
            Action::Reserve {
                account,
                again,
                kind,
                model,
                quantity,
                ttl_seconds,
            }
        });
    let settle = (
        account.clone(),
        pick(),
        prop_oneof![3 => Just(None), 1 => (1..=25u32).prop_map(Some)],
    )
        .prop_map(|(account, pick, actual)| Action::Settle {
            account,
            pick,
            actual,
        });
    let release =
        (account.clone(), pick(), 0..REASONS.len()).prop_map(|(account, pick, reason)| {
            Action::Release {
                account,
                pick,
                reason,
            }
        });
    let extend =
        (account.clone(), pick(), ttl_seconds()).prop_map(|(account, pick, ttl_seconds)| {
            Action::Extend {
                account,
                pick,
                ttl_seconds,
            }
        });
    let grant = (
        account.clone(),
        again(6),
        // The largest grant too: credit sums must stay exact in the scripts' Lua numbers.
        prop_oneof![8 => 1..=2_000u64, 1 => Just(MAX_GRANT_UNITS)],
        any::<bool>(),
        prop_oneof![Just(None), (MIN..=30 * DAY).prop_map(Some)],
    )
        .prop_map(
            |(account, again, units, promotional, expires_in_ms)| Action::Grant {
                account,
                again,
                units,
                promotional,
                expires_in_ms,
            },
        );
    let revoke =
        (account.clone(), pick()).prop_map(|(account, pick)| Action::Revoke { account, pick });
    let set_plan = (
        account.clone(),
        again(6),
        0..PLANS.len(),
        prop_oneof![Just(None), (0..=60 * DAY).prop_map(Some)],
    )
        .prop_map(|(account, again, plan, anchor_back_ms)| Action::SetPlan {
            account,
            again,
            plan,
            anchor_back_ms,
        });
    let quote = (
        account.clone(),
        0..Kind::ALL.len(),
        0..MODELS.len(),
        prop_oneof![3 => 1..=4u32, 1 => 1..=25u32],
    )
        .prop_map(|(account, kind, model, quantity)| Action::Quote {
            account,
            kind: Kind::ALL[kind],
            model,
            quantity,
        });
    let batch = (
        account.clone(),
        again(5),
        prop::collection::vec(1..=4u32, 1..=4),
        ttl_seconds(),
    )
        .prop_map(
            |(account, again, sizes, ttl_seconds)| Action::ReserveBatch {
                account,
                again,
                sizes,
                ttl_seconds,
            },
        );
    let refund = (
        account.clone(),
        pick(),
        again(5),
        prop_oneof![2 => Just(0u64), 3 => 1..=60u64],
    )
        .prop_map(|(account, pick, again, units)| Action::Refund {
            account,
            pick,
            again,
            units,
        });
    prop_oneof![
        4 => quote,
        4 => batch,
        4 => refund,
        25 => reserve,
        18 => settle,
        8 => release,
        5 => extend,
        10 => grant,
        4 => revoke,
        10 => set_plan,
        4 => (1..=3usize).prop_map(|max_accounts| Action::Sweep { max_accounts }),
        5 => account.prop_map(|account| Action::Balance { account }),
    ]
}

fn advance_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        12 => Just(0),
        16 => 1..5 * S,
        6 => 5 * S..10 * MIN,
        2 => 10 * MIN..20 * HOUR,
        // Rare, so that holds are mostly finished by the workers before the store forgets
        // them (7 days); enough for cycles to roll over in most cases.
        1 => DAY..40 * DAY,
    ]
}

/// A few plans and grants first, so that most cases have funds to spend; the random steps
/// change them later.
fn setup() -> impl Strategy<Value = Action> {
    let account = 0..ACCOUNTS.len();
    let set_plan = (
        account.clone(),
        1..PLANS.len(),
        prop::option::of(0..=60 * DAY),
    )
        .prop_map(|(account, plan, anchor_back_ms)| Action::SetPlan {
            account,
            again: None,
            plan,
            anchor_back_ms,
        });
    let grant = (account, 1..=500u64, any::<bool>()).prop_map(|(account, units, promotional)| {
        Action::Grant {
            account,
            again: None,
            units,
            promotional,
            expires_in_ms: None,
        }
    });
    prop_oneof![set_plan, grant]
}

fn case() -> impl Strategy<Value = Case> {
    let step =
        (advance_ms(), action()).prop_map(|(advance_ms, action)| Step { advance_ms, action });
    let setup = setup().prop_map(|action| Step {
        advance_ms: 0,
        action,
    });
    // 10-60 steps are generated; wrapped in options (virtually always `Some`) so that shrinking
    // can still drop steps below that length, down to the few that matter.
    let steps = prop::collection::vec(prop::option::weighted(0.999, step), 10..=60);
    (0..365 * DAY, prop::collection::vec(setup, 0..=4), steps).prop_map(
        |(start_offset_ms, mut steps, more)| {
            steps.extend(more.into_iter().flatten());
            Case {
                start_offset_ms,
                steps,
            }
        },
    )
}

/// What the driver sent before, per account, so later steps can refer to it.
#[derive(Default, Clone)]
struct Known {
    /// Every Reserve sent (retries pick from these).
    reserves: Vec<ReserveCmd>,
    /// Generation ids whose Reserve made a new hold.
    holds: Vec<String>,
    /// Step of the newest of `holds`.
    newest_hold_step: Option<usize>,
    grants: Vec<GrantCmd>,
    plans: Vec<SetPlanCmd>,
    batches: Vec<ReserveBatchCmd>,
    refunds: Vec<RefundCmd>,
    /// Generations whose Settle charged something.
    settled: Vec<String>,
    /// Σ `charged_units` of first (not replayed) Settle answers.
    charged_by_settle: u64,
    /// Σ `refunded_units` of first (not replayed) Refund answers.
    refunded: u64,
}

fn picked<T>(items: &[T], pick: Pick) -> Option<&T> {
    (!items.is_empty()).then(|| &items[items.len() - 1 - pick % items.len()])
}

/// An operation with every id and time resolved, run the same way on both stores.
#[derive(Debug)]
enum Op {
    Reserve(ReserveCmd),
    Settle(String, String, Option<u32>),
    Release(String, String, ReleaseReason),
    Extend(String, String, u32),
    Grant(GrantCmd),
    Revoke(String, String),
    SetPlan(SetPlanCmd),
    Sweep(usize),
    Balance(String),
    Quote(QuoteCmd),
    ReserveBatch(ReserveBatchCmd),
    Refund(RefundCmd),
}

fn resolve(action: &Action, known: &[Known], step: usize, now_ms: i64) -> Op {
    let hold = |account: usize, pick: Pick| {
        // An account that never had a hold: the newest hold of any account instead.
        let account = match known.iter().position(|k| !k.holds.is_empty()) {
            Some(_) if known[account].holds.is_empty() => (0..known.len())
                .max_by_key(|&i| known[i].newest_hold_step)
                .unwrap_or(account),
            _ => account,
        };
        let generation = picked(&known[account].holds, pick);
        // Nothing reserved yet: a generation nobody knows.
        let generation = generation.cloned().unwrap_or_else(|| "gen-unknown".into());
        (ACCOUNTS[account].to_string(), generation)
    };
    match *action {
        Action::Reserve {
            account,
            again,
            kind,
            model,
            quantity,
            ttl_seconds,
        } => {
            let earlier = again.and_then(|a| Some((picked(&known[account].reserves, a.pick)?, a)));
            Op::Reserve(match earlier {
                Some((cmd, again)) => {
                    let mut cmd = cmd.clone();
                    if !again.same {
                        cmd.quantity += 1;
                    }
                    cmd
                }
                None => ReserveCmd {
                    account_id: ACCOUNTS[account].into(),
                    generation_id: format!("gen-{step}"),
                    kind,
                    model: MODELS[model].into(),
                    quantity,
                    ttl_seconds,
                    labels: BTreeMap::from([("step".to_string(), step.to_string())]),
                },
            })
        }
        Action::Settle {
            account,
            pick,
            actual,
        } => {
            let (a, g) = hold(account, pick);
            Op::Settle(a, g, actual)
        }
        Action::Release {
            account,
            pick,
            reason,
        } => {
            let (a, g) = hold(account, pick);
            Op::Release(a, g, REASONS[reason])
        }
        Action::Extend {
            account,
            pick,
            ttl_seconds,
        } => {
            let (a, g) = hold(account, pick);
            Op::Extend(a, g, ttl_seconds)
        }
        Action::Grant {
            account,
            again,
            units,
            promotional,
            expires_in_ms,
        } => {
            let earlier = again.and_then(|a| Some((picked(&known[account].grants, a.pick)?, a)));
            Op::Grant(match earlier {
                Some((cmd, again)) => {
                    let mut cmd = cmd.clone();
                    if !again.same {
                        cmd.units = units;
                    }
                    cmd
                }
                None => GrantCmd {
                    account_id: ACCOUNTS[account].into(),
                    grant_id: format!("grant-{step}"),
                    units,
                    source: if promotional {
                        CreditSource::Promotional
                    } else {
                        CreditSource::Purchased
                    },
                    expires_at_ms: expires_in_ms.map(|ms| now_ms + ms),
                },
            })
        }
        Action::Revoke { account, pick } => {
            let grant = picked(&known[account].grants, pick);
            let grant_id = grant.map_or_else(|| "grant-unknown".into(), |g| g.grant_id.clone());
            Op::Revoke(ACCOUNTS[account].into(), grant_id)
        }
        Action::SetPlan {
            account,
            again,
            plan,
            anchor_back_ms,
        } => {
            let earlier = again.and_then(|a| Some((picked(&known[account].plans, a.pick)?, a)));
            Op::SetPlan(match earlier {
                Some((cmd, again)) => {
                    let mut cmd = cmd.clone();
                    if !again.same {
                        cmd.plan = PLANS[plan].into();
                    }
                    cmd
                }
                None => SetPlanCmd {
                    request_id: format!("plan-{step}"),
                    account_id: ACCOUNTS[account].into(),
                    plan: PLANS[plan].into(),
                    cycle_anchor_ms: anchor_back_ms.map(|ms| now_ms - ms),
                },
            })
        }
        Action::Sweep { max_accounts } => Op::Sweep(max_accounts),
        Action::Balance { account } => Op::Balance(ACCOUNTS[account].into()),
        Action::Quote {
            account,
            kind,
            model,
            quantity,
        } => Op::Quote(QuoteCmd {
            account_id: ACCOUNTS[account].into(),
            kind,
            model: MODELS[model].into(),
            quantity,
        }),
        Action::ReserveBatch {
            account,
            again,
            ref sizes,
            ttl_seconds,
        } => {
            let earlier = again.and_then(|a| Some((picked(&known[account].batches, a.pick)?, a)));
            Op::ReserveBatch(match earlier {
                Some((cmd, again)) => {
                    let mut cmd = cmd.clone();
                    if !again.same {
                        // Overlap: the first id again, with a new one after it.
                        cmd.items.truncate(1);
                        cmd.items.push(BatchItem {
                            generation_id: format!("batch-{step}-new"),
                            ..cmd.items[0].clone()
                        });
                    }
                    cmd
                }
                None => ReserveBatchCmd {
                    account_id: ACCOUNTS[account].into(),
                    items: sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &quantity)| BatchItem {
                            generation_id: format!("batch-{step}-{i}"),
                            kind: if i % 2 == 0 {
                                Kind::CharacterImage
                            } else {
                                Kind::Video
                            },
                            model: "standard".into(),
                            quantity,
                            labels: BTreeMap::new(),
                        })
                        .collect(),
                    ttl_seconds,
                },
            })
        }
        Action::Refund {
            account,
            pick,
            again,
            units,
        } => {
            let earlier = again.and_then(|a| Some((picked(&known[account].refunds, a.pick)?, a)));
            Op::Refund(match earlier {
                Some((cmd, again)) => {
                    let mut cmd = cmd.clone();
                    if !again.same {
                        cmd.units += 1;
                    }
                    cmd
                }
                None => RefundCmd {
                    account_id: ACCOUNTS[account].into(),
                    generation_id: picked(&known[account].settled, pick)
                        .cloned()
                        .unwrap_or_else(|| "gen-unknown".into()),
                    refund_id: format!("refund-{step}"),
                    units,
                    reason: "test".into(),
                },
            })
        }
    }
}

/// What one operation answered, as text (both stores' answers must be identical), whether a
/// Reserve made a new hold, the units a first (not replayed) Settle charged and a first Refund
/// gave back.
struct Outcome {
    answer: String,
    new_hold: bool,
    settled: Option<u64>,
    refunded: Option<u64>,
    batch_holds: Vec<String>,
}

async fn apply(store: &dyn Store, op: &Op, now_ms: i64) -> Outcome {
    let plain = |answer: String| Outcome {
        answer,
        new_hold: false,
        settled: None,
        refunded: None,
        batch_holds: Vec::new(),
    };
    match op {
        Op::Reserve(cmd) => {
            let r = store.reserve(cmd, now_ms).await;
            Outcome {
                new_hold: matches!(&r, Ok(reserved) if !reserved.replayed),
                answer: format!("{r:?}"),
                settled: None,
                refunded: None,
                batch_holds: Vec::new(),
            }
        }
        Op::Settle(a, g, actual) => {
            let r = store.settle(a, g, *actual, now_ms).await;
            Outcome {
                settled: match &r {
                    Ok(s) if !s.replayed => Some(s.charged_units),
                    _ => None,
                },
                answer: format!("{r:?}"),
                new_hold: false,
                refunded: None,
                batch_holds: Vec::new(),
            }
        }
        Op::Release(a, g, reason) => {
            plain(format!("{:?}", store.release(a, g, *reason, now_ms).await))
        }
        Op::Extend(a, g, ttl) => plain(format!("{:?}", store.extend(a, g, *ttl, now_ms).await)),
        Op::Grant(cmd) => plain(format!("{:?}", store.grant_credits(cmd, now_ms).await)),
        Op::Revoke(a, grant) => plain(format!(
            "{:?}",
            store.revoke_credits(a, grant, now_ms).await
        )),
        Op::SetPlan(cmd) => plain(format!("{:?}", store.set_plan(cmd, now_ms).await)),
        Op::Sweep(max_accounts) => {
            let mut expired = Vec::new();
            for shard in Shards::DEFAULT.all() {
                expired.push(store.expire_due(shard, now_ms, *max_accounts).await);
            }
            plain(format!("{expired:?}"))
        }
        Op::Balance(a) => plain(format!("{:?}", store.balance(a, now_ms).await)),
        Op::Quote(cmd) => plain(format!("{:?}", store.quote(cmd, now_ms).await)),
        Op::ReserveBatch(cmd) => {
            let r = store.reserve_batch(cmd, now_ms).await;
            let mut outcome = plain(format!("{r:?}"));
            if let Ok(batch) = &r {
                if !batch.replayed {
                    outcome.batch_holds = batch
                        .holds
                        .iter()
                        .map(|h| h.generation_id.clone())
                        .collect();
                }
            }
            outcome
        }
        Op::Refund(cmd) => {
            let r = store.refund(cmd, now_ms).await;
            let mut outcome = plain(format!("{r:?}"));
            outcome.refunded = match &r {
                Ok(refund) if !refund.replayed => Some(refund.refunded_units),
                _ => None,
            };
            outcome
        }
    }
}

/// Remembers what a step sent and what came of it.
fn learn(known: &mut [Known], step: usize, op: &Op, outcome: &Outcome) {
    if let Op::Sweep(_) = op {
        return;
    }
    let k = &mut known[touched(op)[0]];
    match op {
        Op::Reserve(cmd) => {
            k.reserves.push(cmd.clone());
            if outcome.new_hold {
                k.holds.push(cmd.generation_id.clone());
                k.newest_hold_step = Some(step);
            }
        }
        Op::Grant(cmd) => k.grants.push(cmd.clone()),
        Op::SetPlan(cmd) => k.plans.push(cmd.clone()),
        Op::Settle(_, g, _) => {
            k.charged_by_settle += outcome.settled.unwrap_or(0);
            if outcome.settled.is_some_and(|units| units > 0) {
                k.settled.push(g.clone());
            }
        }
        Op::ReserveBatch(cmd) => {
            k.batches.push(cmd.clone());
            if !outcome.batch_holds.is_empty() {
                k.holds.extend(outcome.batch_holds.iter().cloned());
                k.newest_hold_step = Some(step);
            }
        }
        Op::Refund(cmd) => {
            k.refunds.push(cmd.clone());
            k.refunded += outcome.refunded.unwrap_or(0);
        }
        _ => {}
    }
}

/// The accounts a step may have changed.
fn touched(op: &Op) -> Vec<usize> {
    let account_id = match op {
        Op::Reserve(cmd) => &cmd.account_id,
        Op::Grant(cmd) => &cmd.account_id,
        Op::SetPlan(cmd) => &cmd.account_id,
        Op::Quote(cmd) => &cmd.account_id,
        Op::ReserveBatch(cmd) => &cmd.account_id,
        Op::Refund(cmd) => &cmd.account_id,
        Op::Settle(a, ..)
        | Op::Release(a, ..)
        | Op::Extend(a, ..)
        | Op::Revoke(a, _)
        | Op::Balance(a) => a,
        Op::Sweep(_) => return (0..ACCOUNTS.len()).collect(),
    };
    let account = ACCOUNTS.iter().position(|a| a == account_id);
    vec![account.expect("one of the test's accounts")]
}

/// Events as both stores write them, ack ids aside.
fn comparable(events: impl IntoIterator<Item = UsageEvent>) -> Vec<UsageEvent> {
    events
        .into_iter()
        .map(|mut e| {
            e.ack_id.clear();
            e
        })
        .collect()
}

/// One account's events as each store has them, in stream order.
async fn account_events(
    memory: &MemoryStore,
    redis: &mut MultiplexedConnection,
    account_id: &str,
) -> (Vec<UsageEvent>, Vec<UsageEvent>) {
    let of_account = |events: Vec<UsageEvent>| {
        comparable(events.into_iter().filter(|e| e.account_id == account_id))
    };
    let in_memory = of_account(memory.all_events());
    let in_redis =
        of_account(harness::events::shard_events(redis, Shards::DEFAULT.of(account_id)).await);
    (in_memory, in_redis)
}

/// The ledger's invariants on one account view.
fn check_view(store: &str, view: &AccountView) -> Result<(), TestCaseError> {
    let b = &view.balance;
    let a = &b.account_id;
    prop_assert!(
        b.allowance_used + b.allowance_held <= b.allowance_total,
        "{store} {a}: used + held > total in {b:?}"
    );
    prop_assert_eq!(
        b.allowance_available,
        b.allowance_total - b.allowance_used - b.allowance_held,
        "{} {}: available",
        store,
        a
    );
    for g in &view.grants {
        prop_assert!(
            g.units_remaining + g.units_held <= g.units_granted,
            "{store} {a}: grant below zero or above its units: {g:?}"
        );
    }
    let remaining: u64 = view.grants.iter().map(|g| g.units_remaining).sum();
    let held: u64 = view.grants.iter().map(|g| g.units_held).sum();
    prop_assert_eq!(b.credits_available, remaining, "{} {}: credits", store, a);
    prop_assert_eq!(b.credits_held, held, "{} {}: credits held", store, a);
    prop_assert_eq!(
        b.open_holds as usize,
        view.holds.len(),
        "{} {}: open holds",
        store,
        a
    );
    let mut drawn: BTreeMap<&str, u64> = BTreeMap::new();
    let mut from_allowance = 0;
    for h in &view.holds {
        prop_assert_eq!(h.state, HoldState::Held, "{} {}: {:?}", store, a, h);
        prop_assert_eq!(h.cost_units, h.from_allowance + h.from_credits, "{:?}", h);
        let credits: u64 = h.grants.iter().map(|d| d.units).sum();
        prop_assert_eq!(credits, h.from_credits, "{} {}: draws of {:?}", store, a, h);
        for d in &h.grants {
            *drawn.entry(&d.grant_id).or_default() += d.units;
        }
        from_allowance += h.from_allowance;
    }
    // Holds of a closed cycle no longer count against the allowance.
    prop_assert!(
        from_allowance >= b.allowance_held,
        "{store} {a}: holds drew {from_allowance} from the allowance, balance holds {}",
        b.allowance_held
    );
    for g in &view.grants {
        prop_assert_eq!(
            drawn.remove(g.grant_id.as_str()).unwrap_or(0),
            g.units_held,
            "{} {}: held parts of {:?}",
            store,
            a,
            g
        );
    }
    prop_assert!(
        drawn.is_empty(),
        "{store} {a}: holds draw from unknown grants {drawn:?}"
    );
    Ok(())
}

/// The account's events against its ledger: Σ `hold.settled` = lifetime charged = what first
/// Settle answers said.
fn check_events(
    store: &str,
    view: &AccountView,
    events: &[UsageEvent],
    charged_by_settle: u64,
    refunded_by_refund: u64,
) -> Result<(), TestCaseError> {
    let a = &view.balance.account_id;
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    prop_assert_eq!(sequences, expected, "{} {}: sequences", store, a);
    let mut ids = HashSet::new();
    for e in events {
        prop_assert!(ids.insert(&e.id), "{store} {a}: event id {} repeats", e.id);
    }
    let settled = events
        .iter()
        .filter(|e| e.event_type == events::HOLD_SETTLED);
    let (mut units, mut from_allowance, mut from_credits) = (0, 0, 0);
    for e in settled {
        units += e.units;
        from_allowance += e.from_allowance;
        from_credits += e.from_credits;
    }
    // Refunds take back part of a charge: Σ settled − Σ refunded = lifetime charged.
    let mut refunded = 0;
    for e in events
        .iter()
        .filter(|e| e.event_type == events::HOLD_REFUNDED)
    {
        refunded += e.units;
        from_allowance -= e.from_allowance;
        from_credits -= e.from_credits;
        prop_assert_eq!(
            e.units,
            e.from_allowance + e.from_credits,
            "{} {}",
            store,
            e.id
        );
    }
    let charged = view.lifetime_charged;
    prop_assert_eq!(
        (from_allowance, from_credits),
        (charged.allowance_units, charged.credit_units),
        "{} {}: Σ hold.settled against the ledger",
        store,
        a
    );
    prop_assert_eq!(units, charged_by_settle, "{} {}: Settle answers", store, a);
    prop_assert_eq!(
        refunded,
        refunded_by_refund,
        "{} {}: Refund answers",
        store,
        a
    );
    Ok(())
}

/// Both stores agree on the account, and each keeps the invariants.
async fn check_account(
    memory: &MemoryStore,
    redis: &RedisStore,
    conn: &mut MultiplexedConnection,
    account: usize,
    charged_by_settle: u64,
    refunded_by_refund: u64,
    now_ms: i64,
) -> Result<AccountView, TestCaseError> {
    let account_id = ACCOUNTS[account];
    let in_memory = memory.account(account_id, now_ms).await;
    let in_redis = redis.account(account_id, now_ms).await;
    prop_assert_eq!(
        &in_memory,
        &in_redis,
        "account views of {}: memory (left), Redis (right)",
        account_id
    );
    let view = in_memory.map_err(|e| TestCaseError::fail(format!("{account_id}: {e}")))?;
    check_view("memory/redis", &view)?;
    let (memory_events, redis_events) = account_events(memory, conn, account_id).await;
    prop_assert_eq!(
        &memory_events,
        &redis_events,
        "events of {}: memory (left), Redis (right)",
        account_id
    );
    check_events(
        "memory/redis",
        &view,
        &memory_events,
        charged_by_settle,
        refunded_by_refund,
    )?;
    Ok(view)
}

/// Answer kinds seen over a run (operation and `Ok` or the error variant), so a generator that
/// only ever hits errors shows up.
type Tally = std::sync::Mutex<BTreeMap<String, usize>>;

fn tally(tally: &Tally, action: &Action, answer: &str) {
    let op = format!("{action:?}");
    let op = op.split([' ', '{']).next().unwrap_or_default().to_string();
    let what = match answer.strip_prefix("Err(") {
        Some(err) => err.split(['(', ' ', '{']).next().unwrap_or_default(),
        None if answer.contains("replayed: true") => "Ok (replayed)",
        None => "Ok",
    };
    *tally
        .lock()
        .unwrap()
        .entry(format!("{op} {what}"))
        .or_default() += 1;
}

async fn run_case(
    seen: &Tally,
    catalog: &Arc<Catalog>,
    redis: &RedisStore,
    conn: &mut MultiplexedConnection,
    case: Case,
) -> Result<(), TestCaseError> {
    let () = ::redis::cmd("FLUSHALL").query_async(conn).await.unwrap();
    let memory = MemoryStore::new(catalog.clone());
    let mut now_ms = START_MS + case.start_offset_ms;
    let mut known = vec![Known::default(); ACCOUNTS.len()];
    for (i, step) in case.steps.iter().enumerate() {
        now_ms += step.advance_ms;
        let op = resolve(&step.action, &known, i, now_ms);
        let m = apply(&memory, &op, now_ms).await;
        let r = apply(redis, &op, now_ms).await;
        prop_assert_eq!(
            &m.answer,
            &r.answer,
            "step {}: {:?}: memory (left), Redis (right)",
            i,
            op
        );
        tally(seen, &step.action, &m.answer);
        for bad in ["Unavailable", "Internal"] {
            prop_assert!(!m.answer.contains(bad), "step {i}: {}", m.answer);
        }
        learn(&mut known, i, &op, &m);
        for account in touched(&op) {
            check_account(
                &memory,
                redis,
                conn,
                account,
                known[account].charged_by_settle,
                known[account].refunded,
                now_ms,
            )
            .await
            .map_err(|e| TestCaseError::fail(format!("after step {i} {op:?}: {e}")))?;
        }
    }
    {
        let mut seen = seen.lock().unwrap();
        for e in memory.all_events() {
            *seen.entry(format!("event {}", e.event_type)).or_default() += 1;
        }
    }
    // Past any hold's lifetime and a sweep: every hold has ended and returned what it held.
    now_ms += 2 * DAY;
    let m = apply(&memory, &Op::Sweep(ACCOUNTS.len()), now_ms).await;
    let r = apply(redis, &Op::Sweep(ACCOUNTS.len()), now_ms).await;
    prop_assert_eq!(&m.answer, &r.answer, "final sweep");
    for account in 0..ACCOUNTS.len() {
        let view = check_account(
            &memory,
            redis,
            conn,
            account,
            known[account].charged_by_settle,
            known[account].refunded,
            now_ms,
        )
        .await
        .map_err(|e| TestCaseError::fail(format!("at the end: {e}")))?;
        let b = &view.balance;
        prop_assert!(
            view.holds.is_empty() && b.allowance_held == 0 && b.credits_held == 0,
            "{}: holds left after their lifetime: {:?}",
            ACCOUNTS[account],
            view
        );
    }
    Ok(())
}

fn config() -> Config {
    let mut config = Config {
        // A failing case's seed goes to `model_property.proptest-regressions` next to this
        // file and is replayed first on the next run.
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        // Each shrink step replays a whole sequence on both stores: bound the search.
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config
}

#[test]
fn memory_and_redis_agree_on_random_operation_sequences() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One private Redis for every case, flushed between cases (cases run one at a time).
    let server = harness::RedisServer::start();
    let catalog = Arc::new(Catalog::builtin());
    let (redis, conn) = runtime.block_on(async {
        let store = RedisStore::connect(&server.url(), catalog.clone(), Duration::from_secs(2))
            .await
            .expect("connect");
        let client = ::redis::Client::open(server.url()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        (store, conn)
    });
    assert_eq!(
        Shards::DEFAULT.of(ACCOUNTS[0]),
        Shards::DEFAULT.of(ACCOUNTS[1])
    );
    assert_ne!(
        Shards::DEFAULT.of(ACCOUNTS[0]),
        Shards::DEFAULT.of(ACCOUNTS[2])
    );
    let config = config();
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let seen = Tally::default();
    let started = Instant::now();
    let result = runner.run(&case(), |case| {
        runtime.block_on(run_case(&seen, &catalog, &redis, &mut conn.clone(), case))
    });
    println!("{cases} cases in {:?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner().unwrap();
    println!("answers: {seen:#?}");
    // Guards against a generator that stops reaching the interesting paths.
    if cases >= DEFAULT_CASES {
        for expected in [
            "Reserve Ok",
            "Settle Ok",
            "Settle Ok (replayed)",
            "Release Ok",
            "Extend Ok",
            "Grant Ok",
            "Revoke Ok",
            "SetPlan Ok",
            "event hold.expired",
            "event cycle.renewed",
            "event plan.upgraded",
            "event plan.downgrade_scheduled",
        ] {
            assert!(
                seen.contains_key(expected),
                "no {expected:?} in {cases} cases"
            );
        }
    }
}
