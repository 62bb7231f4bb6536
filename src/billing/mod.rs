//! `quota-billing`: takes the usage event stream into PostgreSQL exactly once and speaks the
//! formats billing systems ingest.
//!
//! - [`consumer`]: subscribes to `UsageEvents` as a durable group, writes each batch in one
//!   transaction and acks it only after the commit; retries with backoff when the sidecar or
//!   the database goes away.
//! - [`db`]: the connection (TLS optional), the schema's migrations, and what a PostgreSQL
//!   error says (the server's message) and whether retrying can help.
//! - [`record`]: an event checked and mapped to its typed columns, or the reason it cannot be.
//! - [`writer`]: one batch in one transaction; aggregates move only for rows actually inserted,
//!   so a redelivered event changes nothing.
//! - [`sequence`]: each account's next expected event sequence and the gaps before it, so
//!   that a statement never hides a missing event.
//! - [`aggregate`]: what each event type adds to the per-cycle usage, upgrade charges and
//!   per-grant credit movements.
//! - [`statement`]: what an account used and owes for a cycle.
//! - [`export`]: billable events as CloudEvents (OpenMeter), Stripe meter events, Lago events
//!   or CSV.
//! - [`health`]: `/healthz` and the consumer's metrics.

pub mod aggregate;
pub mod consumer;
pub mod db;
pub mod export;
pub mod health;
pub mod pg_error;
pub mod prepared;
pub mod record;
pub mod sequence;
pub mod statement;
pub mod writer;

/// What stops a billing command.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// With the server's own message (`tokio_postgres::Error`'s Display alone says only
    /// "db error").
    #[error("PostgreSQL: {}", pg_error::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL migrations: {message}")]
    Migration {
        message: String,
        /// Retrying cannot help (e.g. the role may not create tables).
        permanent: bool,
    },
    #[error("--postgres-ca {path}: {message}")]
    PostgresCa { path: String, message: String },
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The sidecar refused the consumer for good (a wrong admin token).
    #[error("{0}")]
    SidecarRefused(String),
    #[error("{0}")]
    Statement(String),
    #[error("writing the export: {0}")]
    Output(#[from] std::io::Error),
}

impl BillingError {
    /// Whether the same call can never succeed without someone changing a setting, the
    /// database or the sidecar: a wrong role, password, database or URL, missing privileges,
    /// an unreadable CA file.
    pub fn is_permanent(&self) -> bool {
        match self {
            BillingError::Postgres(e) => pg_error::is_permanent(e),
            BillingError::Migration { permanent, .. } => *permanent,
            BillingError::PostgresCa { .. } | BillingError::SidecarRefused(_) => true,
            // A bad address, TLS file or token stays bad; an unreachable sidecar may come back.
            BillingError::Client(e) => !matches!(e, crate::client::ClientError::Unreachable { .. }),
            BillingError::Statement(_) | BillingError::Output(_) => false,
        }
    }
}
