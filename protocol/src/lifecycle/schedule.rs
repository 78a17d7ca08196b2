//! What a schedule's tick does, and what its changes (approve, pause, resume) do: pure
//! functions of the schedule record, its calendar, the state of its previous job and the
//! time. The owner (the dispatcher) reads, calls these and writes the record back with the
//! KV revision it read (so two copies never both apply one decision), then submits the
//! tick's job, whose id `<name>-<UTC time>` makes a second job of one tick impossible.

use crate::event::JobState;
use crate::ids::JobId;
use crate::schedule::{
    Calendar, CatchUp, Overlap, Schedule, ScheduleState, tick_job_id, wire_time,
};

/// A tick this late (seconds) still counts as on time with `catch_up` `none`.
pub const ON_TIME_S: i64 = 30;
/// Missed ticks are counted up to this many.
const COUNT_CAP: u32 = 10_000;
/// Who the history names for the owner's own entries.
pub const SCHEDULER: &str = "scheduler";

/// The schedule's previous job (`last_job_id`) as the log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prev {
    /// No job yet.
    None,
    /// Submitted, but intake has not recorded it yet.
    Submitted,
    Open(JobState),
    Ended(JobState),
}

impl Prev {
    fn busy(self) -> bool {
        matches!(self, Prev::Submitted | Prev::Open(_))
    }
}

/// What a tick decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickDecision {
    /// The record to write back (`None`: nothing changed).
    pub schedule: Option<Schedule>,
    /// Submit this tick's job (its request is [`Schedule::tick_request`]).
    pub submit: Option<i64>,
    /// Cancel this job (`overlap` `replace`).
    pub cancel: Option<JobId>,
}

/// Decides for schedule `s` at `now_s`, its previous job being `prev`.
pub fn tick(s: &Schedule, cal: &Calendar, prev: Prev, now_s: i64) -> TickDecision {
    let mut out = TickDecision::default();
    let mut next = s.clone();
    let mut changed = false;
    // The previous job's state is shown whatever the schedule's state.
    if let Prev::Open(st) | Prev::Ended(st) = prev
        && s.last_state != Some(st)
    {
        next.last_state = Some(st);
        changed = true;
    }
    if s.state != ScheduleState::Active {
        if changed {
            out.schedule = Some(next);
        }
        return out;
    }
    let mut busy = prev.busy();
    if let Some(p) = s.pending_s()
        && !busy
    {
        fire(&mut next, p);
        out.submit = Some(p);
        busy = true;
        changed = true;
    }
    if let Some(due) = s.next_run_s()
        && due <= now_s
    {
        let (n, latest) = cal.due(due - 1, now_s, COUNT_CAP);
        next.next_run = cal.next_after(now_s).map(wire_time);
        changed = true;
        if let Some(t) = latest {
            let missed = n.saturating_sub(1);
            let late = now_s - t > ON_TIME_S;
            let fires = match s.catch_up {
                CatchUp::One => {
                    if missed > 0 || late {
                        let count = if n >= COUNT_CAP {
                            format!("{n}+")
                        } else {
                            n.to_string()
                        };
                        let detail = format!(
                            "{count} ticks missed up to {}; one job for them",
                            wire_time(t)
                        );
                        next.record(now_s, SCHEDULER, "missed", Some(detail));
                    }
                    true
                }
                CatchUp::None => {
                    let stale = missed + u32::from(late);
                    if stale > 0 {
                        let detail = format!(
                            "{stale} ticks missed up to {} (catch_up none)",
                            wire_time(t)
                        );
                        next.record(now_s, SCHEDULER, "missed", Some(detail));
                    }
                    !late
                }
            };
            if fires {
                overlap(&mut next, &mut out, t, busy, prev, now_s);
            }
        }
    }
    if changed {
        out.schedule = Some(next);
    }
    out
}

fn fire(s: &mut Schedule, t: i64) {
    s.pending = None;
    s.last_run = Some(wire_time(t));
    s.last_job_id = Some(tick_job_id(&s.name, t));
    s.last_state = None;
}

/// The tick at `t`, given whether the previous job is still on.
fn overlap(s: &mut Schedule, out: &mut TickDecision, t: i64, busy: bool, prev: Prev, now_s: i64) {
    if !busy {
        fire(s, t);
        out.submit = Some(t);
        return;
    }
    let holder = s
        .last_job_id
        .as_ref()
        .map(|j| j.to_string())
        .unwrap_or_default();
    let what = match prev {
        Prev::Open(st) => st.as_str().to_owned(),
        _ => "starting".into(),
    };
    let tick = wire_time(t);
    match s.overlap {
        Overlap::Skip => {
            let detail = format!("tick {tick} made no job: {holder} is still {what}");
            s.record(now_s, SCHEDULER, "skipped", Some(detail));
        }
        Overlap::Queue => match s.pending.clone() {
            Some(waiting) => {
                let detail = format!(
                    "tick {tick} made no job: the tick {waiting} already waits for {holder}"
                );
                s.record(now_s, SCHEDULER, "skipped", Some(detail));
            }
            None => {
                s.pending = Some(tick.clone());
                let detail = format!("tick {tick} waits for {holder}");
                s.record(now_s, SCHEDULER, "queued", Some(detail));
            }
        },
        Overlap::Replace => {
            if let Some(old) = s.pending.replace(tick.clone()) {
                let detail = format!("tick {old} made no job: the tick {tick} replaced it");
                s.record(now_s, SCHEDULER, "skipped", Some(detail));
            }
            if let Prev::Open(_) = prev {
                out.cancel = s.last_job_id.clone();
            }
            let detail = format!("tick {tick} replaces {holder}");
            s.record(now_s, SCHEDULER, "replaced", Some(detail));
        }
    }
}

/// Why a change to a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed input (400).
    Bad(String),
    /// Not in this state, or not this plan (409).
    Conflict(String),
}

/// `schedules.approve`: only an awaiting schedule, only for its plan.
pub fn approve(
    s: &Schedule,
    cal: &Calendar,
    plan_hash: &str,
    by: &str,
    now_s: i64,
) -> Result<Schedule, Refusal> {
    if plan_hash.len() < 12 || !plan_hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Refusal::Bad(
            "`plan_hash`: at least 12 hex digits of the schedule's plan hash".into(),
        ));
    }
    if s.state != ScheduleState::AwaitingApproval {
        return Err(Refusal::Conflict(format!(
            "schedule {} is {}, not awaiting approval",
            s.name,
            s.state.as_str()
        )));
    }
    if !s.plan_hash.starts_with(&plan_hash.to_ascii_lowercase()) {
        return Err(Refusal::Conflict(
            "the plan of this schedule is not the one given (plan_hash differs)".into(),
        ));
    }
    let mut next = s.clone();
    next.state = ScheduleState::Active;
    next.approved_by = Some(by.to_owned());
    next.next_run = cal.next_after(now_s).map(wire_time);
    next.record(
        now_s,
        by,
        "approved",
        Some(format!(
            "plan {}",
            &s.plan_hash[..12.min(s.plan_hash.len())]
        )),
    );
    Ok(next)
}

/// `schedules.pause`: an active schedule stops making jobs (a paused one stays so).
pub fn pause(s: &Schedule, by: &str, now_s: i64) -> Result<Option<Schedule>, Refusal> {
    match s.state {
        ScheduleState::Paused => Ok(None),
        ScheduleState::AwaitingApproval => Err(Refusal::Conflict(format!(
            "schedule {} is awaiting approval; approve or delete it",
            s.name
        ))),
        ScheduleState::Active => {
            let mut next = s.clone();
            next.state = ScheduleState::Paused;
            next.pending = None;
            next.next_run = None;
            next.record(now_s, by, "paused", None);
            Ok(Some(next))
        }
    }
}

/// `schedules.resume`: from the next tick after now (the paused ticks are not caught up).
pub fn resume(
    s: &Schedule,
    cal: &Calendar,
    by: &str,
    now_s: i64,
) -> Result<Option<Schedule>, Refusal> {
    match s.state {
        ScheduleState::Active => Ok(None),
        ScheduleState::AwaitingApproval => Err(Refusal::Conflict(format!(
            "schedule {} is awaiting approval, not paused",
            s.name
        ))),
        ScheduleState::Paused => {
            let mut next = s.clone();
            next.state = ScheduleState::Active;
            next.next_run = cal.next_after(now_s).map(wire_time);
            next.record(now_s, by, "resumed", None);
            Ok(Some(next))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobRequest;
    use crate::schedule::HistoryEntry;

    const T0: i64 = 1_800_000_000; // a multiple of 60

    fn sched(cron: &str, overlap: Overlap, catch_up: CatchUp) -> (Schedule, Calendar) {
        let cal = Calendar::parse(cron, None).unwrap();
        let s = Schedule {
            name: "tests".into(),
            cron: cron.into(),
            tz: "UTC".into(),
            state: ScheduleState::Active,
            overlap,
            catch_up,
            plan_hash: "ab".repeat(32),
            next_run: cal.next_after(T0).map(wire_time),
            last_run: None,
            last_job_id: None,
            last_state: None,
            created_by: "cli:alice".into(),
            created_at: wire_time(T0),
            summary: String::new(),
            risk: None,
            reasons: vec![],
            approved_by: Some("policy".into()),
            request: JobRequest::default(),
            pending: None,
            history: vec![],
        };
        (s, cal)
    }

    fn actions(s: &Schedule) -> Vec<&str> {
        s.history
            .iter()
            .map(|h: &HistoryEntry| h.action.as_str())
            .collect()
    }

    #[test]
    fn a_due_tick_fires_once_and_the_next_comes_from_the_calendar() {
        let (s, cal) = sched("@every 60s", Overlap::Skip, CatchUp::One);
        // Not due yet: nothing.
        assert_eq!(tick(&s, &cal, Prev::None, T0 + 30), TickDecision::default());
        // Due, and late by 5 s: the job is the tick's, the next run is the calendar's.
        let d = tick(&s, &cal, Prev::None, T0 + 65);
        assert_eq!(d.submit, Some(T0 + 60));
        let s2 = d.schedule.unwrap();
        assert_eq!(s2.next_run_s(), Some(T0 + 120));
        assert_eq!(s2.last_job_id, Some(tick_job_id("tests", T0 + 60)));
        assert!(s2.history.is_empty());
        // Deciding again on the new record (a second copy, a restart) makes no second job.
        let again = tick(&s2, &cal, Prev::Submitted, T0 + 66);
        assert_eq!(again, TickDecision::default());
    }

    #[test]
    fn overlap_skip_records_the_skipped_tick() {
        let (mut s, cal) = sched("@every 60s", Overlap::Skip, CatchUp::One);
        s.last_job_id = Some(tick_job_id("tests", T0));
        let d = tick(&s, &cal, Prev::Open(JobState::Running), T0 + 61);
        assert_eq!(d.submit, None);
        let s2 = d.schedule.unwrap();
        assert_eq!(actions(&s2), ["skipped"]);
        assert!(
            s2.history[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("still running")
        );
        assert_eq!(s2.last_state, Some(JobState::Running));
        assert_eq!(s2.next_run_s(), Some(T0 + 120));
    }

    #[test]
    fn overlap_queue_keeps_one_tick_waiting_and_fires_it_when_the_previous_job_ends() {
        let (mut s, cal) = sched("@every 60s", Overlap::Queue, CatchUp::One);
        s.last_job_id = Some(tick_job_id("tests", T0));
        let s1 = tick(&s, &cal, Prev::Open(JobState::Running), T0 + 61)
            .schedule
            .unwrap();
        assert_eq!(s1.pending_s(), Some(T0 + 60));
        // A second tick while one waits: skipped, the waiting one stays.
        let s2 = tick(&s1, &cal, Prev::Open(JobState::Running), T0 + 121)
            .schedule
            .unwrap();
        assert_eq!(s2.pending_s(), Some(T0 + 60));
        assert_eq!(actions(&s2), ["queued", "skipped"]);
        // The previous job ends: the waiting tick fires, with its own time in its id.
        let d = tick(&s2, &cal, Prev::Ended(JobState::Succeeded), T0 + 130);
        assert_eq!(d.submit, Some(T0 + 60));
        let s3 = d.schedule.unwrap();
        assert_eq!(s3.pending, None);
        assert_eq!(s3.last_job_id, Some(tick_job_id("tests", T0 + 60)));
    }

    #[test]
    fn overlap_replace_cancels_the_running_job_and_starts_once_it_ended() {
        let (mut s, cal) = sched("@every 60s", Overlap::Replace, CatchUp::One);
        let old = tick_job_id("tests", T0);
        s.last_job_id = Some(old.clone());
        let d = tick(&s, &cal, Prev::Open(JobState::Running), T0 + 61);
        assert_eq!((d.cancel, d.submit), (Some(old), None));
        let s1 = d.schedule.unwrap();
        assert_eq!(s1.pending_s(), Some(T0 + 60));
        let d = tick(&s1, &cal, Prev::Ended(JobState::Cancelled), T0 + 62);
        assert_eq!(d.submit, Some(T0 + 60));
    }

    #[test]
    fn after_three_missed_ticks_catch_up_one_makes_exactly_one_job_and_none_makes_none() {
        let (s, cal) = sched("@every 60s", Overlap::Skip, CatchUp::One);
        // Down from T0 until T0 + 200: ticks at +60, +120, +180 were missed.
        let d = tick(&s, &cal, Prev::None, T0 + 200);
        assert_eq!(d.submit, Some(T0 + 180));
        let s1 = d.schedule.unwrap();
        assert_eq!(actions(&s1), ["missed"]);
        assert!(
            s1.history[0]
                .detail
                .as_deref()
                .unwrap()
                .starts_with("3 ticks missed")
        );
        assert_eq!(s1.next_run_s(), Some(T0 + 240));

        // `none`: the missed ticks make nothing (the latest is 35 s late); had the latest
        // been on time, it would have fired as usual.
        let (s, cal) = sched("@every 60s", Overlap::Skip, CatchUp::None);
        let d = tick(&s, &cal, Prev::None, T0 + 215);
        assert_eq!(d.submit, None);
        assert_eq!(d.schedule.unwrap().next_run_s(), Some(T0 + 240));
        assert_eq!(tick(&s, &cal, Prev::None, T0 + 200).submit, Some(T0 + 180));
        assert_eq!(tick(&s, &cal, Prev::None, T0 + 61).submit, Some(T0 + 60));
    }

    #[test]
    fn paused_and_awaiting_schedules_make_no_jobs_and_resume_from_the_next_tick() {
        let (s, cal) = sched("@every 60s", Overlap::Skip, CatchUp::One);
        let paused = pause(&s, "cli:bob", T0 + 1).unwrap().unwrap();
        assert_eq!(
            tick(&paused, &cal, Prev::None, T0 + 500),
            TickDecision::default()
        );
        // Only the previous job's state is kept up to date.
        let d = tick(&paused, &cal, Prev::Ended(JobState::Failed), T0 + 500);
        assert_eq!((d.submit, d.cancel), (None, None));
        assert_eq!(d.schedule.unwrap().last_state, Some(JobState::Failed));
        assert_eq!(pause(&paused, "cli:bob", T0 + 2), Ok(None));
        let resumed = resume(&paused, &cal, "cli:bob", T0 + 500).unwrap().unwrap();
        assert_eq!(resumed.next_run_s(), Some(T0 + 540));
        assert_eq!(actions(&resumed), ["paused", "resumed"]);
        assert_eq!(resumed.history[0].by, "cli:bob");

        let mut waiting = s.clone();
        waiting.state = ScheduleState::AwaitingApproval;
        assert_eq!(
            tick(&waiting, &cal, Prev::None, T0 + 500),
            TickDecision::default()
        );
        assert!(matches!(
            resume(&waiting, &cal, "x", T0),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn approval_is_bound_to_the_plan_hash() {
        let (mut s, cal) = sched("@every 60s", Overlap::Skip, CatchUp::One);
        s.state = ScheduleState::AwaitingApproval;
        assert!(matches!(
            approve(&s, &cal, "abc", "alice", T0),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            approve(&s, &cal, &"cd".repeat(6), "alice", T0),
            Err(Refusal::Conflict(_))
        ));
        let ok = approve(&s, &cal, &"ab".repeat(6), "alice", T0 + 10).unwrap();
        assert_eq!(ok.state, ScheduleState::Active);
        assert_eq!(ok.approved_by.as_deref(), Some("alice"));
        assert_eq!(ok.next_run_s(), Some(T0 + 60));
        assert!(matches!(
            approve(&ok, &cal, &"ab".repeat(6), "alice", T0),
            Err(Refusal::Conflict(_))
        ));
    }
}
