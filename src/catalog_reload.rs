//! Reloading the catalog file without a restart: on SIGHUP the `--catalog` file is read and
//! validated again; a good one is put in force, a bad one leaves the catalog in force as it
//! was and the warning says why (naming the key). Holds keep the unit cost they were reserved
//! at, so a reload changes only what later calls cost and allow.

use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;

use crate::ledger::catalog::CatalogError;
use crate::ledger::{Catalog, SharedCatalog};
use crate::telemetry::metrics::CATALOG_RELOADS;

/// How one reload ended; the `result` label of `quota_catalog_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The file was valid and is in force (perhaps with the same version as before).
    Ok,
    /// The file was read but is not a valid catalog; the old one stays.
    Invalid,
    /// The file could not be read; the old catalog stays.
    Unreadable,
}

impl ReloadResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Invalid => "invalid",
            ReloadResult::Unreadable => "unreadable",
        }
    }
}

/// Reads and validates `path` and puts it in force in `catalog` when valid; logs and counts
/// the outcome either way.
pub fn reload(path: &Path, catalog: &SharedCatalog) -> ReloadResult {
    let previous = catalog.current();
    let result = match Catalog::load(path) {
        Ok(loaded) => {
            tracing::info!(
                path = %path.display(),
                version = loaded.version(),
                previous_version = previous.version(),
                changed = loaded.version() != previous.version(),
                "catalog reloaded"
            );
            catalog.replace(loaded);
            ReloadResult::Ok
        }
        Err(e) => {
            let result = match e {
                CatalogError::Read { .. } => ReloadResult::Unreadable,
                CatalogError::Parse(_) | CatalogError::Invalid { .. } => ReloadResult::Invalid,
            };
            tracing::warn!(
                path = %path.display(),
                version = previous.version(),
                error = %one_line(&e.to_string()),
                "catalog not reloaded; the catalog in force stays"
            );
            result
        }
    };
    metrics::counter!(CATALOG_RELOADS, "result" => result.as_str()).increment(1);
    result
}

/// TOML parse errors span lines (the line quoted, a caret under it); a log line stays one.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// Installs the SIGHUP handler now (so a SIGHUP from here on reloads instead of ending the
/// process) and serves it in a task: reloads `path`, or, with the built-in catalog, logs that
/// there is nothing to reload. The task runs until aborted.
#[cfg(unix)]
pub fn spawn_reloader(
    path: Option<PathBuf>,
    catalog: SharedCatalog,
) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match &path {
                Some(path) => {
                    reload(path, &catalog);
                }
                None => tracing::info!(
                    version = catalog.current().version(),
                    "SIGHUP: the catalog is built in, nothing to reload (start with --catalog FILE)"
                ),
            }
        }
    }))
}

/// Without Unix signals there is no SIGHUP to serve: the catalog stays as loaded at start.
#[cfg(not(unix))]
pub fn spawn_reloader(
    _path: Option<PathBuf>,
    _catalog: SharedCatalog,
) -> std::io::Result<JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILTIN: &str = include_str!("../deploy/catalog.toml");

    #[test]
    fn a_good_file_replaces_a_bad_one_keeps() {
        let dir = std::env::temp_dir().join(format!("catalog-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.toml");
        let shared = SharedCatalog::new(Catalog::builtin());
        let builtin_version = Catalog::builtin().version().to_string();

        std::fs::write(&path, BUILTIN.replace("first_frame = 2", "first_frame = 3")).unwrap();
        assert_eq!(reload(&path, &shared), ReloadResult::Ok);
        let reloaded = shared.current().version().to_string();
        assert_ne!(reloaded, builtin_version);

        std::fs::write(&path, BUILTIN.replace("first_frame = 2", "first_frame = 0")).unwrap();
        assert_eq!(reload(&path, &shared), ReloadResult::Invalid);
        std::fs::write(&path, "not = [toml").unwrap();
        assert_eq!(reload(&path, &shared), ReloadResult::Invalid);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(reload(&path, &shared), ReloadResult::Unreadable);
        assert_eq!(shared.current().version(), reloaded);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn multi_line_errors_become_one_line() {
        assert_eq!(one_line("a\n  |\n\n b "), "a | b");
    }
}
