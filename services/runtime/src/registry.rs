//! The worker registry (`skynet-workers` KV bucket): one entry per worker, rewritten by its
//! heartbeats. Readers get every current entry first, then each change.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{WorkerId, streams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A change in the registry.
#[derive(Debug, Clone)]
pub enum Update {
    /// A heartbeat (or first sight) of a worker, with the entry's revision in the bucket.
    Put(Box<WorkerInfo>, u64),
    Removed(WorkerId),
}

/// Watches the registry until `shutdown`, surviving server restarts.
pub fn watch(js: jetstream::Context, shutdown: CancellationToken) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let result = async {
                let store = js.get_key_value(streams::WORKERS_BUCKET).await?;
                let mut watch = store.watch_with_history(">").await?;
                loop {
                    let entry = tokio::select! {
                        _ = shutdown.cancelled() => return anyhow::Ok(()),
                        e = watch.next() => e,
                    };
                    let Some(entry) = entry else {
                        anyhow::bail!("registry watch ended");
                    };
                    let entry = entry?;
                    let Ok(id) = WorkerId::parse(&entry.key) else { continue };
                    let update = match entry.operation {
                        kv::Operation::Put => match serde_json::from_slice::<WorkerInfo>(&entry.value) {
                            Ok(info) if info.id == id => Update::Put(Box::new(info), entry.revision),
                            Ok(_) => {
                                tracing::warn!(worker = %id, "registry entry names another worker; ignored");
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(worker = %id, error = %e, "unreadable registry entry");
                                continue;
                            }
                        },
                        kv::Operation::Delete | kv::Operation::Purge => Update::Removed(id),
                    };
                    if tx.send(update).await.is_err() {
                        return Ok(());
                    }
                }
            }
            .await;
            if shutdown.is_cancelled() || tx.is_closed() {
                return;
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "watching the worker registry; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    rx
}
