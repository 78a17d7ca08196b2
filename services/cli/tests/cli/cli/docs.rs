//! What users of CLIs expect (issue 13): shell completions and manual pages generated from
//! the commands, help text on every flag and argument, and `skynet doctor`, which checks a
//! setup and says what to fix.

use crate::kit::Env;

#[test]
fn completions_and_manual_pages_come_from_the_commands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = env.run(&["completions", shell]);
        assert!(r.ok(), "{shell}: {}", r.all());
        for word in ["submit", "doctor", "artifacts", "attach"] {
            assert!(r.stdout().contains(word), "{shell} completes {word}");
        }
        assert!(
            !r.stdout().contains("__guard"),
            "hidden commands stay hidden"
        );
    }
    let man = env.run(&["man"]);
    assert!(
        man.ok() && man.stdout().contains(".TH skynet"),
        "{}",
        man.all()
    );
    let dir = env.dir.path().join("man");
    let r = env.run(&["man", "--out", dir.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.all());
    for page in [
        "skynet.1",
        "skynet-submit.1",
        "skynet-doctor.1",
        "skynet-up.1",
    ] {
        assert!(dir.join(page).is_file(), "{page}");
    }
    assert!(!dir.join("skynet-__guard.1").exists());
}

#[test]
fn every_flag_and_argument_says_what_it_is_for() {
    let env = Env::new();
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["jobs", "--help"],
            &[
                "--json  ",
                "Print the list as JSON",
                "--limit <LIMIT>  ",
                "At most",
            ],
        ),
        (
            &["logs", "--help"],
            &["<ID>  ", "unique prefix", "-f, --follow  ", "Keep printing"],
        ),
        (
            &["status", "--help"],
            &["<ID>  ", "--json  ", "Print the job as JSON"],
        ),
        (
            &["submit", "--help"],
            &["--attach", "Exit status with --wait", "75   detached"],
        ),
    ];
    for (args, says) in cases {
        let r = env.run(args);
        assert!(r.ok(), "{args:?}: {}", r.all());
        for s in says {
            assert!(
                r.stdout().contains(s),
                "{args:?} should say {s:?}:\n{}",
                r.stdout()
            );
        }
    }
}

#[test]
fn doctor_checks_the_setup_and_says_what_to_fix() {
    let env = Env::new();
    // Nothing running: the connection fails, with a fix.
    let r = env.run(&["doctor"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout().contains("FAIL  nats"), "{}", r.all());
    assert!(
        r.stdout().contains("fix: start the stack (skynet up)"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout().contains("sandbox"),
        "the sandbox is checked anyway: {}",
        r.all()
    );

    // A stack without a worker: every check passes but the workers one, which says how.
    let _up = env.up(&["--no-worker"]);
    let r = env.run(&["doctor"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    let out = r.stdout();
    for line in [
        "ok    identity     cli (a CLI that may approve)",
        "ok    nats ",
        "auth on, JetStream on",
        "ok    permissions  may list and watch jobs, approve and deny",
        "ok    services     ledger, dispatcher, policy answer",
        "ok    streams      SKYNET_EVENTS",
        "FAIL  workers      none has registered",
        "fix: start one",
        "clock        this clock is",
    ] {
        assert!(out.contains(line), "doctor should say {line:?}:\n{out}");
    }
    assert!(
        out.contains("ok    sandbox") || out.contains("warn  sandbox"),
        "{out}"
    );
}
