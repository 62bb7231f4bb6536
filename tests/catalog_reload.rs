//! The catalog reloaded by the real binary on SIGHUP, on the memory store and on Redis: a good
//! file changes `GetCatalog`'s version and the costs of new holds, while a hold reserved before
//! settles at the cost it was reserved at; an invalid or unreadable file keeps the catalog in
//! force, says why in a warning that names the key, and is counted in
//! `quota_catalog_reloads_total`. Without `--catalog`, SIGHUP reloads nothing and the process
//! keeps serving.

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::Request;

use harness::http::http_get;
use harness::sidecar::{channel, wait_serving, Sidecar};
use harness::RedisServer;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "catalog-reload-token";
const BUILTIN: &str = include_str!("../deploy/catalog.toml");
/// How long a SIGHUP may take to show (in GetCatalog or the metrics).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {TOKEN}")).unwrap(),
    );
    request
}

/// The built-in catalog with every video price per second doubled.
fn doubled_video_prices() -> String {
    let text = BUILTIN
        .replace("video_units_per_second = 40", "video_units_per_second = 80")
        .replace("video_units_per_second = 20", "video_units_per_second = 40")
        .replace("video_units_per_second = 10", "video_units_per_second = 20");
    assert_ne!(text, BUILTIN);
    text
}

/// Writes `text` to `path` whole: a reload must never read a half-written file, so the
/// new content is renamed into place (as a ConfigMap update does).
fn write_catalog(path: &Path, text: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

async fn catalog(worker: SocketAddr) -> pb::Catalog {
    QuotaClient::new(channel(worker).await)
        .get_catalog(pb::GetCatalogRequest {})
        .await
        .expect("GetCatalog")
        .into_inner()
}

fn video_price(catalog: &pb::Catalog, model: &str) -> u64 {
    catalog
        .prices
        .iter()
        .find(|p| p.kind == pb::GenerationKind::Video as i32 && p.model == model)
        .unwrap_or_else(|| panic!("a video price on {model}: {catalog:?}"))
        .units_per_item
}

/// Polls GetCatalog until its version differs from `old`.
async fn wait_for_new_version(worker: SocketAddr, old: &str) -> pb::Catalog {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let now = catalog(worker).await;
        if now.version != old {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the catalog version stayed {old} after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `quota_catalog_reloads_total{result}` as served on `/metrics`; 0 when absent.
async fn reloads(metrics: SocketAddr, result: &str) -> f64 {
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let series = format!("quota_catalog_reloads_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

/// Polls the metric until `result` has been counted `count` times.
async fn wait_for_reloads(metrics: SocketAddr, result: &str, count: f64) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let seen = reloads(metrics, result).await;
        if seen == count {
            return;
        }
        assert!(seen < count, "{result} reloads: {seen}, expected {count}");
        assert!(
            Instant::now() < deadline,
            "{result} reloads stayed at {seen}, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `message` and `error` fields of the warnings logged so far about a reload.
fn reload_warnings_now(sidecar: &Sidecar) -> Vec<String> {
    sidecar
        .logs()
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("catalog not reloaded"))
        })
        .map(|l| l["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The reload warnings once there are `count` of them: the log is read by another thread, so
/// a line may arrive a moment after the metric that counted its reload.
async fn reload_warnings(sidecar: &Sidecar, count: usize) -> Vec<String> {
    for _ in 0..100 {
        let warnings = reload_warnings_now(sidecar);
        if warnings.len() >= count {
            return warnings;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    reload_warnings_now(sidecar)
}

fn reserve_video(account: &str, generation: &str, seconds: u32) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::Video as i32,
        model: "standard".into(),
        quantity: seconds,
        ttl_seconds: 600,
        labels: Default::default(),
    }
}

async fn reload_keeps_reserved_costs_and_refuses_bad_files(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.toml");
    write_catalog(&path, BUILTIN);
    let sidecar = Sidecar::start_with(
        store,
        Some(TOKEN),
        &["--catalog", path.to_str().unwrap()],
        &[],
    );
    wait_serving(sidecar.worker).await;
    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    let mut admin = QuotaAdminClient::new(channel(sidecar.admin()).await);
    let account = "acct-reload";

    let first = catalog(sidecar.worker).await;
    assert_eq!(video_price(&first, "standard"), 10);
    admin
        .set_plan(authed(pb::SetPlanRequest {
            request_id: "start".into(),
            account_id: account.into(),
            plan: "hollywood".into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan");
    let old = quota
        .reserve(reserve_video(account, "gen-before", 5))
        .await
        .expect("reserve before the reload")
        .into_inner();
    assert_eq!(old.hold.unwrap().cost_units, 50);

    // A good file: new costs for new holds, the old hold keeps its own.
    write_catalog(&path, &doubled_video_prices());
    sidecar.signal("HUP");
    let second = wait_for_new_version(sidecar.worker, &first.version).await;
    assert_eq!(video_price(&second, "standard"), 20);
    assert_eq!(video_price(&second, "cinema"), 80);
    wait_for_reloads(sidecar.metrics(), "ok", 1.0).await;
    let settled = quota
        .settle(pb::SettleRequest {
            account_id: account.into(),
            generation_id: "gen-before".into(),
            actual_quantity: None,
        })
        .await
        .expect("settle the hold reserved before the reload")
        .into_inner();
    assert_eq!(
        settled.charged_units, 50,
        "charged at the cost it was reserved at"
    );
    assert_eq!(settled.balance.unwrap().allowance_used, 50);
    let new = quota
        .reserve(reserve_video(account, "gen-after", 5))
        .await
        .expect("reserve after the reload")
        .into_inner();
    assert_eq!(new.hold.unwrap().cost_units, 100, "the new catalog's cost");

    // An invalid file: the catalog in force stays, the warning names the key.
    write_catalog(
        &path,
        &doubled_video_prices().replace(
            "alert_thresholds_percent = [80, 100]",
            "alert_thresholds_percent = [80, 120]",
        ),
    );
    sidecar.signal("HUP");
    wait_for_reloads(sidecar.metrics(), "invalid", 1.0).await;
    assert_eq!(catalog(sidecar.worker).await, second);
    let warnings = reload_warnings(&sidecar, 1).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("alert_thresholds_percent[1]"),
        "{warnings:?}"
    );
    let still = quota
        .reserve(reserve_video(account, "gen-after-invalid", 5))
        .await
        .expect("reserve after the invalid file")
        .into_inner();
    assert_eq!(still.hold.unwrap().cost_units, 100);

    // A file that is gone: the same.
    std::fs::remove_file(&path).unwrap();
    sidecar.signal("HUP");
    wait_for_reloads(sidecar.metrics(), "unreadable", 1.0).await;
    assert_eq!(catalog(sidecar.worker).await, second);
    assert_eq!(reload_warnings(&sidecar, 2).await.len(), 2);
    assert_eq!(reloads(sidecar.metrics(), "ok").await, 1.0);
    assert_eq!(reloads(sidecar.metrics(), "invalid").await, 1.0);
}

#[tokio::test]
async fn reload_on_the_memory_store() {
    reload_keeps_reserved_costs_and_refuses_bad_files("memory").await;
}

#[tokio::test]
async fn reload_on_redis() {
    let redis = RedisServer::start();
    reload_keeps_reserved_costs_and_refuses_bad_files(&redis.url()).await;
}

#[tokio::test]
async fn sighup_with_the_builtin_catalog_reloads_nothing() {
    let mut sidecar = Sidecar::start("memory", None);
    wait_serving(sidecar.worker).await;
    let before = catalog(sidecar.worker).await;
    sidecar.signal("HUP");
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !sidecar.logs().iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing to reload"))
    }) {
        assert!(Instant::now() < deadline, "no log line about the SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sidecar.is_alive(), "SIGHUP must not end the process");
    assert_eq!(catalog(sidecar.worker).await, before);
    assert_eq!(reloads(sidecar.metrics(), "ok").await, 0.0);
}
