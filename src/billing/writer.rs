//! One batch of events in one transaction. Each event is inserted by its id with
//! `ON CONFLICT DO NOTHING RETURNING`; only a row that came back moves the aggregates, so an
//! event delivered again (after a crash before the ack) is counted once. The batch's sequences
//! are tracked first ([`sequence::track`]), in the same transaction.

use time::OffsetDateTime;
use tokio_postgres::{Client, Transaction};

use super::db::{self, PgSettings};
use super::prepared::Prepared;
use super::record::{self, EventRecord};
use super::sequence::{self, AccountChange};
use super::{aggregate, BillingError};
use crate::api::event_json::usage_event_json;
use crate::pb;

const INSERT_EVENT: &str = "INSERT INTO usage_events (event_id, event_type, account_id, \
     occurred_at, sequence, generation_id, kind, model, quantity, units, from_allowance_units, \
     from_credits_units, units_lost, grant_id, refund_id, plan, previous_plan, cycle_start, \
     prorated_charge_cents, allowance_added_units, threshold_percent, event) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22) ON CONFLICT (event_id) DO NOTHING RETURNING event_id";

const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (dead_letter_key, event_id, reason, \
     event) VALUES ($1, $2, $3, $4) ON CONFLICT (dead_letter_key) DO NOTHING \
     RETURNING dead_letter_key";

/// What one committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events inserted (first delivery).
    pub written: u64,
    /// Events already in the database (a redelivery).
    pub duplicates: u64,
    /// Events that could not be taken in, newly put in the dead-letter table.
    pub dead_letters: u64,
    /// Time of the newest event of the batch.
    pub newest_event_at: Option<OffsetDateTime>,
    /// Accounts whose sequence gaps the batch opened or filled.
    pub sequence_changes: Vec<AccountChange>,
}

/// A connection that writes batches.
pub struct Writer {
    client: Client,
    prepared: Prepared,
}

impl Writer {
    /// Connects and brings the schema up to date.
    pub async fn connect(settings: &PgSettings) -> Result<Writer, BillingError> {
        let mut client = db::connect(settings).await?;
        db::migrate(&mut client).await?;
        Ok(Writer {
            client,
            prepared: Prepared::default(),
        })
    }

    /// Whether the connection is gone (the next write would fail).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes `events` in one transaction and commits. On an error nothing of the batch is
    /// kept, and the caller writes it again (on a new connection).
    pub async fn write_batch(
        &mut self,
        events: &[pb::UsageEvent],
    ) -> Result<BatchOutcome, BillingError> {
        let tx = self.client.transaction().await?;
        let mut outcome = BatchOutcome {
            // Dead letters count as received: they are in the database, with their reason.
            sequence_changes: sequence::track(
                &tx,
                &mut self.prepared,
                events.iter().filter_map(sequence_of),
            )
            .await?,
            ..BatchOutcome::default()
        };
        for e in events {
            match record::parse(e) {
                Ok(r) => {
                    outcome.newest_event_at = outcome.newest_event_at.max(Some(r.occurred_at));
                    if insert_event(&tx, &mut self.prepared, &r).await? {
                        aggregate::apply(&tx, &mut self.prepared, &r).await?;
                        outcome.written += 1;
                    } else {
                        outcome.duplicates += 1;
                    }
                }
                Err(reason) => {
                    tracing::warn!(event_id = %e.id, %reason, "event put in the dead-letter table");
                    if insert_dead_letter(&tx, &mut self.prepared, e, &reason).await? {
                        outcome.dead_letters += 1;
                    } else {
                        outcome.duplicates += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

/// The account and sequence of an event, when it has both.
fn sequence_of(e: &pb::UsageEvent) -> Option<(String, i64)> {
    let seq = i64::try_from(e.sequence).ok()?;
    (!e.account_id.is_empty() && seq >= sequence::FIRST_SEQUENCE)
        .then(|| (e.account_id.clone(), seq))
}

async fn insert_event(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    r: &EventRecord,
) -> Result<bool, tokio_postgres::Error> {
    let s = prepared.get(tx, INSERT_EVENT).await?;
    let row = tx
        .query_opt(
            &s,
            &[
                &r.event_id,
                &r.event_type,
                &r.account_id,
                &r.occurred_at,
                &r.sequence,
                &r.generation_id,
                &r.kind,
                &r.model,
                &r.quantity,
                &r.units,
                &r.from_allowance_units,
                &r.from_credits_units,
                &r.units_lost,
                &r.grant_id,
                &r.refund_id,
                &r.plan,
                &r.previous_plan,
                &r.cycle_start,
                &r.prorated_charge_cents,
                &r.allowance_added_units,
                &r.threshold_percent,
                &r.event,
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// Keyed by the event id, so a redelivered bad event is counted once; an event without an id
/// by its position in the log.
async fn insert_dead_letter(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    e: &pb::UsageEvent,
    reason: &str,
) -> Result<bool, tokio_postgres::Error> {
    let key = if e.id.is_empty() {
        format!("ack:{}", e.ack_id)
    } else {
        e.id.clone()
    };
    let s = prepared.get(tx, INSERT_DEAD_LETTER).await?;
    let row = tx
        .query_opt(&s, &[&key, &e.id, &reason, &usage_event_json(e)])
        .await?;
    Ok(row.is_some())
}
