//! Where a job that has not ended stands — its routing wishes, attempt, worker and clock —
//! as the services that route and watch jobs (dispatcher, sentinel) rebuild it from events.

use skynet_protocol::{Event, EventKind, JobState, WorkerId};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Stream sequence of the latest event applied.
    pub seq: u64,
    pub state: Option<JobState>,
    pub want_worker: Option<WorkerId>,
    pub labels: Vec<String>,
    pub retries: u32,
    pub timeout_s: u64,
    pub attempt: u32,
    pub worker: Option<WorkerId>,
    /// When the current attempt was dispatched (ms, event time): its time limit counts
    /// from here.
    pub clock_ms: Option<i64>,
}

impl Placement {
    /// Applies an event at stream sequence `seq`; false (and nothing changes) when it is not
    /// newer than the latest applied.
    pub fn apply(&mut self, seq: u64, event: &Event) -> bool {
        if seq <= self.seq {
            return false;
        }
        self.seq = seq;
        self.state = Some(event.state());
        let at_ms = skynet_protocol::time::parse(&event.at).map(skynet_protocol::time::unix_ms);
        match &event.kind {
            EventKind::Received { request } => {
                self.timeout_s = request.timeout();
                self.want_worker = request.worker.clone();
                self.labels = request.labels.clone();
                self.retries = request.retries;
            }
            EventKind::Queued { attempt, .. } => {
                self.attempt = *attempt;
                self.worker = None;
                self.clock_ms = None;
            }
            EventKind::Dispatched { worker, attempt } => {
                self.worker = Some(worker.clone());
                self.attempt = *attempt;
                self.clock_ms = at_ms;
            }
            EventKind::Running { worker, attempt } => {
                self.worker = Some(worker.clone());
                self.attempt = *attempt;
                if self.clock_ms.is_none() {
                    self.clock_ms = at_ms;
                }
            }
            _ => {}
        }
        if self.timeout_s == 0 {
            self.timeout_s = skynet_protocol::job::DEFAULT_TIMEOUT_S;
        }
        true
    }

    /// Whether a worker may hold the job now.
    pub fn on_worker(&self) -> bool {
        self.state.is_some_and(JobState::on_worker)
    }

    /// The moment (ms) past which the current attempt is over its time limit.
    pub fn deadline_ms(&self) -> Option<i64> {
        Some(self.clock_ms? + self.timeout_s as i64 * 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_protocol::{JobId, JobRequest};

    #[test]
    fn placement_follows_attempts_and_ignores_old_events() {
        let job = JobId::parse("j").unwrap();
        let w = WorkerId::parse("w").unwrap();
        let mut p = Placement::default();
        let req = JobRequest::from_slice(br#"{"steps":[{"action":"shell","cmd":"true"}],"labels":["gpu"],"retries":2,"timeout_s":9}"#).unwrap();
        assert!(p.apply(
            1,
            &Event::now(job.clone(), EventKind::Received { request: req })
        ));
        assert!(p.apply(
            5,
            &Event::now(
                job.clone(),
                EventKind::Dispatched {
                    worker: w.clone(),
                    attempt: 1
                }
            )
        ));
        assert_eq!(
            (p.worker.as_ref(), p.attempt, p.labels.as_slice(), p.retries),
            (Some(&w), 1, &["gpu".to_string()][..], 2)
        );
        assert!(p.on_worker());
        assert_eq!(p.deadline_ms(), p.clock_ms.map(|c| c + 9000));
        assert!(!p.apply(
            3,
            &Event::now(
                job.clone(),
                EventKind::Queued {
                    attempt: 9,
                    reason: None
                }
            )
        ));
        assert!(p.apply(
            6,
            &Event::now(
                job,
                EventKind::Queued {
                    attempt: 2,
                    reason: None
                }
            )
        ));
        assert_eq!((p.worker.as_ref(), p.attempt, p.clock_ms), (None, 2, None));
    }
}
