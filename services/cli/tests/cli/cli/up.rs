//! `skynet up` (issue 13 point 1 and 6, issue 10 item 4): its nats-server ends with it
//! however it ends, one `skynet up` per data directory, a server left over from a crash is
//! replaced, SIGINT always ends it within its grace, the configuration is checked before
//! anything starts, and the keys live outside every worker root.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::kit::{Env, WAIT, alive, servers_with_config, wait_until};

#[test]
fn sigkill_of_up_takes_its_nats_server_along() {
    let env = Env::new();
    let up = env.up(&[]);
    let config = env.creds().join("nats-server.conf");
    let servers = servers_with_config(&config);
    assert_eq!(servers.len(), 1, "one nats-server of ours: {servers:?}");
    up.signal(Signal::SIGKILL);
    wait_until(
        Duration::from_secs(10),
        "nats-server to die with skynet up",
        || !alive(servers[0]),
    );
}

#[test]
fn a_second_up_on_the_same_data_dir_says_already_running_and_exits_64() {
    let env = Env::new();
    let up = env.up(&[]);
    let second = env.run(&["up", "--worker-id", "w2"]);
    assert_eq!(second.code(), 64, "{}", second.all());
    assert!(
        second
            .stderr()
            .contains(&format!("already running (pid {})", up.pid())),
        "{}",
        second.all()
    );
    assert!(
        second.took < Duration::from_secs(5),
        "at once: {:?}",
        second.took
    );
    // The first one is unharmed.
    assert!(env.run(&["workers"]).stdout().contains("w1"));
}

#[test]
fn a_nats_server_left_over_from_a_crash_is_replaced() {
    let env = Env::new();
    let mut up = env.up(&[]);
    up.signal(Signal::SIGINT);
    assert_eq!(up.wait_exit(WAIT).0, Some(0), "{}", up.log());
    // A server of ours that outlived its skynet up (as one of an older version did).
    let config = env.creds().join("nats-server.conf");
    let mut stray = Command::new(crate::kit::nats_server())
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stray_pid = stray.id() as i32;
    wait_until(WAIT, "the stray server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_ok()
    });
    let up = env.up(&[]);
    assert!(
        up.log().contains(&format!(
            "replacing nats-server (pid {stray_pid}) left over"
        )),
        "{}",
        up.log()
    );
    let _ = stray.wait();
    assert!(!alive(stray_pid));
    let servers = servers_with_config(&config);
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_ne!(servers[0], stray_pid);
    // And the new stack works.
    let r = env.run(&["submit", "--wait", "--", "echo", "fresh"]);
    assert!(r.ok() && r.stdout().contains("fresh"), "{}", r.all());
}

#[test]
fn sigint_ends_up_within_its_grace_even_when_nats_is_gone() {
    let env = Env::new();
    let mut up = env.up(&[]);
    let servers = servers_with_config(&env.creds().join("nats-server.conf"));
    assert_eq!(servers.len(), 1);
    // NATS vanishes under the services; Ctrl-C must still end everything, in time.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(servers[0]), Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    up.signal(Signal::SIGINT);
    let (code, took) = up.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", up.log());
    assert!(took < Duration::from_secs(16), "took {took:?}");
}

#[test]
fn sigint_stops_everything_cleanly() {
    let env = Env::new();
    let mut up = env.up(&[]);
    let servers = servers_with_config(&env.creds().join("nats-server.conf"));
    up.signal(Signal::SIGINT);
    let (code, took) = up.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", up.log());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        servers.iter().all(|p| !alive(*p)),
        "nats-server stopped too"
    );
}

#[test]
fn the_configuration_is_checked_before_anything_starts() {
    let env = Env::new();
    // A "nats-server" that leaves a mark if anyone starts it.
    let mark = env.dir.path().join("started");
    let fake = env.dir.path().join("fake-nats-server");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch {}\nsleep 30\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fake = fake.to_str().unwrap();
    let bad_policy = env.dir.path().join("bad.toml");
    std::fs::write(&bad_policy, "[[rule]]\nverdict = 'sometimes'\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--root", "/nonexistent"], "--root: /nonexistent"),
        (&["--policy", "missing.toml"], "--policy: missing.toml"),
        (&["--policy", bad_policy.to_str().unwrap()], "--policy"),
        (&["--worker-id", "not a valid id!"], "--worker-id"),
    ];
    for (args, says) in cases {
        let mut all = vec!["up", "--nats-server", fake];
        all.extend_from_slice(args);
        let r = env.run(&all);
        assert_eq!(r.code(), 64, "{args:?}: {}", r.all());
        let first = r.stderr().lines().next().unwrap_or_default().to_owned();
        assert!(
            first.starts_with("skynet up: ") && first.contains(says),
            "{args:?}: {}",
            r.all()
        );
        assert!(r.took < Duration::from_secs(5));
    }
    assert!(!mark.exists(), "nats-server was started before the check");
    assert!(!env.creds().exists(), "no keys were made either");
}

#[test]
fn the_keys_live_outside_every_worker_root_and_creds_finds_them() {
    let env = Env::new();
    let up = env.up(&[]);
    let keys = up.banner("keys");
    let keys = keys.split(' ').next().unwrap().to_owned();
    assert_eq!(keys, env.creds().to_str().unwrap());
    assert!(!keys.starts_with(env.home().to_str().unwrap()));
    let export = up.banner("CLI");
    let seed = export
        .strip_prefix("export SKYNET_NATS_SEED_FILE=")
        .unwrap();
    assert!(std::path::Path::new(seed).is_absolute());
    assert!(
        !env.home().join("skynet-data/creds").exists(),
        "none in the data dir"
    );
    // `skynet creds show` looks where `skynet up` wrote.
    let show = env.run(&["creds", "show"]);
    assert!(show.ok(), "{}", show.all());
    assert!(
        show.stdout().contains(&format!("credentials in {keys}")),
        "{}",
        show.all()
    );
    assert!(show.stdout().contains(seed), "{}", show.all());
    // A credentials directory inside the worker's root is refused.
    drop(up);
    let inside = env.home().join("keys");
    let r = env.run(&["up", "--creds-dir", inside.to_str().unwrap()]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("inside the worker root"), "{}", r.all());
}

#[test]
fn a_foreign_server_that_refuses_us_is_said_to_be_one_and_leaves_nothing_behind() {
    let env = Env::new();
    let mut foreign = Command::new(crate::kit::nats_server())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &env.port.to_string(),
            "--user",
            "someone",
            "--pass",
            "else",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "the foreign server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_ok()
    });
    let r = env.run(&["up"]);
    let _ = foreign.kill();
    let _ = foreign.wait();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.stderr()
            .contains("A NATS server skynet up did not start answers"),
        "{}",
        r.all()
    );
    assert!(r.stderr().contains("--nats-url"), "{}", r.all());
    assert!(
        r.took < Duration::from_secs(12),
        "at once, not a minute: {:?}",
        r.took
    );
    assert!(
        !env.creds().join("policy-signing.seed").exists(),
        "no stray key"
    );
    assert_eq!(
        r.stderr().matches("authorization violation").count(),
        1,
        "{}",
        r.all()
    );
}
