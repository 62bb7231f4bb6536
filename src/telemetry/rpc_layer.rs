//! One tower layer on both gRPC routers that observes every call: a server span named
//! `<service>/<method>` that continues the caller's W3C trace, the call counter by status code
//! and the latency histogram.
//!
//! The status code is read where gRPC puts it: in the response headers for an error answered
//! before any message ("trailers-only"), otherwise in the trailers at the end of the body. The
//! call is recorded as soon as its status is seen, so before the client has the answer. A call
//! whose body is dropped before its trailers (the client went away) counts as `CANCELLED`.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;
use tower_layer::{Identity, Layer, Stack};
use tower_service::Service;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics::{RPC_DURATION, RPC_REQUESTS};
use super::propagation::remote_parent;

/// Label of calls to paths that name no served method; keeps the label set bounded whatever
/// clients send.
const UNKNOWN: &str = "unknown";

/// Longest service or method name taken from a path as a label; longer ones are [`UNKNOWN`].
const MAX_NAME_LEN: usize = 128;

/// A server builder whose calls go through [`RpcLayer`].
pub type ObservedServer = tonic::transport::Server<Stack<RpcLayer, Identity>>;

/// A router whose calls go through [`RpcLayer`].
pub type ObservedRouter = tonic::transport::server::Router<Stack<RpcLayer, Identity>>;

/// Adds [`RpcService`] around a router.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLayer;

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService { inner }
    }
}

/// Observes each call to the inner service; see the module documentation.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future = RpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = Call::start(request.uri().path(), request.headers());
        let inner = {
            let _entered = call.span.enter();
            self.inner.call(request)
        };
        RpcFuture {
            inner,
            call: Some(call),
        }
    }
}

pin_project! {
    /// The inner service's answer, polled inside the call's span.
    pub struct RpcFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for RpcFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<RpcBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll(cx))
        };
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                // An error answered before any message carries its status in the headers:
                // the call ends here, before the client can see the answer.
                if let Some(code) = grpc_status(response.headers()) {
                    if let Some(mut ended) = call.take() {
                        ended.code = Some(code);
                    }
                }
                Ok(response.map(|inner| RpcBody { inner, call }))
            }
            Err(e) => {
                if let Some(call) = call.as_mut() {
                    call.code = Some(Code::Unknown);
                }
                Err(e)
            }
        })
    }
}

pin_project! {
    /// The response body; reads the status from the trailers and ends the call with it.
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let end = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(grpc_status),
            // A body that fails mid-stream, or ends without a status: both are UNKNOWN in gRPC.
            Some(Err(_)) | None => Some(None),
        };
        if let Some(code) = end {
            if let Some(mut call) = this.call.take() {
                call.code = call.code.or(code).or(Some(Code::Unknown));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call in progress; recorded when dropped.
struct Call {
    service: String,
    method: String,
    started: Instant,
    span: Span,
    /// Known once the status has been seen.
    code: Option<Code>,
}

impl Call {
    fn start(path: &str, headers: &HeaderMap) -> Call {
        let (service, method) = names(path);
        let span = tracing::info_span!(
            "grpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
        );
        if let Some(parent) = remote_parent(headers) {
            // Fails only for a span already started, which this new one is not.
            let _ = span.set_parent(parent);
        }
        span.set_attribute("rpc.system", "grpc");
        span.set_attribute("rpc.service", service.clone());
        span.set_attribute("rpc.method", method.clone());
        Call {
            service,
            method,
            started: Instant::now(),
            span,
            code: None,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "error");
        }
        let (service, method) = if code == Code::Unimplemented {
            (UNKNOWN.to_string(), UNKNOWN.to_string())
        } else {
            (
                std::mem::take(&mut self.service),
                std::mem::take(&mut self.method),
            )
        };
        metrics::histogram!(RPC_DURATION, "service" => service.clone(), "method" => method.clone())
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(
            RPC_REQUESTS,
            "service" => service,
            "method" => method,
            "code" => code_name(code)
        )
        .increment(1);
    }
}

/// The status in `grpc-status`, if the headers carry one.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// `(service, method)` of a gRPC path `/<service>/<method>`; [`UNKNOWN`] for anything else.
fn names(path: &str) -> (String, String) {
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
        Some((service, method)) if valid(service) && valid(method) => {
            (service.to_string(), method.to_string())
        }
        _ => (UNKNOWN.to_string(), UNKNOWN.to_string()),
    }
}

/// Codes that mean the server failed (the OpenTelemetry convention for gRPC server spans);
/// the others are answers to the caller.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The code's name as the gRPC specification spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_bounded_labels() {
        assert_eq!(
            names("/quota.v1.Quota/Reserve"),
            ("quota.v1.Quota".to_string(), "Reserve".to_string())
        );
        for bad in [
            "",
            "/",
            "/a",
            "//m",
            "/s/",
            "/s/m/x",
            "/s{}/m",
            "quota.v1.Quota/Reserve",
        ] {
            assert_eq!(names(bad), (UNKNOWN.into(), UNKNOWN.into()), "{bad}");
        }
        let long = format!("/{}/m", "s".repeat(MAX_NAME_LEN + 1));
        assert_eq!(names(&long).0, UNKNOWN);
    }

    #[test]
    fn code_names_follow_the_spec() {
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::from_bytes(b"7")), "PERMISSION_DENIED");
        assert!(is_server_error(Code::Unavailable));
        assert!(!is_server_error(Code::PermissionDenied));
    }
}
