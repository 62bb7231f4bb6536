//! Refund: gives back a settled generation's charge, whole or in part, to the allowance or as
//! credits to a grant of its own (the twin of `src/store/redis/lua/refund.lua`).

use super::{minus, wrong_state, Account, LedgerResult, Recall, RefundRecord, RETENTION_MS};
use crate::ledger::error::LedgerError;
use crate::ledger::event::{self as events, UsageEvent};
use crate::ledger::model::{Grant, HoldState, RefundCmd, Refunded};
use crate::ledger::{CreditSource, GrantDraw};

impl Recall {
    /// Refund: the refund, its generation, and the name its credits' grant would take.
    pub fn refund(cmd: &RefundCmd) -> Recall {
        Recall {
            holds: vec![cmd.generation_id.clone()],
            refund_grant: Some((cmd.generation_id.clone(), cmd.refund_id.clone())),
            refunds: vec![cmd.refund_id.clone()],
            ..Recall::default()
        }
    }
}

impl Account {
    /// Gives back a settled generation's charge, whole (`units` 0) or in part: the part that
    /// was charged from the allowance first, back to the allowance while the hold's cycle is
    /// the current one; everything else as credits to a new promotional grant
    /// [`refund_grant_id`] without expiry. Idempotent on the refund id; never
    /// more than is left of the charge.
    pub fn refund(&mut self, cmd: &RefundCmd, now_ms: i64) -> LedgerResult<Refunded> {
        if let Some(r) = self.refunds.get(&cmd.refund_id) {
            if r.generation_id != cmd.generation_id || r.units_requested != cmd.units {
                return Err(LedgerError::RefundConflict {
                    refund_id: cmd.refund_id.clone(),
                });
            }
            return Ok(Refunded {
                refunded_units: r.refunded_units,
                to_allowance: r.to_allowance,
                to_credits: r.to_credits,
                grant_id: r.grant_id.clone(),
                replayed: true,
                balance: self.balance(),
            });
        }
        let record = self.hold_record(&cmd.generation_id)?.clone();
        if record.hold.state != HoldState::Settled {
            return Err(wrong_state(&cmd.generation_id, record.hold.state, "refund"));
        }
        let charged = record.hold.charged_units;
        let refundable = charged - record.refunded_units;
        let units = if cmd.units == 0 {
            refundable
        } else {
            cmd.units
        };
        if units == 0 || units > refundable {
            return Err(LedgerError::RefundAboveCharge {
                generation_id: cmd.generation_id.clone(),
                requested: units,
                refundable,
            });
        }
        // Refunds give back the allowance part of the charge first.
        let allowance_left = record
            .charged_from_allowance
            .saturating_sub(record.refunded_units);
        let of_allowance = units.min(allowance_left);
        let of_credits = units - of_allowance;
        let same_cycle = self.cycle.is_some() && record.cycle_number == self.cycle_number;
        let to_allowance = if same_cycle { of_allowance } else { 0 };
        let to_credits = units - to_allowance;
        let grant_id = (to_credits > 0).then(|| {
            refund_grant_id(
                &cmd.generation_id,
                record.hold.created_at_ms,
                &cmd.refund_id,
            )
        });
        if let Some(id) = &grant_id {
            // Only a grant made before the prefix was reserved can bear the name: a conflict
            // with this refund's id, not a broken ledger.
            if self.grants.contains_key(id) || self.tombstones.contains_key(id) {
                return Err(LedgerError::RefundConflict {
                    refund_id: cmd.refund_id.clone(),
                });
            }
            self.add_grant(Grant {
                grant_id: id.clone(),
                source: CreditSource::Promotional,
                units_granted: to_credits,
                units_remaining: to_credits,
                units_held: 0,
                expires_at_ms: None,
                created_at_ms: now_ms,
            })?;
        }
        self.allowance_used = minus(self.allowance_used, to_allowance, "allowance used")?;
        self.lifetime_charged.allowance_units = minus(
            self.lifetime_charged.allowance_units,
            of_allowance,
            "lifetime allowance charged",
        )?;
        self.lifetime_charged.credit_units = minus(
            self.lifetime_charged.credit_units,
            of_credits,
            "lifetime credits charged",
        )?;
        let r = self.holds.get_mut(&cmd.generation_id).expect("read above");
        r.refunded_units += units;
        let r = r.clone();
        let h = &r.hold;
        let event = UsageEvent {
            generation_id: h.generation_id.clone(),
            kind: Some(h.kind),
            model: h.model.clone(),
            units,
            from_allowance: of_allowance,
            from_credits: of_credits,
            allowance_added: to_allowance,
            grants: grant_id
                .iter()
                .map(|id| GrantDraw {
                    grant_id: id.clone(),
                    units: to_credits,
                })
                .collect(),
            grant_id: grant_id.clone().unwrap_or_default(),
            reason: cmd.reason.clone(),
            refund_id: cmd.refund_id.clone(),
            cycle_start_ms: r.cycle_start_ms,
            // A finished hold keeps no labels (the Redis record is kept short), so refunds,
            // which come after, carry none.
            ..UsageEvent::default()
        };
        let id = events::hold_event_id(
            &self.account_id,
            &h.generation_id,
            h.created_at_ms,
            &format!("refunded:{}", cmd.refund_id),
        );
        self.emit(events::HOLD_REFUNDED, id, now_ms, event);
        self.refunds.insert(
            cmd.refund_id.clone(),
            RefundRecord {
                generation_id: cmd.generation_id.clone(),
                units_requested: cmd.units,
                refunded_units: units,
                to_allowance,
                to_credits,
                grant_id: grant_id.clone(),
                forget_at_ms: now_ms + RETENTION_MS,
            },
        );
        Ok(Refunded {
            refunded_units: units,
            to_allowance,
            to_credits,
            grant_id,
            replayed: false,
            balance: self.balance(),
        })
    }
}

/// The promotional grant a refund's credits go to: `refund:` and the SHA-1, in hex, of
/// `<length of generation_id>:<generation_id>:<created_at_ms>:<refund_id>`. The length prefix
/// makes the encoding unambiguous (`a:b` + `c` and `a` + `b:c` are two grants, where joining
/// the ids would name one); the hold's creation time tells a generation id reused after
/// retention from the first hold of that id, whose refund grant may still live; the digest
/// keeps the name at 47 characters, a grant id RevokeCredits accepts, however long the ids. GrantCredits refuses the `refund:` prefix, so no
/// other grant takes such a name; the Lua twin computes the same with `redis.sha1hex`.
pub fn refund_grant_id(generation_id: &str, created_at_ms: i64, refund_id: &str) -> String {
    let encoded = format!(
        "{}:{generation_id}:{created_at_ms}:{refund_id}",
        generation_id.len()
    );
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, encoded.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("refund:{hex}")
}
