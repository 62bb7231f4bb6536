//! Connecting to a sidecar as a client: targets with or without a scheme, TLS from PEM files,
//! and the admin bearer token. Shared by `quotactl` and `quota-billing`.

use std::path::Path;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Request;

use crate::config::ADMIN_TOKEN_ENV;

/// How long a client waits for a connection to a sidecar.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a client cannot talk to a sidecar; said for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("bad address `{target}`: {message}")]
    BadTarget { target: String, message: String },
    #[error("{flag} {path}: {message}")]
    File {
        flag: &'static str,
        path: String,
        message: String,
    },
    #[error("--client-cert and --client-key go together")]
    HalfIdentity,
    #[error("{target} is TLS: give --ca-cert (the CA that signed the sidecar's certificate)")]
    TlsWithoutCa { target: String },
    #[error("TLS settings for {target}: {message}")]
    Tls { target: String, message: String },
    #[error(
        "cannot reach the sidecar at {target} ({message}); is it running and is the address right?"
    )]
    Unreachable { target: String, message: String },
    #[error("{ADMIN_TOKEN_ENV} is not set: admin commands need the sidecar's admin token")]
    NoToken,
    #[error("{ADMIN_TOKEN_ENV} has characters not allowed in a header")]
    BadToken,
}

/// `host:port` becomes `http://host:port`; a target with a scheme stays as it is.
pub fn with_scheme(target: &str) -> String {
    if target.contains("://") {
        target.to_string()
    } else {
        format!("http://{target}")
    }
}

/// The TLS settings of `https://` targets: the CA that signed the sidecar's certificate and,
/// for an admin listener that requires one, a client certificate and key. `None` without any.
pub fn client_tls(
    ca_cert: Option<&Path>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<Option<ClientTlsConfig>, ClientError> {
    let read = |flag: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| ClientError::File {
            flag,
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let mut tls = match ca_cert {
        Some(ca) => Some(
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca-cert", ca)?)),
        ),
        None => None,
    };
    match (client_cert, client_key) {
        (Some(cert), Some(key)) => {
            let identity =
                Identity::from_pem(read("--client-cert", cert)?, read("--client-key", key)?);
            tls = Some(tls.unwrap_or_default().identity(identity));
        }
        (None, None) => {}
        _ => return Err(ClientError::HalfIdentity),
    }
    Ok(tls)
}

/// A channel to `target` (scheme optional); its calls time out after `call_timeout`, `None`
/// for streams that stay open. `https://` targets need `tls`.
pub async fn connect(
    target: &str,
    tls: Option<&ClientTlsConfig>,
    call_timeout: Option<Duration>,
) -> Result<Channel, ClientError> {
    let target = with_scheme(target);
    let mut endpoint = Endpoint::from_shared(target.clone())
        .map_err(|e| ClientError::BadTarget {
            target: target.clone(),
            message: e.to_string(),
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(timeout) = call_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    if target.starts_with("https://") {
        let Some(tls) = tls else {
            return Err(ClientError::TlsWithoutCa { target });
        };
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| ClientError::Tls {
                target: target.clone(),
                message: e.to_string(),
            })?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| ClientError::Unreachable {
            target,
            message: e.to_string(),
        })
}

/// The admin token from the environment; an error when it is unset or empty.
pub fn admin_token_from_env() -> Result<String, ClientError> {
    match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(token) if !token.is_empty() => Ok(token),
        _ => Err(ClientError::NoToken),
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Result<Request<T>, ClientError> {
    let mut request = Request::new(message);
    let value =
        MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| ClientError::BadToken)?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_added_only_when_missing() {
        assert_eq!(with_scheme("127.0.0.1:50052"), "http://127.0.0.1:50052");
        assert_eq!(with_scheme("http://h:1"), "http://h:1");
        assert_eq!(with_scheme("https://h:1"), "https://h:1");
    }

    #[test]
    fn half_an_identity_is_refused() {
        let err = client_tls(None, Some(Path::new("c.pem")), None).unwrap_err();
        assert_eq!(err, ClientError::HalfIdentity);
        assert!(client_tls(None, None, None).unwrap().is_none());
    }

    #[test]
    fn token_goes_into_the_header() {
        let r = with_token((), "abc").unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer abc");
        assert_eq!(with_token((), "a\nb").unwrap_err(), ClientError::BadToken);
    }
}
