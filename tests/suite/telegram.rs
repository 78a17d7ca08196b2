//! Telegram ingress (issue 4): run, watch, approve and cancel jobs from a chat.
//!
//! Contract (the Telegram section): an allowed user's `/run <request>` or plain text is
//! submitted with `requested_by: telegram:<user>` and `origin: telegram:<chat>`; the bot
//! keeps one status message per job (short id, plan with the exact commands, policy
//! decision, state, worker, live tail), edited at most once per 2 s per chat and never
//! before a 429's `retry_after`, and ends with exactly one final message (state, exit codes,
//! duration, last lines), also across restarts of the ingress. Approval buttons carry
//! `approve:<job_id>` / `deny:<job_id>` and are honoured only from approvers. `/help`,
//! `/status`, `/jobs`, `/cancel`, `/approve`, `/deny`, `/logs` (long output as a document)
//! `/workers`, `/every` and `/schedules` (with pause, resume and approve buttons) answer; anyone else gets a short refusal and nothing is created. Alerts
//! reach the approvers once each.
//!
//! These tests drive the real teloxide client of `skynet-telegram` against a local fake of
//! the Bot API, with a real nats-server and the real services.

use std::time::Duration;

use skynet_protocol::{JobId, JobState, subjects};
use skynet_tests::fake_telegram::{FakeTelegram, Sent};
use skynet_tests::{Options, Stack};

/// Allowed to run jobs, and an approver.
const ALICE: u64 = 1001;
/// Allowed to run jobs, not an approver.
const BOB: u64 = 1002;
/// Nobody.
const MALLORY: u64 = 6666;
/// An approver who never opened a chat with the bot.
const CAROL: u64 = 1003;

fn chat(user: u64) -> i64 {
    user as i64
}

async fn permissive() -> Stack {
    Stack::start_with(Options::permissive()).await
}

/// The job a bot message names (`Job <code>abcdef12</code>`), resolved through the API.
async fn job_of(stack: &Stack, message: &Sent) -> JobId {
    let start = message
        .html
        .find("<code>")
        .expect("a job id in the message")
        + 6;
    let end = start + message.html[start..].find("</code>").unwrap();
    let short = &message.html[start..end];
    // The message can come before the ledger has the job (it lags the stream a little).
    let body = serde_json::json!({ "job_id": short }).to_string();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let view = loop {
        match stack
            .api_raw(subjects::api::JOBS_GET, body.as_bytes())
            .await
        {
            Ok(view) => break view,
            Err((404, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("job {short} unknown: {e:?}"),
        }
    };
    JobId::parse(view["job_id"].as_str().unwrap()).unwrap()
}

/// The bot's final message about `job` in `chat`.
fn finals(fake: &FakeTelegram, chat: i64, job: &JobId, state: JobState) -> Vec<Sent> {
    let head = format!("Job {} {}", job.short(), state.as_str().replace('_', " "));
    fake.records(|r| {
        r.sent_to(chat)
            .into_iter()
            .filter(|m| m.text.contains(&head))
            .collect()
    })
}

#[tokio::test]
async fn a_run_from_text_to_the_final_message() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    fake.wait_polling(1).await;
    let commands = fake
        .records(|r| r.commands().cloned())
        .expect("setMyCommands");
    let names: Vec<&str> = commands
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    for c in [
        "run", "status", "jobs", "logs", "cancel", "approve", "deny", "workers", "help",
    ] {
        assert!(names.contains(&c), "{c} not registered: {names:?}");
    }

    let asked = fake.user_says(ALICE, "/run `echo 'hello from <skynet>' && echo done`");
    let status = fake.wait_sent(chat(ALICE), &["Job "]).await;
    assert_eq!(
        status.reply_to,
        Some(asked),
        "the status message answers the request"
    );
    let job = job_of(&stack, &status).await;

    // The job came from this chat and this person.
    let received = stack.wait_state(&job, JobState::Received).await;
    let skynet_protocol::EventKind::Received { request } = &received.kind else {
        unreachable!()
    };
    assert_eq!(request.requested_by.as_deref(), Some("telegram:1001"));
    assert_eq!(request.origin.as_deref(), Some("telegram:1001"));

    let end = stack.wait_terminal(&job).await;
    assert_eq!(end.state(), JobState::Succeeded);
    let last = fake
        .wait_sent(chat(ALICE), &["succeeded", "hello from <skynet>", "exit 0"])
        .await;
    assert_eq!(last.reply_to, Some(status.message_id));
    // The status message ends showing the plan, the decision, the end and the output.
    let shown = fake
        .wait_shown(
            chat(ALICE),
            status.message_id,
            &["succeeded", "hello from <skynet>", "done", "on w1"],
        )
        .await;
    assert!(
        shown
            .html
            .contains("<pre>echo 'hello from &lt;skynet&gt;' &amp;&amp; echo done</pre>"),
        "{}",
        shown.html
    );
    assert!(shown.text.contains("Policy: allowed"), "{}", shown.text);
    assert!(shown.text.contains("Plan hash: "), "{}", shown.text);
    assert!(shown.buttons.is_none());
    assert_eq!(
        finals(&fake, chat(ALICE), &job, JobState::Succeeded).len(),
        1
    );
}

#[tokio::test]
async fn plain_text_is_a_goal_and_the_planner_decides() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;

    fake.user_says(ALICE, "run the tests in ~/src/app");
    let status = fake.wait_sent(chat(ALICE), &["Job "]).await;
    let job = job_of(&stack, &status).await;
    let received = stack.wait_state(&job, JobState::Received).await;
    let skynet_protocol::EventKind::Received { request } = &received.kind else {
        unreachable!()
    };
    assert_eq!(request.goal.as_deref(), Some("run the tests in ~/src/app"));
    assert!(
        request.steps.is_none(),
        "words are not turned into commands here"
    );

    // Whatever the planner makes of it, the chat hears how it ended, and why.
    let end = stack.wait_terminal(&job).await;
    let state_word = end.state().as_str().replace('_', " ");
    let last = fake
        .wait_sent(chat(ALICE), &[&format!("Job {} {state_word}", job.short())])
        .await;
    if let skynet_protocol::EventKind::Rejected { reason, .. } = &end.kind {
        assert!(last.text.contains(reason.as_str()), "{}", last.text);
    }
}

#[tokio::test]
async fn strangers_are_refused_logged_and_cause_nothing() {
    let stack = Stack::start().await;
    let fake = FakeTelegram::start().await;
    let _bot = stack
        .start_telegram(fake.config(&[ALICE, BOB], Some(&[ALICE])))
        .await;

    fake.user_says(MALLORY, "/run `touch pwned`");
    fake.user_says(MALLORY, "`touch pwned-too`");
    fake.user_says(MALLORY, "/jobs");
    let press = fake.press(MALLORY, chat(MALLORY), 1, "approve:abcdef0123456789");
    // Updates are handled in order: once Alice has her answer, Mallory's were handled.
    fake.user_says(ALICE, "/jobs");
    fake.wait_sent(chat(ALICE), &["No jobs yet"]).await;

    let refusal = fake
        .wait_sent(chat(MALLORY), &["not allowed", "6666"])
        .await;
    assert!(
        refusal.text.len() < 200,
        "a short refusal: {}",
        refusal.text
    );
    assert_eq!(
        fake.records(|r| r.sent_to(chat(MALLORY)).len()),
        1,
        "a stranger hears the refusal once, not once per message"
    );
    let answer = fake.wait_answer(&press).await;
    assert!(answer.text.contains("Not allowed"), "{answer:?}");
    let listed = stack
        .api_raw(subjects::api::JOBS_LIST, b"{}")
        .await
        .unwrap();
    assert!(listed["jobs"].as_array().unwrap().is_empty(), "{listed}");
    let intake = stack
        .js
        .get_stream(skynet_protocol::streams::SUBMIT)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(intake, 0, "nothing was submitted");
}

#[tokio::test]
async fn in_groups_only_commands_and_mentions_count() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    const GROUP: i64 = -100_500;

    fake.user_says_in(GROUP, ALICE, "`echo chatter`");
    fake.user_says_in(GROUP, MALLORY, "hello everyone");
    fake.user_says_in(GROUP, ALICE, "/status@other_bot abcdef");
    fake.user_says_in(GROUP, ALICE, "/weather");
    fake.user_says_in(GROUP, ALICE, "@skynet_test_bot `echo mentioned`");
    let status = fake.wait_sent(GROUP, &["Job "]).await;
    let job = job_of(&stack, &status).await;
    assert_eq!(stack.wait_terminal(&job).await.state(), JobState::Succeeded);
    fake.wait_sent(GROUP, &["succeeded", "mentioned"]).await;
    fake.user_says_in(GROUP, ALICE, "/jobs@skynet_test_bot");
    let jobs = fake.wait_sent(GROUP, &["Latest jobs"]).await;
    assert!(jobs.text.contains(job.short()));

    let listed = stack
        .api_raw(subjects::api::JOBS_LIST, b"{}")
        .await
        .unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1, "{listed}");
    fake.records(|r| {
        for m in r.sent_to(GROUP) {
            assert!(!m.text.contains("chatter"), "{}", m.text);
            assert!(!m.text.contains("not allowed"), "{}", m.text);
            assert!(!m.text.contains("do not know"), "{}", m.text);
        }
    });
}

/// The callback data of a message's buttons.
fn button_data(buttons: &Option<serde_json::Value>) -> Vec<String> {
    buttons
        .as_ref()
        .map(|b| {
            b["inline_keyboard"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter())
                .map(|b| b["callback_data"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn approval_by_button_only_from_approvers() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    fake.open_chat(chat(ALICE));
    let _bot = stack
        .start_telegram(fake.config(&[ALICE, BOB], Some(&[ALICE])))
        .await;

    // Bob may run jobs but not approve them; the built-in policy asks before writes.
    fake.user_says(BOB, "/run `touch approved.txt`");
    let status = fake.wait_sent(chat(BOB), &["Job "]).await;
    let job = job_of(&stack, &status).await;
    let waiting = fake
        .wait_shown(
            chat(BOB),
            status.message_id,
            &["needs approval", "Plan hash: ", "touch approved.txt"],
        )
        .await;
    assert_eq!(
        button_data(&waiting.buttons),
        [format!("approve:{job}"), format!("deny:{job}")]
    );
    // The approver hears about it in her own chat, with the exact command and the hash.
    let request = fake
        .wait_sent(
            chat(ALICE),
            &["needs your approval", "touch approved.txt", "Plan hash: "],
        )
        .await;
    assert_eq!(button_data(&request.buttons).len(), 2);

    // A press from someone who may not decide changes nothing.
    let press = fake.press(BOB, chat(BOB), status.message_id, &format!("approve:{job}"));
    let answer = fake.wait_answer(&press).await;
    assert!(answer.text.contains("Not allowed"), "{answer:?}");
    assert!(answer.alert);
    let last = stack.events(&job).await.last().unwrap().state();
    assert_eq!(last, JobState::AwaitingApproval);

    let press = fake.press(
        ALICE,
        chat(ALICE),
        request.message_id,
        &format!("approve:{job}"),
    );
    assert_eq!(fake.wait_answer(&press).await.text, "Approved.");
    let approved = stack.wait_state(&job, JobState::Approved).await;
    let skynet_protocol::EventKind::Approved { by, .. } = &approved.kind else {
        unreachable!()
    };
    assert_eq!(by, "telegram:1001");
    assert_eq!(stack.wait_terminal(&job).await.state(), JobState::Succeeded);
    assert!(w.home().join("approved.txt").exists());

    // Both messages say who decided, and lose their buttons.
    let shown = fake
        .wait_shown(
            chat(BOB),
            status.message_id,
            &["Approved by telegram:1001", "succeeded"],
        )
        .await;
    assert!(shown.buttons.is_none());
    let closed = fake
        .wait_shown(
            chat(ALICE),
            request.message_id,
            &["Approved by telegram:1001"],
        )
        .await;
    assert!(closed.buttons.is_none());
    fake.wait_sent(chat(BOB), &[&format!("Job {} succeeded", job.short())])
        .await;

    // The command does the same, for the plan the job has.
    fake.user_says(BOB, "/run `touch by-command.txt`");
    let status = fake
        .wait_sent(chat(BOB), &["Job ", "touch by-command.txt"])
        .await;
    let job = job_of(&stack, &status).await;
    stack.wait_state(&job, JobState::AwaitingApproval).await;
    fake.user_says(BOB, &format!("/approve {}", job.short()));
    fake.wait_sent(chat(BOB), &["Only approvers"]).await;
    fake.user_says(ALICE, &format!("/approve {}", job.short()));
    fake.wait_sent(
        chat(ALICE),
        &[&format!("Job {} approved (plan ", job.short())],
    )
    .await;
    assert_eq!(stack.wait_terminal(&job).await.state(), JobState::Succeeded);
    assert!(w.home().join("by-command.txt").exists());
}

#[tokio::test]
async fn a_denial_by_button_ends_the_job_and_a_decision_needs_the_plan_shown() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;

    fake.user_says(ALICE, "/run `touch first.txt`");
    let first = fake
        .wait_status(chat(ALICE), &["Job ", "touch first.txt"])
        .await;
    fake.user_says(ALICE, "/run `touch second.txt`");
    let second = fake
        .wait_status(chat(ALICE), &["Job ", "touch second.txt"])
        .await;
    let (job1, job2) = (job_of(&stack, &first).await, job_of(&stack, &second).await);
    stack.wait_state(&job1, JobState::AwaitingApproval).await;
    stack.wait_state(&job2, JobState::AwaitingApproval).await;
    fake.wait_shown(chat(ALICE), second.message_id, &["needs approval"])
        .await;

    // A decision is for the plan the person saw: approving job 1 from a message that shows
    // job 2's plan is refused.
    let press = fake.press(
        ALICE,
        chat(ALICE),
        second.message_id,
        &format!("approve:{job1}"),
    );
    let answer = fake.wait_answer(&press).await;
    assert!(answer.text.contains("plan"), "{answer:?}");
    assert_eq!(
        stack.events(&job1).await.last().unwrap().state(),
        JobState::AwaitingApproval
    );

    let press = fake.press(
        ALICE,
        chat(ALICE),
        second.message_id,
        &format!("deny:{job2}"),
    );
    assert_eq!(fake.wait_answer(&press).await.text, "Denied.");
    let end = stack.wait_terminal(&job2).await;
    let skynet_protocol::EventKind::Denied { by, .. } = &end.kind else {
        panic!("{end:?}")
    };
    assert_eq!(by, "telegram:1001");
    let shown = fake
        .wait_shown(chat(ALICE), second.message_id, &["Denied by telegram:1001"])
        .await;
    assert!(shown.buttons.is_none());
    fake.wait_sent(chat(ALICE), &[&format!("Job {} denied", job2.short())])
        .await;

    // The commands say the same.
    fake.user_says(ALICE, &format!("/deny {} not today", job1.short()));
    fake.wait_sent(
        chat(ALICE),
        &[&format!("Job {} denied (plan ", job1.short())],
    )
    .await;
    let end = stack.wait_terminal(&job1).await;
    let skynet_protocol::EventKind::Denied { reason, .. } = &end.kind else {
        panic!("{end:?}")
    };
    assert_eq!(reason, "not today");
    assert!(!w.home().join("first.txt").exists());
    assert!(!w.home().join("second.txt").exists());
    fake.user_says(ALICE, &format!("/approve {}", job1.short()));
    fake.wait_sent(chat(ALICE), &["not awaiting approval"])
        .await;
}

#[tokio::test]
async fn cancel_says_requested_then_cancelled() {
    let mut stack = permissive().await;
    let mut config = stack.worker_config("w1");
    config.max_jobs = 2;
    let _w = stack.add_worker(config).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;

    fake.user_says(ALICE, "/run `sleep 30`");
    let status = fake.wait_sent(chat(ALICE), &["Job "]).await;
    let job = job_of(&stack, &status).await;
    stack.wait_state(&job, JobState::Running).await;
    fake.user_says(ALICE, &format!("/cancel {}", job.short()));
    fake.wait_sent(chat(ALICE), &["Cancel requested", job.short()])
        .await;
    assert_eq!(stack.wait_terminal(&job).await.state(), JobState::Cancelled);
    fake.wait_sent(chat(ALICE), &[&format!("Job {} cancelled", job.short())])
        .await;
    fake.wait_shown(
        chat(ALICE),
        status.message_id,
        &["Cancel requested by telegram:1001", "cancelled"],
    )
    .await;

    // A job from elsewhere: the chat that cancelled it hears how it ended.
    let other = stack.submit_shell("sleep 30").await;
    stack.wait_state(&other, JobState::Running).await;
    fake.user_says(ALICE, &format!("/cancel {}", other.short()));
    fake.wait_sent(chat(ALICE), &["Cancel requested", other.short()])
        .await;
    assert_eq!(
        stack.wait_terminal(&other).await.state(),
        JobState::Cancelled
    );
    fake.wait_sent(chat(ALICE), &[&format!("Job {} cancelled", other.short())])
        .await;

    fake.user_says(ALICE, &format!("/cancel {}", other.short()));
    fake.wait_sent(chat(ALICE), &["already ended: cancelled"])
        .await;
}

#[tokio::test]
async fn jobs_status_workers_and_logs_answer() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;

    fake.user_says(ALICE, "/run `echo alpha`");
    let status = fake.wait_sent(chat(ALICE), &["Job "]).await;
    let alpha = job_of(&stack, &status).await;
    let beta = stack.submit_shell("seq 1 20000").await;
    stack.wait_terminal(&alpha).await;
    stack.wait_terminal(&beta).await;
    stack.ledger_state(&beta, JobState::Succeeded).await;
    stack.ledger_state(&alpha, JobState::Succeeded).await;

    fake.user_says(ALICE, "/jobs");
    fake.wait_sent(chat(ALICE), &["Latest jobs", alpha.short(), beta.short()])
        .await;
    fake.user_says(ALICE, &format!("/status {}", beta.short()));
    fake.wait_sent(
        chat(ALICE),
        &[beta.short(), "succeeded", "seq 1 20000", "/logs"],
    )
    .await;
    fake.user_says(ALICE, "/status 99999999");
    fake.wait_sent(chat(ALICE), &["No job"]).await;
    fake.user_says(ALICE, "/workers");
    fake.wait_sent(chat(ALICE), &["Workers", "w1", "online"])
        .await;
    fake.user_says(ALICE, "/help");
    fake.wait_sent(chat(ALICE), &["/run", "/cancel", "/approve"])
        .await;

    // Longer than one message: split at Telegram's limit (the fake refuses anything over
    // 4096 characters), nothing lost.
    let long_cmd = format!("echo {}", "x".repeat(9000));
    let long = stack.submit_shell(&long_cmd).await;
    stack.wait_terminal(&long).await;
    stack.ledger_state(&long, JobState::Succeeded).await;
    let before = fake.records(|r| r.sent_to(chat(ALICE)).len());
    fake.user_says(ALICE, &format!("/status {}", long.short()));
    let parts = fake
        .wait_until("the whole plan, in parts", |r| {
            let sent = r.sent_to(chat(ALICE));
            let text: String = sent[before..].iter().map(|m| m.text.as_str()).collect();
            (text.contains(&long_cmd) && text.contains("Created")).then(|| sent.len() - before)
        })
        .await;
    assert!(parts >= 3, "{parts} messages");

    // Short output comes as a message, long output as a file with all of it.
    fake.user_says(ALICE, &format!("/logs {}", alpha.short()));
    fake.wait_sent(chat(ALICE), &["Output of job", "alpha"])
        .await;
    fake.user_says(ALICE, &format!("/logs {}", beta.short()));
    let doc = fake
        .wait_until("a log file", |r| r.documents().first().cloned())
        .await;
    assert_eq!(doc.chat, chat(ALICE));
    assert_eq!(doc.file_name, format!("{}.log", beta.short()));
    assert!(doc.caption.contains(beta.short()));
    let text = String::from_utf8(doc.bytes.to_vec()).unwrap();
    let numbers: Vec<&str> = text
        .lines()
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(numbers.len(), 20000);
    assert_eq!(numbers.first(), Some(&"1"));
    assert_eq!(numbers.last(), Some(&"20000"));
}

#[tokio::test]
async fn edits_are_throttled_under_a_fast_log_and_429_is_honoured() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    fake.wait_polling(1).await;

    // Telegram's flood control answers the first message and the first edit with 429.
    fake.fail_next("sendMessage", 1, 2);
    fake.fail_next("editMessageText", 1, 3);
    fake.user_says(
        ALICE,
        "/run `for i in $(seq 1 200); do echo line $i; sleep 0.05; done`",
    );
    let status = fake.wait_sent(chat(ALICE), &["Job "]).await;
    let job = job_of(&stack, &status).await;
    assert_eq!(stack.wait_terminal(&job).await.state(), JobState::Succeeded);
    let last = fake
        .wait_sent(chat(ALICE), &["succeeded", "line 200"])
        .await;
    assert!(
        !last.text.contains("line 185\n"),
        "only the last lines: {}",
        last.text
    );
    fake.wait_shown(chat(ALICE), status.message_id, &["succeeded", "line 200"])
        .await;

    let (edits, sends, shown) = fake.records(|r| {
        (
            r.calls("editMessageText"),
            r.calls("sendMessage"),
            r.edits().to_vec(),
        )
    });
    // The status message was sent again once retry_after had passed.
    assert_eq!((sends[0].status, sends[1].status), (429, 200));
    assert!(sends[1].at.duration_since(sends[0].at) >= Duration::from_secs(2));
    // The tail was shown while it grew, in edits at least 2 s apart, and 3 s after a 429.
    assert!(
        shown
            .iter()
            .any(|e| e.text.contains("running") && e.text.contains("line ")),
        "no edit showed the job running"
    );
    assert!(edits.len() >= 3, "{} edits", edits.len());
    assert_eq!(edits[0].status, 429);
    for pair in edits.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        let least = if pair[0].status == 429 {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(2)
        };
        assert!(
            gap + Duration::from_millis(20) >= least,
            "edits {gap:?} apart after a {} (at least {least:?})",
            pair[0].status
        );
    }
    assert_eq!(
        finals(&fake, chat(ALICE), &job, JobState::Succeeded).len(),
        1
    );
}

#[tokio::test]
async fn a_restarted_ingress_sends_each_final_message_exactly_once() {
    let mut stack = permissive().await;
    let mut config = stack.worker_config("w1");
    config.max_jobs = 2;
    let _w = stack.add_worker(config).await;
    let fake = FakeTelegram::start().await;
    let mut bot = stack.start_telegram(fake.config(&[ALICE], None)).await;

    // Restarted while the job runs: the new ingress carries on and ends it.
    fake.user_says(ALICE, "/run `sleep 4; echo first-finished`");
    let first = fake.wait_sent(chat(ALICE), &["Job "]).await;
    let job1 = job_of(&stack, &first).await;
    stack.wait_state(&job1, JobState::Running).await;
    bot.stop().await;
    let mut bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    fake.wait_sent(chat(ALICE), &["succeeded", "first-finished"])
        .await;
    // Restarted again at once, most likely before the status message's last edit (edits
    // wait their turn): the next ingress finishes it without a second final message.
    bot.stop().await;
    let mut bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    fake.wait_shown(
        chat(ALICE),
        first.message_id,
        &["succeeded", "first-finished"],
    )
    .await;

    // Down while the job ends: the next ingress sends what was missed.
    // Its status message is the first message after the command (sent at `received`, it may
    // show the command only after an edit; the final message shows it at once).
    let before = fake.records(|r| r.sent_to(chat(ALICE)).len());
    fake.user_says(ALICE, "/run `sleep 2; echo second-finished`");
    let second = fake
        .wait_until("the second job's status message", |r| {
            r.sent_to(chat(ALICE))
                .into_iter()
                .skip(before)
                .find(|m| m.text.contains("Job "))
        })
        .await;
    let job2 = job_of(&stack, &second).await;
    stack.wait_state(&job2, JobState::Running).await;
    bot.stop().await;
    assert_eq!(
        stack.wait_terminal(&job2).await.state(),
        JobState::Succeeded
    );
    let mut bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    fake.wait_sent(chat(ALICE), &["succeeded", "second-finished", "Last "])
        .await;

    // Once more, then a job of its own: everything before it has been handled by then.
    bot.stop().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;
    fake.user_says(ALICE, "/run `echo barrier`");
    fake.wait_sent(chat(ALICE), &["succeeded", "barrier", "Last "])
        .await;

    for (job, status) in [(&job1, &first), (&job2, &second)] {
        assert_eq!(
            finals(&fake, chat(ALICE), job, JobState::Succeeded).len(),
            1,
            "one final message for {job}"
        );
        let about: Vec<Sent> = fake.records(|r| {
            r.sent_to(chat(ALICE))
                .into_iter()
                .filter(|m| m.text.contains(job.short()))
                .collect()
        });
        assert_eq!(
            about.len(),
            2,
            "one status and one final message: {about:#?}"
        );
        assert_eq!(about[0].message_id, status.message_id);
    }
    // Nothing is left behind once the conversations are over.
    let kv = stack
        .js
        .get_key_value(skynet_protocol::streams::TELEGRAM_BUCKET)
        .await
        .unwrap();
    for job in [&job1, &job2] {
        let deadline = tokio::time::Instant::now() + skynet_tests::WAIT;
        while kv.get(job.as_str()).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{job}'s record stays"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn alerts_reach_each_approver_once() {
    let stack = Stack::start().await;
    let fake = FakeTelegram::start().await;
    fake.open_chat(chat(ALICE));
    let config = fake.config(&[ALICE], Some(&[ALICE, CAROL]));
    let mut bot = stack.start_telegram(config.clone()).await;
    fake.wait_polling(1).await;

    let alert = |kind: &str, id: &str| {
        serde_json::json!({
            "kind": kind, "worker": "w9", "at": "2026-11-25T20:00:00.000Z",
            "detail": format!("w9 <laptop> {kind}"), "id": id,
        })
        .to_string()
    };
    let publish = |body: String| async {
        stack
            .js
            .publish(subjects::ALERTS, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    };
    // The sentinel may raise the same alert twice (two copies of it, a retry).
    publish(alert("worker_offline", "worker_offline:w9:1")).await;
    publish(alert("worker_offline", "worker_offline:w9:1")).await;
    publish(alert("worker_online", "worker_online:w9:2")).await;
    fake.wait_sent(chat(ALICE), &["worker online", "w9 <laptop>"])
        .await;
    bot.stop().await;
    let polls = fake.records(|r| r.calls("getUpdates").len());
    let _bot = stack.start_telegram(config).await;
    fake.wait_polling(polls + 1).await;
    publish(alert("job_stalled", "job_stalled:w9:3")).await;
    fake.wait_sent(chat(ALICE), &["job stalled"]).await;

    let offline = fake.records(|r| {
        r.sent_to(chat(ALICE))
            .iter()
            .filter(|m| m.text.contains("worker offline"))
            .count()
    });
    assert_eq!(offline, 1);
    // Carol never opened a chat with the bot: Telegram refuses, and nothing breaks.
    assert!(fake.records(|r| r.sent_to(chat(CAROL)).is_empty()));
}

#[tokio::test]
async fn hostile_input_never_crashes_anything() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack.start_telegram(fake.config(&[ALICE], None)).await;

    let asked = fake.user_says(ALICE, "/status <b>&</b>");
    fake.wait_until("an answer to a strange id", |r| {
        r.sent_to(chat(ALICE))
            .into_iter()
            .find(|m| m.reply_to == Some(asked))
    })
    .await;
    fake.user_says(ALICE, "/frobnicate <i>");
    fake.wait_sent(chat(ALICE), &["I do not know /frobnicate"])
        .await;
    fake.user_says(ALICE, "/logs");
    fake.wait_sent(chat(ALICE), &["Which job?"]).await;
    for data in [
        "nuke:everything",
        "approve:../../etc/passwd",
        &format!("approve:{}", "x".repeat(60)),
        "",
        "deny",
    ] {
        let press = fake.press(ALICE, chat(ALICE), 1, data);
        let answer = fake.wait_answer(&press).await;
        assert!(answer.text.contains("not understood"), "{data}: {answer:?}");
    }
    fake.user_says(ALICE, "/approve abcdef0123");
    fake.wait_sent(chat(ALICE), &["No job"]).await;

    // Markup-like text in commands and output is shown literally.
    fake.user_says(ALICE, "/run `echo '</b><i>not italic</i> & <script>'`");
    fake.wait_sent(
        chat(ALICE),
        &["succeeded", "</b><i>not italic</i> & <script>"],
    )
    .await;
    // The longest message Telegram delivers, full of markup, as a goal.
    let long: String = "<&>".repeat(1365);
    fake.user_says(ALICE, &long);
    let status = fake.wait_sent(chat(ALICE), &["Job ", "<&><&>"]).await;
    let job = job_of(&stack, &status).await;
    stack.wait_terminal(&job).await;
    fake.wait_until("the end of the long goal", |r| {
        r.sent_to(chat(ALICE))
            .into_iter()
            .find(|m| m.reply_to == Some(status.message_id))
    })
    .await;
    fake.user_says(ALICE, "/jobs");
    fake.wait_sent(chat(ALICE), &["Latest jobs"]).await;
}

/// `/every` makes a schedule from a chat (judged once: one that needs a person shows an
/// approve button, honoured only from approvers), and `/schedules` lists them with a pause
/// button.
#[tokio::test]
async fn every_makes_a_schedule_and_schedules_lists_it_with_pause_and_approve_buttons() {
    let mut stack = permissive().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    let _bot = stack
        .start_telegram(fake.config(&[ALICE, BOB], Some(&[ALICE])))
        .await;
    fake.wait_polling(1).await;

    fake.user_says_code(ALICE, "/every 1s `echo tick tock`", "echo tick tock");
    let made = fake.wait_sent(chat(ALICE), &["🗓", "active"]).await;
    assert!(made.text.contains("@every 1s"), "{}", made.text);
    let name = made.text.split_whitespace().nth(1).unwrap().to_owned();
    let job = stack
        .wait_event_matching(|e| {
            e.job_id.as_str().starts_with(&format!("{name}-")) && e.state() == JobState::Succeeded
        })
        .await
        .job_id;
    assert!(stack.output(&job).await.contains("tick tock"));

    fake.user_says(ALICE, "/schedules");
    let listed = fake.wait_sent(chat(ALICE), &["🗓", &name, "Last run"]).await;
    assert_eq!(button_data(&listed.buttons), [format!("spause:{name}")]);
    let press = fake.press(
        ALICE,
        chat(ALICE),
        listed.message_id,
        &format!("spause:{name}"),
    );
    let answer = fake.wait_answer(&press).await;
    assert_eq!(answer.text, format!("{name}: paused"));

    // A plan that needs a person: the button approves it, and only an approver's press counts.
    fake.user_says_code(BOB, "/every 1h `approve-me now`", "approve-me now");
    let waiting = fake
        .wait_sent(chat(BOB), &["awaiting_approval", "Plan hash: "])
        .await;
    let data = button_data(&waiting.buttons).remove(0);
    assert!(data.starts_with("sapprove:"), "{data}");
    let press = fake.press(BOB, chat(BOB), waiting.message_id, &data);
    assert_eq!(fake.wait_answer(&press).await.text, "Not allowed.");
    let press = fake.press(ALICE, chat(BOB), waiting.message_id, &data);
    let answer = fake.wait_answer(&press).await;
    assert!(answer.text.ends_with(": active"), "{}", answer.text);
    let approved_name = data.split(':').nth(1).unwrap();
    let s = stack
        .api_raw(
            subjects::api::SCHEDULES_GET,
            serde_json::json!({"name": approved_name})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(s["approved_by"], format!("telegram:{ALICE}"));
    assert_eq!(s["created_by"], format!("telegram:{BOB}"));
}
