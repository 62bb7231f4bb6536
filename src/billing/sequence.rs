//! Each account's events carry a sequence, 1, 2, 3, … with no number skipped (the ledger and
//! its Lua twin add one per event, in the script that makes the change). Billing keeps, per
//! account, the next sequence it expects and the ranges it has not received
//! (`account_sequences`, `sequence_gaps`), in the transaction that writes the events, so a
//! restart, a second replica or a redelivery sees the same state.
//!
//! - An event past the next expected one opens a gap: the numbers between were acked by
//!   someone else, trimmed, or are still on their way in another consumer's batch. The first
//!   event billing ever sees of an account opens `1..=s-1` when `s > 1`.
//! - An event inside a gap (a redelivery, a claim, a batch that committed late) takes its
//!   number out of it; a gap whose last number arrives is closed.
//! - An event already accounted for changes nothing, so redelivery stays harmless.
//!
//! Accounts are locked in name order (`SELECT … FOR UPDATE` through the upsert) before any
//! other write of the batch, so concurrent batches of the same account serialize on that row
//! and never deadlock on it.

use std::collections::BTreeMap;

use tokio_postgres::Transaction;

use super::prepared::Prepared;

/// Sequences start at 1: the first event of an account.
pub const FIRST_SEQUENCE: i64 = 1;

/// A run of sequence numbers of one account that billing has not received, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gap {
    pub first_seq: i64,
    pub last_seq: i64,
}

impl Gap {
    /// How many events are missing.
    pub fn events(&self) -> i64 {
        self.last_seq - self.first_seq + 1
    }

    fn contains(&self, seq: i64) -> bool {
        (self.first_seq..=self.last_seq).contains(&seq)
    }
}

/// An account's tracking state: the next sequence expected and the open gaps before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub next_seq: i64,
    /// Disjoint, in order, all below `next_seq`.
    pub gaps: Vec<Gap>,
}

impl Default for Tracked {
    fn default() -> Self {
        Tracked {
            next_seq: FIRST_SEQUENCE,
            gaps: Vec::new(),
        }
    }
}

/// What taking a batch's sequences changed for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Gaps opened by events past the next expected one.
    pub opened: Vec<Gap>,
    /// Numbers that arrived inside a gap.
    pub filled: u64,
    /// Gaps whose every number has now arrived.
    pub closed: u64,
}

impl Change {
    fn is_empty(&self) -> bool {
        self.opened.is_empty() && self.filled == 0
    }
}

impl Tracked {
    /// Takes the sequences of received events (any order, repeats allowed; numbers below 1
    /// are ignored, the sidecar never sends them).
    pub fn take(&mut self, sequences: impl IntoIterator<Item = i64>) -> Change {
        let mut sequences: Vec<i64> = sequences
            .into_iter()
            .filter(|s| *s >= FIRST_SEQUENCE)
            .collect();
        sequences.sort_unstable();
        sequences.dedup();
        let mut change = Change::default();
        for seq in sequences {
            if seq >= self.next_seq {
                if seq > self.next_seq {
                    let gap = Gap {
                        first_seq: self.next_seq,
                        last_seq: seq - 1,
                    };
                    self.gaps.push(gap);
                    change.opened.push(gap);
                }
                self.next_seq = seq + 1;
                continue;
            }
            let Some(i) = self.gaps.iter().position(|g| g.contains(seq)) else {
                continue; // already received
            };
            change.filled += 1;
            let gap = self.gaps[i];
            let before = Gap {
                first_seq: gap.first_seq,
                last_seq: seq - 1,
            };
            let after = Gap {
                first_seq: seq + 1,
                last_seq: gap.last_seq,
            };
            let rest: Vec<Gap> = [before, after]
                .into_iter()
                .filter(|g| g.first_seq <= g.last_seq)
                .collect();
            if rest.is_empty() {
                change.closed += 1;
            }
            self.gaps.splice(i..=i, rest);
        }
        change
    }
}

/// What a batch changed for one account, after its commit: for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    pub account_id: String,
    pub change: Change,
    /// The gaps still open after the batch.
    pub open: Vec<Gap>,
}

/// Locks every account of the batch in name order (creating its row, expecting sequence 1,
/// when billing has never seen it) and returns its tracking state. Open gaps are read only for
/// accounts with an event below the next expected one.
const LOCK_ACCOUNTS: &str = "INSERT INTO account_sequences AS s (account_id, next_seq) \
     SELECT a, 1 FROM unnest($1::text[]) WITH ORDINALITY AS t(a, n) ORDER BY n \
     ON CONFLICT (account_id) DO UPDATE SET next_seq = s.next_seq \
     RETURNING account_id, next_seq";

const OPEN_GAPS: &str = "SELECT first_seq, last_seq, detected_at FROM sequence_gaps \
     WHERE account_id = $1 ORDER BY first_seq";

const SET_NEXT: &str = "UPDATE account_sequences SET next_seq = $2, updated_at = now() \
     WHERE account_id = $1";

const DELETE_GAPS: &str = "DELETE FROM sequence_gaps WHERE account_id = $1 \
     AND first_seq = ANY($2::bigint[])";

/// A split gap keeps the time its numbers were first found missing.
const INSERT_GAP: &str =
    "INSERT INTO sequence_gaps (account_id, first_seq, last_seq, detected_at) \
     VALUES ($1, $2, $3, COALESCE($4, now()))";

/// Takes the `(account, sequence)` pairs of a batch into the tracking tables, in `tx`, before
/// the batch's other writes (see the module's note on lock order). Accounts whose state did
/// not change beyond the next expected sequence are left out of the result.
pub async fn track(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    events: impl IntoIterator<Item = (String, i64)>,
) -> Result<Vec<AccountChange>, tokio_postgres::Error> {
    let mut by_account: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (account, seq) in events {
        by_account.entry(account).or_default().push(seq);
    }
    if by_account.is_empty() {
        return Ok(Vec::new());
    }
    let accounts: Vec<&str> = by_account.keys().map(String::as_str).collect();
    let lock = prepared.get(tx, LOCK_ACCOUNTS).await?;
    let next: BTreeMap<String, i64> = tx
        .query(&lock, &[&accounts])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut changes = Vec::new();
    for (account, sequences) in by_account {
        let next_seq = next.get(&account).copied().unwrap_or(FIRST_SEQUENCE);
        let late = sequences.iter().any(|s| *s < next_seq);
        let (gaps, detected) = if late {
            open_gaps(tx, prepared, &account).await?
        } else {
            (Vec::new(), BTreeMap::new())
        };
        let mut tracked = Tracked {
            next_seq,
            gaps: gaps.clone(),
        };
        let change = tracked.take(sequences);
        if tracked.next_seq != next_seq {
            let s = prepared.get(tx, SET_NEXT).await?;
            tx.execute(&s, &[&account, &tracked.next_seq]).await?;
        }
        if change.is_empty() {
            continue;
        }
        // The new gap set replaces the old one: rows gone or changed are deleted, new ones
        // inserted.
        let old: Vec<Gap> = gaps;
        let gone: Vec<i64> = old
            .iter()
            .filter(|g| !tracked.gaps.contains(g))
            .map(|g| g.first_seq)
            .collect();
        if !gone.is_empty() {
            let s = prepared.get(tx, DELETE_GAPS).await?;
            tx.execute(&s, &[&account, &gone]).await?;
        }
        for gap in tracked.gaps.iter().filter(|g| !old.contains(g)) {
            // A piece of an older gap keeps that gap's detection time.
            let since: Option<time::OffsetDateTime> = old
                .iter()
                .find(|o| o.first_seq <= gap.first_seq && gap.last_seq <= o.last_seq)
                .and_then(|o| detected.get(&o.first_seq).copied());
            let s = prepared.get(tx, INSERT_GAP).await?;
            tx.execute(&s, &[&account, &gap.first_seq, &gap.last_seq, &since])
                .await?;
        }
        changes.push(AccountChange {
            account_id: account,
            change,
            open: tracked.gaps,
        });
    }
    Ok(changes)
}

/// The account's open gaps and when each was found.
async fn open_gaps(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    account: &str,
) -> Result<(Vec<Gap>, BTreeMap<i64, time::OffsetDateTime>), tokio_postgres::Error> {
    let s = prepared.get(tx, OPEN_GAPS).await?;
    let mut gaps = Vec::new();
    let mut detected = BTreeMap::new();
    for row in tx.query(&s, &[&account]).await? {
        let gap = Gap {
            first_seq: row.get(0),
            last_seq: row.get(1),
        };
        detected.insert(gap.first_seq, row.get(2));
        gaps.push(gap);
    }
    Ok((gaps, detected))
}

/// The open gaps of `account_id`, oldest numbers first (for statements).
pub async fn missing(
    client: &tokio_postgres::Client,
    account_id: &str,
) -> Result<Vec<Gap>, tokio_postgres::Error> {
    Ok(client
        .query(OPEN_GAPS, &[&account_id])
        .await?
        .iter()
        .map(|r| Gap {
            first_seq: r.get(0),
            last_seq: r.get(1),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(first_seq: i64, last_seq: i64) -> Gap {
        Gap {
            first_seq,
            last_seq,
        }
    }

    #[test]
    fn contiguous_sequences_open_nothing() {
        let mut t = Tracked::default();
        assert_eq!(t.take([1, 2, 3]), Change::default());
        assert_eq!(t.take([4]), Change::default());
        assert_eq!(
            t,
            Tracked {
                next_seq: 5,
                gaps: vec![]
            }
        );
    }

    #[test]
    fn a_first_event_past_one_opens_the_gap_before_it() {
        let mut t = Tracked::default();
        let change = t.take([5, 6, 7]);
        assert_eq!(change.opened, [gap(1, 4)]);
        assert_eq!(t.next_seq, 8);
        assert_eq!(t.gaps, [gap(1, 4)]);
    }

    #[test]
    fn redelivered_numbers_fill_a_gap_from_either_side_and_the_middle() {
        let mut t = Tracked::default();
        t.take([1, 9]);
        assert_eq!(t.gaps, [gap(2, 8)]);
        let change = t.take([2, 8, 5]);
        assert_eq!((change.filled, change.closed), (3, 0));
        assert_eq!(t.gaps, [gap(3, 4), gap(6, 7)]);
        let change = t.take([3, 4, 6, 7, 7]);
        assert_eq!((change.filled, change.closed), (4, 2));
        assert!(t.gaps.is_empty());
        assert_eq!(t.next_seq, 10);
    }

    #[test]
    fn repeats_and_out_of_order_batches_change_nothing_twice() {
        let mut t = Tracked::default();
        t.take([3, 1, 2]);
        assert_eq!(
            t,
            Tracked {
                next_seq: 4,
                gaps: vec![]
            }
        );
        assert_eq!(t.take([1, 2, 3, 0, -4]), Change::default());
        // A later batch committed first, the earlier one after it: a gap, then closed.
        let opened = t.take([7, 8]);
        assert_eq!(opened.opened, [gap(4, 6)]);
        let filled = t.take([4, 5, 6]);
        assert_eq!((filled.filled, filled.closed), (3, 1));
        assert_eq!(t.gaps, []);
    }

    #[test]
    fn one_batch_can_fill_an_old_gap_and_open_a_new_one() {
        // Out of order within a batch: sorted first, so no gap at all.
        let mut t = Tracked::default();
        assert_eq!(t.take([1, 4, 2, 3]), Change::default());
        let mut t = Tracked {
            next_seq: 5,
            gaps: vec![gap(2, 3)],
        };
        let change = t.take([2, 3, 7]);
        assert_eq!(change.opened, [gap(5, 6)]);
        assert_eq!((change.filled, change.closed), (2, 1));
        assert_eq!(t.gaps, [gap(5, 6)]);
        assert_eq!(t.gaps[0].events(), 2);
    }
}
