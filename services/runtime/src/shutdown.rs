//! SIGINT / SIGTERM handling and the shared shutdown plumbing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A token that is cancelled on the first SIGINT or SIGTERM.
pub fn signal_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; draining");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The root token plus the tracker of every task a service spawns.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub token: CancellationToken,
    pub tasks: TaskTracker,
}

impl Shutdown {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            tasks: TaskTracker::new(),
        }
    }

    /// Waits for every tracked task, at most `grace`.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.tasks.len(),
                "tasks still running after the grace period"
            );
        }
    }
}
