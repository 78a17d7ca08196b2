//! The histories the archiver has seen whole: every event of a job from its first one, as
//! its consumer delivered them, so a job that ends is archived without reading its history
//! back from the stream (a read by subject that the server answers by scanning every
//! message stored since the job began).
//!
//! A job is kept only when its opening event (`received`, or `rejected` for a request
//! refused at intake) came to this process: the consumer delivers in stream order, so every
//! later event of that job comes here too. Jobs that began before this process (a restart)
//! are read back as before. At most [`MAX_JOBS`] are kept; beyond that a job is read back.

use std::collections::HashMap;

use skynet_protocol::{Event, EventKind, JobId};

/// At most this many open jobs' histories are kept (a few KiB each).
pub const MAX_JOBS: usize = 4096;

/// Histories seen whole, by job.
#[derive(Debug, Default)]
pub struct Seen {
    jobs: HashMap<JobId, Vec<(u64, Event)>>,
    max: usize,
}

impl Seen {
    pub fn new(max: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            max,
        }
    }

    /// Takes in one delivered event at stream sequence `seq`. A redelivered event (at or
    /// below the last one kept for its job) is not kept twice.
    pub fn note(&mut self, seq: u64, event: &Event) {
        let opens = matches!(
            event.kind,
            EventKind::Received { .. } | EventKind::Rejected { .. }
        );
        if let Some(history) = self.jobs.get_mut(&event.job_id) {
            if opens && history.first().is_none_or(|(first, _)| seq < *first) {
                // Opened again (a stream that was recreated): start afresh.
                *history = vec![(seq, event.clone())];
            } else if history.last().is_none_or(|(last, _)| seq > *last) {
                history.push((seq, event.clone()));
            }
        } else if opens && self.jobs.len() < self.max {
            self.jobs
                .insert(event.job_id.clone(), vec![(seq, event.clone())]);
        }
    }

    /// The whole history of `job` up to and including `seq` (its end), if it was seen.
    pub fn history(&self, job: &JobId, seq: u64) -> Option<Vec<Event>> {
        let history = self.jobs.get(job)?;
        history.iter().any(|(s, _)| *s == seq).then(|| {
            history
                .iter()
                .filter(|(s, _)| *s <= seq)
                .map(|(_, e)| e.clone())
                .collect()
        })
    }

    /// Forgets `job` (it is archived).
    pub fn forget(&mut self, job: &JobId) {
        self.jobs.remove(job);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_protocol::JobRequest;
    use skynet_protocol::event::Finished;

    fn id(s: &str) -> JobId {
        JobId::parse(s).unwrap()
    }

    fn received(job: &str) -> Event {
        Event::now(
            id(job),
            EventKind::Received {
                request: JobRequest::from_slice(br#"{"goal":"g"}"#).unwrap(),
            },
        )
    }

    fn approved(job: &str) -> Event {
        Event::now(
            id(job),
            EventKind::Approved {
                by: "policy".into(),
                reasons: vec![],
                seal: None,
            },
        )
    }

    fn succeeded(job: &str) -> Event {
        Event::now(id(job), EventKind::Succeeded(Finished::default()))
    }

    #[test]
    fn a_job_seen_from_its_first_event_has_its_whole_history_at_its_end() {
        let mut seen = Seen::new(8);
        seen.note(1, &received("a"));
        seen.note(2, &received("b"));
        seen.note(3, &approved("a"));
        seen.note(4, &succeeded("a"));
        let h = seen.history(&id("a"), 4).unwrap();
        assert_eq!(
            h.iter().map(|e| e.state().as_str()).collect::<Vec<_>>(),
            ["received", "approved", "succeeded"]
        );
        seen.forget(&id("a"));
        assert_eq!(seen.len(), 1);
        assert!(seen.history(&id("a"), 4).is_none());
    }

    #[test]
    fn a_job_that_began_before_this_process_is_not_taken_as_whole() {
        let mut seen = Seen::new(8);
        seen.note(7, &approved("a"));
        seen.note(8, &succeeded("a"));
        assert!(seen.history(&id("a"), 8).is_none());
        assert_eq!(seen.len(), 0);
    }

    #[test]
    fn a_redelivered_event_is_kept_once_and_an_unseen_end_is_no_history() {
        let mut seen = Seen::new(8);
        seen.note(1, &received("a"));
        seen.note(2, &approved("a"));
        seen.note(2, &approved("a"));
        // The end was not delivered here (yet): nothing to archive from.
        assert!(seen.history(&id("a"), 3).is_none());
        seen.note(3, &succeeded("a"));
        seen.note(3, &succeeded("a"));
        assert_eq!(seen.history(&id("a"), 3).unwrap().len(), 3);
    }

    #[test]
    fn beyond_the_limit_a_job_is_left_to_be_read_back() {
        let mut seen = Seen::new(2);
        seen.note(1, &received("a"));
        seen.note(2, &received("b"));
        seen.note(3, &received("c"));
        seen.note(4, &succeeded("c"));
        assert!(seen.history(&id("c"), 4).is_none());
        assert!(seen.history(&id("a"), 1).is_some());
    }
}
