//! A policy that cannot be talked around (issue 10, items 1, 2, 3 and 8), against the real
//! services. With the built-in policy, every attack that once ran without approval now
//! waits for a person or is denied, and the file it would have made never appears: tools
//! that execute or write through their arguments (awk, sed, find, git -c, env -S), a step's
//! `env` (GIT_CONFIG_*, LD_PRELOAD, BASH_ENV), and globs, braces and spellings of a key's
//! path. With a policy that allows everything, the worker's own forbidden list still
//! refuses quoting and variable tricks (`c''url ... | sh`, `c=curl; $c ... | sh`,
//! `"rm" -rf ~`).

use std::path::Path;

use skynet_protocol::{Event, EventKind, JobId, JobState};
use skynet_tests::{Options, Stack};

/// Waits for policy's decision and checks it kept the job from running by itself.
async fn held(stack: &Stack, job: &JobId, what: &str) -> Event {
    let e = stack
        .wait_event(job, |e| {
            matches!(e.state(), JobState::AwaitingApproval | JobState::Approved)
                || e.state().is_terminal()
        })
        .await;
    assert!(
        matches!(e.state(), JobState::AwaitingApproval | JobState::Denied),
        "{what}: policy let it run: {e:?}"
    );
    e
}

/// Runs an allowed job to the end, so anything queued before it had its chance to run.
async fn settle(stack: &Stack) {
    let job = stack.submit_shell("echo settled").await;
    stack.wait_state(&job, JobState::Succeeded).await;
}

fn markers(home: &Path) -> Vec<String> {
    std::fs::read_dir(home)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned"))
        .collect()
}

#[tokio::test]
async fn read_only_tools_that_execute_or_write_wait_for_a_person() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    for attack in [
        "awk 'BEGIN{system(\"touch $HOME/pwned-awk\")}'",
        "echo 'touch $HOME/pwned-sed' | sed 1e",
        "sed -n '1e touch $HOME/pwned-sed2' /etc/hostname",
        "find . -maxdepth 0 -fls $HOME/pwned-find",
        "git -c core.fsmonitor='touch $HOME/pwned-git' status",
        "git -c alias.st='!touch $HOME/pwned-alias' st",
        "env -S 'touch pwned-env'",
        "env '-Stouch pwned-env2'",
        "echo pwned-xargs | xargs touch",
        "sort -o pwned-sort /etc/hostname",
    ] {
        let job = stack.submit_shell(attack).await;
        held(&stack, &job, attack).await;
    }
    settle(&stack).await;
    assert_eq!(markers(w.home()), Vec::<String>::new());
}

#[tokio::test]
async fn a_steps_env_is_judged_before_it_runs() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let marker = w.home().join("pwned-gitconfig");
    let git_config = stack
        .submit(serde_json::json!({"steps": [{
            "action": "shell",
            "cmd": "git init -q . 2>/dev/null; git status",
            "env": {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "core.fsmonitor",
                "GIT_CONFIG_VALUE_0": format!("touch {}", marker.display()),
            }
        }]}))
        .await;
    let e = held(&stack, &git_config, "GIT_CONFIG_*").await;
    let EventKind::AwaitingApproval { reasons, .. } = &e.kind else {
        panic!("{e:?}")
    };
    assert!(
        reasons.iter().any(|r| r.contains("GIT_CONFIG_COUNT")),
        "{reasons:?}"
    );
    for (name, value) in [
        ("LD_PRELOAD", "/tmp/pwned.so"),
        ("BASH_ENV", "/tmp/pwned.sh"),
        ("ENV", "/tmp/pwned.sh"),
    ] {
        let job = stack
            .submit(serde_json::json!({"steps": [{
                "action": "shell", "cmd": "ls", "env": {name: value}
            }]}))
            .await;
        let e = held(&stack, &job, name).await;
        assert_eq!(e.state(), JobState::Denied, "{name}: {e:?}");
    }
    for (name, value) in [
        ("PATH", "/tmp/evil:/usr/bin:/bin"),
        ("PYTHONSTARTUP", "/tmp/x"),
    ] {
        let job = stack
            .submit(serde_json::json!({"steps": [{
                "action": "shell", "cmd": "ls", "env": {name: value}
            }]}))
            .await;
        let e = held(&stack, &job, name).await;
        assert_eq!(e.state(), JobState::AwaitingApproval, "{name}: {e:?}");
    }
    // The same variables written into the command line.
    let inline = stack
        .submit_shell(&format!(
            "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0='touch {}' git status",
            marker.display()
        ))
        .await;
    held(&stack, &inline, "inline GIT_CONFIG_*").await;
    settle(&stack).await;
    assert!(!marker.exists());
}

#[tokio::test]
async fn globs_braces_and_spellings_of_a_keys_path_are_denied() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let ssh = w.home().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(ssh.join("id_rsa"), "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let mut jobs = Vec::new();
    for attack in [
        "cat ~/.ssh/id_rsa",
        "cat ~/.ss?/id_rs?",
        "cat ~/.[s]sh/*",
        "grep -r PRIVATE ~/.s*",
        "cat ~/{.ssh,x}/id_rsa",
        "cat $HOME/.ssh/id_rsa",
        "cat \"${HOME}\"/.ssh/id_rsa",
        "cat ~/.ssh/../.ssh/id_rsa",
        "cat .ssh/id_rsa",
        "f=~/.ssh/id_rsa; cat $f",
        "cd ~/.s*; cat *",
        "c''at ~/.s\"s\"h/id_rsa",
    ] {
        let job = stack.submit_shell(attack).await;
        let e = held(&stack, &job, attack).await;
        assert_eq!(e.state(), JobState::Denied, "{attack}: {e:?}");
        jobs.push(job);
    }
    // A path only known when the command runs could be the key: a person decides.
    let unknown = stack
        .submit(serde_json::json!({"steps": [{"action": "shell", "cmd": "cat \"$F\""}]}))
        .await;
    let e = held(&stack, &unknown, "cat \"$F\"").await;
    assert_eq!(e.state(), JobState::AwaitingApproval);
    settle(&stack).await;
    for job in jobs {
        assert!(!stack.output(&job).await.contains("PRIVATE KEY"));
    }
}

/// A policy that allows everything, so only the worker stands in the way.
const EVERYTHING: &str = r#"
[defaults]
verdict = "allow"
redirect = "allow"
unparsable = "allow"
dynamic = "allow"
env = "allow"
"#;

#[tokio::test]
async fn quoting_and_variables_do_not_beat_the_workers_forbidden_list() {
    let mut stack = Stack::start_with(Options {
        policy: Some(EVERYTHING.into()),
        ..Default::default()
    })
    .await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let home = w.home().to_path_buf();
    let evil = home.join("evil.sh");
    std::fs::write(&evil, "touch \"$HOME/pwned\"\n").unwrap();
    std::fs::write(home.join("precious.txt"), "keep").unwrap();

    // The script does what it says when run plainly: the marker is a fair witness.
    let control = stack.submit_shell(&format!("sh {}", evil.display())).await;
    stack.wait_state(&control, JobState::Succeeded).await;
    assert!(home.join("pwned").exists());
    std::fs::remove_file(home.join("pwned")).unwrap();

    let url = format!("file://{}", evil.display());
    for attack in [
        format!("c''url -s {url} | sh"),
        format!("\"c\"url -s {url} | sh"),
        format!("c=curl; $c -s {url} | sh"),
        format!("sh -c \"$(c''url -s {url})\""),
        "\"rm\" -rf ~".to_owned(),
        "rm -r -f ~/".to_owned(),
        "/bin/rm -fr \"$HOME\"".to_owned(),
        "r''m -rf ${HOME}/*".to_owned(),
    ] {
        let job = stack.submit_shell(&attack).await;
        let done = stack.wait_terminal(&job).await;
        let EventKind::Failed(f) = &done.kind else {
            panic!("{attack}: {done:?}")
        };
        assert!(
            f.error.as_deref().unwrap_or("").contains("forbidden"),
            "{attack}: {f:?}"
        );
    }
    assert!(!home.join("pwned").exists());
    assert!(home.join("precious.txt").exists());
    assert!(evil.exists());
}
