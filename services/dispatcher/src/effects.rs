//! Performing the owner's effects, and writing its decisions: withdrawing a spec before the
//! job moves on without its worker, handing a spec to a worker, asking a worker to stop.

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, message::PublishMessage};
use skynet_protocol::lifecycle::{Decision, Effect, Job};
use skynet_protocol::worker::{ControlReply, ControlRequest, StopReason};
use skynet_protocol::{ExecutionSpec, JobId, WorkerId, streams, subjects};
use skynet_runtime::events::{AppendError, EventLog, Stored};

/// What the owner's effects need: the connection, the work queue and the event log.
#[derive(Clone)]
pub(crate) struct Effects {
    client: Client,
    js: jetstream::Context,
    work: jetstream::stream::Stream<()>,
    pub(crate) log: EventLog,
}

/// The outcome of carrying out one decision.
pub(crate) enum Done {
    /// The event was written (and is returned, to be applied at once).
    Wrote(Box<Stored>),
    /// Nothing to write.
    Nothing,
    /// Another writer moved the job on first: read it again and decide again.
    Raced,
}

impl Effects {
    pub(crate) async fn open(
        client: &Client,
        js: &jetstream::Context,
        log: EventLog,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: client.clone(),
            js: js.clone(),
            work: js.get_stream_no_info(streams::WORK).await?,
            log,
        })
    }

    /// Carries out `d` for `job`: the effects that must come first (any failure abandons the
    /// decision, to be taken again later), the event, then the rest.
    pub(crate) async fn decide(&self, job: &mut Job, d: Decision) -> anyhow::Result<Done> {
        for e in &d.before {
            self.effect(job, e).await?;
        }
        let done = match d.event {
            Some(kind) => match self.log.append(job, kind).await {
                Ok(stored) => {
                    job.apply(stored.seq, &stored.event);
                    Done::Wrote(Box::new(stored))
                }
                Err(e) if e.is_race() => return Ok(Done::Raced),
                Err(AppendError::Illegal(e)) => {
                    // The decision was made on a job that moved on in a way this copy has not
                    // seen: read it again.
                    tracing::warn!(job_id = %job.id, error = %e, "decision no longer applies");
                    return Ok(Done::Raced);
                }
                Err(e) => return Err(e.into()),
            },
            None => Done::Nothing,
        };
        for e in &d.after {
            if let Err(err) = self.effect(job, e).await {
                tracing::warn!(job_id = %job.id, effect = ?e, error = %err, "effect failed; it is retried on the next tick");
            }
        }
        Ok(done)
    }

    pub(crate) async fn effect(&self, job: &mut Job, effect: &Effect) -> anyhow::Result<()> {
        match effect {
            Effect::Withdraw { worker, attempt } => {
                self.work
                    .purge()
                    .filter(subjects::work(worker, &job.id))
                    .await
                    .map_err(|e| anyhow::anyhow!("withdrawing the spec: {e}"))?;
                tracing::info!(job_id = %job.id, worker = %worker, attempt, "attempt taken back from its worker");
                self.stop(worker, &job.id, *attempt, StopReason::Fenced);
                Ok(())
            }
            Effect::SendSpec { worker, attempt } => self.send_spec(job, worker, *attempt).await,
            Effect::Stop {
                worker,
                attempt,
                reason,
            } => {
                self.stop(worker, &job.id, *attempt, *reason);
                Ok(())
            }
        }
    }

    /// Hands attempt `attempt` of `job` to `worker`: the plan's steps and policy's sealed
    /// grant. Idempotent: the same attempt is stored once within the duplicate window, and a
    /// worker never runs an attempt twice.
    async fn send_spec(
        &self,
        job: &mut Job,
        worker: &WorkerId,
        attempt: u32,
    ) -> anyhow::Result<()> {
        let Some(seal) = job.approval.as_ref().and_then(|a| a.seal.clone()) else {
            anyhow::bail!("job {} has no sealed approval", job.id);
        };
        let steps = self.log.with_steps(job).await?;
        let spec = ExecutionSpec {
            job_id: job.id.clone(),
            attempt,
            worker: worker.clone(),
            steps: steps.as_ref().clone(),
            seal,
        };
        let stored = self
            .js
            .send_publish(
                subjects::work(worker, &job.id),
                PublishMessage::build()
                    .payload(spec.to_json().into())
                    .message_id(format!("{}:{attempt}", job.id)),
            )
            .await?;
        // Its acknowledgement is awaited beside the owner, not by it: the owner goes on with
        // the next decision at once. A spec that was not stored is sent again by the clock
        // (`owner::tick`: no start within `Timing::spec_resend`).
        let (job_id, worker) = (job.id.clone(), worker.clone());
        tokio::spawn(async move {
            match stored.await {
                Ok(_) => {
                    tracing::debug!(job_id = %job_id, worker = %worker, attempt, "spec sent")
                }
                Err(e) => {
                    tracing::warn!(job_id = %job_id, worker = %worker, attempt, error = %e, "the spec was not stored; it is sent again later")
                }
            }
        });
        Ok(())
    }

    /// Asks a worker to stop an attempt, without waiting for its answer.
    pub(crate) fn stop(&self, worker: &WorkerId, job: &JobId, attempt: u32, reason: StopReason) {
        let client = self.client.clone();
        let subject = subjects::control(worker);
        let body = serde_json::to_vec(&ControlRequest {
            job_id: job.clone(),
            attempt,
            reason,
        })
        .unwrap_or_default();
        let job = job.clone();
        tokio::spawn(async move {
            let reply =
                tokio::time::timeout(Duration::from_secs(2), client.request(subject, body.into()))
                    .await;
            match reply {
                Ok(Ok(msg)) => {
                    let status =
                        serde_json::from_slice::<ControlReply>(&msg.payload).map(|r| r.status);
                    tracing::debug!(job_id = %job, ?reason, ?status, "worker answered");
                }
                Ok(Err(e)) => tracing::debug!(job_id = %job, error = %e, "worker unreachable"),
                Err(_) => tracing::debug!(job_id = %job, "worker did not answer"),
            }
        });
    }
}
