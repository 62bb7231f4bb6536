//! `quota-sidecar`: serves the quota API next to GPU generation workers until SIGTERM or
//! SIGINT, then drains, flushes its traces and exits 0. A startup problem is one log line and
//! exit code 1.

use std::process::ExitCode;

use quota_sidecar::config::Config;
use quota_sidecar::server::ServerError;
use quota_sidecar::telemetry::Telemetry;

fn main() -> ExitCode {
    let config = Config::load();
    let runtime = tokio::runtime::Runtime::new();
    let telemetry = Telemetry::init(config.log_format, runtime.as_ref().ok().map(|r| r.handle()));
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = serve(&runtime, config);
    // Outside async code, while the runtime that carries the exports still runs.
    telemetry.shutdown();
    code
}

/// Runs the sidecar until it stops; logs why it stopped.
fn serve(runtime: &tokio::runtime::Runtime, config: Config) -> ExitCode {
    match runtime.block_on(quota_sidecar::server::run(config, shutdown_signal())) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let what = match e {
                ServerError::Serve(_) | ServerError::ShardCountChanged(_) => {
                    "stopped with an error"
                }
                _ => "cannot start",
            };
            // Some messages (TOML parse errors) span lines; startup errors stay one line.
            let message = e.to_string();
            let message: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            tracing::error!("{what}: {}", message.join(" "));
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGTERM (how Kubernetes stops a pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                // The default disposition still ends the process, only without draining.
                tracing::error!("cannot install signal handlers; SIGTERM will not drain");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    }
}
