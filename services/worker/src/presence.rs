//! The worker's presence on the bus: its heartbeat (which also keeps its lease) and its
//! control subject (status and stop requests).

use super::*;

/// Rewrites the registry entry twice every interval (so one slow or lost write costs no
/// lease); each one that lands extends the lease, and a lease that runs out stops the steps.
pub(crate) async fn heartbeat(
    worker: Arc<Worker>,
    js: jetstream::Context,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(worker.cfg.heartbeat / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let mut store = None;
    let mut lapsed = false;
    let client = js.client();
    let mut connects = skynet_runtime::connect::connects(&client);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Back from an outage: say so at once, so the lease holds and work flows again.
            _ = skynet_runtime::connect::reconnected(&client, connects) => {
                connects = skynet_runtime::connect::connects(&client);
            }
            _ = check.tick() => {
                let valid = worker.lease.valid();
                if !valid && !lapsed && worker.lease.until.load(Ordering::SeqCst) > 0 {
                    worker.lease_lost();
                }
                lapsed = !valid;
                continue;
            }
            _ = tick.tick() => {}
        }
        if store.is_none() {
            store = js.get_key_value(streams::WORKERS_BUCKET).await.ok();
        }
        let Some(kv) = &store else { continue };
        let sent_at = supervise::boottime_ms();
        let body = serde_json::to_vec(&worker.info()).unwrap_or_default();
        let put = tokio::time::timeout(
            worker.cfg.heartbeat,
            kv.put(worker.cfg.id.as_str(), body.into()),
        );
        match put.await {
            Ok(Ok(_)) => worker.lease.extend(sent_at),
            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not stored"),
            Err(_) => tracing::debug!("heartbeat timed out"),
        }
    }
}

/// Serves `skynet.control.<id>`.
pub(crate) async fn control(worker: Arc<Worker>, client: Client, shutdown: CancellationToken) {
    let subject = subjects::control(&worker.cfg.id);
    let mut sub = loop {
        match client.subscribe(subject.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to control; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let body = match serde_json::from_slice::<ControlRequest>(&msg.payload) {
            Ok(req) => serde_json::to_vec(&ControlReply {
                status: worker.stop(&req),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable control request");
                serde_json::to_vec(
                    &serde_json::json!({"error": format!("unreadable control request: {e}")}),
                )
            }
        }
        .unwrap_or_default();
        if let Some(reply) = msg.reply {
            let _ = client.publish(reply, body.into()).await;
        }
    }
}
