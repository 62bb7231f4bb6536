//! `GET /metrics` over HTTP/1.1: the exporter's Prometheus text (with the process metrics
//! sampled at the scrape), served by hyper on a listener
//! the caller bound; optionally `GET /healthz` from a check the caller gives. (The exporter's own listener binds internally and cannot tell which port
//! it got, which a port-0 listener needs.)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::metrics::{render, UPKEEP_INTERVAL};

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

/// Longest a connection may take to send its request headers: a scraper sends them at once,
/// and a connection that sends nothing must not hold a task forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the optional health check.
pub const HEALTH_PATH: &str = "/healthz";

/// A health check: `Ok` is 200, `Err(why)` is 503 with the reason as the body.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` from `handle` on `listener` and keeps the histograms' windows current.
/// Runs until dropped (the server aborts it once it has stopped).
pub async fn serve_metrics(listener: TcpListener, handle: PrometheusHandle) {
    serve(listener, handle, None).await
}

/// Like [`serve_metrics`], and `GET /healthz` answers from `health`.
pub async fn serve_metrics_and_health(
    listener: TcpListener,
    handle: PrometheusHandle,
    health: HealthCheck,
) {
    serve(listener, handle, Some(health)).await
}

async fn serve(listener: TcpListener, handle: PrometheusHandle, health: Option<HealthCheck>) {
    let upkeep = {
        let handle = handle.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        }
    };
    let accept = async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(move |request| answer(request, handle.clone(), health.clone()));
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "metrics connection ended with an error");
                }
            });
        }
    };
    tokio::join!(upkeep, accept);
}

/// The metrics on `GET /metrics` (and health on `GET /healthz` when checked), 404 elsewhere,
/// 405 for other methods.
async fn answer(
    request: Request<Incoming>,
    handle: PrometheusHandle,
    health: Option<HealthCheck>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let (Some(check), HEALTH_PATH) = (&health, request.uri().path()) {
        let (status, body) = match (request.method(), check()) {
            (&Method::GET, Ok(())) => (StatusCode::OK, "ok\n".to_string()),
            (&Method::GET, Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        return Ok(response);
    }
    let status = match (request.method(), request.uri().path()) {
        (&Method::GET, METRICS_PATH) => {
            let mut response = Response::new(Full::new(Bytes::from(render(&handle))));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(TEXT_FORMAT),
            );
            return Ok(response);
        }
        (_, METRICS_PATH) => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    Ok(response)
}
