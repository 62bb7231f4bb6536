//! The JSON log line: one flat object per event (`timestamp`, `level`, `message`, the event's
//! fields, `target`, and `span`: the current span's name and fields), without the `log.*` fields that records of libraries logging through
//! `log` carry (their source file and line), and with `trace_id` and `span_id` of the
//! innermost sampled span around the event, so that a log line leads to its trace.

use std::fmt;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Prefix of the fields the `log` bridge adds (`log.file`, `log.line`, `log.module_path`,
/// `log.target`); the target is already the line's `target`.
const LOG_FIELD_PREFIX: &str = "log.";

/// The installed dispatcher, through which the trace ids of spans are read.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Remembers the process-wide dispatcher once it is installed; without it lines carry no
/// trace ids.
pub fn remember_dispatch() {
    tracing::dispatcher::get_default(|dispatch| {
        let _ = DISPATCH.set(dispatch.downgrade());
    });
}

/// The JSON event format (see the module documentation).
pub struct FlatJson {
    inner: Format<Json>,
}

impl FlatJson {
    pub fn new() -> FlatJson {
        FlatJson {
            // The current span (with its fields) is kept; the list of every enclosing span
            // repeats what the trace shows.
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_span_list(false),
        }
    }
}

impl Default for FlatJson {
    fn default() -> Self {
        FlatJson::new()
    }
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(&line) else {
            // Not expected from the JSON format; the line as it came is better than none.
            return writer.write_str(&line);
        };
        object.retain(|key, _| !key.starts_with(LOG_FIELD_PREFIX));
        if let Some((trace_id, span_id)) = sampled_ids(ctx) {
            object.insert("trace_id".into(), trace_id.into());
            object.insert("span_id".into(), span_id.into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(object))
    }
}

/// Trace and span id (hex) of the innermost span around the event that is being traced and
/// sampled.
fn sampled_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let dispatch = DISPATCH.get()?.upgrade()?;
    let scope = ctx.event_scope()?;
    let ids: Vec<tracing::span::Id> = scope.map(|span| span.id()).collect();
    ids.iter().find_map(|id| {
        let context = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = context.span();
        let span_context = span.span_context();
        (span_context.is_valid() && span_context.is_sampled()).then(|| {
            (
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            )
        })
    })
}
