//! How the CLI shows jobs, plans, events and workers to people.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use skynet_protocol::alert::Alert;
use skynet_protocol::api::{JobSummary, JobView, WorkerStatus, WorkerSummary};
use skynet_protocol::spec::short_hash;
use skynet_protocol::{Event, EventKind, JobState};

/// Whether to colour what goes to stderr: a terminal, and no `NO_COLOR` (no-color.org).
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// One line for an alert about the job being watched.
pub fn alert_line(a: &Alert) -> String {
    if a.kind.is_problem() {
        format!("▸ alert ({}): {}", a.kind, a.detail)
    } else {
        format!("▸ {} ({})", a.detail, a.kind)
    }
}

/// A state as a word: `force_cancelled` reads "force cancelled".
pub fn state_word(s: JobState) -> String {
    s.as_str().replace('_', " ")
}

fn ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// "3m ago" for a wire timestamp.
pub fn ago(at: &str) -> String {
    let Some(t) = skynet_protocol::time::parse(at) else {
        return at.to_owned();
    };
    let secs = (skynet_protocol::time::now_ms() - skynet_protocol::time::unix_ms(t)).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn clip(s: &str, n: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!(
            "{}…",
            one_line
                .chars()
                .take(n.saturating_sub(1))
                .collect::<String>()
        )
    }
}

/// One line per state change, as `submit --wait` shows them.
pub fn event_line(e: &Event) -> String {
    let body = match &e.kind {
        EventKind::Received { .. } => "received".to_owned(),
        EventKind::Planned {
            summary,
            planner,
            plan_hash,
            ..
        } => {
            format!(
                "planned by {planner} (plan {}): {summary}",
                short_hash(plan_hash)
            )
        }
        EventKind::AwaitingApproval { risk, reasons, .. } => {
            let mut s = format!("awaiting approval (risk {risk:?})").to_lowercase();
            for r in reasons {
                let _ = write!(s, "\n    - {r}");
            }
            let _ = write!(s, "\n    approve with: skynet approve {}", e.job_id.short());
            s
        }
        EventKind::Approved { by, .. } => format!("approved by {by}"),
        EventKind::Queued { reason, .. } => match reason {
            Some(r) => format!("queued: {r}"),
            None => "queued".into(),
        },
        EventKind::Dispatched { worker, attempt } => {
            format!("dispatched to {worker} (attempt {attempt})")
        }
        EventKind::Running { worker, .. } => format!("running on {worker}"),
        EventKind::CancelRequested { by, .. } => format!("cancel requested by {by}"),
        EventKind::Denied { reason, by, .. } => format!("denied by {by}: {reason}"),
        EventKind::Rejected { reason, .. } => format!("rejected: {reason}"),
        other => {
            let f = other.as_finished().cloned().unwrap_or_default();
            let total: u64 = f.steps.iter().map(|s| s.duration_ms).sum();
            let codes: Vec<String> = f
                .steps
                .iter()
                .map(|s| match (s.exit_code, s.signal) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "stopped".into(),
                })
                .collect();
            let mut s = format!("{} after {}", state_word(other.state()), ms(total));
            match codes.len() {
                0 => {}
                1 => {
                    let _ = write!(s, " (exit {})", codes[0]);
                }
                _ => {
                    let _ = write!(s, " (exit codes {})", codes.join(", "));
                }
            }
            if let Some(err) = f.error {
                let _ = write!(s, ": {err}");
            }
            s
        }
    };
    format!("▸ {body}")
}

/// Prints a chunk of output where it belongs: stdout, stderr, or (dimmed) system notes.
pub fn print_chunk(stream: &str, data: &[u8]) {
    match stream {
        "stderr" => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(data);
            let _ = e.flush();
        }
        "system" => {
            let mut e = std::io::stderr().lock();
            let tty = color_stderr();
            if tty {
                let _ = e.write_all(b"\x1b[2m");
            }
            let _ = e.write_all(data);
            if tty {
                let _ = e.write_all(b"\x1b[0m");
            }
            let _ = e.flush();
        }
        _ => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(data);
            let _ = o.flush();
        }
    }
}

/// The plan of a job, as shown before a decision.
pub fn plan(job: &JobView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "job {}  {}", job.job_id, state_word(job.state));
    if let Some(summary) = &job.summary {
        let _ = writeln!(s, "plan: {summary}");
    }
    for (i, step) in job.steps.iter().enumerate() {
        let _ = writeln!(s, "  {}. {}", i + 1, step.describe());
    }
    if let Some(h) = &job.plan_hash {
        let _ = writeln!(s, "plan hash: {}", short_hash(h));
    }
    s
}

/// The whole job.
pub fn job(job: &JobView) -> String {
    let mut s = plan(job);
    if let Some(goal) = job.request.as_ref().and_then(|r| r.goal.as_ref()) {
        let _ = writeln!(s, "goal: {goal}");
    }
    if let Some(w) = &job.worker {
        let _ = writeln!(s, "worker: {w} (attempt {})", job.attempt);
    }
    let _ = writeln!(
        s,
        "created {}, updated {}",
        ago(&job.created_at),
        ago(&job.updated_at)
    );
    let _ = writeln!(s, "history:");
    for e in &job.history {
        let line = event_line(e);
        let _ = writeln!(
            s,
            "  {}  {}",
            e.at,
            line.trim_start_matches("▸ ").replace('\n', "\n  ")
        );
    }
    if let Some(r) = &job.result {
        let _ = write!(s, "result: {}", state_word(r.state));
        if let Some(code) = r.exit_code {
            let _ = write!(s, ", exit code {code}");
        }
        if let Some(e) = r.error.as_ref().or(r.reason.as_ref()) {
            let _ = write!(s, ": {e}");
        }
        s.push('\n');
    }
    s
}

/// A table of jobs.
pub fn jobs(jobs: &[JobSummary]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".into();
    }
    let mut s = format!(
        "{:<10} {:<17} {:<10} {:<14} {}\n",
        "ID", "STATE", "UPDATED", "WORKER", "GOAL / PLAN"
    );
    for j in jobs {
        let _ = writeln!(
            s,
            "{:<10} {:<17} {:<10} {:<14} {}",
            j.job_id.short(),
            j.state.as_str(),
            ago(&j.updated_at),
            j.worker
                .as_ref()
                .map(|w| clip(w.as_str(), 14))
                .unwrap_or_else(|| "-".into()),
            clip(
                j.goal.as_deref().or(j.summary.as_deref()).unwrap_or("-"),
                60
            )
        );
    }
    s
}

/// A table of workers.
pub fn workers(workers: &[WorkerSummary]) -> String {
    if workers.is_empty() {
        return "no workers have registered\n".into();
    }
    let mut s = format!(
        "{:<20} {:<8} {:<9} {:<10} {:<16} {}\n",
        "WORKER", "STATUS", "RUNNING", "SEEN", "LABELS", "SANDBOX"
    );
    for w in workers {
        let _ = writeln!(
            s,
            "{:<20} {:<8} {:<9} {:<10} {:<16} {}",
            clip(w.id.as_str(), 20),
            match w.status {
                WorkerStatus::Online => "online",
                WorkerStatus::Offline => "offline",
            },
            format!("{}/{}", w.running.len(), w.max_jobs),
            ago(&w.last_seen),
            if w.labels.is_empty() {
                "-".into()
            } else {
                w.labels.join(",")
            },
            // Said loudly: a worker whose steps run unconfined.
            w.sandbox.as_deref().unwrap_or("unknown")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_words_read_well() {
        assert_eq!(ms(12), "12 ms");
        assert_eq!(ms(1500), "1.5 s");
        assert_eq!(ms(125_000), "2m05s");
        assert_eq!(state_word(JobState::ForceCancelled), "force cancelled");
        assert_eq!(clip("a\nb   c", 10), "a b c");
        assert_eq!(clip("abcdefghij", 5), "abcd…");
    }
}
