//! `quota-billing`: the durable billing consumer of quota-sidecar's usage events.
//!
//! - `run`: takes the `UsageEvents` stream into PostgreSQL exactly once (a durable consumer
//!   group; each batch in one transaction, acked after the commit), serving `/healthz` and
//!   `/metrics` until SIGTERM or Ctrl-C.
//! - `statement`: what an account used and owes for a cycle; exit status 3 when events of the
//!   account are missing (the statement names their sequence numbers).
//! - `export`: billable events for OpenMeter (CloudEvents), Stripe, Lago, or as CSV.
//! - `migrate`: brings the schema up to date and exits (`run` does it too, at start).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

use quota_sidecar::billing::consumer::{self, ConsumerSettings};
use quota_sidecar::billing::db::{self, PgSettings};
use quota_sidecar::billing::export::{self, ExportOptions, Format};
use quota_sidecar::billing::health::{self, Health};
use quota_sidecar::billing::statement::Statement;
use quota_sidecar::billing::BillingError;
use quota_sidecar::client;
use quota_sidecar::config::LogFormat;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::telemetry::{metrics as sidecar_metrics, metrics_endpoint, Telemetry};

#[derive(Parser)]
#[command(
    name = "quota-billing",
    version,
    about = "Take quota-sidecar's usage events into PostgreSQL exactly once; statements and exports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Postgres {
    /// PostgreSQL URL, e.g. postgres://billing@db:5432/billing?sslmode=require.
    #[arg(long = "postgres", env = "QUOTA_BILLING_POSTGRES", value_name = "URL")]
    url: String,
    /// PEM CA of the server's certificate (default: the system's trust store).
    #[arg(long, env = "QUOTA_BILLING_POSTGRES_CA", value_name = "FILE")]
    postgres_ca: Option<PathBuf>,
}

impl Postgres {
    fn settings(&self) -> PgSettings {
        PgSettings {
            url: self.url.clone(),
            ca_file: self.postgres_ca.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Consume the usage events into PostgreSQL until SIGTERM.
    Run {
        /// Admin listener of the sidecar (host:port, http:// or https://).
        #[arg(
            long,
            env = "QUOTA_ADMIN_TARGET",
            default_value = "http://127.0.0.1:50052"
        )]
        admin_target: String,
        #[command(flatten)]
        postgres: Postgres,
        /// Consumer group (durable: events wait for it while it is down).
        #[arg(long, env = "QUOTA_BILLING_GROUP", default_value = consumer::DEFAULT_GROUP)]
        group: String,
        /// Name within the group; keep it stable across restarts, distinct per replica.
        #[arg(long, env = "QUOTA_BILLING_CONSUMER", default_value = "quota-billing")]
        consumer: String,
        /// `/healthz` and `/metrics` (HTTP).
        #[arg(long, env = "QUOTA_BILLING_LISTEN", default_value = "127.0.0.1:9465")]
        listen: SocketAddr,
        /// Most events in one transaction.
        #[arg(long, env = "QUOTA_BILLING_BATCH_MAX_EVENTS", default_value_t = 500,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        batch_max_events: u32,
        /// How long a batch waits for more events once it has one.
        #[arg(long, env = "QUOTA_BILLING_BATCH_WAIT_MS", default_value_t = 100)]
        batch_wait_ms: u64,
        /// Longest wait between retries when the sidecar or PostgreSQL is away.
        #[arg(long, env = "QUOTA_BILLING_BACKOFF_MAX_MS", default_value_t = 5_000)]
        backoff_max_ms: u64,
        /// PEM CA that signed the sidecar's certificate, for an https:// target.
        #[arg(long, env = "QUOTA_CA_CERT", value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// PEM client certificate, for an admin listener that requires one (mutual TLS).
        #[arg(long, env = "QUOTA_CLIENT_CERT", value_name = "FILE")]
        client_cert: Option<PathBuf>,
        /// PEM key of --client-cert.
        #[arg(long, env = "QUOTA_CLIENT_KEY", value_name = "FILE")]
        client_key: Option<PathBuf>,
        #[arg(long, env = "QUOTA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// What an account used and owes for a cycle.
    Statement {
        #[command(flatten)]
        postgres: Postgres,
        account: String,
        /// Start of the cycle, RFC 3339 (default: the account's latest).
        #[arg(long)]
        cycle: Option<String>,
        /// Plans and prices as TOML (default: the built-in catalog).
        #[arg(long, env = "QUOTA_CATALOG", value_name = "FILE")]
        catalog: Option<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Billable events as JSON Lines (CSV for csv), oldest first.
    Export {
        #[command(flatten)]
        postgres: Postgres,
        #[arg(long, value_enum)]
        format: Format,
        /// Events at or after this time, RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// Events before this time, RFC 3339.
        #[arg(long)]
        to: Option<String>,
        /// CloudEvents `source`.
        #[arg(long, default_value = "quota-sidecar")]
        source: String,
        /// Meter of generation units: Stripe event_name, Lago code, CloudEvents type.
        #[arg(long, default_value = "generation_units")]
        usage_meter: String,
        /// Meter of prorated upgrade charges, in cents.
        #[arg(long, default_value = "plan_upgrade_cents")]
        upgrade_meter: String,
    },
    /// Bring the PostgreSQL schema up to date and exit (a deployment's migration job).
    Migrate {
        #[command(flatten)]
        postgres: Postgres,
    },
}

/// Exit status of a statement over an account with missing events: printed, but not to be
/// billed as it is (1 stays "no statement at all", 2 a usage error).
const INCOMPLETE_STATEMENT: u8 = 3;

fn parse_time(flag: &str, text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{flag}: `{text}` is not an RFC 3339 time ({e})"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quota_sidecar::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("quota-billing: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run { .. } => {
            let Command::Run { log_format, .. } = &cli.command else {
                unreachable!()
            };
            let telemetry = Telemetry::init(*log_format, Some(runtime.handle()));
            let result = runtime.block_on(run(cli.command));
            telemetry.shutdown();
            result.map(|()| ExitCode::SUCCESS)
        }
        command => runtime.block_on(report(command)),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("quota-billing: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `run`: the consumer and its HTTP listener, until SIGTERM or Ctrl-C.
async fn run(command: Command) -> Result<(), String> {
    let Command::Run {
        admin_target,
        postgres,
        group,
        consumer: consumer_name,
        listen,
        batch_max_events,
        batch_wait_ms,
        backoff_max_ms,
        ca_cert,
        client_cert,
        client_key,
        ..
    } = command
    else {
        unreachable!("called for run only")
    };
    let tls = client::client_tls(
        ca_cert.as_deref(),
        client_cert.as_deref(),
        client_key.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let token = client::admin_token_from_env().map_err(|e| e.to_string())?;
    let mut settings = ConsumerSettings::new(admin_target, token, postgres.settings());
    settings.tls = tls;
    settings.group = group;
    settings.consumer = consumer_name;
    settings.batch_max_events = batch_max_events as usize;
    settings.batch_wait = Duration::from_millis(batch_wait_ms);
    settings.backoff_max = Duration::from_millis(backoff_max_ms.max(100));

    let handle = sidecar_metrics::install()?;
    health::describe_metrics();
    sidecar_metrics::register_counters(&[
        health::EVENTS_WRITTEN,
        health::EVENTS_DUPLICATE,
        health::DEAD_LETTERS,
        health::BATCHES,
        health::RETRIES,
    ]);
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(listener = "http", addr = %bound, "listening");
    let http = tokio::spawn(metrics_endpoint::serve_metrics_and_health(
        listener,
        handle,
        health.as_check(),
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing the batch in hand");
        let _ = stop_tx.send(true);
    });
    let result = consumer::run(settings, health, stop_rx).await;
    http.abort();
    tracing::info!("stopped");
    result.map_err(|e| e.to_string())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `statement` and `export`.
async fn report(command: Command) -> Result<ExitCode, String> {
    let failed = |e: BillingError| e.to_string();
    match command {
        Command::Statement {
            postgres,
            account,
            cycle,
            catalog,
            json,
        } => {
            let cycle = cycle.map(|c| parse_time("--cycle", &c)).transpose()?;
            let catalog = match catalog {
                Some(path) => Catalog::load(&path)
                    .map_err(|e| format!("--catalog {}: {e}", path.display()))?,
                None => Catalog::builtin(),
            };
            let client = db::connect(&postgres.settings()).await.map_err(failed)?;
            let statement = Statement::load(&client, &catalog, &account, cycle)
                .await
                .map_err(failed)?;
            if json {
                println!("{}", statement.to_json());
            } else {
                print!("{}", statement.to_text());
            }
            if statement.is_complete() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "quota-billing: the statement of `{account}` is incomplete: events of it \
                     were not received (missing_seq)"
                );
                Ok(ExitCode::from(INCOMPLETE_STATEMENT))
            }
        }
        Command::Export {
            postgres,
            format,
            from,
            to,
            source,
            usage_meter,
            upgrade_meter,
        } => {
            let mut options = ExportOptions::new(format);
            options.from = from.map(|t| parse_time("--from", &t)).transpose()?;
            options.to = to.map(|t| parse_time("--to", &t)).transpose()?;
            options.source = source;
            options.usage_meter = usage_meter;
            options.upgrade_meter = upgrade_meter;
            let client = db::connect(&postgres.settings()).await.map_err(failed)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            export::export(&client, &options, &mut out)
                .await
                .map_err(failed)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { postgres } => {
            let mut client = db::connect(&postgres.settings()).await.map_err(failed)?;
            db::migrate(&mut client).await.map_err(failed)?;
            println!("schema up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { .. } => unreachable!("run is not a report"),
    }
}
