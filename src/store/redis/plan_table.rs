//! The catalog as the library reads it: the plan table and the usage alert thresholds, as
//! call arguments.

use std::sync::Arc;

use super::RedisStore;
use crate::ledger::Catalog;

impl RedisStore {
    /// The plan table of `catalog`, rebuilt only when its version changed.
    pub(super) fn plan_table_of(&self, catalog: &Catalog) -> Arc<str> {
        let mut cached = self.plan_table.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != catalog.version() {
            *cached = (
                catalog.version().to_string(),
                Arc::from(plan_table(catalog)),
            );
        }
        cached.1.clone()
    }
}

/// The catalog's usage alert thresholds for the scripts: `80,100`.
pub(super) fn thresholds_arg(catalog: &Catalog) -> String {
    catalog
        .alert_thresholds_percent()
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The catalog's plans for the scripts: `id,price,allowance,max_holds,max_seconds,models;`.
fn plan_table(catalog: &Catalog) -> String {
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
