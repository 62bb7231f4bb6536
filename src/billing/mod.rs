//! `quota-billing`: takes the usage event stream into PostgreSQL exactly once and speaks the
//! formats billing systems ingest.
//!
//! - [`consumer`]: subscribes to `UsageEvents` as a durable group, writes each batch in one
//!   transaction and acks it only after the commit; retries with backoff when the sidecar or
//!   the database goes away.
//! - [`db`]: the connection (TLS optional) and the schema's migrations.
//! - [`record`]: an event checked and mapped to its typed columns, or the reason it cannot be.
//! - [`writer`]: one batch in one transaction; aggregates move only for rows actually inserted,
//!   so a redelivered event changes nothing.
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
pub mod record;
pub mod statement;
pub mod writer;

/// What stops a billing command.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL migrations: {0}")]
    Migration(String),
    #[error("--postgres-ca {path}: {message}")]
    PostgresCa { path: String, message: String },
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("{0}")]
    Statement(String),
    #[error("writing the export: {0}")]
    Output(#[from] std::io::Error),
}
