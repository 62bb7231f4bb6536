//! The PostgreSQL connection and the schema's migrations.
//!
//! TLS when the URL says `sslmode=require`, with the server's certificate verified against
//! `--postgres-ca` or the system's trust store; plaintext otherwise (`prefer`, the default, is
//! taken as plaintext rather than as TLS that would accept any certificate).
//!
//! A failed migration is told with the server's message (see `pg_error`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::pg_error::{describe, is_permanent};
use super::BillingError;

mod embedded {
    refinery::embed_migrations!("src/billing/migrations");
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=...]`, or key=value pairs.
    pub url: String,
    /// PEM CA of the server's certificate, when it is not in the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The TLS connector: `ca_file`'s certificates, or the system's roots.
fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, BillingError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |message: String| BillingError::PostgresCa {
                path: path.display().to_string(),
                message,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no CERTIFICATE block".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            // Unreadable system roots only matter for a TLS connection, which then fails
            // with the server's name in the error.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// A connected client; its connection runs on a task of its own until the client drops or
/// the server goes away (then every call fails and the caller connects again).
pub async fn connect(settings: &PgSettings) -> Result<Client, BillingError> {
    let mut config: tokio_postgres::Config = settings.url.parse()?;
    let client = if config.get_ssl_mode() == SslMode::Require {
        let tls = tls_connector(settings.ca_file.as_deref())?;
        let (client, connection) = config.connect(tls).await?;
        tokio::spawn(drive(connection));
        client
    } else {
        config.ssl_mode(SslMode::Disable);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(drive(connection));
        client
    };
    Ok(client)
}

/// Runs a connection until it ends.
async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "PostgreSQL connection ended");
    }
}

/// Brings the schema up to date; applied migrations are recorded in
/// `refinery_schema_history`, so running it again changes nothing.
pub async fn migrate(client: &mut Client) -> Result<(), BillingError> {
    let report = embedded::migrations::runner()
        .run_async(client)
        .await
        .map_err(migration_error)?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied");
    }
    Ok(())
}

/// A failed migration run, with the server's message when the database refused it.
fn migration_error(e: refinery::Error) -> BillingError {
    if let refinery::error::Kind::Connection(what, source) = e.kind() {
        if let Some(pg) = source.downcast_ref::<tokio_postgres::Error>() {
            return BillingError::Migration {
                message: format!("{what}: {}", describe(pg)),
                permanent: is_permanent(pg),
            };
        }
    }
    // The embedded migrations themselves are wrong (or diverge from those applied): a new
    // attempt finds them just as wrong.
    BillingError::Migration {
        message: e.to_string(),
        permanent: true,
    }
}
