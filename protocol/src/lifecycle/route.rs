//! Where waiting jobs go: the owner's routing decision over every open job and every known
//! worker at once.
//!
//! Waiting jobs (`approved` or `queued`) are taken in order: higher priority first, and
//! first come, first served within a priority (from approval, or from a re-queue). Each
//! goes to the least busy online worker that matches its `worker` and `labels` and has a
//! free slot, unless another job holding its `lock` is on a worker; a job that cannot go
//! waits with the reason, and does not hold up jobs behind it that can go elsewhere.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::event::JobState;
use crate::ids::{JobId, WorkerId};
use crate::lifecycle::Job;

/// A worker as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: WorkerId,
    pub labels: Vec<String>,
    pub max_jobs: u32,
    /// Heartbeating, and not declared offline.
    pub online: bool,
}

impl Slot {
    fn serves(&self, job: &Job) -> bool {
        job.wants.worker.as_ref().is_none_or(|w| w == &self.id)
            && job.wants.labels.iter().all(|l| self.labels.contains(l))
    }
}

/// What routing decided for one waiting job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Hand this attempt to this worker.
    Dispatch { worker: WorkerId, attempt: u32 },
    /// Not now, and why.
    Wait { reason: String },
    /// Never: the job cannot run at all (its approval carries no seal, or the seal expired).
    Fail { error: String },
}

/// The order in which waiting jobs are taken: higher priority first, then first come,
/// first served.
fn first(a: &Job, b: &Job) -> Ordering {
    // `then_with`: the ids are compared only on a tie, not on every comparison (a pass
    // over thousands of waiting jobs makes tens of thousands).
    b.wants
        .priority
        .cmp(&a.wants.priority)
        .then_with(|| a.waiting_since.cmp(&b.waiting_since))
        .then_with(|| a.id.cmp(&b.id))
}

/// A waiting job in the heap of turns: the greatest is the one to take next.
struct Turn<'a>(&'a Job);

impl Ord for Turn<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        first(other.0, self.0)
    }
}

impl PartialOrd for Turn<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Turn<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Turn<'_> {}

/// Decides for the waiting jobs among `jobs`, in the order they are taken. A job already
/// `queued` that still cannot go is left out: it waits as it is. Jobs are taken in turn
/// only while some online worker has a free slot; once none has, the rest are only checked
/// for an approval that can no longer be used, and the new ones told why they wait, so a
/// pass over thousands of waiting jobs sorts and explains only what it has to. `now_s` is
/// Unix seconds.
pub fn route<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    workers: &[Slot],
    now_s: i64,
) -> Vec<(JobId, Placement)> {
    let mut load: HashMap<&WorkerId, u32> = HashMap::new();
    let mut held: HashMap<&str, &JobId> = HashMap::new();
    let mut waiting = Vec::new();
    for job in jobs {
        if job.on_worker() {
            if let Some(w) = &job.worker {
                *load.entry(w).or_default() += 1;
            }
            if let Some(lock) = &job.wants.lock {
                held.insert(lock.as_str(), &job.id);
            }
        } else if job.waiting() {
            waiting.push(Turn(job));
        }
    }
    let with_room = |load: &HashMap<&WorkerId, u32>| {
        workers
            .iter()
            .any(|w| w.online && load.get(&w.id).copied().unwrap_or(0) < w.max_jobs)
    };
    // Put in order only when some job can go now: with every slot taken, what waits is
    // only checked below, in no order.
    let (mut turns, unordered) = if with_room(&load) {
        (BinaryHeap::from(waiting), Vec::new())
    } else {
        (BinaryHeap::new(), waiting)
    };
    let mut out = Vec::new();
    while with_room(&load) {
        let Some(Turn(job)) = turns.pop() else {
            break;
        };
        match place(job, workers, &mut load, &mut held, now_s) {
            Some(placement) => out.push((job.id.clone(), placement)),
            None if job.state == Some(JobState::Queued) => {}
            None => out.push((
                job.id.clone(),
                Placement::Wait {
                    reason: why_waiting(job, workers, &held),
                },
            )),
        }
    }
    // No slot is left anywhere: the rest wait, and only what changes for them is said.
    let mut rest: Vec<(&Job, Placement)> = turns
        .into_vec()
        .into_iter()
        .chain(unordered)
        .filter_map(|Turn(job)| {
            if let Some(fail) = unusable(job, now_s) {
                return Some((job, fail));
            }
            (job.state == Some(JobState::Approved)).then(|| {
                let reason = why_waiting(job, workers, &held);
                (job, Placement::Wait { reason })
            })
        })
        .collect();
    rest.sort_by(|(a, _), (b, _)| first(a, b));
    out.extend(rest.into_iter().map(|(job, p)| (job.id.clone(), p)));
    out
}

/// Why a job's approval cannot take it to a worker at all, if it cannot.
fn unusable(job: &Job, now_s: i64) -> Option<Placement> {
    let Some(approval) = job.approval.as_ref().filter(|a| a.seal.is_some()) else {
        return Some(Placement::Fail {
            error: "refused: the job's approval was not made by policy (it carries no seal)".into(),
        });
    };
    if approval.not_after().is_some_and(|t| t < now_s) {
        return Some(Placement::Fail {
            error: "the approval expired before a worker could take the job".into(),
        });
    }
    None
}

/// Where `job` goes now, or `None` when it has to wait.
fn place<'a>(
    job: &'a Job,
    workers: &'a [Slot],
    load: &mut HashMap<&'a WorkerId, u32>,
    held: &mut HashMap<&'a str, &'a JobId>,
    now_s: i64,
) -> Option<Placement> {
    if let Some(fail) = unusable(job, now_s) {
        return Some(fail);
    }
    if job
        .wants
        .lock
        .as_deref()
        .is_some_and(|l| held.contains_key(l))
    {
        return None;
    }
    let (_, w) = workers
        .iter()
        .filter(|w| w.online && w.serves(job))
        .map(|w| (load.get(&w.id).copied().unwrap_or(0), w))
        .filter(|(n, w)| *n < w.max_jobs)
        .min_by(|(la, a), (lb, b)| la.cmp(lb).then_with(|| a.id.cmp(&b.id)))?;
    *load.entry(&w.id).or_default() += 1;
    if let Some(lock) = job.wants.lock.as_deref() {
        held.insert(lock, &job.id);
    }
    Some(Placement::Dispatch {
        worker: w.id.clone(),
        attempt: job.attempt.max(1),
    })
}

/// Why `job` cannot go now (after [`place`] said so, on the same picture).
fn why_waiting(job: &Job, workers: &[Slot], held: &HashMap<&str, &JobId>) -> String {
    if let Some(lock) = job.wants.lock.as_deref()
        && let Some(holder) = held.get(lock)
    {
        return format!("waiting for lock {lock} (held by job {holder})");
    }
    let matching: Vec<&Slot> = workers.iter().filter(|w| w.serves(job)).collect();
    if matching.is_empty() {
        match (&job.wants.worker, job.wants.labels.is_empty()) {
            (Some(w), _) => format!("waiting for worker {w}"),
            (None, false) => format!(
                "waiting for a worker with labels {}",
                job.wants.labels.join(",")
            ),
            (None, true) => "waiting for a worker".into(),
        }
    } else if matching.iter().all(|w| !w.online) {
        "every matching worker is offline".into()
    } else {
        "every matching worker is busy".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};
    use crate::job::JobRequest;
    use crate::spec::Grant;

    fn w(id: &str) -> WorkerId {
        WorkerId::parse(id).unwrap()
    }

    fn slot(id: &str, labels: &[&str], max_jobs: u32) -> Slot {
        Slot {
            id: w(id),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            max_jobs,
            online: true,
        }
    }

    /// An approved job (sealed by a throwaway key) approved at stream position `at`.
    fn approved(id: &str, request: &str, at: u64) -> Job {
        let id = JobId::parse(id).unwrap();
        let key = nkeys::KeyPair::new_user();
        let seal = Grant {
            job_id: id.clone(),
            plan_hash: "h".into(),
            max_attempt: 3,
            timeout_s: 60,
            worker: None,
            labels: vec![],
            env: vec![],
            network: false,
            by: "policy".into(),
            issued_at: 0,
            not_after: i64::MAX,
        }
        .seal(&key)
        .unwrap();
        let mut job = Job::new(id.clone());
        let kinds = [
            EventKind::Received {
                request: JobRequest::from_slice(request.as_bytes()).unwrap(),
            },
            crate::lifecycle::job::tests::planned(),
            EventKind::Approved {
                by: "policy".into(),
                reasons: vec![],
                seal: Some(seal),
            },
        ];
        for (i, k) in kinds.into_iter().enumerate() {
            job.apply(at + i as u64, &Event::now(id.clone(), k));
        }
        job.waiting_since = at;
        job
    }

    fn on(mut job: Job, worker: &str) -> Job {
        let e = Event::now(
            job.id.clone(),
            EventKind::Dispatched {
                worker: w(worker),
                attempt: 1,
            },
        );
        job.apply(0, &e);
        job
    }

    fn queued(mut job: Job) -> Job {
        let e = Event::now(
            job.id.clone(),
            EventKind::Queued {
                attempt: 1,
                reason: Some("every matching worker is busy".into()),
            },
        );
        job.apply(0, &e);
        job
    }

    fn dispatched_to(placements: &[(JobId, Placement)]) -> Vec<(String, String)> {
        placements
            .iter()
            .filter_map(|(j, p)| match p {
                Placement::Dispatch { worker, .. } => Some((j.to_string(), worker.to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn higher_priority_first_and_first_come_first_served_within_one() {
        let jobs = [
            approved("low", r#"{"goal":"g","priority":"low"}"#, 1),
            approved("normal-2", r#"{"goal":"g"}"#, 20),
            approved("normal-1", r#"{"goal":"g"}"#, 10),
            approved("high", r#"{"goal":"g","priority":"high"}"#, 30),
        ];
        let got = route(&jobs, &[slot("a", &[], 2)], 0);
        assert_eq!(
            got.iter().map(|(j, _)| j.as_str()).collect::<Vec<_>>(),
            ["high", "normal-1", "normal-2", "low"]
        );
        assert_eq!(
            dispatched_to(&got),
            [("high".into(), "a".into()), ("normal-1".into(), "a".into())]
        );
        assert!(matches!(&got[3].1, Placement::Wait { reason } if reason.contains("busy")));
    }

    #[test]
    fn the_least_busy_matching_worker_gets_the_job_and_a_blocked_job_blocks_nobody() {
        let jobs = [
            on(approved("running", r#"{"goal":"g"}"#, 1), "a"),
            approved("gpu", r#"{"goal":"g","labels":["gpu"]}"#, 5),
            approved("any", r#"{"goal":"g"}"#, 6),
            approved("pinned", r#"{"goal":"g","worker":"nowhere"}"#, 7),
        ];
        let workers = [slot("a", &[], 4), slot("b", &[], 4)];
        let got = route(&jobs, &workers, 0);
        assert_eq!(dispatched_to(&got), [("any".into(), "b".into())]);
        let reasons: Vec<String> = got
            .iter()
            .filter_map(|(_, p)| match p {
                Placement::Wait { reason } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "waiting for a worker with labels gpu".to_string(),
                "waiting for worker nowhere".to_string()
            ]
        );
        let offline = [Slot {
            online: false,
            ..slot("gpu-box", &["gpu"], 1)
        }];
        let got = route(&jobs[1..2], &offline, 0);
        assert_eq!(
            got[0].1,
            Placement::Wait {
                reason: "every matching worker is offline".into()
            }
        );
    }

    #[test]
    fn jobs_with_one_lock_never_run_together() {
        let jobs = [
            on(approved("holder", r#"{"goal":"g","lock":"repo"}"#, 1), "a"),
            approved("next", r#"{"goal":"g","lock":"repo"}"#, 5),
            approved("free", r#"{"goal":"g","lock":"other"}"#, 6),
            approved("also-other", r#"{"goal":"g","lock":"other"}"#, 7),
        ];
        let got = route(&jobs, &[slot("a", &[], 8), slot("b", &[], 8)], 0);
        assert_eq!(dispatched_to(&got).len(), 1);
        assert_eq!(dispatched_to(&got)[0].0, "free");
        assert!(
            matches!(&got[0].1, Placement::Wait { reason } if reason.contains("lock repo (held by job holder)")),
            "{got:?}"
        );
        assert!(
            matches!(&got[2].1, Placement::Wait { reason } if reason.contains("held by job free"))
        );
        // The holder ends: the next one goes.
        let got = route(&jobs[1..2], &[slot("a", &[], 8)], 0);
        assert_eq!(dispatched_to(&got), [("next".into(), "a".into())]);
    }

    /// Why only one owner copy routes (`lifecycle::lease`): two copies each deciding on its
    /// own view, one of which has not yet seen the latest approval, hand out two different
    /// jobs of one lock (and two slots of a worker that has one). The log's per-job
    /// compare-and-set cannot catch it: each write is about a different job.
    #[test]
    fn two_views_routing_at_once_would_break_a_lock_and_a_worker_limit() {
        let urgent = approved(
            "urgent",
            r#"{"goal":"g","lock":"repo","priority":"high"}"#,
            9,
        );
        let older = approved("older", r#"{"goal":"g","lock":"repo"}"#, 5);
        let workers = [slot("a", &[], 1)];
        let view_a = [urgent.clone(), older.clone()];
        let view_b = [older];
        let a = dispatched_to(&route(&view_a, &workers, 0));
        let b = dispatched_to(&route(&view_b, &workers, 0));
        assert_eq!(a, [("urgent".into(), "a".into())]);
        assert_eq!(b, [("older".into(), "a".into())]);
        // Together: both jobs of lock `repo` on worker `a`, whose limit is one job.
        let both: Vec<_> = a.iter().chain(&b).collect();
        assert_eq!(both.len(), 2);
        // One view, one decision: never both.
        assert_eq!(dispatched_to(&route(&view_a, &workers, 0)).len(), 1);
    }

    #[test]
    fn an_unsealed_or_expired_approval_never_reaches_a_worker() {
        let mut forged = approved("forged", r#"{"goal":"g"}"#, 1);
        if let Some(a) = forged.approval.as_mut() {
            a.seal = None;
        }
        let got = route([&forged], &[slot("a", &[], 1)], 0);
        assert!(
            matches!(&got[0].1, Placement::Fail { error } if error.contains("not made by policy"))
        );
        // Approved with a seal that expires at 5 (the fold reads the expiry from it).
        let fresh = approved("old", r#"{"goal":"g"}"#, 1);
        let mut seal = fresh.approval.and_then(|a| a.seal).unwrap();
        seal.grant = seal
            .grant
            .replace(&format!("\"not_after\":{}", i64::MAX), "\"not_after\":5");
        let mut old = Job::new(fresh.id.clone());
        for (i, e) in [
            Event::now(
                fresh.id.clone(),
                EventKind::Received {
                    request: JobRequest::from_slice(br#"{"goal":"g"}"#).unwrap(),
                },
            ),
            Event::now(fresh.id.clone(), crate::lifecycle::job::tests::planned()),
            Event::now(
                fresh.id.clone(),
                EventKind::Approved {
                    by: "policy".into(),
                    reasons: vec![],
                    seal: Some(seal),
                },
            ),
        ]
        .iter()
        .enumerate()
        {
            old.apply(i as u64 + 1, e);
        }
        assert_eq!(old.approval.as_ref().and_then(|a| a.not_after), Some(5));
        let got = route([&old], &[slot("a", &[], 1)], 10);
        assert!(matches!(&got[0].1, Placement::Fail { error } if error.contains("expired")));
    }

    #[test]
    fn a_queued_job_that_still_cannot_go_is_left_out_but_one_that_can_goes() {
        let jobs = [
            on(approved("running", r#"{"goal":"g"}"#, 1), "a"),
            queued(approved("first", r#"{"goal":"g"}"#, 2)),
            queued(approved("second", r#"{"goal":"g","lock":"l"}"#, 3)),
            approved("new", r#"{"goal":"g"}"#, 4),
        ];
        // Full: the queued jobs are left as they are, the new one is told why it waits.
        let got = route(&jobs, &[slot("a", &[], 1)], 0);
        assert_eq!(
            got,
            [(
                JobId::parse("new").unwrap(),
                Placement::Wait {
                    reason: "every matching worker is busy".into()
                }
            )]
        );
        // A slot frees: the oldest queued job goes first.
        let got = route(&jobs[1..], &[slot("a", &[], 1)], 0);
        assert_eq!(dispatched_to(&got), [("first".into(), "a".into())]);
        assert_eq!(got.len(), 2, "{got:?}");
        // A queued job whose approval expired fails even while every slot is taken.
        let mut old = queued(approved("old", r#"{"goal":"g"}"#, 1));
        if let Some(a) = old.approval.as_mut() {
            a.not_after = Some(5);
        }
        let got = route([&jobs[0], &old], &[slot("a", &[], 1)], 10);
        assert!(matches!(&got[..], [(_, Placement::Fail { error })] if error.contains("expired")));
    }

    #[test]
    fn the_expiry_is_read_from_the_seal_when_the_approval_does_not_carry_it() {
        let mut job = approved("j", r#"{"goal":"g"}"#, 1);
        let approval = job.approval.as_mut().unwrap();
        assert_eq!(approval.not_after, Some(i64::MAX));
        approval.not_after = None;
        assert_eq!(approval.not_after(), Some(i64::MAX));
        approval.seal = None;
        assert_eq!(approval.not_after(), None);
    }

    /// Taking turns from a heap, and stopping once no slot is left, decides exactly what
    /// sorting every waiting job and placing each in order decides.
    #[test]
    fn turns_from_the_heap_decide_what_a_full_sort_decides() {
        let priorities = ["low", "normal", "high"];
        let mut jobs = Vec::new();
        for i in 0..120u64 {
            let priority = priorities[(i * 7 % 3) as usize];
            let labels = if i % 5 == 0 {
                r#","labels":["gpu"]"#
            } else {
                ""
            };
            let lock = if i % 11 == 0 { r#","lock":"repo""# } else { "" };
            let request = format!(r#"{{"goal":"g","priority":"{priority}"{labels}{lock}}}"#);
            let job = approved(&format!("j{i:03}"), &request, 1000 - i * 3 % 997);
            jobs.push(if i % 4 == 0 { queued(job) } else { job });
        }
        jobs.push(on(approved("busy", r#"{"goal":"g"}"#, 1), "cpu"));
        for (gpu, cpu) in [(0, 0), (1, 3), (2, 40), (8, 200)] {
            let workers = [slot("gpu", &["gpu"], gpu), slot("cpu", &[], cpu)];
            let got = route(&jobs, &workers, 0);
            // The reference: every waiting job sorted, each placed in turn.
            let mut waiting: Vec<&Job> = jobs.iter().filter(|j| j.waiting()).collect();
            waiting.sort_by(|a, b| first(a, b));
            let busy = w("cpu");
            let mut load: HashMap<&WorkerId, u32> = HashMap::from([(&busy, 1)]);
            let mut held = HashMap::new();
            let mut want = Vec::new();
            for job in waiting {
                match place(job, &workers, &mut load, &mut held, 0) {
                    Some(p) => want.push((job.id.clone(), p)),
                    None if job.state == Some(JobState::Queued) => {}
                    None => want.push((
                        job.id.clone(),
                        Placement::Wait {
                            reason: why_waiting(job, &workers, &held),
                        },
                    )),
                }
            }
            assert_eq!(got, want, "gpu {gpu}, cpu {cpu}");
        }
    }
}
