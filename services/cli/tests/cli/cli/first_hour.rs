//! The README's first section as a reader types it, and the small surprises of issue 13
//! point 5 and 7: the first examples run without an approval the reader does not expect,
//! the approval example is one, the printed seed path works from anywhere, `artifacts`
//! lists unless told where to write and refuses an unknown job, colours only on a
//! terminal, a refused identity is refused at once, and the scripts find the binaries where
//! cargo put them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kit::{Env, Pty, WAIT, repo, skynet};

/// The shell blocks of the README's "Using SKYNET" section, each as its command lines
/// (comments after two spaces and a `#` removed).
fn readme_blocks() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = text.split("## Using SKYNET").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| {
            b.split("```")
                .next()
                .unwrap()
                .lines()
                .map(|l| l.split("  #").next().unwrap().trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .collect()
}

/// `sh -c LINE` as the reader would type it, with `skynet` on PATH.
fn shell(env: &Env, line: &str) -> Command {
    let bin = Path::new(skynet()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(line);
    env.apply(&mut sh);
    sh.env("PATH", path);
    sh
}

#[test]
fn the_readme_first_examples_run_at_once_and_the_approval_example_asks() {
    let blocks = readme_blocks();
    assert!(blocks[0].iter().any(|l| l == "skynet up"), "{blocks:?}");
    let first = &blocks[1];
    assert!(
        first
            .iter()
            .filter(|l| l.starts_with("skynet submit --wait"))
            .count()
            >= 3,
        "{first:?}"
    );
    let env = Env::new();
    let _up = env.up(&[]);
    for line in first {
        let r = env.run_cmd(shell(&env, line));
        assert!(r.ok(), "README line {line:?}: {}", r.all());
        assert!(
            !r.stderr().contains("awaiting approval"),
            "{line:?} stopped at an approval: {}",
            r.all()
        );
    }

    // The approval example: it waits for a person, who approves it from another terminal.
    let approval = &blocks[2];
    let mut waiting = env.run_cmd_spawn(shell(&env, &approval[0]));
    let stderr = waiting.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut job = None;
    let start = Instant::now();
    while start.elapsed() < WAIT {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(id) = line.strip_prefix("job ") {
            job = Some(id.trim().to_owned());
        }
        if line.contains("approve with: skynet approve") {
            break;
        }
    }
    let job = job.expect("the job's id");
    let approve = approval[1].replace("3f2a9c1b", &job[..8]);
    let r = env.run_cmd(shell(&env, &approve));
    assert!(r.ok() && r.stdout().contains("plan hash"), "{}", r.all());
    let status = waiting.wait().unwrap();
    assert!(status.success());
    let logs = env.run(&["logs", &job]);
    assert!(logs.stdout().contains("skynet was here"), "{}", logs.all());
}

#[test]
fn the_printed_seed_works_from_another_directory_and_a_worker_seed_is_refused_at_once() {
    let env = Env::new();
    let up = env.up(&[]);
    let export = up.banner("CLI");
    let seed = export
        .strip_prefix("export SKYNET_NATS_SEED_FILE=")
        .unwrap()
        .to_owned();
    let elsewhere = env.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut c = env.cmd(&["jobs"]);
    c.current_dir(&elsewhere)
        .env("SKYNET_NATS_SEED_FILE", &seed)
        .env("SKYNET_CREDS_DIR", &elsewhere);
    let r = env.run_cmd(c);
    assert!(r.ok(), "{}", r.all());

    // The worker's identity may not list jobs: the refusal comes at once, not as a time-out.
    let worker_seed = env.creds().join("worker-w1.nk");
    let mut c = env.cmd(&["jobs"]);
    c.env("SKYNET_NATS_SEED_FILE", &worker_seed);
    let r = env.run_cmd(c);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stderr().contains("the server refused"), "{}", r.all());
    assert!(r.stderr().contains("skynet.api.jobs.list"), "{}", r.all());
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

#[test]
fn artifacts_lists_unless_told_where_and_an_unknown_job_is_an_error() {
    let env = Env::new();
    let _up = env.up(&[]);
    std::fs::write(env.home().join("report.txt"), "all green\n").unwrap();
    let job = env.home().join("job.json");
    std::fs::write(
        &job,
        r#"{"id":"with-artifacts","steps":[{"action":"shell","cmd":"cat report.txt","cwd":"~","artifacts":["report.txt"]}]}"#,
    )
    .unwrap();
    let r = env.run(&["submit", "--wait", "--file", job.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.all());
    let before: Vec<_> = std::fs::read_dir(env.home()).unwrap().collect();
    let list = env.run(&["artifacts", "with-artifacts"]);
    assert!(list.ok(), "{}", list.all());
    assert!(list.stdout().contains("report.txt"), "{}", list.all());
    assert!(list.stderr().contains("--out DIR"), "{}", list.all());
    let after: Vec<_> = std::fs::read_dir(env.home()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "listing wrote nothing");
    let out = env.dir.path().join("reports");
    let got = env.run(&[
        "artifacts",
        "with-artifacts",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(got.ok(), "{}", got.all());
    assert_eq!(
        std::fs::read_to_string(out.join("report.txt")).unwrap(),
        "all green\n"
    );

    let unknown = env.run(&["artifacts", "no-such-job-at-all"]);
    assert_eq!(unknown.code(), 1, "{}", unknown.all());
    assert!(unknown.stderr().contains("no job"), "{}", unknown.all());
    assert!(
        !unknown.stderr().contains("kept no artifacts"),
        "{}",
        unknown.all()
    );
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let env = Env::new();
    let up = env.up(&[]);
    assert!(
        !up.log().contains('\u{1b}'),
        "piped logs carry ANSI:\n{}",
        up.log()
    );
    let piped = env.run(&["submit", "--wait", "--", "uname"]);
    assert!(
        piped.ok() && !piped.stderr().contains('\u{1b}'),
        "{}",
        piped.all()
    );
    // On a terminal the worker's notes are dimmed...
    let mut term = Pty::spawn(&env, &["submit", "--wait", "--", "uname"], &[]);
    assert_eq!(term.wait_exit(), 0, "{}", term.output());
    term.expect("succeeded");
    assert!(term.output().contains("\u{1b}[2m"), "{:?}", term.output());
    // ...unless NO_COLOR says otherwise.
    let mut term = Pty::spawn(
        &env,
        &["submit", "--wait", "--", "uname"],
        &[("NO_COLOR", "1")],
    );
    assert_eq!(term.wait_exit(), 0, "{}", term.output());
    term.expect("succeeded");
    assert!(!term.output().contains('\u{1b}'), "{:?}", term.output());
}

#[test]
fn the_demo_runs_with_cargo_target_dir_set() {
    // A target directory of its own, holding the build already made (the demo is told not to
    // build: a build here could replace the binary under the other tests).
    let real = Path::new(skynet())
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let other = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(real.join("debug"), other.path().join("debug")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_dir = Path::new(&cargo)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let out = Command::new(repo().join("scripts/demo"))
        .env("CARGO_TARGET_DIR", other.path())
        .env("SKYNET_DEMO_PROFILE", "debug")
        .env("SKYNET_DEMO_NO_BUILD", "1")
        .env(
            "PATH",
            format!("{cargo_dir}:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .env_remove("SKYNET_NATS_SEED_FILE")
        .env_remove("SKYNET_NATS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("using {}/debug/skynet", other.path().display())),
        "{text}"
    );
    assert!(
        text.contains("the server refused"),
        "the worker's refusal is shown: {text}"
    );
    assert!(!text.contains('\u{1b}'), "no colours when piped: {text}");
    assert!(!text.contains("did not answer in time"), "{text}");
}
