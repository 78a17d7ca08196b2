//! Policy's part in schedules: it judges a new schedule's plan once (`schedules.judge`, asked
//! by the planner when the schedule is created), takes a person's approval of it
//! (`schedules.approve`, bound to the plan hash, signed by an approver and recorded as the
//! identity whose signature verifies, written to `skynet-schedules` with the revision it
//! read), and approves each tick's job whose plan is the schedule's.

use std::sync::Arc;

use async_nats::jetstream::kv;
use async_nats::service::Service;
use skynet_protocol::api::ApiError;
use skynet_protocol::approval::ScheduleDecision;
use skynet_protocol::lifecycle::schedule::{self, Refusal};
use skynet_protocol::schedule::{
    ApproveRequest, JudgeReply, JudgeRequest, Schedule, ScheduleState, Verdict as Said,
};
use skynet_protocol::spec::plan_hash;
use skynet_protocol::subjects;
use skynet_runtime::{Shutdown, api};

use crate::Deciders;
use crate::rules::{Judgement, Policy, Verdict};

pub(crate) async fn serve(
    service: &Service,
    tasks: &Shutdown,
    kv: kv::Store,
    policy: Arc<Policy>,
    deciders: Arc<Deciders>,
) -> anyhow::Result<()> {
    tasks.tasks.spawn(api::serve(
        api::endpoint(service, subjects::api::SCHEDULES_JUDGE).await?,
        tasks.clone(),
        move |req: JudgeRequest| {
            let policy = policy.clone();
            async move { judge(policy, req).await }
        },
    ));
    tasks.tasks.spawn(api::serve_from(
        api::endpoint(service, subjects::api::SCHEDULES_APPROVE).await?,
        tasks.clone(),
        move |req: ApproveRequest, caller: api::Caller| {
            let (kv, deciders) = (kv.clone(), deciders.clone());
            async move {
                let decision = ScheduleDecision {
                    name: &req.name,
                    plan_hash: &req.plan_hash,
                };
                let by = crate::verified_by(
                    &deciders,
                    req.by.as_deref(),
                    req.signature.as_ref(),
                    &caller,
                    &decision,
                )
                .await?;
                approve(&kv, req, by).await
            }
        },
    ));
    Ok(())
}

async fn judge(policy: Arc<Policy>, req: JudgeRequest) -> Result<JudgeReply, ApiError> {
    skynet_protocol::job::validate_steps(&req.steps, false)
        .map_err(|e| ApiError::bad_request(format!("`steps`: {e}")))?;
    let hash = plan_hash(&req.steps);
    let j = tokio::task::spawn_blocking(move || policy.judge(&req.steps))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(JudgeReply {
        verdict: match j.verdict {
            Verdict::Allow => Said::Allow,
            Verdict::Approve => Said::Approve,
            Verdict::Deny => Said::Deny,
        },
        risk: j.risk,
        reasons: j.reasons,
        plan_hash: hash,
    })
}

/// Reads a schedule with its revision.
pub(crate) async fn read(kv: &kv::Store, name: &str) -> anyhow::Result<Option<(Schedule, u64)>> {
    match kv.entry(name).await? {
        Some(e) if e.operation == kv::Operation::Put => {
            Ok(Some((serde_json::from_slice(&e.value)?, e.revision)))
        }
        _ => Ok(None),
    }
}

/// `schedules.approve` by `by` (verified).
async fn approve(kv: &kv::Store, req: ApproveRequest, by: String) -> Result<Schedule, ApiError> {
    for _ in 0..8 {
        let (s, revision) = read(kv, &req.name)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::not_found(format!("no schedule {}", req.name)))?;
        let cal = s
            .calendar()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let now_s = skynet_protocol::time::now_ms() / 1000;
        let next =
            schedule::approve(&s, &cal, &req.plan_hash, &by, now_s).map_err(|r| match r {
                Refusal::Bad(m) => ApiError::bad_request(m),
                Refusal::Conflict(m) => ApiError::conflict(m),
            })?;
        let body = serde_json::to_vec(&next).map_err(|e| ApiError::internal(e.to_string()))?;
        match kv.update(&req.name, body.into(), revision).await {
            Ok(_) => {
                tracing::info!(schedule = %req.name, by, "schedule approved");
                return Ok(next);
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(ApiError::internal(format!("writing the schedule: {e}"))),
        }
    }
    Err(ApiError::internal("the schedule kept changing"))
}

/// Whether the tick job of schedule `name` with the plan `hash` may run: `Ok(by)` with who
/// let the schedule run, or `Err(reason)` to deny it.
pub(crate) async fn tick_approval(
    kv: &kv::Store,
    name: &str,
    hash: &str,
    judged: &Judgement,
) -> anyhow::Result<Result<String, String>> {
    let Some((s, _)) = read(kv, name).await? else {
        return Ok(Err(format!("no schedule {name}")));
    };
    if s.plan_hash != hash {
        return Ok(Err(format!("the plan is not the one of schedule {name}")));
    }
    let Some(by) = s.approved_by.clone() else {
        return Ok(Err(format!("schedule {name} was never approved")));
    };
    if s.state == ScheduleState::AwaitingApproval {
        return Ok(Err(format!("schedule {name} is awaiting approval")));
    }
    Ok(match judged.verdict {
        Verdict::Deny => Err(format!(
            "policy now denies the plan of schedule {name}: {}",
            judged.reasons.join("; ")
        )),
        // Policy allowed it when the schedule was made and now asks a person: nobody has.
        Verdict::Approve if by == "policy" => Err(format!(
            "the plan of schedule {name} now needs approval; create the schedule again"
        )),
        _ => Ok(by),
    })
}
