//! TLS of the gRPC listeners and of the connection to Redis.
//!
//! - `--tls-cert`/`--tls-key`: the worker and admin listeners serve TLS with this certificate
//!   chain and key. Without them both are plaintext, which is right for a sidecar on loopback.
//! - `--admin-client-ca`: the admin listener also asks every client for a certificate signed by
//!   this CA (mutual TLS), on top of the bearer token. The worker listener never does: workers
//!   reach it over loopback.
//! - `--redis-ca`: the CA that signed a `rediss://` server's certificate, when it is not in the
//!   system's trust store.
//!
//! Files are read and checked once, before anything listens, so a missing file, a file without
//! the expected PEM block or a key that does not belong to the certificate stops the start with
//! one message naming the flag.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Longest a client may take to finish the TLS handshake. A connection that never completes
/// it would otherwise hold a socket and a task for as long as the peer likes; a real client on
/// a healthy network needs a few round trips, far below this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Flag names, as the error messages quote them.
const CERT_FLAG: &str = "--tls-cert";
const KEY_FLAG: &str = "--tls-key";
const ADMIN_CLIENT_CA_FLAG: &str = "--admin-client-ca";
/// Flag naming the CA of a `rediss://` server.
pub const REDIS_CA_FLAG: &str = "--redis-ca";

/// A TLS file or setting that cannot be used; the message starts with the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct TlsError {
    /// The flag (or flags) whose value is wrong.
    pub flag: &'static str,
    /// What is wrong, with the path when there is one.
    pub message: String,
}

impl TlsError {
    fn new(flag: &'static str, message: impl Into<String>) -> TlsError {
        TlsError {
            flag,
            message: message.into(),
        }
    }
}

/// The files of the listeners' TLS, as `--tls-cert`, `--tls-key` and `--admin-client-ca` name
/// them; `None` where the flag is not given.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerTlsFiles<'a> {
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub admin_client_ca: Option<&'a Path>,
}

/// The TLS settings of the worker and admin listeners; `None` means plaintext.
#[derive(Debug, Clone, Default)]
pub struct ListenerTls {
    worker: Option<ServerTlsConfig>,
    admin: Option<ServerTlsConfig>,
    admin_client_auth: bool,
}

impl ListenerTls {
    /// Plaintext on both listeners.
    pub fn plaintext() -> ListenerTls {
        ListenerTls::default()
    }

    /// The settings named by `--tls-cert`, `--tls-key` and `--admin-client-ca`.
    pub fn from_files(files: ListenerTlsFiles<'_>) -> Result<ListenerTls, TlsError> {
        let (cert_path, key_path) = match (files.cert, files.key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => {
                return match files.admin_client_ca {
                    Some(_) => Err(TlsError::new(
                        ADMIN_CLIENT_CA_FLAG,
                        "needs --tls-cert and --tls-key: client certificates are a TLS feature",
                    )),
                    None => Ok(ListenerTls::plaintext()),
                };
            }
            (Some(_), None) => return Err(TlsError::new(KEY_FLAG, "missing; --tls-cert needs it")),
            (None, Some(_)) => return Err(TlsError::new(CERT_FLAG, "missing; --tls-key needs it")),
        };
        let cert = read_file(CERT_FLAG, cert_path)?;
        let key = read_file(KEY_FLAG, key_path)?;
        let client_ca = match files.admin_client_ca {
            Some(path) => Some(read_file(ADMIN_CLIENT_CA_FLAG, path)?),
            None => None,
        };
        ListenerTls::from_pem(&cert, &key, client_ca.as_deref()).map_err(|e| TlsError {
            message: with_path(e.flag, files, e.message),
            ..e
        })
    }

    /// Settings from PEM text: the server's certificate chain and key, and optionally the CA
    /// that admin clients' certificates must be signed by.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        admin_client_ca_pem: Option<&[u8]>,
    ) -> Result<ListenerTls, TlsError> {
        install_crypto_provider();
        check_certificates(CERT_FLAG, cert_pem)?;
        PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::new(KEY_FLAG, pem_problem(e, "PRIVATE KEY")))?;
        if let Some(ca) = admin_client_ca_pem {
            check_certificates(ADMIN_CLIENT_CA_FLAG, ca)?;
        }
        let worker = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        // Building an acceptor is where rustls checks that the key belongs to the certificate.
        tonic::transport::Server::builder()
            .tls_config(worker.clone())
            .map_err(|e| TlsError::new("--tls-cert/--tls-key", error_chain(&e)))?;
        let admin = match admin_client_ca_pem {
            Some(ca) => {
                let admin = worker.clone().client_ca_root(Certificate::from_pem(ca));
                tonic::transport::Server::builder()
                    .tls_config(admin.clone())
                    .map_err(|e| TlsError::new(ADMIN_CLIENT_CA_FLAG, error_chain(&e)))?;
                admin
            }
            None => worker.clone(),
        };
        Ok(ListenerTls {
            worker: Some(worker),
            admin: Some(admin),
            admin_client_auth: admin_client_ca_pem.is_some(),
        })
    }

    /// TLS of the worker listener, if any.
    pub fn worker(&self) -> Option<&ServerTlsConfig> {
        self.worker.as_ref()
    }

    /// TLS of the admin listener, if any.
    pub fn admin(&self) -> Option<&ServerTlsConfig> {
        self.admin.as_ref()
    }

    /// Whether the admin listener requires client certificates.
    pub fn admin_requires_client_certificate(&self) -> bool {
        self.admin_client_auth
    }
}

/// The PEM file named by `--redis-ca`, checked to hold at least one certificate.
pub fn read_redis_ca(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read_file(REDIS_CA_FLAG, path)?;
    check_certificates(REDIS_CA_FLAG, &pem).map_err(|e| TlsError {
        message: format!("{}: {}", path.display(), e.message),
        ..e
    })?;
    Ok(pem)
}

/// Makes ring the process's TLS crypto provider unless one is installed already. Every TLS
/// client and server of the process (tonic, redis-rs) then agrees on it, whatever features
/// other crates switch on in rustls.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is as good as winning it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|e| TlsError::new(flag, format!("{}: cannot read: {e}", path.display())))
}

fn check_certificates(flag: &'static str, pem_text: &[u8]) -> Result<(), TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(flag, pem_problem(e, "CERTIFICATE")))?;
    if certificates.is_empty() {
        return Err(TlsError::new(flag, "no PEM CERTIFICATE block in the file"));
    }
    Ok(())
}

fn pem_problem(error: pem::Error, expected: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("no PEM {expected} block in the file"),
        other => format!("not valid PEM: {other}"),
    }
}

/// The path behind `flag`, prefixed to `message` when the message does not name one yet.
fn with_path(flag: &'static str, files: ListenerTlsFiles<'_>, message: String) -> String {
    let path = match flag {
        CERT_FLAG => files.cert,
        KEY_FLAG => files.key,
        ADMIN_CLIENT_CA_FLAG => files.admin_client_ca,
        _ => None,
    };
    match path {
        Some(path) => format!("{}: {message}", path.display()),
        None => message,
    }
}

/// An error and its sources on one line: tonic's own message is only "transport error".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn good_pair_configures_both_listeners() {
        let (cert, key) = self_signed();
        let tls = ListenerTls::from_pem(cert.as_bytes(), key.as_bytes(), None).unwrap();
        assert!(tls.worker().is_some() && tls.admin().is_some());
        assert!(!tls.admin_requires_client_certificate());
        let tls =
            ListenerTls::from_pem(cert.as_bytes(), key.as_bytes(), Some(cert.as_bytes())).unwrap();
        assert!(tls.admin_requires_client_certificate());
    }

    #[test]
    fn bad_material_names_the_flag() {
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let err = ListenerTls::from_pem(key.as_bytes(), key.as_bytes(), None).unwrap_err();
        assert_eq!(err.flag, "--tls-cert", "{err}");
        let err = ListenerTls::from_pem(cert.as_bytes(), cert.as_bytes(), None).unwrap_err();
        assert_eq!(err.flag, "--tls-key", "{err}");
        let err = ListenerTls::from_pem(cert.as_bytes(), other_key.as_bytes(), None).unwrap_err();
        assert_eq!(err.flag, "--tls-cert/--tls-key", "{err}");
        let err =
            ListenerTls::from_pem(cert.as_bytes(), key.as_bytes(), Some(b"junk")).unwrap_err();
        assert_eq!(err.flag, "--admin-client-ca", "{err}");
    }
}
