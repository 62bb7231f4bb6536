//! The PostgreSQL connection and the schema's migrations.
//!
//! TLS when the URL says `sslmode=require`, with the server's certificate verified against
//! `--postgres-ca` or the system's trust store; plaintext otherwise (`prefer`, the default, is
//! taken as plaintext rather than as TLS that would accept any certificate).
//!
//! Errors are told with the server's message and code ([`describe`]) and sorted into those a
//! retry can cure and those it cannot ([`is_permanent`]).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// What went wrong, as the server said it: `FATAL 28000: role "x" does not exist` (with its
/// detail and hint), or the error and its causes (`error connecting to server: Connection
/// refused (os error 111)`).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            out += &format!(" (detail: {detail})");
        }
        if let Some(hint) = db.hint() {
            out += &format!(" (hint: {hint})");
        }
        return out;
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out += &format!(": {c}");
        cause = c.source();
    }
    out
}

/// The server's refusals that only a person can cure: a wrong role or password (class 28), a
/// database that does not exist, a role without the privileges the schema needs.
fn permanent_code(code: &SqlState) -> bool {
    code.code().starts_with("28")
        || *code == SqlState::INVALID_CATALOG_NAME
        || *code == SqlState::INSUFFICIENT_PRIVILEGE
}

/// Whether retrying `e` cannot help: a permanent refusal by the server ([`permanent_code`]), or
/// a client-side error of the settings (a URL that does not parse, a password the server asks
/// for and the URL does not have, an authentication method the client cannot do).
/// tokio-postgres names those kinds only in its Display, pinned by this module's tests.
/// Everything else (refused or dropped connections, timeouts, a server starting up or shutting
/// down, serialization failures) is worth another attempt.
pub fn is_permanent(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        return permanent_code(code);
    }
    if e.is_closed() {
        return false;
    }
    matches!(
        e.to_string().as_str(),
        "invalid connection string" | "invalid configuration" | "authentication error"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_does_not_parse_is_permanent_and_says_why() {
        let e = "postgres://a@b:notaport/c"
            .parse::<tokio_postgres::Config>()
            .unwrap_err();
        assert!(is_permanent(&e));
        let text = describe(&e);
        assert!(text.starts_with("invalid connection string: "), "{text}");
        assert!(text.contains("port"), "{text}");
    }

    #[test]
    fn permanent_codes_are_authentication_missing_databases_and_privileges() {
        for code in [
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_CATALOG_NAME,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ] {
            assert!(permanent_code(&code), "{}", code.code());
        }
        for code in [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::UNIQUE_VIOLATION,
        ] {
            assert!(!permanent_code(&code), "{}", code.code());
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_and_names_its_cause() {
        // A port nothing listens on: bind one, note it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://billing@127.0.0.1:{port}/billing");
        let Err(e) = tokio_postgres::connect(&url, NoTls).await else {
            panic!("connected to a port nothing listens on");
        };
        assert!(!is_permanent(&e));
        let text = describe(&e);
        assert!(text.starts_with("error connecting to server: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
