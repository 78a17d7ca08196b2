//! Taking work: waiting for the streams, pulling specs as slots free up, and checking a
//! spec is still the current one before it starts.

use super::*;

/// The streams are made by the control plane; a worker only waits for them.
pub(crate) async fn wait_for_streams(
    js: &jetstream::Context,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<jetstream::stream::Stream<()>>> {
    let mut warned = false;
    loop {
        match js.get_stream(streams::WORK).await {
            Ok(_) => return Ok(Some(js.get_stream_no_info(streams::WORK).await?)),
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "waiting for the SKYNET streams (is the control plane running?)");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

pub(crate) async fn pull_work(
    client: &Client,
    worker: &Arc<Worker>,
    stream: &jetstream::stream::Stream<()>,
    jobs: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(worker.cfg.max_jobs as usize));
    let mut consumer: Option<PullConsumer> = None;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = slots.clone().acquire_owned() => p?,
        };
        // No new work without a lease: a worker cut off from the server may be declared lost
        // at any moment.
        if !worker.lease.valid() {
            drop(permit);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        let c = match &consumer {
            Some(c) => c.clone(),
            None => {
                let name = streams::work_consumer_name(&worker.cfg.id);
                match stream
                    .get_or_create_consumer::<jetstream::consumer::pull::Config>(
                        &name,
                        streams::work_consumer(&worker.cfg.id),
                    )
                    .await
                {
                    Ok(c) => {
                        consumer = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the work consumer; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
        };
        // One pull asks for as many specs as there are free slots; each spec that arrives
        // takes a slot and starts at once, while the pull waits for the rest.
        let mut permits = vec![permit];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let connects = skynet_runtime::connect::connects(client);
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            // A restarted server forgot the pull: pull again at once.
            _ = skynet_runtime::connect::reconnected(client, connects) => Ok(()),
            f = async {
                // A waiting pull: `fetch` would return at once on an empty queue, and the
                // loop would spin.
                let mut batch = c
                    .batch()
                    .max_messages(permits.len())
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await?;
                while let Some(m) = batch.next().await {
                    let msg = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let Some(permit) = permits.pop() else { break };
                    let worker = worker.clone();
                    jobs.spawn(async move {
                        worker.take(msg).await;
                        drop(permit);
                    });
                    if permits.is_empty() {
                        break;
                    }
                }
                anyhow::Ok(())
            } => f,
        };
        match fetched {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(error = %e, "fetching work");
                if e.to_string().contains("consumer") {
                    consumer = None;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Whether the spec in hand is still the one waiting on its subject: the owner withdraws a
/// spec (purges it) before it moves the job on without this attempt, so a spec that is gone
/// must not start. `None` when it cannot be told now.
pub async fn still_current(
    work: &jetstream::stream::Stream<()>,
    msg: &jetstream::Message,
) -> Option<bool> {
    let seq = msg.info().ok()?.stream_sequence;
    match work
        .direct_get_last_for_subject(msg.subject.to_string())
        .await
    {
        Ok(last) => Some(last.sequence == seq),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Some(false),
        Err(e) => {
            tracing::debug!(error = %e, "cannot check the spec is current");
            None
        }
    }
}
