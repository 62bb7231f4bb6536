//! Metrics and traces of the real binary: `/metrics` counts calls by method and status code,
//! and spans reach an OTLP collector (a small TraceService in this test) continuing the trace
//! the client sent, also when they are only flushed on SIGTERM.

mod harness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use harness::http::http_get;
use harness::sidecar::{channel, wait_serving, Sidecar};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "observability-admin-token";

/// How long spans may take to reach the collector with a 100 ms batch delay.
const SPAN_WAIT: Duration = Duration::from_secs(10);

/// The trace the "worker" is in, and its span that calls the sidecar.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

fn reserve(account: &str, generation: &str, model: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: model.into(),
        quantity: 1,
        ttl_seconds: 0,
        labels: Default::default(),
    }
}

/// Puts `account` on microbudget through the admin listener.
async fn start_plan(sidecar: &Sidecar, account: &str) {
    QuotaAdminClient::new(channel(sidecar.admin()).await)
        .set_plan(authed(pb::SetPlanRequest {
            request_id: format!("plan-{account}"),
            account_id: account.into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan");
}

/// The samples of a Prometheus text page: (name, labels) → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

async fn scrape(addr: SocketAddr) -> Samples {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let mut samples = Samples::new();
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect("label=value");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        samples.insert((name.to_string(), labels), value.parse().expect("a number"));
    }
    samples
}

/// The value of the series `name` with exactly `labels`; 0 when absent.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .get(&(name.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

fn calls(samples: &Samples, service: &str, method: &str, code: &str) -> f64 {
    value(
        samples,
        "quota_rpc_requests_total",
        &[("service", service), ("method", method), ("code", code)],
    )
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let mut sidecar = Sidecar::start("memory", Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let metrics = sidecar.metrics();
    let account = "acct-metrics";
    start_plan(&sidecar, account).await;
    let before = scrape(metrics).await;

    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    quota.reserve(reserve(account, "gen-1", "")).await.unwrap();
    quota.reserve(reserve(account, "gen-2", "")).await.unwrap();
    let replay = quota.reserve(reserve(account, "gen-1", "")).await.unwrap();
    assert!(replay.into_inner().replayed);
    // `pro` is not in microbudget: refused by the plan.
    let status = quota
        .reserve(reserve(account, "gen-pro", "pro"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Refused at the edge: never reaches the store.
    let status = quota.reserve(reserve("", "gen-3", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    quota
        .get_balance(pb::GetBalanceRequest {
            account_id: account.into(),
        })
        .await
        .unwrap();

    let after = scrape(metrics).await;
    let moved = |f: &dyn Fn(&Samples) -> f64| f(&after) - f(&before);
    let quota_service = "quota.v1.Quota";
    assert_eq!(moved(&|s| calls(s, quota_service, "Reserve", "OK")), 3.0);
    assert_eq!(
        moved(&|s| calls(s, quota_service, "Reserve", "PERMISSION_DENIED")),
        1.0
    );
    assert_eq!(
        moved(&|s| calls(s, quota_service, "Reserve", "INVALID_ARGUMENT")),
        1.0
    );
    assert_eq!(moved(&|s| calls(s, quota_service, "GetBalance", "OK")), 1.0);
    assert_eq!(calls(&after, "quota.v1.QuotaAdmin", "SetPlan", "OK"), 1.0);
    let reserve_timing = [("service", quota_service), ("method", "Reserve")];
    assert_eq!(
        moved(&|s| value(s, "quota_rpc_duration_seconds_count", &reserve_timing)),
        5.0
    );
    assert_eq!(
        moved(&|s| value(s, "quota_reserve_denials_total", &[("reason", "model")])),
        1.0
    );
    // Replays open nothing.
    assert_eq!(moved(&|s| value(s, "quota_holds_opened_total", &[])), 2.0);
    // Three answered by the store plus the refusal; the invalid one never got there.
    assert_eq!(
        moved(&|s| value(
            s,
            "quota_store_duration_seconds_count",
            &[("op", "reserve")]
        )),
        4.0
    );
    let store_buckets = after
        .keys()
        .filter(|(name, labels)| {
            name == "quota_store_duration_seconds_bucket"
                && labels.get("op").map(String::as_str) == Some("reserve")
        })
        .count();
    assert!(store_buckets > 5, "store latency is a histogram: {after:?}");

    let (status, _) = http_get(metrics, "/elsewhere").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

/// One exported span, as the collector received it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service_name: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP trace collector that keeps what it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    any_value::Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        name: span.name,
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free loopback port until the test ends.
    async fn start() -> (Collector, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(server);
        (collector, addr)
    }

    /// Spans of `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends a Reserve that is part of the trace [`TRACE_ID`], from span [`PARENT_SPAN_ID`].
async fn traced_reserve(sidecar: &Sidecar, account: &str) {
    let mut request = Request::new(reserve(account, "gen-traced", ""));
    let traceparent: MetadataValue<_> = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
        .parse()
        .unwrap();
    request.metadata_mut().insert("traceparent", traceparent);
    QuotaClient::new(channel(sidecar.worker).await)
        .reserve(request)
        .await
        .expect("reserve");
}

/// The Reserve spans in `trace`, if complete: the server span under the caller's span, the
/// handler's span under it and the store call under that.
fn reserve_spans(trace: &[ReceivedSpan]) -> Option<[ReceivedSpan; 3]> {
    let server = trace
        .iter()
        .find(|s| s.name == "quota.v1.Quota/Reserve")?
        .clone();
    let handler = trace
        .iter()
        .find(|s| s.name == "Reserve" && s.parent_span_id == server.span_id)?
        .clone();
    let store = trace
        .iter()
        .find(|s| s.name == "store.reserve" && s.parent_span_id == handler.span_id)?
        .clone();
    Some([server, handler, store])
}

fn assert_continues_the_trace(server: &ReceivedSpan) {
    assert_eq!(server.parent_span_id, PARENT_SPAN_ID, "{server:?}");
    assert_eq!(server.kind, SpanKind::Server as i32, "{server:?}");
    assert_eq!(server.service_name, "quota-sidecar", "{server:?}");
}

#[tokio::test]
async fn reserve_spans_continue_the_callers_trace() {
    let (collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    let mut sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    wait_serving(sidecar.worker).await;
    let account = "acct-traced";
    start_plan(&sidecar, account).await;
    traced_reserve(&sidecar, account).await;

    let deadline = Instant::now() + SPAN_WAIT;
    let spans = loop {
        if let Some(spans) = reserve_spans(&collector.trace(TRACE_ID)) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "no complete Reserve trace within {SPAN_WAIT:?}: {:?}",
            collector.spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_continues_the_trace(&spans[0]);

    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test]
async fn buffered_spans_are_flushed_on_sigterm() {
    let (collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    // Far longer than the test: only the flush at exit can deliver the spans.
    let mut sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    wait_serving(sidecar.worker).await;
    let account = "acct-flushed";
    start_plan(&sidecar, account).await;
    traced_reserve(&sidecar, account).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(collector.trace(TRACE_ID).is_empty(), "exported before exit");

    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let trace = collector.trace(TRACE_ID);
    let spans = reserve_spans(&trace).unwrap_or_else(|| panic!("not flushed: {trace:?}"));
    assert_continues_the_trace(&spans[0]);
}

/// Present with exactly this value (unlike [`value`], absence fails).
fn assert_sample(samples: &Samples, name: &str, labels: &[(&str, &str)], expected: f64) {
    let key = (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    match samples.get(&key) {
        Some(found) => assert_eq!(*found, expected, "{name}{labels:?}"),
        None => panic!("{name}{labels:?} is not scraped"),
    }
}

/// Every counter whose labels are known is scraped at 0 before anything happened, so that
/// `increase()` sees its first move.
async fn assert_known_counters_at_zero(metrics: SocketAddr) {
    let samples = scrape(metrics).await;
    for name in [
        "quota_events_dropped_unacked_total",
        "quota_sweeper_expired_total",
        "quota_sweeper_skipped_accounts_total",
        "quota_holds_opened_total",
    ] {
        assert_sample(&samples, name, &[], 0.0);
    }
    for result in ["ok", "invalid", "unreadable"] {
        assert_sample(
            &samples,
            "quota_catalog_reloads_total",
            &[("result", result)],
            0.0,
        );
    }
    for reason in [
        "model",
        "video_seconds",
        "concurrent_holds",
        "insufficient_funds",
    ] {
        assert_sample(
            &samples,
            "quota_reserve_denials_total",
            &[("reason", reason)],
            0.0,
        );
    }
    for how in ["settled", "released", "expired"] {
        assert_sample(&samples, "quota_holds_closed_total", &[("how", how)], 0.0);
    }
    let kinds = [
        "internal",
        "unavailable",
        "oom",
        "readonly",
        "masterdown",
        "loading",
        "busy",
        "noreplicas",
        "misconf",
    ];
    for op in [
        "reserve",
        "settle",
        "release",
        "health_probe",
        "events_read",
    ] {
        for kind in kinds {
            assert_sample(
                &samples,
                "quota_store_errors_total",
                &[("op", op), ("kind", kind)],
                0.0,
            );
        }
    }
    // Every op the binary counts errors for has every kind.
    let ops: std::collections::BTreeSet<&String> = samples
        .keys()
        .filter(|(name, _)| name == "quota_store_errors_total")
        .map(|(_, labels)| &labels["op"])
        .collect();
    for op in &ops {
        for kind in kinds {
            assert_sample(
                &samples,
                "quota_store_errors_total",
                &[("op", op.as_str()), ("kind", kind)],
                0.0,
            );
        }
    }
}

#[tokio::test]
async fn fresh_sidecar_on_memory_scrapes_known_counters_at_zero() {
    let mut sidecar = Sidecar::start("memory", Some(TOKEN));
    wait_serving(sidecar.worker).await;
    assert_known_counters_at_zero(sidecar.metrics()).await;
    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test]
async fn fresh_sidecar_on_redis_scrapes_known_counters_at_zero() {
    let redis = harness::RedisServer::start();
    let mut sidecar = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(sidecar.worker).await;
    assert_known_counters_at_zero(sidecar.metrics()).await;
    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test]
async fn build_info_and_process_metrics_are_scraped() {
    let mut sidecar = Sidecar::start("memory", None);
    wait_serving(sidecar.worker).await;
    let samples = scrape(sidecar.metrics()).await;
    // The revision build.rs found: 12 hex digits of the commit, or `unknown` outside git.
    let revision = env!("QUOTA_GIT_REVISION");
    assert!(
        revision == "unknown"
            || (revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{revision}"
    );
    assert_sample(
        &samples,
        "quota_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", revision),
        ],
        1.0,
    );
    let now_seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value(&samples, "process_start_time_seconds", &[]);
    assert!(
        (now_seconds - 60.0..=now_seconds).contains(&started),
        "process_start_time_seconds {started}, now {now_seconds}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(value(&samples, name, &[]) > 0.0, "{name}: {samples:?}");
    }
    assert!(
        samples.contains_key(&("process_cpu_seconds_total".to_string(), BTreeMap::new())),
        "process_cpu_seconds_total"
    );
    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

/// A TLS channel to `addr` trusting `pki`'s CA.
async fn tls_channel(addr: SocketAddr, pki: &harness::certs::TestPki) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    tonic::transport::Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("TLS connect")
}

#[tokio::test]
async fn json_log_lines_are_flat_without_source_paths() {
    // rustls logs its handshakes through the `log` crate, whose records carry `log.file`.
    let pki = harness::certs::TestPki::new("log test CA");
    let mut sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &[
            "--tls-cert",
            &pki.server_cert_path(),
            "--tls-key",
            &pki.server_key_path(),
        ],
        &[("RUST_LOG", "info,rustls=debug")],
    );
    QuotaClient::new(tls_channel(sidecar.worker, &pki).await)
        .get_balance(pb::GetBalanceRequest {
            account_id: "acct-logs".into(),
        })
        .await
        .expect("balance over TLS");
    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");

    let logs = sidecar.logs();
    let bridged = logs
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("rustls"))
        })
        .count();
    assert!(bridged > 0, "no record of a library logging through `log`");
    let listening = logs
        .iter()
        .find(|l| l["message"] == "listening" && l["listener"] == "worker")
        .expect("the worker's listening line, flat");
    assert_eq!(listening["addr"], sidecar.worker.to_string());
    for line in &logs {
        let object = line.as_object().expect("one JSON object per line");
        for key in ["timestamp", "level", "message", "target"] {
            assert!(object.contains_key(key), "no {key}: {line}");
        }
        assert!(!object.contains_key("fields"), "nested fields: {line}");
        assert!(
            !object.keys().any(|k| k.starts_with("log.")),
            "source location of a library: {line}"
        );
        assert!(
            !object.contains_key("filename") && !object.contains_key("line_number"),
            "{line}"
        );
    }
}

/// Sends a SetPlan (which logs "plan set" inside its span) with `traceparent`, if any.
async fn set_plan_traced(sidecar: &Sidecar, account: &str, traceparent: Option<String>) {
    let mut request = authed(pb::SetPlanRequest {
        request_id: format!("plan-{account}"),
        account_id: account.into(),
        plan: "microbudget".into(),
        cycle_anchor: None,
    });
    if let Some(traceparent) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
    }
    QuotaAdminClient::new(channel(sidecar.admin()).await)
        .set_plan(request)
        .await
        .expect("set plan");
}

/// The "plan set" log line of `account`'s SetPlan.
fn plan_set_line(sidecar: &Sidecar, account: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = sidecar
            .logs()
            .into_iter()
            .find(|l| l["message"] == "plan set" && l["span"]["account_id"] == account);
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no `plan set` line for {account}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn log_lines_in_a_sampled_span_carry_its_trace_and_span_ids() {
    let (_collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    let mut sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    wait_serving(sidecar.worker).await;

    set_plan_traced(
        &sidecar,
        "acct-sampled",
        Some(format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")),
    )
    .await;
    let line = plan_set_line(&sidecar, "acct-sampled");
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    let span_id = line["span_id"].as_str().expect("a span id");
    assert!(
        span_id.len() == 16 && span_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{line}"
    );
    assert_ne!(span_id, PARENT_SPAN_ID, "the sidecar's own span: {line}");

    // The caller decided not to sample: no ids to follow.
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    set_plan_traced(
        &sidecar,
        "acct-unsampled",
        Some(format!("00-{unsampled_trace}-{PARENT_SPAN_ID}-00")),
    )
    .await;
    let line = plan_set_line(&sidecar, "acct-unsampled");
    assert!(line.get("trace_id").is_none(), "{line}");
    assert!(line.get("span_id").is_none(), "{line}");

    // Lines outside any span (start-up) carry none either.
    let catalog = sidecar
        .logs()
        .into_iter()
        .find(|l| l["message"] == "catalog loaded")
        .expect("the catalog line");
    assert!(catalog.get("trace_id").is_none(), "{catalog}");

    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
