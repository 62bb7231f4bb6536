//! Reflection and health through the real binary: on the worker and admin listeners both
//! reflection versions list the listener's services and resolve every one they list (v1
//! included), and health answers SERVING for each listed service; the health-only listener
//! answers for every service of the process.

mod harness;

use std::net::SocketAddr;

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use harness::sidecar::{channel, health_status, wait_serving, Sidecar};
use quota_sidecar::server::LIVENESS_SERVICE;

const TOKEN: &str = "reflection-admin-token";

const QUOTA: &str = "quota.v1.Quota";
const ADMIN: &str = "quota.v1.QuotaAdmin";
const EVENTS: &str = "quota.v1.UsageEvents";
const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// What one reflection version says about a listener: the services it lists, and for each
/// whether `FileContainingSymbol` resolved it (`Err` holds the error it answered instead).
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;

        let client = ServerReflectionClient::new($channel);
        let ask = |request: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let answers = |requests: Vec<ServerReflectionRequest>| {
            let mut client = client.clone();
            async move {
                let mut stream = client
                    .server_reflection_info(tokio_stream::iter(requests))
                    .await
                    .expect("reflection answers")
                    .into_inner();
                let mut answers = Vec::new();
                while let Some(answer) = stream.message().await.expect("a reflection reply") {
                    answers.push(answer.message_response.expect("a response"));
                }
                answers
            }
        };
        let listed: Vec<String> =
            match answers(vec![ask(MessageRequest::ListServices(String::new()))])
                .await
                .pop()
            {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("ListServices answered {other:?}"),
            };
        let requests = listed
            .iter()
            .map(|name| ask(MessageRequest::FileContainingSymbol(name.clone())))
            .collect();
        let resolved: Vec<(String, Result<(), String>)> = listed
            .iter()
            .cloned()
            .zip(answers(requests).await)
            .map(|(name, answer)| {
                let result = match answer {
                    MessageResponse::FileDescriptorResponse(files)
                        if !files.file_descriptor_proto.is_empty() =>
                    {
                        Ok(())
                    }
                    MessageResponse::ErrorResponse(e) => {
                        Err(format!("code {}: {}", e.error_code, e.error_message))
                    }
                    other => Err(format!("{other:?}")),
                };
                (name, result)
            })
            .collect();
        resolved
    }};
}

/// Checks both reflection versions on `addr`: they list exactly `expected` and resolve each.
/// Returns the listed names.
async fn assert_reflection(addr: SocketAddr, expected: &[&str]) -> Vec<String> {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut listed = Vec::new();
    for (version, resolved) in [
        ("v1", reflect!(v1, channel(addr).await)),
        ("v1alpha", reflect!(v1alpha, channel(addr).await)),
    ] {
        let mut names: Vec<String> = resolved.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        assert_eq!(names, expected, "{version} on {addr} lists");
        for (name, result) in resolved {
            assert_eq!(result, Ok(()), "{version} on {addr} resolving {name}");
        }
        listed = names;
    }
    listed
}

async fn assert_health(ch: Channel, place: &str, services: &[&str], expected: ServingStatus) {
    for service in services {
        assert_eq!(
            health_status(ch.clone(), service).await,
            expected as i32,
            "{place}: health of {service:?}"
        );
    }
}

/// NOT_FOUND: the listener does not serve `service`.
async fn assert_unknown(ch: Channel, place: &str, service: &str) {
    let status = tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(status.code(), tonic::Code::NotFound, "{place}: {service}");
}

#[tokio::test]
async fn every_listed_service_resolves_and_answers_serving_on_its_listener() {
    let mut sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &["--health-listen", "127.0.0.1:0"],
        &[],
    );
    wait_serving(sidecar.worker).await;
    let common = [HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA];

    let worker: Vec<&str> = common.iter().copied().chain([QUOTA]).collect();
    let listed = assert_reflection(sidecar.worker, &worker).await;
    let ch = channel(sidecar.worker).await;
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    assert_health(ch.clone(), "worker", &listed, ServingStatus::Serving).await;
    assert_health(
        ch.clone(),
        "worker",
        &["", LIVENESS_SERVICE],
        ServingStatus::Serving,
    )
    .await;
    assert_unknown(ch.clone(), "worker", ADMIN).await;
    assert_unknown(ch, "worker", EVENTS).await;

    let admin: Vec<&str> = common.iter().copied().chain([ADMIN, EVENTS]).collect();
    let listed = assert_reflection(sidecar.admin(), &admin).await;
    let ch = channel(sidecar.admin()).await;
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    assert_health(ch.clone(), "admin", &listed, ServingStatus::Serving).await;
    // API.md: `""` and `quota.v1.Quota` on both listeners.
    assert_health(
        ch,
        "admin",
        &["", LIVENESS_SERVICE, QUOTA],
        ServingStatus::Serving,
    )
    .await;

    let ch = channel(sidecar.health.expect("health listener")).await;
    assert_health(
        ch,
        "health-only",
        &["", LIVENESS_SERVICE, HEALTH, QUOTA, ADMIN, EVENTS],
        ServingStatus::Serving,
    )
    .await;

    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test]
async fn without_an_admin_token_no_listener_answers_for_the_admin_services() {
    let mut sidecar = Sidecar::start_with("memory", None, &["--health-listen", "127.0.0.1:0"], &[]);
    wait_serving(sidecar.worker).await;
    let ch = channel(sidecar.health.expect("health listener")).await;
    assert_health(
        ch.clone(),
        "health-only",
        &["", QUOTA],
        ServingStatus::Serving,
    )
    .await;
    assert_unknown(ch.clone(), "health-only", ADMIN).await;
    assert_unknown(ch, "health-only", EVENTS).await;
    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
