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
