//! `skynet schedule` and `skynet submit --priority/--lock` (contract: Schedules, CLI): flags
//! are checked before connecting, naming the flag or field; a schedule made from the command
//! line ticks, shows its last job and its history, and pauses, resumes and goes.

use crate::kit::{Env, WAIT, wait_until};

#[test]
fn schedule_and_priority_flags_are_checked_before_connecting() {
    let env = Env::new();
    for (args, says) in [
        (
            &["schedule", "add", "x", "--cron", "61 * * * *", "--", "true"][..],
            "`cron`",
        ),
        (
            &["schedule", "add", "Bad", "--cron", "@daily", "--", "true"][..],
            "`name`",
        ),
        (
            &[
                "schedule",
                "add",
                "x",
                "--cron",
                "@daily",
                "--tz",
                "Mars/Base",
                "--",
                "true",
            ][..],
            "`tz`",
        ),
        (
            &[
                "schedule",
                "add",
                "x",
                "--cron",
                "@daily",
                "--overlap",
                "pile",
                "--",
                "true",
            ][..],
            "`overlap`",
        ),
        (
            &["schedule", "add", "x", "--cron", "@daily"][..],
            "nothing to run",
        ),
        (
            &["submit", "--priority", "urgent", "--", "true"][..],
            "--priority",
        ),
        (
            &["submit", "--lock", &"l".repeat(129), "--", "true"][..],
            "`lock`",
        ),
    ] {
        let r = env.run(args);
        assert_eq!(r.code(), 64, "{args:?}: {}", r.all());
        assert!(r.stderr().contains(says), "{args:?}: {}", r.all());
        assert!(
            !r.stderr().contains("NATS"),
            "{args:?} connected first: {}",
            r.all()
        );
    }
}

#[test]
fn a_schedule_made_from_the_command_line_ticks_and_is_paused_resumed_and_removed() {
    let env = Env::new();
    let _up = env.up(&[]);
    let add = env.run(&[
        "schedule",
        "add",
        "hello",
        "--cron",
        "@every 1s",
        "--priority",
        "high",
        "--",
        "echo",
        "hi",
    ]);
    assert!(add.ok(), "{}", add.all());
    assert!(
        add.stdout().contains("Schedule hello (active)"),
        "{}",
        add.all()
    );
    let mut last = String::new();
    wait_until(WAIT, "a tick that succeeded", || {
        last = env.run(&["schedule", "ls"]).stdout();
        last.contains("hello-") && last.contains("succeeded")
    });
    assert!(last.contains("@every 1s"), "{last}");
    let job = last
        .split_whitespace()
        .find(|w| w.starts_with("hello-"))
        .unwrap()
        .to_owned();
    let status = env.run(&["status", &job]);
    assert!(status.ok(), "{}", status.all());

    let paused = env.run(&["schedule", "pause", "hello"]);
    assert!(
        paused.stdout().contains("hello: paused"),
        "{}",
        paused.all()
    );
    let resumed = env.run(&["schedule", "resume", "hello"]);
    assert!(
        resumed.stdout().contains("hello: active"),
        "{}",
        resumed.all()
    );
    let show = env.run(&["schedule", "show", "hello"]);
    for s in ["History:", "created", "paused", "resumed", "cli:"] {
        assert!(
            show.stdout().contains(s),
            "should show {s:?}: {}",
            show.all()
        );
    }
    let rm = env.run(&["schedule", "rm", "hello"]);
    assert!(rm.stdout().contains("hello: deleted"), "{}", rm.all());
    let gone = env.run(&["schedule", "show", "hello"]);
    assert_eq!(gone.code(), 1, "{}", gone.all());
    assert!(
        gone.stderr().contains("no schedule hello"),
        "{}",
        gone.all()
    );
}

#[test]
fn schedule_approve_is_signed_and_recorded_as_the_cli_identity() {
    let env = Env::new();
    let _up = env.up(&[]);
    let add = env.run(&[
        "schedule",
        "add",
        "asks",
        "--cron",
        "@daily",
        "--",
        "echo hi | tee \"$TMPDIR/note\"",
    ]);
    assert!(add.ok(), "{}", add.all());
    assert!(
        add.stdout().contains("Schedule asks (awaiting_approval)"),
        "{}",
        add.all()
    );
    let approve = env.run(&["schedule", "approve", "asks"]);
    assert!(approve.ok(), "{}", approve.all());
    assert!(
        approve.stdout().contains("asks: active"),
        "{}",
        approve.all()
    );
    let show = env.run(&["schedule", "show", "asks", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&show.stdout()).unwrap();
    let by = s["approved_by"].as_str().unwrap_or_default().to_owned();
    assert!(by.starts_with("cli:"), "{s:#}");
    assert!(
        s["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "approved" && h["by"] == by.as_str()),
        "{s:#}"
    );
}
