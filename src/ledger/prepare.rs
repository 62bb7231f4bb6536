//! What is computed before an operation runs, from the catalog in force and the clock: the
//! cost of one image or video second of a Reserve, Quote or batch item (or that the catalog
//! lacks the model), the plan a SetPlan asks for (or that the catalog lacks it), the anchor and
//! the month window a cycle start needs, and the plan table and usage alert thresholds.
//!
//! Both stores use these functions: the memory store through the ledger's operations
//! (`account/`), the Redis store to build its function's arguments (`store/redis/`), where the
//! Lua twin only reads what was prepared. So a cost, a window or a plan is decided in one place.

use super::cycle::{self, Anchor, MonthWindow};
use super::error::LedgerError;
use super::{Catalog, Kind, PlanSpec};

/// The cost of one image or video second of `kind` on `model`, or the error naming the model.
/// Reserve and each batch item ask after a replay is answered (a retry is answered after a
/// reload removed its model); the Redis store passes the cost, or nothing for a model the
/// catalog lacks, and the library answers `unknown_model` where the ledger returns this error.
/// Quote asks before anything else, in both stores.
pub fn unit_cost(catalog: &Catalog, kind: Kind, model: &str) -> Result<u64, LedgerError> {
    catalog
        .unit_cost(kind, model)
        .ok_or_else(|| unknown_model(catalog, model))
}

/// `model` is not in the catalog: the error names the field and the models there are.
pub fn unknown_model(catalog: &Catalog, model: &str) -> LedgerError {
    let known: Vec<&str> = catalog.model_ids().collect();
    LedgerError::InvalidArgument {
        field: "model",
        message: format!(
            "unknown model \"{model}\" (catalog has: {})",
            known.join(", ")
        ),
    }
}

/// `plan` is not in the catalog: the error names the field and the plans there are.
pub fn unknown_plan(catalog: &Catalog, plan: &str) -> LedgerError {
    let known: Vec<&str> = catalog.plans().iter().map(|p| p.id.as_str()).collect();
    LedgerError::InvalidArgument {
        field: "plan",
        message: format!(
            "unknown plan \"{plan}\" (catalog has: {})",
            known.join(", ")
        ),
    }
}

/// The plan SetPlan asks for, or the error naming the plans there are. Asked after a replay is
/// answered (a retry is answered after a reload removed its plan); the Redis library looks the
/// id up in [`plan_table`] and answers `unknown_plan` where the ledger returns this error.
pub fn plan<'c>(catalog: &'c Catalog, id: &str) -> Result<&'c PlanSpec, LedgerError> {
    catalog.plan(id).ok_or_else(|| unknown_plan(catalog, id))
}

/// The anchor of the cycles a SetPlan starts: the requested moment, or now.
pub fn anchor(requested_anchor_ms: Option<i64>, now_ms: i64) -> Anchor {
    Anchor::from_ms(requested_anchor_ms.unwrap_or(now_ms))
}

/// The month starts around `now_ms` that finding the cycle containing it needs (the calendar
/// part of a cycle start or a rollover): the ledger finds the cycle in them
/// ([`cycle::cycle_containing`]), the Redis store passes them to every call.
pub fn month_window(now_ms: i64) -> MonthWindow {
    cycle::month_window(now_ms)
}

/// The usage alert thresholds (percent of a cycle's allowance, increasing) a Settle announces.
pub fn alert_thresholds(catalog: &Catalog) -> &[u32] {
    catalog.alert_thresholds_percent()
}

/// [`alert_thresholds`] as the library reads them: `80,100`.
pub fn thresholds_arg(catalog: &Catalog) -> String {
    alert_thresholds(catalog)
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The catalog's plans as the library reads them: `id,price,allowance,max_holds,max_seconds,
/// models;` per plan, the `none` row too (the library's `find_plan` is the twin of [`plan`]).
pub fn plan_table(catalog: &Catalog) -> String {
    catalog
        .plans()
        .iter()
        .map(|p| {
            format!(
                "{},{},{},{},{},{};",
                p.id,
                p.price_cents,
                p.allowance_units,
                p.max_concurrent_holds,
                p.max_video_seconds,
                p.models.join(" ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_as_the_library_reads_it() {
        let catalog = Catalog::builtin();
        assert_eq!(thresholds_arg(&catalog), "80,100");
        let table = plan_table(&catalog);
        assert!(table.starts_with("none,0,0,1,5,standard;"), "{table}");
        assert!(
            table.contains(";hollywood,5000,5000,8,20,standard pro cinema;"),
            "{table}"
        );
        assert_eq!(table.matches(';').count(), catalog.plans().len());
    }

    #[test]
    fn what_the_catalog_lacks_is_named() {
        let catalog = Catalog::builtin();
        assert_eq!(unit_cost(&catalog, Kind::Video, "standard").unwrap(), 10);
        let err = unit_cost(&catalog, Kind::Video, "nope").unwrap_err();
        assert!(
            matches!(&err, LedgerError::InvalidArgument { field: "model", message } if message.contains("\"nope\"")),
            "{err:?}"
        );
        assert_eq!(
            plan(&catalog, "independent").unwrap().allowance_units,
            2_500
        );
        let err = plan(&catalog, "platinum").unwrap_err();
        assert!(
            matches!(&err, LedgerError::InvalidArgument { field: "plan", message } if message.contains("none")),
            "{err:?}"
        );
    }

    #[test]
    fn a_cycle_is_anchored_on_the_requested_moment_or_now() {
        let now_ms = 1_767_225_600_000 + 3_600_000; // 2026-01-01T01:00:00Z
        assert_eq!(anchor(None, now_ms), Anchor::from_ms(now_ms));
        assert_eq!(anchor(Some(0), now_ms), Anchor::from_ms(0));
        assert_eq!(month_window(now_ms), cycle::month_window(now_ms));
    }
}
