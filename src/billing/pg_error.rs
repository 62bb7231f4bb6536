//! PostgreSQL errors as the server said them ([`describe`]), sorted into those a retry can cure
//! and those it cannot ([`is_permanent`]).

use tokio_postgres::error::SqlState;

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
    use tokio_postgres::NoTls;

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
