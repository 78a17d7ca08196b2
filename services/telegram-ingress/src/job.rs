//! What the chat shows about a job: its events folded into one picture, and the tail of its
//! output.

use std::collections::VecDeque;

use skynet_protocol::event::{Finished, Risk};
use skynet_protocol::lifecycle::{Applied, Job};
use skynet_protocol::{Event, JobId, JobState, Step, WorkerId};

/// What policy said about the plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allowed {
        reasons: Vec<String>,
    },
    NeedsApproval {
        risk: Risk,
        reasons: Vec<String>,
        expires_at: String,
    },
    Denied {
        reason: String,
    },
}

/// A person's (or the approval clock's) answer to a job that waited for approval.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub reason: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    pub state: JobState,
    /// Set for jobs that reached (or were meant for) a worker.
    pub finished: Option<Finished>,
    /// Why it was denied or rejected.
    pub reason: Option<String>,
    pub at_ms: Option<i64>,
}

/// A job as a status message shows it: the one fold every service uses
/// ([`skynet_protocol::lifecycle::Job`]), and what the chat reads off it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// The fold itself.
    pub job: Job,
    pub id: JobId,
    /// Stream sequence of the last event applied (0 when events came without one).
    pub seq: u64,
    pub state: Option<JobState>,
    pub goal: Option<String>,
    pub requested_by: Option<String>,
    pub origin: Option<String>,
    pub steps: Vec<Step>,
    pub summary: Option<String>,
    pub plan_hash: Option<String>,
    pub verdict: Option<Verdict>,
    pub decision: Option<Decision>,
    pub queued_reason: Option<String>,
    pub worker: Option<WorkerId>,
    pub attempt: u32,
    /// Whether any attempt was handed to a worker (so the job may have output).
    pub dispatched: bool,
    /// When the current attempt started running (ms since the epoch).
    pub running_since_ms: Option<i64>,
    pub cancel_requested_by: Option<String>,
    pub end: Option<End>,
}

impl JobStatus {
    /// Folds events in order (`seq` 0 means "no position known": always applied).
    pub fn from_events<'a>(id: JobId, events: impl IntoIterator<Item = (u64, &'a Event)>) -> Self {
        Self::project(Job::fold(id, events))
    }

    pub fn is_terminal(&self) -> bool {
        self.job.is_terminal()
    }

    /// True once the job was handed to a worker at least once (so it may have output).
    pub fn reached_worker(&self) -> bool {
        self.dispatched
    }

    /// Applies one event; an event at or before the last applied position, or one that may
    /// not follow, changes nothing.
    pub fn apply(&mut self, seq: u64, event: &Event) {
        if let Applied::Moved(_) = self.job.apply(seq, event) {
            *self = Self::project(std::mem::replace(&mut self.job, Job::new(self.id.clone())));
        } else {
            self.seq = self.job.seq;
        }
    }

    /// What the chat reads off the fold.
    fn project(job: Job) -> Self {
        let asked = job.question.is_some();
        let verdict = match (&job.question, &job.approval, &job.end) {
            (Some(q), _, _) => Some(Verdict::NeedsApproval {
                risk: q.risk,
                reasons: q.reasons.clone(),
                expires_at: q.expires_at.clone(),
            }),
            (None, Some(a), _) => Some(Verdict::Allowed {
                reasons: a.reasons.clone(),
            }),
            (None, None, Some(e)) if e.state == JobState::Denied => Some(Verdict::Denied {
                reason: e.reason.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        let decision = if !asked {
            None
        } else if let Some(a) = &job.approval {
            Some(Decision {
                approved: true,
                by: a.by.clone(),
                reason: None,
            })
        } else {
            job.end
                .as_ref()
                .filter(|e| e.state == JobState::Denied)
                .map(|e| Decision {
                    approved: false,
                    by: e.by.clone().unwrap_or_default(),
                    reason: e.reason.clone(),
                })
        };
        let end = job.end.as_ref().map(|e| End {
            state: e.state,
            finished: (!matches!(e.state, JobState::Denied | JobState::Rejected)).then(|| {
                Finished {
                    steps: e.steps.clone(),
                    error: e.error.clone(),
                    worker: job.worker.clone(),
                    attempt: (job.attempt > 0).then_some(job.attempt),
                }
            }),
            reason: e.reason.clone(),
            at_ms: e.at_ms,
        });
        Self {
            id: job.id.clone(),
            seq: job.seq,
            state: job.state,
            goal: job.wants.goal.clone(),
            requested_by: job.wants.requested_by.clone(),
            origin: job.wants.origin.clone(),
            steps: job.steps.as_deref().cloned().unwrap_or_default(),
            summary: job.plan.as_ref().map(|p| p.summary.clone()),
            plan_hash: job.plan.as_ref().map(|p| p.hash.clone()),
            verdict,
            decision,
            queued_reason: job.queued_reason.clone(),
            worker: job.worker.clone(),
            attempt: job.attempt,
            dispatched: job.reached_worker,
            running_since_ms: job.running_ms,
            cancel_requested_by: job.cancel.as_ref().map(|c| c.by.clone()),
            end,
            job,
        }
    }

    /// `telegram:<user_id>` of the requester, as a user id.
    pub fn requester_user(&self) -> Option<u64> {
        self.requested_by
            .as_deref()?
            .strip_prefix(crate::TELEGRAM_PREFIX)?
            .parse()
            .ok()
    }
}

/// The last lines of a job's output, as they arrive.
#[derive(Debug, Clone)]
pub struct Tail {
    max_lines: usize,
    lines: VecDeque<String>,
    partial: String,
    partial_cut: bool,
    pending_cr: bool,
    escape: Escape,
    /// The log stream sequence of the last chunk taken in.
    pub last_seq: u64,
}

/// Where an ANSI escape sequence being skipped stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Escape {
    None,
    /// Just read ESC.
    Start,
    /// Inside `ESC [ ...` until its final byte.
    Csi,
    /// Inside `ESC ] ...` until BEL or `ESC \`.
    Osc,
    OscEsc,
}

/// Longest line kept; the rest is cut (a minified file on one line would fill a message).
const MAX_LINE: usize = 240;

impl Tail {
    pub fn new(max_lines: usize) -> Self {
        Self {
            max_lines: max_lines.max(1),
            lines: VecDeque::new(),
            partial: String::new(),
            partial_cut: false,
            pending_cr: false,
            escape: Escape::None,
            last_seq: 0,
        }
    }

    /// Takes in one chunk of output. Terminal control (colours, cursor moves) is dropped and
    /// a carriage return starts its line again, as a terminal shows progress bars.
    pub fn push(&mut self, seq: u64, data: &[u8]) {
        if seq != 0 && seq <= self.last_seq {
            return;
        }
        self.last_seq = self.last_seq.max(seq);
        let text = String::from_utf8_lossy(data);
        for c in text.chars() {
            match self.escape {
                Escape::Start => {
                    self.escape = match c {
                        '[' => Escape::Csi,
                        ']' => Escape::Osc,
                        _ => Escape::None,
                    };
                    continue;
                }
                Escape::Csi => {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::Osc => {
                    match c {
                        '\u{7}' => self.escape = Escape::None,
                        '\u{1b}' => self.escape = Escape::OscEsc,
                        _ => {}
                    }
                    continue;
                }
                Escape::OscEsc => {
                    self.escape = Escape::None;
                    continue;
                }
                Escape::None => {}
            }
            if self.pending_cr {
                self.pending_cr = false;
                if c != '\n' {
                    self.partial.clear();
                    self.partial_cut = false;
                }
            }
            match c {
                '\u{1b}' => self.escape = Escape::Start,
                '\n' => self.end_line(),
                '\r' => self.pending_cr = true,
                '\t' => self.put(' '),
                c if c.is_control() => {}
                c => self.put(c),
            }
        }
    }

    fn put(&mut self, c: char) {
        if self.partial.chars().count() < MAX_LINE {
            self.partial.push(c);
        } else {
            self.partial_cut = true;
        }
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.partial);
        if self.partial_cut {
            line.push('…');
        }
        self.partial_cut = false;
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines {
            self.lines.pop_front();
        }
    }

    /// The last lines, the unfinished one included.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(self.partial.clone());
            if out.len() > self.max_lines {
                out.remove(0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_protocol::EventKind;
    use skynet_protocol::event::StepResult;

    fn ev(kind: EventKind) -> Event {
        Event {
            job_id: JobId::parse("j1").unwrap(),
            kind,
            at: "2026-11-25T20:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_run_folds_into_one_picture() {
        let req = skynet_protocol::JobRequest::from_slice(
            br#"{"steps":[{"action":"shell","cmd":"echo hi"}],"requested_by":"telegram:42","origin":"telegram:42"}"#,
        )
        .unwrap();
        let w = WorkerId::parse("w1").unwrap();
        let events = [
            ev(EventKind::Received { request: req }),
            ev(EventKind::Planned {
                steps: vec![],
                summary: "Run one step: echo hi.".into(),
                planner: "passthrough".into(),
                plan_hash: "ab".repeat(32),
                model: None,
                usage: None,
                lock: None,
            }),
            ev(EventKind::AwaitingApproval {
                risk: Risk::Medium,
                reasons: vec!["writes".into()],
                plan_hash: "ab".repeat(32),
                expires_at: "x".into(),
            }),
            ev(EventKind::Approved {
                by: "telegram:42".into(),
                reasons: vec![],
                seal: None,
            }),
            ev(EventKind::Dispatched {
                worker: w.clone(),
                attempt: 1,
            }),
            ev(EventKind::Running {
                worker: w.clone(),
                attempt: 1,
                sandbox: None,
            }),
            ev(EventKind::Succeeded(Finished {
                steps: vec![StepResult {
                    index: 0,
                    exit_code: Some(0),
                    duration_ms: 5,
                    signal: None,
                }],
                error: None,
                worker: Some(w.clone()),
                attempt: Some(1),
            })),
        ];
        let s = JobStatus::from_events(
            JobId::parse("j1").unwrap(),
            events.iter().enumerate().map(|(i, e)| (i as u64 + 1, e)),
        );
        assert_eq!(s.state, Some(JobState::Succeeded));
        assert_eq!(s.requester_user(), Some(42));
        assert!(matches!(s.verdict, Some(Verdict::NeedsApproval { .. })));
        assert_eq!(
            s.decision.as_ref().map(|d| d.by.as_str()),
            Some("telegram:42")
        );
        assert_eq!(s.worker, Some(w));
        assert!(s.running_since_ms.is_some());
        assert_eq!(s.end.as_ref().unwrap().state, JobState::Succeeded);
        assert_eq!(s.seq, 7);

        // Replays and late events change nothing.
        let mut again = s.clone();
        again.apply(3, &events[2]);
        again.apply(
            8,
            &ev(EventKind::Queued {
                attempt: 2,
                reason: None,
            }),
        );
        // (A refused event still takes its position: writers expect it.)
        assert_eq!(again.seq, 8);
        again.seq = s.seq;
        again.job.seq = s.job.seq;
        assert_eq!(again, s);
    }

    #[test]
    fn a_denial_by_policy_is_a_verdict_and_by_a_person_a_decision() {
        let denied = ev(EventKind::Denied {
            reason: "no".into(),
            by: "policy".into(),
            steps: vec![],
        });
        let received = ev(EventKind::Received {
            request: skynet_protocol::JobRequest {
                goal: Some("g".into()),
                ..Default::default()
            },
        });
        let planned = ev(EventKind::Planned {
            steps: vec![],
            summary: "s".into(),
            planner: "rules".into(),
            plan_hash: "ab".repeat(32),
            model: None,
            usage: None,
            lock: None,
        });
        let s = JobStatus::from_events(
            JobId::parse("j").unwrap(),
            [(1, &received), (2, &planned), (3, &denied)],
        );
        assert!(matches!(s.verdict, Some(Verdict::Denied { .. })));
        assert!(s.decision.is_none());
        assert!(s.is_terminal());
    }

    #[test]
    fn the_tail_keeps_the_last_lines_without_terminal_noise() {
        let mut t = Tail::new(3);
        t.push(1, b"one\ntwo\nthr");
        t.push(2, b"ee\nfour\n");
        assert_eq!(t.lines(), vec!["two", "three", "four"]);
        t.push(3, b"\x1b[31mred\x1b[0m\n");
        t.push(4, b"10%\r50%\r100%\n");
        t.push(5, b"dos\r\nline\n");
        assert_eq!(t.lines(), vec!["100%", "dos", "line"]);
        // A chunk seen before (a redelivery) is not taken twice.
        t.push(5, b"dos\r\nline\n");
        assert_eq!(t.lines(), vec!["100%", "dos", "line"]);
        t.push(6, b"\x1b]0;title\x07partial");
        assert_eq!(t.lines(), vec!["dos", "line", "partial"]);
        let mut long = Tail::new(2);
        long.push(1, "x".repeat(10_000).as_bytes());
        long.push(2, b"\n\xff\xfe\x00bell\x07\n");
        let lines = long.lines();
        assert_eq!(lines[0].chars().count(), MAX_LINE + 1);
        assert!(lines[0].ends_with('…'));
        assert_eq!(lines[1], "\u{fffd}\u{fffd}bell");
    }
}
