//! ReserveBatch: every item held, in order, or none (the twin of
//! `src/store/redis/lua/reserve_batch.lua`).

use super::reserve::conflict;
use super::{Account, HoldRecord, LedgerResult, Recall};
use crate::ledger::error::LedgerError;
use crate::ledger::model::{BatchItem, ReserveBatchCmd, ReserveCmd, ReservedBatch};
use crate::ledger::prepare::unit_cost;
use crate::ledger::{Catalog, Kind};

impl Recall {
    /// ReserveBatch: every item's generation.
    pub fn batch(cmd: &ReserveBatchCmd) -> Recall {
        Recall {
            holds: cmd
                .items
                .iter()
                .map(|item| item.generation_id.clone())
                .collect(),
            ..Recall::default()
        }
    }
}

impl Account {
    /// Holds every item of the batch, in order, or none: the first item that fails fails the
    /// batch, named. The same batch again replays its holds; a batch with some ids already
    /// used otherwise is a conflict naming one.
    pub fn reserve_batch(
        &mut self,
        catalog: &Catalog,
        cmd: &ReserveBatchCmd,
        now_ms: i64,
    ) -> LedgerResult<ReservedBatch> {
        let known: Vec<Option<&HoldRecord>> = cmd
            .items
            .iter()
            .map(|item| self.holds.get(&item.generation_id))
            .collect();
        if known.iter().any(Option::is_some) {
            let same = |item: &BatchItem, r: &HoldRecord| {
                r.hold.kind == item.kind
                    && r.hold.model == item.model
                    && r.hold.quantity == item.quantity
            };
            if let Some(i) =
                (0..cmd.items.len()).find(|&i| !known[i].is_some_and(|r| same(&cmd.items[i], r)))
            {
                // Some ids are new or were used for other generations: not this batch again.
                let existing = (0..cmd.items.len())
                    .find(|&j| known[j].is_some_and(|r| !same(&cmd.items[j], r)))
                    .or_else(|| (0..cmd.items.len()).find(|&j| known[j].is_some()))
                    .unwrap_or(i);
                let item = &cmd.items[existing];
                let r = known[existing].expect("found above");
                // With no id used for another generation, item `i` is a new one.
                let new_generation = known[i]
                    .is_none()
                    .then(|| cmd.items[i].generation_id.as_str());
                return Err(batch_conflict(
                    &item.generation_id,
                    r.hold.kind,
                    &r.hold.model,
                    r.hold.quantity,
                    &cmd.reserve_cmd(existing),
                    new_generation,
                ));
            }
            return Ok(ReservedBatch {
                holds: known
                    .into_iter()
                    .map(|r| r.expect("all known").hold.clone())
                    .collect(),
                replayed: true,
                balance: self.balance(),
            });
        }
        // A model the catalog lacks is a bad request, named before any item's funds or
        // features are looked at (as the edge named it before replays came first).
        for (i, item) in cmd.items.iter().enumerate() {
            unit_cost(catalog, item.kind, &item.model).map_err(|e| LedgerError::BatchItem {
                index: i,
                generation_id: item.generation_id.clone(),
                source: Box::new(e),
            })?;
        }
        let mut holds = Vec::with_capacity(cmd.items.len());
        for i in 0..cmd.items.len() {
            let reserved = self
                .reserve(catalog, &cmd.reserve_cmd(i), now_ms)
                .map_err(|e| LedgerError::BatchItem {
                    index: i,
                    generation_id: cmd.items[i].generation_id.clone(),
                    source: Box::new(e),
                })?;
            holds.push(reserved.hold);
        }
        Ok(ReservedBatch {
            holds,
            replayed: false,
            balance: self.balance(),
        })
    }
}

/// The conflict of a ReserveBatch that names generation `generation_id`, reserved as `kind` ×
/// `quantity` on `model`, for `requested`. When the batch asks for it exactly as reserved, what
/// differs is the batch: `new_generation` is one of its items that is not reserved, and a batch
/// is replayed only as a whole.
pub fn batch_conflict(
    generation_id: &str,
    kind: Kind,
    model: &str,
    quantity: u32,
    requested: &ReserveCmd,
    new_generation: Option<&str>,
) -> LedgerError {
    let same = kind == requested.kind && model == requested.model && quantity == requested.quantity;
    match new_generation {
        Some(new) if same => LedgerError::GenerationConflict {
            generation_id: generation_id.to_string(),
            existing: format!("{kind} × {quantity} on `{model}`"),
            requested: format!(
                "the same in a batch that also holds `{new}`, which is not reserved (a batch \
                 is replayed only as a whole)"
            ),
        },
        _ => conflict(generation_id, kind, model, quantity, requested),
    }
}
