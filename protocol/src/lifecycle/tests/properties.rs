//! Properties of the fold and the owner's decisions over arbitrary event sequences: whatever
//! any writer (or a forger) appends, the fold keeps the rules of the state machine.

use proptest::prelude::*;

use crate::event::{Event, EventKind, Finished, JobState};
use crate::ids::{JobId, WorkerId};
use crate::job::JobRequest;
use crate::lifecycle::{Applied, Job, owner};
use crate::worker::{StopReason, WorkerReport};

fn worker() -> impl Strategy<Value = WorkerId> {
    prop_oneof![Just("a"), Just("b")].prop_map(|w| WorkerId::parse(w).unwrap())
}

fn finished() -> impl Strategy<Value = Finished> {
    (
        proptest::option::of(worker()),
        proptest::option::of(0u32..4),
    )
        .prop_map(|(worker, attempt)| Finished {
            steps: vec![],
            error: None,
            worker,
            attempt,
        })
}

/// Any event at all, legal or not.
fn event() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (0u32..3).prop_map(|r| EventKind::Received {
            request: JobRequest::from_slice(format!(r#"{{"goal":"g","retries":{r}}}"#).as_bytes())
                .unwrap()
        }),
        Just(crate::lifecycle::job::tests::planned()),
        Just(EventKind::AwaitingApproval {
            risk: crate::event::Risk::Medium,
            reasons: vec![],
            plan_hash: "h".into(),
            expires_at: "2030-01-01T00:00:00.000Z".into(),
        }),
        Just(crate::lifecycle::job::tests::approved()),
        (0u32..5).prop_map(|attempt| EventKind::Queued {
            attempt,
            reason: None
        }),
        (worker(), 0u32..5).prop_map(|(worker, attempt)| EventKind::Dispatched { worker, attempt }),
        (worker(), 0u32..5).prop_map(|(worker, attempt)| EventKind::Running {
            worker,
            attempt,
            sandbox: None
        }),
        Just(EventKind::CancelRequested {
            by: "x".into(),
            reason: None
        }),
        finished().prop_map(EventKind::Succeeded),
        finished().prop_map(EventKind::Failed),
        finished().prop_map(EventKind::TimedOut),
        finished().prop_map(EventKind::Cancelled),
        finished().prop_map(EventKind::ForceCancelled),
        Just(EventKind::Denied {
            reason: "r".into(),
            by: "policy".into(),
            steps: vec![]
        }),
        Just(EventKind::Rejected {
            reason: "r".into(),
            steps: vec![]
        }),
    ]
}

fn report() -> impl Strategy<Value = WorkerReport> {
    prop_oneof![
        (0u32..4).prop_map(|attempt| WorkerReport::Started {
            attempt,
            sandbox: None
        }),
        (
            0u32..4,
            prop_oneof![
                Just(JobState::Succeeded),
                Just(JobState::Failed),
                Just(JobState::Cancelled),
                Just(JobState::TimedOut)
            ]
        )
            .prop_map(|(attempt, outcome)| WorkerReport::Finished {
                attempt,
                outcome,
                steps: vec![],
                error: None
            }),
        (0u32..4, any::<bool>()).prop_map(|(attempt, replayed)| WorkerReport::Refused {
            attempt,
            reason: "r".into(),
            replayed
        }),
        (0u32..4).prop_map(|attempt| WorkerReport::Abandoned {
            attempt,
            reason: "r".into()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn whatever_is_appended_the_fold_keeps_the_rules(kinds in proptest::collection::vec(event(), 0..24)) {
        let id = JobId::parse("j").unwrap();
        let mut job = Job::new(id.clone());
        let mut approved = false;
        let mut ended: Option<Job> = None;
        for (i, kind) in kinds.into_iter().enumerate() {
            let legal = job.check(&kind).is_ok();
            let before = job.clone();
            let applied = job.apply(i as u64 + 1, &Event::now(id.clone(), kind.clone()));
            // `check` is exactly what `apply` enforces, and a refused event changes nothing
            // but the position.
            match applied {
                Applied::Moved(s) => {
                    prop_assert!(legal);
                    prop_assert_eq!(s, kind.state());
                    prop_assert!(JobState::can_follow(before.state, s));
                }
                Applied::Refused(_) => {
                    prop_assert!(!legal);
                    let mut same = before.clone();
                    same.seq = job.seq;
                    prop_assert_eq!(&same, &job);
                }
                Applied::Old => prop_assert!(false, "positions only grow"),
            }
            prop_assert_eq!(job.seq, i as u64 + 1);
            if job.state == Some(JobState::Approved) {
                approved = true;
            }
            // Nothing reaches a worker without passing `approved`.
            if job.on_worker() {
                prop_assert!(approved);
                prop_assert!(job.worker.is_some());
                prop_assert!(job.attempt >= 1);
            }
            // Attempts stay within the retries.
            prop_assert!(job.attempt <= job.wants.retries + 1);
            // Once ended, a job never changes again.
            if let Some(e) = &ended {
                let mut same = e.clone();
                same.seq = job.seq;
                prop_assert_eq!(&same, &job);
            } else if job.is_terminal() {
                ended = Some(job.clone());
            }
        }
    }

    #[test]
    fn the_owner_only_ever_writes_legal_events(
        kinds in proptest::collection::vec(event(), 0..16),
        reports in proptest::collection::vec((worker(), report()), 0..6),
        now in 0i64..100_000,
    ) {
        let id = JobId::parse("j").unwrap();
        let mut job = Job::new(id.clone());
        for (i, kind) in kinds.into_iter().enumerate() {
            job.apply(i as u64 + 1, &Event::now(id.clone(), kind));
        }
        let t = crate::lifecycle::Timing::default();
        let mut decisions = vec![
            owner::tick(&job, &mut owner::Nudge::default(), job.dispatched_ms.unwrap_or(0) + now, &t),
            owner::worker_lost(&job, &WorkerId::parse("a").unwrap()),
        ];
        if let Ok((d, _)) = owner::cancel(&job, "x") {
            decisions.push(d);
        }
        for (w, r) in &reports {
            let d = owner::report(&job, w, r);
            // A report about an attempt that is not current writes nothing.
            if !owner::is_current(&job, w, r.attempt()) {
                prop_assert!(d.event.is_none());
                for e in &d.after {
                    let fenced = matches!(e, owner::Effect::Stop { reason: StopReason::Fenced, .. });
                    prop_assert!(fenced);
                }
            }
            decisions.push(d);
        }
        for d in decisions {
            if let Some(e) = &d.event {
                prop_assert!(job.check(e).is_ok(), "{:?} after {:?}: {:?}", e, job.state, job.check(e));
                // A job moves on without its worker only after the attempt was taken back.
                let leaves = job.on_worker() && (e.state().is_terminal() || e.state() == JobState::Queued);
                let worker_said_so = d.before.is_empty();
                if leaves && worker_said_so {
                    // ... or when the worker itself reported the end.
                    prop_assert!(e.as_finished().is_some_and(|f| f.worker.is_some()));
                }
            }
        }
    }
}
