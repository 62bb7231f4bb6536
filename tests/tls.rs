//! TLS through the real binary: the worker and admin listeners with `--tls-cert`/`--tls-key`,
//! client certificates on the admin listener with `--admin-client-ca`, the plaintext health
//! listener for probes, `rediss://` to a TLS `redis-server` with `--redis-ca`, and bad TLS files
//! stopping the start with one line naming the flag.

mod harness;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;

use harness::certs::TestPki;
use harness::sidecar::{channel, health_status, wait_serving, Sidecar};
use harness::{free_port, RedisServer};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "tls-admin-token";
/// Bound on connecting and on every call, so that a refused handshake fails fast.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS channel that trusts `pki`'s CA, presenting `identity` when given.
async fn tls_channel(
    addr: SocketAddr,
    pki: &TestPki,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
}

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

fn balance_request() -> pb::GetBalanceRequest {
    pb::GetBalanceRequest {
        account_id: "acct-tls".into(),
    }
}

fn account_request() -> pb::GetAccountRequest {
    pb::GetAccountRequest {
        account_id: "acct-tls".into(),
    }
}

/// A GetBalance over `channel`, or the reason it failed (at connect or at the call).
async fn get_balance(channel: Result<Channel, tonic::transport::Error>) -> Result<String, String> {
    let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
    QuotaClient::new(channel)
        .get_balance(balance_request())
        .await
        .map(|answer| answer.into_inner().plan)
        .map_err(|status| format!("call: {status:?}"))
}

/// A GetAccount with the token over `channel`, or the reason it failed.
async fn get_account(channel: Result<Channel, tonic::transport::Error>) -> Result<(), String> {
    let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
    QuotaAdminClient::new(channel)
        .get_account(authed(account_request()))
        .await
        .map(|_| ())
        .map_err(|status| format!("call: {status:?}"))
}

/// A plaintext channel to `addr`, not yet connected (a TLS server refuses it at the first call).
fn plaintext_lazy(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect_lazy()
}

#[tokio::test]
async fn tls_listeners_serve_tls_clients_refuse_plaintext_and_probes_use_the_health_listener() {
    let pki = TestPki::new("quota test CA");
    let sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &["--health-listen", "127.0.0.1:0"],
        // The environment variables are how a Kubernetes Secret usually reaches the process.
        &[
            ("QUOTA_TLS_CERT", &pki.server_cert_path()),
            ("QUOTA_TLS_KEY", &pki.server_key_path()),
        ],
    );
    let health = sidecar.health.expect("health listener");
    wait_serving(health).await;

    // TLS clients that trust the CA: the worker API and the admin API (token, no client cert).
    assert_eq!(
        get_balance(tls_channel(sidecar.worker, &pki, None).await).await,
        Ok("none".to_string())
    );
    get_account(tls_channel(sidecar.admin(), &pki, None).await)
        .await
        .expect("admin over TLS with the token");

    // Plaintext clients get nothing from either TLS listener: the server drops the connection
    // at the first bytes, which are no TLS handshake.
    let answer = QuotaClient::new(plaintext_lazy(sidecar.worker))
        .get_balance(balance_request())
        .await;
    assert!(answer.is_err(), "{answer:?}");
    let answer = QuotaAdminClient::new(plaintext_lazy(sidecar.admin()))
        .get_account(authed(account_request()))
        .await;
    assert!(answer.is_err(), "{answer:?}");

    // A client that does not trust the server's CA refuses the server.
    let stranger = TestPki::new("some other CA");
    let refused = get_balance(tls_channel(sidecar.worker, &stranger, None).await).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer")),
        "{refused:?}"
    );

    // The health listener is plaintext and serves health only.
    let probe = channel(health).await;
    for service in ["", "quota.v1.Quota", "liveness"] {
        assert_eq!(
            health_status(probe.clone(), service).await,
            ServingStatus::Serving as i32
        );
    }
    let status = QuotaClient::new(probe)
        .get_balance(balance_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn admin_client_ca_requires_a_client_certificate_on_the_admin_listener_only() {
    let pki = TestPki::new("quota test CA");
    let sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &[
            "--tls-cert",
            &pki.server_cert_path(),
            "--tls-key",
            &pki.server_key_path(),
            "--admin-client-ca",
            &pki.ca_path(),
        ],
        &[],
    );
    let client_identity = || Identity::from_pem(&pki.client_cert_pem, &pki.client_key_pem);

    // A certificate signed by the CA, and the token: served.
    get_account(tls_channel(sidecar.admin(), &pki, Some(client_identity())).await)
        .await
        .expect("admin with a client certificate and the token");

    // The certificate does not replace the token.
    let status = QuotaAdminClient::new(
        tls_channel(sidecar.admin(), &pki, Some(client_identity()))
            .await
            .unwrap(),
    )
    .get_account(account_request())
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // No client certificate: the handshake (TLS 1.3: the first call) fails.
    let refused = get_account(tls_channel(sidecar.admin(), &pki, None).await).await;
    assert!(refused.is_err(), "{refused:?}");

    // A client certificate from another CA: refused too.
    let stranger = TestPki::new("some other CA");
    let foreign_identity = Identity::from_pem(&stranger.client_cert_pem, &stranger.client_key_pem);
    let refused =
        get_account(tls_channel(sidecar.admin(), &pki, Some(foreign_identity)).await).await;
    assert!(refused.is_err(), "{refused:?}");

    // The worker listener asks for no client certificate.
    assert_eq!(
        get_balance(tls_channel(sidecar.worker, &pki, None).await).await,
        Ok("none".to_string())
    );

    // quotactl, the operator's way in: with the CA and a client certificate it is served;
    // without the certificate it says so in one line.
    let quotactl = |tls_args: &[String]| {
        harness::process::output_within(
            Command::new(env!("CARGO_BIN_EXE_quotactl"))
                .args(["--admin-target", &format!("https://{}", sidecar.admin())])
                .args(tls_args)
                .args(["--json", "account", "acct-tls"])
                .env("QUOTA_ADMIN_TOKEN", TOKEN)
                .env_remove("QUOTA_CA_CERT")
                .env_remove("QUOTA_CLIENT_CERT")
                .env_remove("QUOTA_CLIENT_KEY"),
            Duration::from_secs(20),
        )
    };
    let ca = ["--ca-cert".to_string(), pki.ca_path()];
    let client = [
        "--client-cert".to_string(),
        pki.path("client.pem"),
        "--client-key".to_string(),
        pki.path("client.key"),
    ];
    let out = quotactl(&[&ca[..], &client[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let account: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(account["balance"]["plan"], "none", "{account}");
    // Exit statuses as `quotactl --help` lists them: a refused handshake is a failure (1), a
    // TLS target without --ca-cert a usage error (2).
    for (args, why, exit) in [(&ca[..], "no client certificate", 1), (&[][..], "no CA", 2)] {
        let out = quotactl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit), "{why}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{why}: {stderr}");
        assert!(stderr.starts_with("quotactl: "), "{why}: {stderr}");
    }
}

/// A `redis-server` with a TLS port besides its plaintext one (which the harness pings).
fn tls_redis(pki: &TestPki) -> (RedisServer, u16) {
    for _ in 0..5 {
        let tls_port = free_port().to_string();
        let server = RedisServer::try_start(
            free_port(),
            &[
                "--tls-port",
                &tls_port,
                "--tls-cert-file",
                &pki.server_cert_path(),
                "--tls-key-file",
                &pki.server_key_path(),
                "--tls-ca-cert-file",
                &pki.ca_path(),
                "--tls-auth-clients",
                "no",
            ],
        );
        if let Some(server) = server {
            return (server, tls_port.parse().unwrap());
        }
    }
    panic!("could not start redis-server with TLS (is it built with TLS support?)");
}

#[tokio::test]
async fn rediss_store_verifies_the_server_against_redis_ca() {
    let pki = TestPki::new("redis test CA");
    let (redis, tls_port) = tls_redis(&pki);
    let store = format!("rediss://127.0.0.1:{tls_port}");

    let sidecar = Sidecar::start_with(&store, Some(TOKEN), &["--redis-ca", &pki.ca_path()], &[]);
    wait_serving(sidecar.worker).await;
    let granted = QuotaAdminClient::new(channel(sidecar.admin()).await)
        .grant_credits(authed(pb::GrantCreditsRequest {
            account_id: "acct-tls".into(),
            grant_id: "grant-tls".into(),
            units: 40,
            source: pb::CreditSource::Purchased as i32,
            expires_at: None,
        }))
        .await
        .expect("grant over rediss://")
        .into_inner();
    assert_eq!(granted.balance.unwrap().credits_available, 40);
    // The write went through TLS into this very server.
    let keys = redis.cli(&["--scan", "--pattern", "q:*:g:acct-tls"]);
    assert!(keys.contains("acct-tls"), "{keys:?}");
    drop(sidecar);

    // Without --redis-ca the system's trust store is used, which does not know the test CA:
    // the store is unusable, so readiness (`""`) says NOT_SERVING and calls answer
    // UNAVAILABLE, while liveness stays SERVING (a restart would not help).
    let sidecar = Sidecar::start(&store, None);
    let worker = channel(sidecar.worker).await;
    assert_eq!(
        health_status(worker.clone(), "").await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health_status(worker.clone(), "liveness").await,
        ServingStatus::Serving as i32
    );
    let status = QuotaClient::new(worker)
        .get_balance(balance_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[test]
fn bad_tls_flags_fail_at_start_with_one_line_naming_the_flag() {
    let pki = TestPki::new("quota test CA");
    let other = TestPki::new("some other CA");
    let missing = pki.path("missing.pem");
    let cert = pki.server_cert_path();
    let key = pki.server_key_path();
    let other_key = other.server_key_path();
    let ca = pki.ca_path();
    let cases: [(&[&str], &str); 6] = [
        (&["--tls-cert", &missing, "--tls-key", &key], "--tls-cert"),
        (&["--tls-cert", &cert, "--tls-key", &cert], "--tls-key"),
        (&["--tls-cert", &key, "--tls-key", &key], "--tls-cert"),
        (
            &["--tls-cert", &cert, "--tls-key", &other_key],
            "--tls-cert/--tls-key",
        ),
        (
            &[
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--admin-client-ca",
                &key,
            ],
            "--admin-client-ca",
        ),
        (
            &["--store", "redis://127.0.0.1:1", "--redis-ca", &ca],
            "--redis-ca",
        ),
    ];
    for (args, flag) in cases {
        let out = harness::process::output_within(
            Command::new(env!("CARGO_BIN_EXE_quota-sidecar"))
                .args(args)
                .args(["--listen", "127.0.0.1:0"])
                .env("QUOTA_ADMIN_TOKEN", TOKEN)
                .env("QUOTA_ADMIN_LISTEN", "127.0.0.1:0")
                .env_remove("QUOTA_STORE")
                .env_remove("QUOTA_TLS_CERT")
                .env_remove("QUOTA_TLS_KEY")
                .env_remove("QUOTA_ADMIN_CLIENT_CA")
                .env_remove("QUOTA_REDIS_CA"),
            Duration::from_secs(10),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(&format!("cannot start: {flag}")),
            "{args:?}: {stderr}"
        );
    }
}
