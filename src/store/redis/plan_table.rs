//! The plan table every call hands the library, encoded by [`plan_table`] and kept per catalog
//! version.

use std::sync::Arc;

use super::RedisStore;
use crate::ledger::prepare::plan_table;
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
