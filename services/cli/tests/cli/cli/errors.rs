//! Errors that say what to do (issue 13 point 4): clap's whole message (the suggestion, the
//! missing argument, the valid values, the `--` tip), arguments checked before connecting,
//! and a missing or wrong seed explained with the seed expected and how to set it.

use std::time::Duration;

use crate::kit::Env;

#[test]
fn usage_errors_keep_the_whole_message_and_exit_64() {
    let env = Env::new();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["sumbit"],
            &[
                "unrecognized subcommand 'sumbit'",
                "similar",
                "submit",
                "Usage:",
            ],
        ),
        (&["status"], &["<ID>", "Usage: skynet status"]),
        (
            &["jobs", "--state", "bogus"],
            &["invalid value 'bogus'", "running", "succeeded"],
        ),
        (
            &["submit", "cargo", "test"],
            &[
                "unexpected argument 'cargo'",
                "tip: a command goes after --: skynet submit -- cargo test",
            ],
        ),
        (
            &["completions", "tcsh"],
            &["possible values", "bash", "zsh", "fish"],
        ),
    ];
    for (args, says) in cases {
        let r = env.run(args);
        assert_eq!(r.code(), 64, "{args:?}: {}", r.all());
        for s in says {
            assert!(
                r.stderr().contains(s),
                "{args:?} should say {s:?}: {}",
                r.all()
            );
        }
    }
}

#[test]
fn submit_checks_its_arguments_before_connecting() {
    let env = Env::new();
    // Nothing listens on the port: a connection attempt would say "cannot reach NATS".
    for (args, says) in [
        (&["submit"][..], "nothing to run"),
        (&["submit", "--cwd", "x"][..], "--cwd"),
        (
            &["submit", "--worker", "bad worker", "--", "ls"][..],
            "--worker",
        ),
        (&["submit", "--file", "missing.json"][..], "--file"),
    ] {
        let r = env.run(args);
        assert_eq!(r.code(), 64, "{args:?}: {}", r.all());
        assert!(r.stderr().contains(says), "{args:?}: {}", r.all());
        assert!(
            !r.stderr().contains("NATS"),
            "{args:?} connected first: {}",
            r.all()
        );
        assert!(r.took < Duration::from_secs(3));
    }
}

#[test]
fn a_missing_or_wrong_seed_says_which_seed_and_how_to_set_it() {
    let env = Env::new();
    let _up = env.up(&[]);
    // Another spelling of the URL than the one skynet up serves: no identity is found by
    // itself, as from another machine.
    let url = format!("nats://localhost:{}", env.port);
    let r = env.run(&["--nats-url", &url, "jobs"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    let cli_seed = env.creds().join("cli.nk");
    for s in [
        "wants an identity",
        "SKYNET_NATS_SEED_FILE",
        &format!("export SKYNET_NATS_SEED_FILE={}", cli_seed.display()),
    ] {
        assert!(r.stderr().contains(s), "should say {s:?}: {}", r.all());
    }
    assert_eq!(
        r.stderr().matches("authorization violation").count(),
        1,
        "{}",
        r.all()
    );

    // A key the server does not know.
    let stranger = env.home().join("stranger.nk");
    let kp = nkeys::KeyPair::new_user();
    std::fs::write(&stranger, kp.seed().unwrap()).unwrap();
    std::fs::set_permissions(
        &stranger,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let r = env.run(&["--nats-seed", stranger.to_str().unwrap(), "jobs"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stderr().contains(&kp.public_key()), "{}", r.all());
    assert!(r.stderr().contains("skynet creds show"), "{}", r.all());

    // Nothing at the URL at all.
    let r = env.run(&["--nats-url", "nats://127.0.0.1:1", "jobs"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stderr().contains("Is skynet up running?"), "{}", r.all());
}
