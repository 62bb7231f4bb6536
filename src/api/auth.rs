//! Bearer-token check of the admin listener.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::AdminToken;

/// Admits requests carrying `authorization: Bearer <token>`; anything else is
/// `UNAUTHENTICATED`. The comparison takes the same time wherever the first wrong byte is, so
/// response timing does not reveal the token (only its length, which a guesser gains nothing
/// from).
#[derive(Clone)]
pub struct BearerAuth {
    token: Arc<[u8]>,
}

impl BearerAuth {
    /// Checks requests against `token`.
    pub fn new(token: &AdminToken) -> BearerAuth {
        BearerAuth {
            token: Arc::from(token.expose().as_bytes()),
        }
    }

    /// Whether an `authorization` header value carries the token.
    fn admits(&self, header: &[u8]) -> bool {
        const SCHEME: &[u8] = b"bearer ";
        if header.len() < SCHEME.len() || !header[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
            return false;
        }
        let presented = header[SCHEME.len()..].trim_ascii();
        bool::from(presented.ct_eq(&self.token))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let admitted = request
            .metadata()
            .get("authorization")
            .is_some_and(|value| self.admits(value.as_bytes()));
        if admitted {
            Ok(request)
        } else {
            tracing::debug!("admin call without a valid bearer token");
            Err(super::status::with_reason(
                tonic::Code::Unauthenticated,
                "admin API needs `authorization: Bearer <token>` with the configured token",
                super::status::reason::UNAUTHENTICATED,
                [],
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &mut BearerAuth, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        auth.call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn needs_the_exact_token() {
        let mut auth = BearerAuth::new(&AdminToken::new("s3cret-token").unwrap());
        assert_eq!(call(&mut auth, Some("Bearer s3cret-token")), Ok(()));
        assert_eq!(call(&mut auth, Some("bearer s3cret-token")), Ok(()));
        let unauthenticated = Err(tonic::Code::Unauthenticated);
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("s3cret-token"),
            Some("Basic s3cret-token"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("Bearer S3CRET-TOKEN"),
        ] {
            assert_eq!(call(&mut auth, bad), unauthenticated, "{bad:?}");
        }
    }
}
