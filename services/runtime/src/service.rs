//! The life of a service binary: runtime, tracing, connection, signals, exit status.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::Client;
use tokio_util::sync::CancellationToken;

use crate::args::{CommonArgs, ConfigError};

/// Runs `run(client, shutdown)` as the service `name`: sets up tracing, connects (waiting
/// for NATS if needed), cancels the token on SIGINT/SIGTERM, drains the connection at the end
/// and maps the outcome to an exit status (0 after a clean stop, 64 for a configuration
/// error). A service that fails for any other reason (NATS went away while it started, a
/// stream it follows ended) is started again after a pause: a service never stays down
/// because its surroundings had trouble.
pub fn main_service<F, Fut>(name: &str, common: &CommonArgs, run: F) -> ExitCode
where
    F: Fn(Client, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init(common.log_json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        crate::telemetry::announce(name, &instance[..8]);
        let token = crate::shutdown::signal_token();
        let client = tokio::select! {
            c = crate::connect::connect(&common.nats, name) => c?,
            _ = token.cancelled() => return Ok(()),
        };
        let mut pause = Duration::from_millis(250);
        let outcome = loop {
            let outcome = until_stopped(run(client.clone(), token.clone()), &token).await;
            match &outcome {
                Err(e) if e.downcast_ref::<ConfigError>().is_none() => {
                    if token.is_cancelled() {
                        // Asked to stop while starting, or with NATS gone: what was cut
                        // short is expected.
                        tracing::warn!(error = %e, "stopped before finishing what it was doing");
                        break Ok(());
                    }
                    tracing::error!(error = %e, "the service failed; starting it again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = token.cancelled() => break Ok(()),
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                _ => break outcome,
            }
        };
        // Bounded: with the server gone, a drain would wait for ever.
        match tokio::time::timeout(DRAIN_GRACE, client.drain()).await {
            Ok(Err(e)) => tracing::debug!(error = %e, "draining the connection"),
            Err(_) => tracing::warn!("the connection did not drain in time (is NATS reachable?)"),
            Ok(Ok(())) => {}
        }
        outcome
    });
    exit_status(name, result)
}

/// How long a service may go on after SIGINT/SIGTERM before what it still does is dropped.
/// Its own steps (flushing, a last snapshot, tasks) are bounded too, but they add up, and a
/// service can be stopped anywhere, starting up included, where each request to a server
/// that went away waits for its whole timeout.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long the connection may take to drain after that.
pub const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// Runs `service` to its end or, once `token` is cancelled, for at most [`STOP_GRACE`]
/// more. Dropping the rest is as safe as a kill: what was not written is redelivered or
/// replayed by the next start.
async fn until_stopped(
    service: impl Future<Output = anyhow::Result<()>>,
    token: &CancellationToken,
) -> anyhow::Result<()> {
    tokio::pin!(service);
    tokio::select! {
        outcome = &mut service => return outcome,
        _ = token.cancelled() => {}
    }
    match tokio::time::timeout(STOP_GRACE, service).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::warn!(
                grace_s = STOP_GRACE.as_secs(),
                "still stopping after the grace period; leaving the rest (the next start takes it up)"
            );
            Ok(())
        }
    }
}

/// Maps a service's result to its exit status, printing one line for errors.
pub fn exit_status(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => {
            tracing::info!(service = name, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprintln!("{name}: {config}");
                ExitCode::from(crate::EXIT_CONFIG)
            } else {
                eprintln!("{name}: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}
