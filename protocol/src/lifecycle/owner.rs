//! The owner's decisions: everything that happens to a job from `approved` on, except where
//! it runs ([`super::route`]). Each function looks at one job's [`Job`] and one input (a
//! worker's report, a lost worker, the clock, a cancel) and says which event to write and
//! which effects to perform.
//!
//! Effects come in two kinds. Those in [`Decision::before`] must succeed before the event is
//! written: an attempt is taken back from its worker (its spec withdrawn) before the job
//! moves on without it, so a worker that wakes up late never starts an attempt that is no
//! longer current. Those in [`Decision::after`] follow the write, best effort.

use crate::event::{EventKind, Finished, JobState};
use crate::ids::WorkerId;
use crate::lifecycle::{Job, Timing};
use crate::worker::{StopReason, WorkerReport};

/// Something the owner does besides writing events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Take the attempt's spec out of the worker's queue and ask the worker to stop the
    /// attempt if it runs it.
    Withdraw { worker: WorkerId, attempt: u32 },
    /// Hand the job's current attempt to its worker (again: sending is idempotent).
    SendSpec { worker: WorkerId, attempt: u32 },
    /// Ask a worker to stop an attempt.
    Stop {
        worker: WorkerId,
        attempt: u32,
        reason: StopReason,
    },
}

/// What to do about one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Effects that must succeed before `event` is written.
    pub before: Vec<Effect>,
    /// The job's next event, written on top of the job as the decision saw it.
    pub event: Option<EventKind>,
    /// Effects to perform once `event` is stored (or at once, without an event).
    pub after: Vec<Effect>,
}

impl Decision {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn event(event: EventKind) -> Self {
        Self {
            event: Some(event),
            ..Self::default()
        }
    }

    pub fn is_none(&self) -> bool {
        self.before.is_empty() && self.event.is_none() && self.after.is_empty()
    }

    fn withdraw_then(worker: &WorkerId, attempt: u32, event: EventKind) -> Self {
        Self {
            before: vec![Effect::Withdraw {
                worker: worker.clone(),
                attempt,
            }],
            event: Some(event),
            after: vec![],
        }
    }

    fn after(effect: Effect) -> Self {
        Self {
            after: vec![effect],
            ..Self::default()
        }
    }
}

/// What one copy of the owner remembers about its own nudges of a job (never written
/// anywhere: another copy, or this one after a restart, simply nudges again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nudge {
    /// When a stop (cancel or time limit) was last sent.
    pub stop_ms: Option<i64>,
    /// When the owner first asked the worker to stop the job for its time limit.
    pub timeout_asked_ms: Option<i64>,
    /// When the current attempt's spec was last sent.
    pub spec_ms: Option<i64>,
}

/// Whether `attempt` on `worker` is the job's current attempt, on a worker.
pub fn is_current(job: &Job, worker: &WorkerId, attempt: u32) -> bool {
    job.on_worker() && job.attempt == attempt && job.worker.as_ref() == Some(worker)
}

/// Whether output of `attempt` on `worker` belongs in the job's log: the current attempt,
/// or the one that ended the job (its last output may arrive after its end was recorded).
pub fn keeps_output(job: &Job, worker: &WorkerId, attempt: u32) -> bool {
    job.attempt == attempt
        && job.worker.as_ref() == Some(worker)
        && (job.on_worker() || job.is_terminal())
}

/// A worker's report about an attempt.
pub fn report(job: &Job, worker: &WorkerId, report: &WorkerReport) -> Decision {
    let attempt = report.attempt();
    if !is_current(job, worker, attempt) {
        // The attempt that ended the job may report its end again (a redelivery): nothing
        // to do. Anything else is a stale attempt the worker must not continue.
        let finished_here = job.is_terminal() && keeps_output(job, worker, attempt);
        let said_done = matches!(
            report,
            WorkerReport::Finished { .. }
                | WorkerReport::Abandoned { .. }
                | WorkerReport::Refused { .. }
        );
        if finished_here || said_done {
            return Decision::none();
        }
        return Decision::after(Effect::Stop {
            worker: worker.clone(),
            attempt,
            reason: StopReason::Fenced,
        });
    }
    let dispatched = job.state == Some(JobState::Dispatched);
    match report {
        WorkerReport::Started { sandbox, .. } if dispatched => {
            Decision::event(EventKind::Running {
                worker: worker.clone(),
                attempt,
                sandbox: sandbox.clone(),
            })
        }
        WorkerReport::Started { .. } => Decision::none(),
        WorkerReport::Refused {
            reason, replayed, ..
        } => {
            if *replayed || !dispatched {
                // A duplicate delivery of an attempt the worker already has.
                return Decision::none();
            }
            Decision::event(EventKind::Failed(Finished {
                steps: vec![],
                error: Some(format!("the worker refused the job: {reason}")),
                worker: Some(worker.clone()),
                attempt: Some(attempt),
            }))
        }
        // A run reported finished before its start was recorded: record the start first
        // (the caller decides again on the result).
        WorkerReport::Finished { .. } if dispatched => Decision::event(EventKind::Running {
            worker: worker.clone(),
            attempt,
            sandbox: None,
        }),
        WorkerReport::Finished {
            outcome,
            steps,
            error,
            ..
        } => {
            let mut error = error.clone();
            let outcome = match *outcome {
                JobState::Cancelled if job.state == Some(JobState::CancelRequested) => {
                    JobState::Cancelled
                }
                JobState::Succeeded | JobState::Failed | JobState::TimedOut => *outcome,
                other => {
                    error.get_or_insert_with(|| format!("the worker stopped the job ({other})"));
                    JobState::Failed
                }
            };
            let finished = Finished {
                steps: steps.clone(),
                error,
                worker: Some(worker.clone()),
                attempt: Some(attempt),
            };
            EventKind::finished(outcome, finished).map_or_else(Decision::none, Decision::event)
        }
        WorkerReport::Abandoned { reason, .. } => {
            lost(job, worker, &format!("worker_lost: {reason}"), true)
        }
    }
}

/// The sentinel found `worker` offline: each job it held moves on without it.
pub fn worker_lost(job: &Job, worker: &WorkerId) -> Decision {
    if !job.on_worker() || job.worker.as_ref() != Some(worker) {
        return Decision::none();
    }
    lost(job, worker, "worker_lost", false)
}

/// An attempt that will never report its end: another attempt while retries last, else the
/// job fails. `confirmed` says the worker itself said its processes are gone.
fn lost(job: &Job, worker: &WorkerId, error: &str, confirmed: bool) -> Decision {
    let attempt = job.attempt;
    let event = match job.state {
        Some(JobState::CancelRequested) if confirmed => EventKind::Cancelled(Finished {
            steps: vec![],
            error: Some(format!("{error} (its processes are gone)")),
            worker: Some(worker.clone()),
            attempt: Some(attempt),
        }),
        Some(JobState::CancelRequested) => EventKind::ForceCancelled(Finished {
            steps: vec![],
            error: Some(format!(
                "worker {worker} was lost before it confirmed the cancel"
            )),
            worker: Some(worker.clone()),
            attempt: Some(attempt),
        }),
        _ if attempt <= job.wants.retries => EventKind::Queued {
            attempt: attempt + 1,
            reason: Some(format!(
                "worker {worker} was lost; retry {attempt} of {}",
                job.wants.retries
            )),
        },
        _ => EventKind::Failed(Finished {
            steps: vec![],
            error: Some(error.to_owned()),
            worker: Some(worker.clone()),
            attempt: Some(attempt),
        }),
    };
    Decision::withdraw_then(worker, attempt, event)
}

/// What the clock says about a job on a worker: send a spec that did not arrive again, stop
/// a job past its time limit, repeat an unconfirmed cancel, and give up on a stop nobody
/// confirms.
pub fn tick(job: &Job, nudge: &mut Nudge, now_ms: i64, t: &Timing) -> Decision {
    let Some(worker) = job.worker.clone() else {
        return Decision::none();
    };
    let attempt = job.attempt;
    let ms = |d: std::time::Duration| d.as_millis() as i64;
    let due = |last: Option<i64>, every: i64| last.is_none_or(|l| now_ms - l >= every);
    match job.state {
        Some(JobState::CancelRequested) => {
            let since = job.cancel.as_ref().and_then(|c| c.at_ms).unwrap_or(now_ms);
            if now_ms - since >= ms(t.stop_confirm) {
                return Decision::withdraw_then(
                    &worker,
                    attempt,
                    EventKind::ForceCancelled(Finished {
                        steps: vec![],
                        error: Some(format!(
                            "the worker did not confirm the cancel within {} s",
                            t.stop_confirm.as_secs()
                        )),
                        worker: Some(worker.clone()),
                        attempt: Some(attempt),
                    }),
                );
            }
            if due(nudge.stop_ms, ms(t.nudge_every)) {
                nudge.stop_ms = Some(now_ms);
                return Decision::after(Effect::Stop {
                    worker,
                    attempt,
                    reason: StopReason::Cancel,
                });
            }
            Decision::none()
        }
        Some(JobState::Dispatched | JobState::Running) => {
            let over = job
                .deadline_ms()
                .is_some_and(|d| now_ms >= d + ms(t.timeout_grace));
            if over {
                let asked = *nudge.timeout_asked_ms.get_or_insert(now_ms);
                if now_ms - asked >= ms(t.stop_confirm) {
                    return Decision::withdraw_then(
                        &worker,
                        attempt,
                        EventKind::TimedOut(Finished {
                            steps: vec![],
                            error: Some(format!(
                                "ran past its time limit of {} s and the worker did not stop it",
                                job.wants.timeout_s
                            )),
                            worker: Some(worker.clone()),
                            attempt: Some(attempt),
                        }),
                    );
                }
                if due(nudge.stop_ms, ms(t.nudge_every)) {
                    nudge.stop_ms = Some(now_ms);
                    return Decision::after(Effect::Stop {
                        worker,
                        attempt,
                        reason: StopReason::Timeout,
                    });
                }
                return Decision::none();
            }
            if job.state == Some(JobState::Dispatched) {
                let since = nudge.spec_ms.or(job.dispatched_ms).unwrap_or(now_ms);
                if now_ms - since >= ms(t.spec_resend) {
                    nudge.spec_ms = Some(now_ms);
                    return Decision::after(Effect::SendSpec { worker, attempt });
                }
            }
            Decision::none()
        }
        _ => Decision::none(),
    }
}

/// Why a cancel was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    #[error("no job {0}")]
    NotFound(String),
    #[error("job {job} already ended: {state}")]
    Ended { job: String, state: JobState },
}

/// A cancel: a job that has not reached a worker ends `cancelled` at once; one on a worker
/// goes to `cancel_requested` and its worker is asked to stop it. The state it answers with
/// is the one the job is in afterwards.
pub fn cancel(job: &Job, by: &str) -> Result<(Decision, JobState), CancelRefusal> {
    match job.state {
        None => Err(CancelRefusal::NotFound(job.id.to_string())),
        Some(s) if s.is_terminal() => Err(CancelRefusal::Ended {
            job: job.id.to_string(),
            state: s,
        }),
        Some(JobState::CancelRequested) => Ok((Decision::none(), JobState::CancelRequested)),
        Some(JobState::Dispatched | JobState::Running) => {
            let mut d = Decision::event(EventKind::CancelRequested {
                by: by.to_owned(),
                reason: None,
            });
            if let Some(worker) = job.worker.clone() {
                d.after.push(Effect::Stop {
                    worker,
                    attempt: job.attempt,
                    reason: StopReason::Cancel,
                });
            }
            Ok((d, JobState::CancelRequested))
        }
        Some(_) => Ok((
            Decision::event(EventKind::Cancelled(Finished {
                error: Some(format!("cancelled by {by} before it ran")),
                ..Default::default()
            })),
            JobState::Cancelled,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::ids::JobId;
    use crate::job::JobRequest;

    fn w(id: &str) -> WorkerId {
        WorkerId::parse(id).unwrap()
    }

    /// A job driven through `kinds`, one event per stream position.
    fn job(request: &str, kinds: Vec<EventKind>) -> Job {
        let id = JobId::parse("j").unwrap();
        let mut job = Job::new(id.clone());
        let mut all = vec![
            EventKind::Received {
                request: JobRequest::from_slice(request.as_bytes()).unwrap(),
            },
            crate::lifecycle::job::tests::planned(),
            crate::lifecycle::job::tests::approved(),
        ];
        all.extend(kinds);
        for (i, k) in all.into_iter().enumerate() {
            let applied = job.apply(i as u64 + 1, &Event::now(id.clone(), k));
            assert!(
                matches!(applied, crate::lifecycle::Applied::Moved(_)),
                "{applied:?}"
            );
        }
        job
    }

    fn dispatched(worker: &str, attempt: u32) -> EventKind {
        EventKind::Dispatched {
            worker: w(worker),
            attempt,
        }
    }

    fn running(worker: &str, attempt: u32) -> EventKind {
        EventKind::Running {
            worker: w(worker),
            attempt,
            sandbox: None,
        }
    }

    fn finished(attempt: u32, outcome: JobState) -> WorkerReport {
        WorkerReport::Finished {
            attempt,
            outcome,
            steps: vec![],
            error: None,
        }
    }

    #[test]
    fn a_start_is_recorded_once_and_only_for_the_current_attempt() {
        let j = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1)]);
        assert_eq!(
            report(
                &j,
                &w("a"),
                &WorkerReport::Started {
                    attempt: 1,
                    sandbox: None
                }
            )
            .event,
            Some(running("a", 1))
        );
        let j = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1), running("a", 1)]);
        assert!(
            report(
                &j,
                &w("a"),
                &WorkerReport::Started {
                    attempt: 1,
                    sandbox: None
                }
            )
            .is_none()
        );
        // Another worker, or another attempt, is stale: told to stop, nothing written.
        for (worker, attempt) in [("b", 1), ("a", 2)] {
            let d = report(
                &j,
                &w(worker),
                &WorkerReport::Started {
                    attempt,
                    sandbox: None,
                },
            );
            assert_eq!(d.event, None);
            assert_eq!(
                d.after,
                vec![Effect::Stop {
                    worker: w(worker),
                    attempt,
                    reason: StopReason::Fenced
                }]
            );
        }
    }

    #[test]
    fn outcomes_end_the_job_as_the_worker_says_except_an_unasked_cancel() {
        let on = || job(r#"{"goal":"g"}"#, vec![dispatched("a", 1), running("a", 1)]);
        for (outcome, want) in [
            (JobState::Succeeded, JobState::Succeeded),
            (JobState::Failed, JobState::Failed),
            (JobState::TimedOut, JobState::TimedOut),
            (JobState::Cancelled, JobState::Failed),
            (JobState::Running, JobState::Failed),
        ] {
            let d = report(&on(), &w("a"), &finished(1, outcome));
            let e = d.event.unwrap();
            assert_eq!(e.state(), want, "{outcome}");
            assert_eq!(e.as_finished().unwrap().attempt, Some(1));
        }
        let asked = job(
            r#"{"goal":"g"}"#,
            vec![
                dispatched("a", 1),
                running("a", 1),
                EventKind::CancelRequested {
                    by: "me".into(),
                    reason: None,
                },
            ],
        );
        let d = report(&asked, &w("a"), &finished(1, JobState::Cancelled));
        assert_eq!(d.event.unwrap().state(), JobState::Cancelled);
        // A finish before the start was recorded records the start first.
        let early = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1)]);
        let d = report(&early, &w("a"), &finished(1, JobState::Succeeded));
        assert_eq!(d.event, Some(running("a", 1)));
    }

    #[test]
    fn a_finished_job_ignores_the_same_end_again_and_stale_ends() {
        let mut j = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1), running("a", 1)]);
        let end = report(&j, &w("a"), &finished(1, JobState::Succeeded))
            .event
            .unwrap();
        j.apply(100, &Event::now(j.id.clone(), end));
        assert!(report(&j, &w("a"), &finished(1, JobState::Succeeded)).is_none());
        assert!(report(&j, &w("b"), &finished(1, JobState::Failed)).is_none());
        assert!(keeps_output(&j, &w("a"), 1));
        assert!(!keeps_output(&j, &w("a"), 2));
        assert!(!keeps_output(&j, &w("b"), 1));
    }

    #[test]
    fn refusals_fail_a_dispatched_job_unless_they_are_replays() {
        let j = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1)]);
        let refused = |replayed| WorkerReport::Refused {
            attempt: 1,
            reason: "bad seal".into(),
            replayed,
        };
        let d = report(&j, &w("a"), &refused(false));
        assert_eq!(d.event.unwrap().state(), JobState::Failed);
        assert!(report(&j, &w("a"), &refused(true)).is_none());
        let running = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1), running("a", 1)]);
        assert!(report(&running, &w("a"), &refused(false)).is_none());
    }

    #[test]
    fn a_lost_worker_means_a_retry_while_retries_last_then_worker_lost() {
        let withdraw = |attempt| {
            vec![Effect::Withdraw {
                worker: w("a"),
                attempt,
            }]
        };
        let j = job(
            r#"{"goal":"g","retries":1}"#,
            vec![dispatched("a", 1), running("a", 1)],
        );
        let d = worker_lost(&j, &w("a"));
        assert_eq!(d.before, withdraw(1));
        assert!(matches!(
            d.event,
            Some(EventKind::Queued { attempt: 2, .. })
        ));
        // Another worker's loss is not this job's business.
        assert!(worker_lost(&j, &w("b")).is_none());
        let again = job(
            r#"{"goal":"g","retries":1}"#,
            vec![
                dispatched("a", 1),
                EventKind::Queued {
                    attempt: 2,
                    reason: None,
                },
                dispatched("a", 2),
            ],
        );
        let d = worker_lost(&again, &w("a"));
        assert_eq!(d.before, withdraw(2));
        let e = d.event.unwrap();
        assert_eq!(e.state(), JobState::Failed);
        assert_eq!(
            e.as_finished().unwrap().error.as_deref(),
            Some("worker_lost")
        );
        // A worker that says it abandoned the attempt counts the same.
        let d = report(
            &j,
            &w("a"),
            &WorkerReport::Abandoned {
                attempt: 1,
                reason: "restarted".into(),
            },
        );
        assert!(matches!(
            d.event,
            Some(EventKind::Queued { attempt: 2, .. })
        ));
        // A cancel in flight: forced when the worker is lost, confirmed when it says so.
        let cancelling = job(
            r#"{"goal":"g","retries":3}"#,
            vec![
                dispatched("a", 1),
                EventKind::CancelRequested {
                    by: "me".into(),
                    reason: None,
                },
            ],
        );
        assert_eq!(
            worker_lost(&cancelling, &w("a")).event.unwrap().state(),
            JobState::ForceCancelled
        );
        let d = report(
            &cancelling,
            &w("a"),
            &WorkerReport::Abandoned {
                attempt: 1,
                reason: "restarted".into(),
            },
        );
        assert_eq!(d.event.unwrap().state(), JobState::Cancelled);
    }

    #[test]
    fn the_clock_resends_specs_stops_overdue_jobs_and_gives_up_on_silent_workers() {
        let t = Timing::default();
        let j = job(r#"{"goal":"g","timeout_s":10}"#, vec![dispatched("a", 1)]);
        let start = j.dispatched_ms.unwrap();
        let mut n = Nudge::default();
        assert!(tick(&j, &mut n, start + 1_000, &t).is_none());
        assert_eq!(
            tick(&j, &mut n, start + 10_000, &t).after,
            vec![Effect::SendSpec {
                worker: w("a"),
                attempt: 1
            }]
        );
        // Not again until the next interval.
        assert!(tick(&j, &mut n, start + 11_000, &t).is_none());
        // Past the limit and its grace: asked to stop, every nudge interval.
        let over = start + 20_000;
        let d = tick(&j, &mut n, over, &t);
        assert!(matches!(
            d.after.as_slice(),
            [Effect::Stop {
                reason: StopReason::Timeout,
                ..
            }]
        ));
        assert!(tick(&j, &mut n, over + 1_000, &t).is_none());
        assert!(!tick(&j, &mut n, over + 2_000, &t).is_none());
        // Nobody confirms: withdrawn, then timed out.
        let d = tick(&j, &mut n, over + 15_000, &t);
        assert_eq!(
            d.before,
            vec![Effect::Withdraw {
                worker: w("a"),
                attempt: 1
            }]
        );
        assert_eq!(d.event.unwrap().state(), JobState::TimedOut);

        let c = job(
            r#"{"goal":"g"}"#,
            vec![
                dispatched("a", 1),
                running("a", 1),
                EventKind::CancelRequested {
                    by: "me".into(),
                    reason: None,
                },
            ],
        );
        let asked = c.cancel.as_ref().unwrap().at_ms.unwrap();
        let mut n = Nudge::default();
        assert!(matches!(
            tick(&c, &mut n, asked, &t).after.as_slice(),
            [Effect::Stop {
                reason: StopReason::Cancel,
                ..
            }]
        ));
        assert!(tick(&c, &mut n, asked + 500, &t).is_none());
        let d = tick(&c, &mut n, asked + 15_000, &t);
        assert_eq!(d.event.unwrap().state(), JobState::ForceCancelled);
        assert!(!d.before.is_empty());
    }

    #[test]
    fn cancels_end_waiting_jobs_at_once_and_ask_workers_for_the_rest() {
        let waiting = job(r#"{"goal":"g"}"#, vec![]);
        let (d, state) = cancel(&waiting, "alice").unwrap();
        assert_eq!(state, JobState::Cancelled);
        assert_eq!(d.event.unwrap().state(), JobState::Cancelled);
        let on = job(r#"{"goal":"g"}"#, vec![dispatched("a", 1)]);
        let (d, state) = cancel(&on, "alice").unwrap();
        assert_eq!(state, JobState::CancelRequested);
        assert_eq!(d.after.len(), 1);
        let mut asked = on.clone();
        asked.apply(0, &Event::now(asked.id.clone(), d.event.unwrap()));
        assert_eq!(
            cancel(&asked, "bob").unwrap(),
            (Decision::none(), JobState::CancelRequested)
        );
        let none = Job::new(JobId::parse("x").unwrap());
        assert!(matches!(
            cancel(&none, "a"),
            Err(CancelRefusal::NotFound(_))
        ));
    }
}
