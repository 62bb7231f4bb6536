//! What the sidecar tells operators: logs (text or JSON, see [`json_log`]) on stderr, traces
//! over OTLP when the standard `OTEL_*` environment asks for them, and Prometheus metrics.
//!
//! Every gRPC call gets a server span that continues the caller's W3C trace
//! ([`rpc_layer`]), the handler's span below it carries the ids, and every store call below
//! that gets its own span (`store.<op>`, see [`crate::store::instrumented`]).

pub mod json_log;
pub mod metrics;
pub mod metrics_endpoint;
pub mod otlp;
pub mod propagation;
pub mod rpc_layer;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Longest exit waits for the last spans to reach the collector: past the drain timeout, this
/// still ends well inside Kubernetes' default 30 s grace period.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Only this crate's spans are exported: not those of the libraries underneath, and never the
/// exporter's own calls.
const EXPORTED_TARGET: &str = "quota_sidecar";

/// Name of the instrumentation scope on exported spans.
const TRACER_NAME: &str = "quota-sidecar";

/// The installed logging and tracing; [`Telemetry::shutdown`] flushes what is left.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process-wide subscriber and the W3C trace-context propagator.
    ///
    /// Logs go to stderr in `format`, filtered by `RUST_LOG` (default `info`). When the
    /// environment asks for OTLP export (see [`otlp::export_wanted`]) and there is a runtime to
    /// export on, this crate's spans at INFO and above are exported too, whatever `RUST_LOG`
    /// says. A broken OTLP setting is logged and leaves the sidecar running without traces.
    pub fn init(format: LogFormat, runtime: Option<&tokio::runtime::Handle>) -> Telemetry {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let wanted = otlp::export_wanted(|name| std::env::var(name).ok());
        let built = match (wanted, runtime) {
            (true, Some(runtime)) => {
                let _entered = runtime.enter();
                Some(otlp::tracer_provider())
            }
            (true, None) => Some(Err("no async runtime to export on".to_string())),
            (false, _) => None,
        };
        let (provider, problem) = match built {
            Some(Ok(provider)) => (Some(provider), None),
            Some(Err(problem)) => (None, Some(problem)),
            None => (None, None),
        };

        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let logs = match format {
            LogFormat::Text => logs.boxed(),
            LogFormat::Json => logs.json().event_format(json_log::FlatJson::new()).boxed(),
        };
        let traces = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(TRACER_NAME))
                .with_filter(Targets::new().with_target(EXPORTED_TARGET, Level::INFO))
        });
        // A second call keeps the subscriber of the first.
        let _ = tracing_subscriber::registry()
            .with(logs.with_filter(filter))
            .with(traces)
            .try_init();
        json_log::remember_dispatch();

        if provider.is_some() {
            let endpoint = [
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_default();
            tracing::info!(%endpoint, "exporting traces over OTLP/gRPC");
        }
        if let Some(problem) = problem {
            tracing::warn!("OTLP trace export is off: {problem}");
        }
        Telemetry { provider }
    }

    /// Exports the spans still buffered (at most [`FLUSH_TIMEOUT`]) and stops exporting. Call
    /// it outside async code, while the runtime given to [`Telemetry::init`] still runs.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(error = %e, "could not flush the last spans");
            }
        }
    }
}
