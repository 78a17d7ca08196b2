//! How the bot shows jobs, plans, output, workers and alerts: HTML for Telegram, with every
//! piece of outside text escaped and every message kept within Telegram's limits.

use skynet_protocol::alert::Alert;
use skynet_protocol::api::{JobSummary, WorkerStatus, WorkerSummary};
use skynet_protocol::event::{Finished, Risk};
use skynet_protocol::job::shell_quote_argv;
use skynet_protocol::spec::short_hash;
use skynet_protocol::{JobId, JobState, Step};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::html::{Doc, MAX_MESSAGE, clip, esc};
use crate::job::{JobStatus, Verdict};

/// Callback data of the approve button: `approve:<job_id>`.
pub const APPROVE: &str = "approve";
/// Callback data of the deny button: `deny:<job_id>`.
pub const DENY: &str = "deny";

/// A state as words: `force_cancelled` reads "force cancelled".
pub fn state_word(s: JobState) -> String {
    s.as_str().replace('_', " ")
}

pub fn state_icon(s: JobState) -> &'static str {
    match s {
        JobState::Received => "📥",
        JobState::Planned => "🗺",
        JobState::AwaitingApproval => "🔐",
        JobState::Approved => "👍",
        JobState::Queued => "⏳",
        JobState::Dispatched => "🚚",
        JobState::Running => "▶️",
        JobState::CancelRequested => "⏹",
        JobState::Succeeded => "✅",
        JobState::Failed => "❌",
        JobState::TimedOut => "⏱",
        JobState::Denied => "🚫",
        JobState::Cancelled => "⏹",
        JobState::ForceCancelled => "⚠️",
        JobState::Rejected => "🚫",
    }
}

/// A duration for people: `850 ms`, `1.5 s`, `2m05s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// "3m ago" for a wire timestamp.
pub fn ago(at: &str, now_ms: i64) -> String {
    let Some(t) = skynet_protocol::time::parse(at) else {
        return esc(at);
    };
    let secs = (now_ms - skynet_protocol::time::unix_ms(t)).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// `exit 0`, `exit codes 0, 2`, `signal 9`; `None` when no step reported.
pub fn exit_codes(f: &Finished) -> Option<String> {
    let codes: Vec<String> = f
        .steps
        .iter()
        .map(|s| match (s.exit_code, s.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "stopped".into(),
        })
        .collect();
    match codes.len() {
        0 => None,
        1 => Some(format!("exit {}", codes[0])),
        _ => Some(format!("exit codes {}", codes.join(", "))),
    }
}

/// One step exactly as it will run: the whole command with its directory and environment,
/// the whole Python code, the whole content of a file write.
pub fn exact_step(step: &Step) -> String {
    let quote = |s: &str| shell_quote_argv(&[s.to_owned()]);
    let in_dir = |cwd: &Option<String>, what: String| match cwd {
        // As written: the worker resolves `~` and relative paths itself.
        Some(dir) => format!("cd {dir} && {what}"),
        None => what,
    };
    let mut text = match step {
        Step::Shell {
            cmd,
            argv,
            cwd,
            env,
            ..
        } => {
            let mut line: String = env
                .iter()
                .map(|(k, v)| format!("{k}={} ", quote(v)))
                .collect();
            match (cmd, argv) {
                (Some(cmd), _) => line.push_str(cmd),
                (None, Some(argv)) => line.push_str(&shell_quote_argv(argv)),
                (None, None) => line.push_str("(nothing)"),
            }
            in_dir(cwd, line)
        }
        Step::Python { code, cwd, .. } => {
            in_dir(cwd, format!("python3 - <<'PY'\n{}\nPY", code.trim_end()))
        }
        Step::FileRead { path, .. } => format!("read {path}"),
        Step::FileWrite {
            path,
            content,
            append,
            ..
        } => format!(
            "{} {path} ({} bytes):\n{content}",
            if *append { "append to" } else { "write" },
            content.len()
        ),
        other => other.describe(),
    };
    if !step.artifacts().is_empty() {
        text.push_str(&format!("\n(keeps {})", step.artifacts().join(", ")));
    }
    text
}

/// The exact steps of a plan (numbered when there are several). `per_step` clips each
/// step, for messages that must fit in one piece.
pub fn plan_commands(steps: &[Step], per_step: Option<usize>) -> String {
    let many = steps.len() > 1;
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let text = exact_step(step);
            let text = match per_step {
                Some(n) => clip(&text, n),
                None => text,
            };
            if many {
                format!("{}) {text}", i + 1)
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn job_head(id: &JobId) -> String {
    format!("<b>Job</b> <code>{}</code>", esc(id.short()))
}

/// How long the job has run (or ran), if it started.
fn elapsed(s: &JobStatus, now_ms: i64) -> Option<u64> {
    let start = s.running_since_ms?;
    let end = s.end.as_ref().and_then(|e| e.at_ms).unwrap_or(now_ms);
    Some((end - start).max(0) as u64)
}

/// How long a finished job's steps took together.
fn took(s: &JobStatus) -> Option<u64> {
    let f = s.end.as_ref()?.finished.as_ref()?;
    if f.steps.is_empty() {
        return None;
    }
    Some(f.steps.iter().map(|st| st.duration_ms).sum())
}

/// The plan part shared by status and approval messages: summary, exact commands, hash.
fn plan_part(doc: &mut Doc, s: &JobStatus, per_step: Option<usize>) {
    if let Some(goal) = &s.goal {
        doc.line(format!("Goal: <i>{}</i>", esc(&clip(goal.trim(), 600))));
    }
    if let Some(summary) = &s.summary {
        doc.line(format!("Plan: {}", esc(&clip(summary, 600))));
    }
    if !s.steps.is_empty() {
        let commands = plan_commands(&s.steps, per_step);
        let shortened = per_step.is_some() && commands != plan_commands(&s.steps, None);
        doc.pre(commands);
        if shortened {
            doc.line(format!(
                "<i>(commands shortened here; /status {} shows them whole)</i>",
                esc(s.id.short())
            ));
        }
    }
    if let Some(h) = &s.plan_hash {
        doc.line(format!("Plan hash: <code>{}</code>", esc(short_hash(h))));
    }
}

fn risk_word(r: Risk) -> &'static str {
    match r {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "high",
    }
}

fn reasons_text(reasons: &[String]) -> String {
    esc(&clip(&reasons.join("; "), 800))
}

/// Policy's verdict and the decision that followed.
fn decision_part(doc: &mut Doc, s: &JobStatus) {
    match &s.verdict {
        Some(Verdict::Allowed { reasons }) if reasons.is_empty() => {
            doc.line("Policy: allowed");
        }
        Some(Verdict::Allowed { reasons }) => {
            doc.line(format!("Policy: allowed ({})", reasons_text(reasons)));
        }
        Some(Verdict::NeedsApproval { risk, reasons, .. }) => {
            doc.line(format!(
                "Policy: <b>needs approval</b> (risk {}): {}",
                risk_word(*risk),
                reasons_text(reasons)
            ));
        }
        Some(Verdict::Denied { reason }) => {
            doc.line(format!(
                "Policy: <b>denied</b>: {}",
                esc(&clip(reason, 800))
            ));
        }
        None => {}
    }
    if let Some(d) = &s.decision {
        if d.approved {
            doc.line(format!("✅ Approved by {}", esc(&clip(&d.by, 100))));
        } else {
            let reason = d
                .reason
                .as_deref()
                .map(|r| format!(": {}", esc(&clip(r, 400))))
                .unwrap_or_default();
            doc.line(format!("🚫 Denied by {}{reason}", esc(&clip(&d.by, 100))));
        }
    }
}

/// How a run went: exit codes, time taken, error (`None` before the end, or for jobs
/// that never ran).
fn outcome(s: &JobStatus) -> Option<String> {
    let end = s.end.as_ref()?;
    let f = end.finished.as_ref()?;
    let mut parts = Vec::new();
    if let Some(codes) = exit_codes(f) {
        parts.push(codes);
    }
    if let Some(ms) = took(s) {
        parts.push(format!("took {}", duration(ms)));
    }
    let mut line = parts.join(" · ");
    if let Some(err) = &f.error {
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&esc(&clip(err, 400)));
    }
    (!line.is_empty()).then_some(line)
}

/// The line that says how the job ended, where the decision lines do not already.
fn end_line(s: &JobStatus) -> Option<String> {
    let end = s.end.as_ref()?;
    match end.state {
        JobState::Rejected => Some(format!(
            "🚫 Rejected: {}",
            esc(&clip(end.reason.as_deref().unwrap_or("-"), 800))
        )),
        // The verdict or the decision says why.
        JobState::Denied => None,
        _ => outcome(s).map(|o| format!("Result: {o}")),
    }
}

/// The status message of a job: state, worker, elapsed time, plan, decision and the last
/// lines of output. `per_step` clips commands, `tail` is the output shown.
fn status_doc(s: &JobStatus, tail: &[String], now_ms: i64, per_step: Option<usize>) -> Doc {
    let mut doc = Doc::new();
    let state = s.state.unwrap_or(JobState::Received);
    let mut head = format!(
        "{} {} — {}",
        state_icon(state),
        job_head(&s.id),
        state_word(state)
    );
    if let Some(w) = &s.worker {
        head.push_str(&format!(" on <code>{}</code>", esc(w.as_str())));
    }
    if let Some(ms) = elapsed(s, now_ms) {
        head.push_str(&format!(" · {}", duration(ms)));
    }
    doc.line(head);
    plan_part(&mut doc, s, per_step);
    decision_part(&mut doc, s);
    if let Some(r) = &s.queued_reason
        && state == JobState::Queued
    {
        doc.line(format!("⏳ Waiting: {}", esc(&clip(r, 300))));
    }
    if let Some(by) = &s.cancel_requested_by {
        doc.line(format!("⏹ Cancel requested by {}", esc(&clip(by, 100))));
    }
    if let Some(line) = end_line(s) {
        doc.line(line);
    }
    if !tail.is_empty() {
        doc.line(format!("Output (last {} lines):", tail.len()));
        doc.pre(tail.join("\n"));
    }
    doc
}

/// How far commands are cut, in turn, when a message would not fit otherwise.
const CLIPS: [Option<usize>; 4] = [None, Some(1000), Some(300), Some(60)];

/// The status message as one message. The exact commands come first: the output tail
/// gives way, and only then are long commands shortened (saying so).
pub fn status_message(s: &JobStatus, tail: &[String], now_ms: i64) -> String {
    for per_step in CLIPS {
        let mut shown = tail;
        loop {
            let doc = status_doc(s, shown, now_ms, per_step);
            if doc.len() <= MAX_MESSAGE {
                return doc.render();
            }
            if shown.is_empty() {
                break;
            }
            shown = &shown[1..];
        }
    }
    status_doc(s, &[], now_ms, Some(60)).fit(MAX_MESSAGE)
}

/// A whole job for `/status`: everything, split over as many messages as it takes.
pub fn status_full(s: &JobStatus, now_ms: i64, created_at: &str, updated_at: &str) -> Doc {
    let mut doc = status_doc(s, &[], now_ms, None);
    if let Some(by) = &s.requested_by {
        doc.line(format!("Requested by {}", esc(&clip(by, 100))));
    }
    doc.line(format!(
        "Created {}, updated {}",
        ago(created_at, now_ms),
        ago(updated_at, now_ms)
    ));
    if s.reached_worker() {
        doc.line(format!("Output: /logs {}", esc(s.id.short())));
    }
    doc
}

/// The buttons of a job awaiting approval.
pub fn approval_buttons(job: &JobId) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback("✅ Approve", format!("{APPROVE}:{job}")),
        InlineKeyboardButton::callback("❌ Deny", format!("{DENY}:{job}")),
    ]])
}

/// The buttons a status message carries in its state (only while awaiting approval).
pub fn status_buttons(s: &JobStatus) -> Option<InlineKeyboardMarkup> {
    (s.state == Some(JobState::AwaitingApproval)).then(|| approval_buttons(&s.id))
}

/// A request for approval, sent to approvers who are not in the job's chat.
pub fn approval_request(s: &JobStatus) -> String {
    let by = s
        .requested_by
        .as_deref()
        .map(|b| format!(" from {}", esc(&clip(b, 100))))
        .unwrap_or_default();
    let build = |per_step| {
        let mut doc = Doc::new();
        doc.line(format!("🔐 {} needs your approval{by}", job_head(&s.id)));
        plan_part(&mut doc, s, per_step);
        decision_part(&mut doc, s);
        doc
    };
    for per_step in CLIPS {
        let doc = build(per_step);
        if doc.len() <= MAX_MESSAGE {
            return doc.render();
        }
    }
    build(Some(60)).fit(MAX_MESSAGE)
}

/// What an approval request says once the job is no longer waiting.
pub fn approval_closed(s: &JobStatus) -> String {
    let mut doc = Doc::new();
    let state = s.state.unwrap_or(JobState::Received);
    doc.line(format!("{} — {}", job_head(&s.id), state_word(state)));
    plan_part(&mut doc, s, Some(120));
    decision_part(&mut doc, s);
    if s.decision.is_none()
        && let Some(line) = end_line(s)
    {
        doc.line(line);
    }
    doc.fit(MAX_MESSAGE)
}

/// The message that closes a job's conversation: final state, exit codes, duration and
/// the last lines of output.
pub fn final_message(s: &JobStatus, tail: &[String]) -> String {
    let build = |tail: &[String]| {
        let mut doc = Doc::new();
        let state = s.state.unwrap_or(JobState::Received);
        let mut head = format!(
            "{} {} {}",
            state_icon(state),
            job_head(&s.id),
            state_word(state)
        );
        if let Some(w) = &s.worker {
            head.push_str(&format!(" on <code>{}</code>", esc(w.as_str())));
        }
        if let Some(o) = outcome(s) {
            head.push_str(&format!(" · {o}"));
        }
        doc.line(head);
        if let Some(summary) = &s.summary {
            doc.line(esc(&clip(summary, 300)));
        }
        match state {
            JobState::Denied => decision_part(&mut doc, s),
            JobState::Rejected => {
                if let Some(line) = end_line(s) {
                    doc.line(line);
                }
            }
            _ => {}
        }
        if let Some(by) = &s.cancel_requested_by {
            doc.line(format!("⏹ Cancel requested by {}", esc(&clip(by, 100))));
        }
        if !tail.is_empty() {
            doc.line(format!("Last {} lines:", tail.len()));
            doc.pre(tail.join("\n"));
        }
        doc
    };
    let mut shown = tail;
    loop {
        let doc = build(shown);
        if doc.len() <= MAX_MESSAGE || shown.is_empty() {
            return doc.fit(MAX_MESSAGE);
        }
        shown = &shown[1..];
    }
}

/// `/jobs`.
pub fn jobs_list(jobs: &[JobSummary], now_ms: i64) -> Doc {
    let mut doc = Doc::new();
    if jobs.is_empty() {
        doc.line("No jobs yet.");
        return doc;
    }
    doc.line("<b>Latest jobs</b>");
    for j in jobs {
        let what = j.goal.as_deref().or(j.summary.as_deref()).unwrap_or("-");
        let worker = j
            .worker
            .as_ref()
            .map(|w| format!(" on {}", esc(w.as_str())))
            .unwrap_or_default();
        doc.line(format!(
            "{} <code>{}</code> {}{worker} · {} · {}",
            state_icon(j.state),
            esc(j.job_id.short()),
            state_word(j.state),
            ago(&j.updated_at, now_ms),
            esc(&clip(&one_line(what), 80))
        ));
    }
    doc
}

/// `/workers`.
pub fn workers_list(workers: &[WorkerSummary], now_ms: i64) -> Doc {
    let mut doc = Doc::new();
    if workers.is_empty() {
        doc.line("No workers have registered.");
        return doc;
    }
    doc.line("<b>Workers</b>");
    for w in workers {
        let (icon, status) = match w.status {
            WorkerStatus::Online => ("🟢", "online"),
            WorkerStatus::Offline => ("⚪", "offline"),
        };
        let labels = if w.labels.is_empty() {
            String::new()
        } else {
            format!(" · labels {}", esc(&clip(&w.labels.join(","), 200)))
        };
        let running: Vec<&str> = w.running.iter().map(|j| j.short()).collect();
        let running = if running.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&running.join(", ")))
        };
        doc.line(format!(
            "{icon} <b>{}</b> {status} · running {}/{}{running} · seen {}{labels}",
            esc(w.id.as_str()),
            w.running.len(),
            w.max_jobs,
            ago(&w.last_seen, now_ms),
        ));
    }
    doc
}

/// An alert for approvers.
pub fn alert(a: &Alert) -> String {
    let icon = if a.kind.is_problem() { "⚠️" } else { "✅" };
    let mut doc = Doc::new();
    let mut head = format!("{icon} <b>{}</b>", esc(&a.kind.as_str().replace('_', " ")));
    if let Some(w) = &a.worker {
        head.push_str(&format!(" · worker <code>{}</code>", esc(w.as_str())));
    }
    if let Some(j) = &a.job_id {
        head.push_str(&format!(" · job <code>{}</code>", esc(j.short())));
    }
    doc.line(head);
    doc.line(esc(&clip(&a.detail, 1500)));
    doc.fit(MAX_MESSAGE)
}

pub fn help() -> Doc {
    let mut doc = Doc::new();
    doc.line("<b>SKYNET</b> runs work on your own machines.")
        .line("/run <i>what to do</i> — plan it and run it. Plain text works too; text in `backticks` runs exactly that command.")
        .line("/status <i>id</i> — a job's state, plan and result")
        .line("/jobs — the latest jobs")
        .line("/logs <i>id</i> — a job's whole output")
        .line("/cancel <i>id</i> — stop a job")
        .line("/approve <i>id</i> · /deny <i>id</i> [reason] — decide a job that waits for approval")
        .line("/workers — the machines and what they run")
        .line("/every <i>1h what to do</i> — run it on a schedule (also <code>@hourly</code>, <code>@daily</code>); judged once, now")
        .line("/schedules — the schedules, with buttons to pause, resume and approve")
        .line("An id may be shortened to its first 6 or more characters.");
    doc
}

/// The answer to anyone who is not allowed.
pub fn refusal(user_id: u64) -> String {
    format!(
        "⛔ Sorry, you are not allowed to use this bot. (Your Telegram user id is <code>{user_id}</code>.)"
    )
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::visible_len;
    use skynet_protocol::event::StepResult;
    use skynet_protocol::{Event, EventKind, WorkerId};

    fn job_with(cmd: &str) -> JobStatus {
        let id = JobId::parse("abcdef0123456789").unwrap();
        let step = Step::Shell {
            cmd: Some(cmd.into()),
            argv: None,
            cwd: None,
            env: Default::default(),
            timeout_s: None,
            artifacts: vec![],
        };
        let events = [
            Event {
                job_id: id.clone(),
                kind: EventKind::Received {
                    request: skynet_protocol::JobRequest {
                        goal: Some(cmd.into()),
                        ..Default::default()
                    },
                },
                at: "2026-11-25T20:00:00.000Z".into(),
            },
            Event {
                job_id: id.clone(),
                kind: EventKind::Planned {
                    steps: vec![step],
                    summary: format!("Run one step: {cmd}."),
                    planner: "passthrough".into(),
                    plan_hash: "0123456789abcdef".repeat(4),
                    model: None,
                    usage: None,
                    lock: None,
                },
                at: "2026-11-25T20:00:00.000Z".into(),
            },
            Event {
                job_id: id.clone(),
                kind: EventKind::AwaitingApproval {
                    risk: Risk::Medium,
                    reasons: vec!["it <writes> & deletes".into()],
                    plan_hash: "0123456789abcdef".repeat(4),
                    expires_at: "2026-11-25T21:00:00.000Z".into(),
                },
                at: "2026-11-25T20:00:00.000Z".into(),
            },
        ];
        JobStatus::from_events(id, events.iter().map(|e| (0, e)))
    }

    #[test]
    fn a_plan_awaiting_approval_shows_commands_hash_reasons_and_buttons() {
        let s = job_with("rm -rf build/ && echo '<done>'");
        let text = status_message(&s, &[], 0);
        assert!(
            text.contains("<pre>rm -rf build/ &amp;&amp; echo '&lt;done&gt;'</pre>"),
            "{text}"
        );
        assert!(text.contains("<code>0123456789ab</code>"), "{text}");
        assert!(text.contains("it &lt;writes&gt; &amp; deletes"), "{text}");
        assert!(text.contains("<code>abcdef01</code>"));
        let buttons = status_buttons(&s).unwrap();
        let data: Vec<String> = buttons.inline_keyboard[0]
            .iter()
            .map(|b| match &b.kind {
                teloxide::types::InlineKeyboardButtonKind::CallbackData(d) => d.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(data, ["approve:abcdef0123456789", "deny:abcdef0123456789"]);
        // Callback data must fit Telegram's 64 bytes for the longest job id.
        let longest = JobId::parse(&"x".repeat(JobId::MAX_LEN)).unwrap();
        assert!(format!("{APPROVE}:{longest}").len() <= 64);
    }

    #[test]
    fn commands_are_shown_whole_whenever_they_fit() {
        let cmd = format!("echo {}", "z".repeat(2500));
        let s = job_with(&cmd);
        let tail: Vec<String> = (0..15)
            .map(|i| format!("{i} {}", "y".repeat(200)))
            .collect();
        let text = status_message(&s, &tail, 0);
        assert!(visible_len(&text) <= MAX_MESSAGE);
        assert!(text.contains(&cmd), "the whole command");
        assert!(!text.contains("shortened"));
        assert!(approval_request(&s).contains(&cmd));
    }

    #[test]
    fn status_messages_always_fit_one_message() {
        let s = job_with(&"echo x; ".repeat(3000));
        let tail: Vec<String> = (0..15)
            .map(|i| format!("{i} {}", "y".repeat(230)))
            .collect();
        let text = status_message(&s, &tail, 0);
        assert!(visible_len(&text) <= MAX_MESSAGE);
        assert!(text.contains("shortened"), "{text}");
        assert!(text.contains("Plan hash"));
    }

    #[test]
    fn the_final_message_names_state_codes_duration_and_last_lines() {
        let mut s = job_with("make");
        let w = WorkerId::parse("w1").unwrap();
        for kind in [
            EventKind::Approved {
                by: "telegram:1".into(),
                reasons: vec![],
                seal: None,
            },
            EventKind::Dispatched {
                worker: w.clone(),
                attempt: 1,
            },
            EventKind::Running {
                worker: w.clone(),
                attempt: 1,
                sandbox: None,
            },
        ] {
            s.apply(
                0,
                &Event {
                    job_id: s.id.clone(),
                    kind,
                    at: "2026-11-25T20:00:00.500Z".into(),
                },
            );
        }
        s.apply(
            0,
            &Event {
                job_id: s.id.clone(),
                kind: EventKind::Failed(Finished {
                    steps: vec![
                        StepResult {
                            index: 0,
                            exit_code: Some(0),
                            duration_ms: 1200,
                            signal: None,
                        },
                        StepResult {
                            index: 1,
                            exit_code: Some(2),
                            duration_ms: 300,
                            signal: None,
                        },
                    ],
                    error: None,
                    worker: Some(WorkerId::parse("w1").unwrap()),
                    attempt: Some(1),
                }),
                at: "2026-11-25T20:00:02.000Z".into(),
            },
        );
        let text = final_message(&s, &["compiling".into(), "error: <oops>".into()]);
        assert!(text.contains("failed"), "{text}");
        assert!(text.contains("exit codes 0, 2"), "{text}");
        assert!(text.contains("took 1.5 s"), "{text}");
        assert!(text.contains("error: &lt;oops&gt;"), "{text}");
        assert!(text.contains("on <code>w1</code>"), "{text}");
    }

    #[test]
    fn steps_are_shown_exactly_as_they_run() {
        let steps: Vec<Step> = serde_json::from_value(serde_json::json!([
            {"action": "shell", "cmd": "make\nmake test", "cwd": "~/src/my app", "env": {"MODE": "it's"}},
            {"action": "shell", "argv": ["rm", "-f", "a b"]},
            {"action": "python", "code": "import os\nos.remove('x')\n"},
            {"action": "file_write", "path": "~/notes.txt", "content": "line 1\nline 2", "append": true},
            {"action": "file_read", "path": "~/notes.txt", "artifacts": ["out/*.log"]},
        ]))
        .unwrap();
        let text = plan_commands(&steps, None);
        assert!(
            text.contains("1) cd ~/src/my app && MODE='it'\\''s' make\nmake test"),
            "{text}"
        );
        assert!(text.contains("2) rm -f 'a b'"), "{text}");
        assert!(
            text.contains("3) python3 - <<'PY'\nimport os\nos.remove('x')\nPY"),
            "{text}"
        );
        assert!(
            text.contains("4) append to ~/notes.txt (13 bytes):\nline 1\nline 2"),
            "{text}"
        );
        assert!(
            text.contains("5) read ~/notes.txt\n(keeps out/*.log)"),
            "{text}"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(12), "12 ms");
        assert_eq!(duration(1500), "1.5 s");
        assert_eq!(duration(125_000), "2m05s");
        assert_eq!(duration(3_720_000), "1h02m");
    }
}
