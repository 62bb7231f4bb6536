//! The catalog in force, swappable at runtime: a reload (SIGHUP) replaces it while calls run.
//!
//! A reader takes one snapshot per call ([`SharedCatalog::current`]) and uses it throughout,
//! so a call never mixes two catalogs. Holds carry their own unit cost, so replacing the
//! catalog never changes what an open hold settles at.

use std::sync::{Arc, RwLock};

use super::catalog::Catalog;

/// A cloneable handle on the catalog in force; clones share it.
#[derive(Debug, Clone)]
pub struct SharedCatalog(Arc<RwLock<Arc<Catalog>>>);

impl SharedCatalog {
    /// A handle on `catalog`.
    pub fn new(catalog: Catalog) -> SharedCatalog {
        SharedCatalog::from(Arc::new(catalog))
    }

    /// The catalog in force now; later replacements do not change the returned snapshot.
    pub fn current(&self) -> Arc<Catalog> {
        // The lock only guards an Arc swap, which cannot panic halfway: a poisoned lock still
        // holds a whole catalog.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `catalog` in force for every holder of this handle.
    pub fn replace(&self, catalog: Catalog) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
    }
}

impl From<Arc<Catalog>> for SharedCatalog {
    fn from(catalog: Arc<Catalog>) -> SharedCatalog {
        SharedCatalog(Arc::new(RwLock::new(catalog)))
    }
}

impl From<Catalog> for SharedCatalog {
    fn from(catalog: Catalog) -> SharedCatalog {
        SharedCatalog::new(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_see_a_replacement_and_snapshots_do_not() {
        let shared = SharedCatalog::new(Catalog::builtin());
        let other = shared.clone();
        let before = shared.current();
        let text = include_str!("../../deploy/catalog.toml")
            .replace("video_units_per_second = 10", "video_units_per_second = 11");
        other.replace(Catalog::from_toml_str(&text).unwrap());
        assert_ne!(shared.current().version(), before.version());
        assert_eq!(
            shared
                .current()
                .unit_cost(crate::ledger::Kind::Video, "standard"),
            Some(11)
        );
        assert_eq!(
            before.unit_cost(crate::ledger::Kind::Video, "standard"),
            Some(10)
        );
    }
}
