//! The Prometheus metrics of the sidecar: their names, what they mean, and the one process-wide
//! recorder that collects them. Code records through the `metrics` macros with these names;
//! [`crate::telemetry::metrics_endpoint`] serves the rendered text.
//!
//! Holds are counted as they open and close (`quota_holds_opened_total`,
//! `quota_holds_closed_total`) rather than as a gauge: the number of open holds is a property of
//! the shared store, not of one sidecar. Across the fleet, open holds ≈
//! `sum(quota_holds_opened_total) - sum(quota_holds_closed_total)`; it reads slightly high, as a
//! hold that expires is counted only when the sweeper expires it, not when an operation on the
//! same account reclaims it first (at most one sweep interval after its expiry).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::unavailable::UnavailableKind;

/// Counter `{service, method, code}`: finished gRPC calls by their status code
/// (`OK`, `RESOURCE_EXHAUSTED`, ...).
pub const RPC_REQUESTS: &str = "quota_rpc_requests_total";
/// Histogram `{service, method}`: time from a call's arrival to its last response byte.
pub const RPC_DURATION: &str = "quota_rpc_duration_seconds";
/// Histogram `{op}`: time of one store or event-log call, failed ones included.
pub const STORE_DURATION: &str = "quota_store_duration_seconds";
/// Counter `{op, kind}`: store calls that failed: `internal`, `unavailable` (unreachable or too
/// slow), or Redis refusing: `oom`, `readonly`, `masterdown`, `loading`, `busy`, `noreplicas`, `misconf`
/// (see [`crate::store::unavailable`]). Refusals such as
/// insufficient funds are answers, not failures; they show in the RPC codes.
pub const STORE_ERRORS: &str = "quota_store_errors_total";
/// Counter: events the hard retention cap dropped before some durable consumer group acked them.
pub const EVENTS_DROPPED_UNACKED: &str = "quota_events_dropped_unacked_total";
/// Counter `{reason}`: reserves refused by the plan (`model`, `video_seconds`,
/// `concurrent_holds`) or for lack of funds (`insufficient_funds`).
pub const RESERVE_DENIALS: &str = "quota_reserve_denials_total";
/// Counter: holds this process opened (replays excluded).
pub const HOLDS_OPENED: &str = "quota_holds_opened_total";
/// Counter `{how}`: holds this process closed: `settled`, `released`, or `expired` by its sweeper.
pub const HOLDS_CLOSED: &str = "quota_holds_closed_total";
/// Gauge `{group}`: events delivered to a consumer group and not acked yet, sampled
/// periodically for the groups that subscribed through this process.
pub const EVENTS_PENDING: &str = "quota_events_pending";
/// Gauge `{group}`: retained events not yet delivered to a durable consumer group, sampled
/// periodically for every such group in the store.
pub const EVENTS_GROUP_LAG: &str = "quota_events_group_lag";
/// Gauge `{group}`: age of a durable consumer group's oldest unacked event (0 when none),
/// sampled with [`EVENTS_GROUP_LAG`].
pub const EVENTS_GROUP_OLDEST_UNACKED: &str = "quota_events_group_oldest_unacked_seconds";
/// Counter: holds the expiry sweeper of this process expired.
pub const SWEEPER_EXPIRED: &str = "quota_sweeper_expired_total";
/// Counter: accounts the sweeper could not change (a broken invariant) and skipped.
pub const SWEEPER_SKIPPED: &str = "quota_sweeper_skipped_accounts_total";
/// Counter `{result}`: catalog reloads on SIGHUP: `ok`, `invalid` (the catalog in force
/// stays), `unreadable` (the file could not be read; the catalog in force stays).
pub const CATALOG_RELOADS: &str = "quota_catalog_reloads_total";
/// Gauge `{version, revision}`, always 1: the running build (the package version and the git
/// revision it was built from, `unknown` when built outside a git checkout).
pub const BUILD_INFO: &str = "quota_build_info";

/// The git revision the binary was built from (see `build.rs`).
pub const REVISION: &str = env!("QUOTA_GIT_REVISION");

/// Every `op` label of the store metrics: the store calls of [`crate::store::instrumented`],
/// the event-log calls of [`crate::events::instrumented`] and the health probe.
pub const STORE_OPS: &[&str] = &[
    "reserve",
    "reserve_batch",
    "settle",
    "release",
    "extend",
    "balance",
    "account",
    "set_plan",
    "grant_credits",
    "refund",
    "revoke_credits",
    "expire_due",
    "ping",
    "lease",
    "time",
    "quote",
    "events_read",
    "events_ack",
    "events_abandon",
    "events_trim",
    "events_pending",
    "events_cap",
    "events_losses",
    "events_delete_group",
    "events_groups",
    "health_probe",
];

/// Every `kind` label of [`STORE_ERRORS`]: `internal` and the reasons Redis may be unavailable.
pub fn store_error_kinds() -> impl Iterator<Item = &'static str> {
    std::iter::once("internal").chain(UnavailableKind::ALL.iter().map(|kind| kind.label()))
}

/// Reason label of a reserve refused for lack of funds; plan refusals use their
/// [`Denial::code`](crate::ledger::Denial::code).
pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";

/// `reason` labels of [`RESERVE_DENIALS`].
pub const DENIAL_REASONS: &[&str] = &[
    "model",
    "video_seconds",
    "concurrent_holds",
    INSUFFICIENT_FUNDS,
];
/// `how` labels of [`HOLDS_CLOSED`].
pub const CLOSE_HOWS: &[&str] = &["settled", "released", "expired"];
/// `result` labels of [`CATALOG_RELOADS`].
pub const RELOAD_RESULTS: &[&str] = &["ok", "invalid", "unreadable"];

/// Bucket bounds of the RPC latency histogram, in seconds: sub-millisecond answers from a local
/// Redis up to the longest sane call deadline.
const RPC_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds of the store latency histogram, in seconds: one Redis round trip is ~100 µs,
/// and the default Redis deadline is 250 ms.
const STORE_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How often histograms drop samples outside their window. The exporter's own listener runs it
/// every 5 s; ours does the same.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The recorder's handle once installed.
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process-wide recorder once and returns the handle that renders it; later calls
/// return the same handle. Fails when some other recorder was installed first.
pub fn install() -> Result<PrometheusHandle, String> {
    let mut installed = HANDLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.into()), RPC_BUCKETS_SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(STORE_DURATION.into()), STORE_BUCKETS_SECONDS)
        })
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| "another metrics recorder is already installed".to_string())?;
    describe();
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "revision" => REVISION
    )
    .set(1.0);
    process_collector().describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The collector of the standard `process_*` metrics, sampled on every scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The Prometheus text of `handle`, with the process metrics sampled now.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}

/// Registers `names` (counters without labels) at zero, so that they are scraped before they
/// first move: `increase()` over a series that appears at 1 misses that first 1.
pub fn register_counters(names: &[&'static str]) {
    for name in names {
        metrics::counter!(*name).absolute(0);
    }
}

/// Registers every sidecar counter whose label values are known in advance at zero (see
/// [`register_counters`]). RPC counters are left out: their codes are many and most never
/// occur per method.
pub fn register_sidecar_series() {
    register_counters(&[
        EVENTS_DROPPED_UNACKED,
        HOLDS_OPENED,
        SWEEPER_EXPIRED,
        SWEEPER_SKIPPED,
    ]);
    for op in STORE_OPS {
        for kind in store_error_kinds() {
            metrics::counter!(STORE_ERRORS, "op" => *op, "kind" => kind).absolute(0);
        }
    }
    for reason in DENIAL_REASONS {
        metrics::counter!(RESERVE_DENIALS, "reason" => *reason).absolute(0);
    }
    for how in CLOSE_HOWS {
        metrics::counter!(HOLDS_CLOSED, "how" => *how).absolute(0);
    }
    for result in RELOAD_RESULTS {
        metrics::counter!(CATALOG_RELOADS, "result" => *result).absolute(0);
    }
}

/// The `# HELP` lines.
fn describe() {
    metrics::describe_counter!(RPC_REQUESTS, "Finished gRPC calls by status code");
    metrics::describe_histogram!(
        RPC_DURATION,
        "Time from a gRPC call's arrival to its last response byte, in seconds"
    );
    metrics::describe_histogram!(STORE_DURATION, "Time of one store call, in seconds");
    metrics::describe_counter!(STORE_ERRORS, "Store calls that failed");
    metrics::describe_counter!(
        EVENTS_DROPPED_UNACKED,
        "Events dropped past the retention cap before a consumer group acked them"
    );
    metrics::describe_counter!(
        RESERVE_DENIALS,
        "Reserves refused by the plan or for lack of funds"
    );
    metrics::describe_counter!(HOLDS_OPENED, "Holds opened by this process");
    metrics::describe_counter!(HOLDS_CLOSED, "Holds closed by this process");
    metrics::describe_gauge!(
        EVENTS_PENDING,
        "Events delivered to a consumer group and not acked yet"
    );
    metrics::describe_gauge!(
        EVENTS_GROUP_LAG,
        "Retained events not yet delivered to a durable consumer group"
    );
    metrics::describe_gauge!(
        EVENTS_GROUP_OLDEST_UNACKED,
        "Age of a durable consumer group's oldest unacked event, in seconds (0 when none)"
    );
    metrics::describe_counter!(SWEEPER_EXPIRED, "Holds expired by this process's sweeper");
    metrics::describe_counter!(
        SWEEPER_SKIPPED,
        "Accounts the sweeper could not change (a broken invariant), skipped"
    );
    metrics::describe_counter!(
        CATALOG_RELOADS,
        "Catalog reloads on SIGHUP by result (ok, invalid, unreadable)"
    );
    metrics::describe_gauge!(BUILD_INFO, "The running build: version and git revision");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `op` of every `observe("op", ...)` call in `source`.
    fn observed_ops(source: &str) -> Vec<String> {
        source
            .split("observe(")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start().strip_prefix('"')?;
                Some(rest.split('"').next()?.to_string())
            })
            .collect()
    }

    #[test]
    fn store_ops_name_every_observed_call() {
        let sources = [
            include_str!("../store/instrumented.rs"),
            include_str!("../events/instrumented.rs"),
            include_str!("../server.rs"),
        ];
        let observed: Vec<String> = sources.iter().flat_map(|s| observed_ops(s)).collect();
        assert!(observed.len() >= STORE_OPS.len(), "{observed:?}");
        for op in &observed {
            assert!(STORE_OPS.contains(&op.as_str()), "{op} is not in STORE_OPS");
        }
        for op in STORE_OPS {
            assert!(observed.iter().any(|o| o == op), "{op} is never observed");
        }
    }

    #[test]
    fn store_error_kinds_are_distinct_and_include_every_reason() {
        let kinds: Vec<&str> = store_error_kinds().collect();
        for expected in ["internal", "unavailable", "oom", "misconf", "readonly"] {
            assert!(kinds.contains(&expected), "{kinds:?}");
        }
        let mut unique = kinds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len(), "{kinds:?}");
    }
}
