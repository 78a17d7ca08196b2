//! Running the steps of one job: each process under its supervisor ([`crate::supervise`]) in
//! a process group of its own, output streamed in small batches, time limits, and stopping
//! (the supervisor sends SIGTERM to the group, waits a grace period, sends SIGKILL; the
//! worker then confirms the group is gone).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use skynet_protocol::worker::StopReason;
use skynet_protocol::{GitOp, JobState, Step, StepResult};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::guard::Guard;
use crate::outbox::Reporter;
use crate::paths::Roots;

mod files;
mod output;

use files::{read_file, write_file};
use output::{batch_output, pump};

/// A request to stop a running job, with its reason.
#[derive(Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
    /// Set when the worker itself gives the attempt up (it lost its lease, or shuts down):
    /// the attempt is reported abandoned, not ended.
    abandoned: Mutex<Option<String>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl StopSignal {
    pub fn stop(&self, reason: StopReason) {
        locked(&self.reason).get_or_insert(reason);
        self.token.cancel();
    }

    /// Stops the attempt because the worker gives it up, and says why.
    pub fn abandon(&self, why: impl Into<String>) {
        locked(&self.abandoned).get_or_insert_with(|| why.into());
        self.stop(StopReason::Fenced);
    }

    /// Why the worker gave the attempt up, if it did.
    pub fn abandoned(&self) -> Option<String> {
        locked(&self.abandoned).clone()
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    fn reason(&self) -> StopReason {
        locked(&self.reason).unwrap_or(StopReason::Cancel)
    }
}

/// The program that hosts the step supervisor ([`crate::supervise`]): a binary whose
/// `main` calls `supervise::main_if_asked` (the worker's own, normally).
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub program: PathBuf,
}

/// What a job run needs from its worker.
pub struct Ctx {
    pub roots: Roots,
    pub supervisor: Supervisor,
    /// The end of the worker's lease ([`crate::supervise::boottime_ms`]), extended each time
    /// one of its heartbeats reaches the server; passed on to every supervisor.
    pub lease: tokio::sync::watch::Receiver<i64>,
    /// Where each step's process group is recorded while it runs.
    pub records: crate::records::Records,
    pub guard: Arc<Guard>,
    /// Variables passed through from the worker's environment.
    pub env: BTreeMap<String, String>,
    pub kill_grace: Duration,
    /// Where artifacts go (the `skynet-artifacts` store, when it is there), and the largest
    /// accepted.
    pub artifacts: Option<async_nats::jetstream::Context>,
    pub artifact_max_bytes: u64,
}

/// What the steps of one attempt run with: the worker's sandbox (each step's rules are
/// worked out from it just before the step) and the attempt's private temp dir (its
/// `TMPDIR`).
pub struct Attempt {
    /// The worker's sandbox, and whether the grant allows network.
    pub sandbox: std::sync::Arc<crate::sandbox::Sandbox>,
    pub network: bool,
    pub tmp: PathBuf,
    /// Said in the log before each step that runs a process: how it is confined.
    pub banner: String,
}

/// How a job ended.
pub struct Outcome {
    pub state: JobState,
    pub steps: Vec<StepResult>,
    pub error: Option<String>,
}

enum End {
    Exited(i32),
    Signaled(i32),
    /// Refused before anything ran (path outside roots, forbidden command).
    Refused(String),
    Stopped(StopReason),
    TimedOut {
        job: bool,
    },
}

/// Runs every step in order, stopping at the first failure.
pub async fn run_job(
    steps_to_run: &[Step],
    timeout_s: u64,
    allowed_env: &[String],
    attempt: &Attempt,
    ctx: &Ctx,
    rep: &Reporter,
    stop: &StopSignal,
) -> Outcome {
    let job_deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut steps = Vec::new();
    for (i, step) in steps_to_run.iter().enumerate() {
        if stop.is_stopped() {
            // Stopped between steps (or before the first): nothing more starts.
            return Outcome {
                state: JobState::Cancelled,
                steps,
                error: Some(format!("stopped before step {}", i + 1)),
            };
        }
        rep.system(Some(i), &format!("$ {}", step.describe())).await;
        let filtered;
        let step = match without_unapproved_env(step, allowed_env) {
            Some((kept, dropped)) => {
                rep.system(
                    Some(i),
                    &format!(
                        "not passed on (they change what runs, and the approval did not cover them): {}",
                        dropped.join(", ")
                    ),
                )
                .await;
                filtered = kept;
                &filtered
            }
            None => step,
        };
        let step_deadline = match step.timeout_s() {
            Some(t) => job_deadline.min(Instant::now() + Duration::from_secs(t)),
            None => job_deadline,
        };
        let started = Instant::now();
        let end = run_step(
            i,
            step,
            attempt,
            ctx,
            rep,
            stop,
            step_deadline,
            job_deadline,
        )
        .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let mut result = StepResult {
            index: i,
            exit_code: None,
            duration_ms,
            signal: None,
        };
        let ran = matches!(end, End::Exited(_) | End::Signaled(_));
        let failure = match end {
            End::Exited(0) => {
                result.exit_code = Some(0);
                rep.system(Some(i), &format!("exit 0 ({duration_ms} ms)"))
                    .await;
                None
            }
            End::Exited(code) => {
                result.exit_code = Some(code);
                rep.system(Some(i), &format!("exit {code} ({duration_ms} ms)"))
                    .await;
                Some((
                    JobState::Failed,
                    format!("step {} exited with code {code}", i + 1),
                ))
            }
            End::Signaled(sig) => {
                result.signal = Some(sig);
                Some((
                    JobState::Failed,
                    format!("step {} was killed by signal {sig}", i + 1),
                ))
            }
            End::Refused(why) => {
                rep.system(Some(i), &format!("refused: {why}")).await;
                Some((
                    JobState::Failed,
                    format!("step {} refused by the worker: {why}", i + 1),
                ))
            }
            End::Stopped(reason) => {
                let (state, why) = match reason {
                    StopReason::Cancel => (JobState::Cancelled, "cancelled"),
                    StopReason::Timeout => {
                        (JobState::TimedOut, "stopped: past the job's time limit")
                    }
                    StopReason::Fenced => (
                        JobState::Cancelled,
                        "stopped: this attempt is no longer current",
                    ),
                };
                rep.system(Some(i), why).await;
                Some((state, format!("step {}: {why}", i + 1)))
            }
            End::TimedOut { job } => {
                let why = if job {
                    format!("the job exceeded its time limit of {} s", timeout_s)
                } else {
                    format!(
                        "step {} exceeded its time limit of {} s",
                        i + 1,
                        step.timeout_s().unwrap_or(timeout_s)
                    )
                };
                rep.system(Some(i), &why).await;
                Some((JobState::TimedOut, why))
            }
        };
        steps.push(result);
        // Artifacts are kept whether the step passed or failed (test reports matter most
        // when tests fail); a missing or oversized artifact fails the job.
        let artifact_error = if ran && !step.artifacts().is_empty() {
            save_artifacts(i, step, ctx, rep).await.err()
        } else {
            None
        };
        let failure = match (failure, artifact_error) {
            (None, Some(e)) => Some((JobState::Failed, e)),
            (Some((state, error)), Some(e)) => Some((state, format!("{error}; {e}"))),
            (f, None) => f,
        };
        if let Some((state, error)) = failure {
            return Outcome {
                state,
                steps,
                error: Some(error),
            };
        }
    }
    Outcome {
        state: JobState::Succeeded,
        steps,
        error: None,
    }
}

/// The step without the variables of its `env` that change what runs
/// (`skynet_protocol::shell::env::risky`) and that the approval (`allowed`) does not list,
/// and the names dropped; `None` when nothing is dropped.
fn without_unapproved_env(step: &Step, allowed: &[String]) -> Option<(Step, Vec<String>)> {
    let Step::Shell { env, .. } = step else {
        return None;
    };
    let dropped: Vec<String> = env
        .keys()
        .filter(|k| skynet_protocol::shell::env::risky(k).is_some() && !allowed.contains(k))
        .cloned()
        .collect();
    if dropped.is_empty() {
        return None;
    }
    let mut kept = step.clone();
    if let Step::Shell { env, .. } = &mut kept {
        env.retain(|k, _| !dropped.contains(k));
    }
    Some((kept, dropped))
}

/// Uploads the step's declared artifacts.
async fn save_artifacts(
    index: usize,
    step: &Step,
    ctx: &Ctx,
    rep: &Reporter,
) -> Result<(), String> {
    let Some(js) = &ctx.artifacts else {
        return Err("this worker cannot store artifacts (no artifact store)".into());
    };
    let cwd = match step {
        Step::Shell { cwd: Some(d), .. } | Step::Python { cwd: Some(d), .. } => {
            ctx.roots.confine(d, true).map_err(|e| e.to_string())?
        }
        _ => ctx.roots.first().to_path_buf(),
    };
    for pattern in step.artifacts() {
        let files = crate::artifacts::resolve(pattern, &cwd, &ctx.roots)?;
        if files.is_empty() {
            return Err(format!("artifact {pattern}: no file matches"));
        }
        for f in files {
            let size = crate::artifacts::upload(js, rep, index, &f, ctx.artifact_max_bytes).await?;
            rep.system(
                Some(index),
                &format!("artifact saved: {} ({size} bytes)", f.name),
            )
            .await;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    index: usize,
    step: &Step,
    attempt: &Attempt,
    ctx: &Ctx,
    rep: &Reporter,
    stop: &StopSignal,
    deadline: Instant,
    job_deadline: Instant,
) -> End {
    let cwd = |dir: &Option<String>| -> Result<PathBuf, String> {
        match dir {
            Some(d) => ctx.roots.confine(d, true).map_err(|e| e.to_string()),
            None => Ok(ctx.roots.first().to_path_buf()),
        }
    };
    let (program, args, dir, extra_env): (String, Vec<String>, PathBuf, BTreeMap<String, String>) =
        match step {
            Step::Shell {
                cmd,
                argv,
                cwd: d,
                env,
                ..
            } => {
                let forbidden = match (cmd, argv) {
                    (Some(c), _) => ctx.guard.check(c),
                    (None, Some(a)) => ctx.guard.check_argv(a),
                    _ => return End::Refused("no command".into()),
                };
                if let Some(why) = forbidden {
                    return End::Refused(format!("forbidden command ({why})"));
                }
                let dir = match cwd(d) {
                    Ok(d) => d,
                    Err(e) => return End::Refused(e),
                };
                match (cmd, argv) {
                    (Some(c), _) => (
                        "/bin/sh".into(),
                        vec!["-c".into(), c.clone()],
                        dir,
                        env.clone(),
                    ),
                    (None, Some(a)) => (a[0].clone(), a[1..].to_vec(), dir, env.clone()),
                    _ => return End::Refused("no command".into()),
                }
            }
            Step::Python { code, cwd: d, .. } => {
                if let Some(why) = ctx.guard.check(code) {
                    return End::Refused(format!("forbidden code ({why})"));
                }
                let dir = match cwd(d) {
                    Ok(d) => d,
                    Err(e) => return End::Refused(e),
                };
                (
                    "python3".into(),
                    vec!["-c".into(), code.clone()],
                    dir,
                    BTreeMap::new(),
                )
            }
            Step::Git {
                op,
                repo,
                url,
                branch,
                message,
                ..
            } => {
                let repo_path = match ctx.roots.confine(repo, *op != GitOp::Clone) {
                    Ok(p) => p,
                    Err(e) => return End::Refused(e.to_string()),
                };
                let r = repo_path.to_string_lossy().into_owned();
                let mut env = BTreeMap::new();
                env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
                let args: Vec<String> = match op {
                    GitOp::Clone => {
                        let url = url.clone().unwrap_or_default();
                        // Git itself holds to the same transports, submodules too.
                        let (source, allow) = match crate::clone::classify(&url) {
                            Err(why) => return End::Refused(why),
                            Ok(crate::clone::Source::Remote) => (url, "https:ssh"),
                            Ok(crate::clone::Source::Local(p)) => {
                                match ctx.roots.confine(&p, true) {
                                    Ok(p) => (p.to_string_lossy().into_owned(), "file"),
                                    Err(e) => {
                                        return End::Refused(format!("clone source: {e}"));
                                    }
                                }
                            }
                        };
                        env.insert("GIT_ALLOW_PROTOCOL".into(), allow.into());
                        vec!["clone".into(), "--".into(), source, r]
                    }
                    GitOp::Status => vec!["-C".into(), r, "status".into()],
                    GitOp::Diff => vec!["-C".into(), r, "diff".into()],
                    GitOp::Log => vec![
                        "-C".into(),
                        r,
                        "log".into(),
                        "-n".into(),
                        "50".into(),
                        "--no-color".into(),
                    ],
                    GitOp::Pull => vec!["-C".into(), r, "pull".into()],
                    GitOp::Checkout => vec![
                        "-C".into(),
                        r,
                        "checkout".into(),
                        branch.clone().unwrap_or_default(),
                    ],
                    GitOp::Commit => vec![
                        "-C".into(),
                        r,
                        "commit".into(),
                        "-m".into(),
                        message.clone().unwrap_or_default(),
                    ],
                    GitOp::Push => vec!["-C".into(), r, "push".into()],
                };
                ("git".into(), args, ctx.roots.first().to_path_buf(), env)
            }
            Step::FileRead { path, .. } => return read_file(index, path, ctx, rep).await,
            Step::FileWrite {
                path,
                content,
                append,
                ..
            } => {
                return write_file(path, content, *append, ctx, rep, index).await;
            }
            Step::Skill { .. } => {
                return End::Refused("skills must be expanded by the planner".into());
            }
        };
    rep.system(Some(index), &attempt.banner).await;
    // The rules as the disk is now (a step before may have changed it), off the event loop.
    let confine = {
        let (sandbox, tmp, network) = (
            attempt.sandbox.clone(),
            attempt.tmp.clone(),
            attempt.network,
        );
        match tokio::task::spawn_blocking(move || sandbox.confinement(&tmp, network)).await {
            Ok(c) => crate::supervise::first_line(c.as_ref()),
            Err(e) => return End::Refused(format!("cannot work out the step's confinement: {e}")),
        }
    };
    let mut cmd = Command::new(&ctx.supervisor.program);
    cmd.args(crate::supervise::args(
        *ctx.lease.borrow(),
        ctx.kill_grace,
        &program,
        &args,
    ))
    .current_dir(&dir)
    .env_clear()
    .envs(&ctx.env)
    .envs(&extra_env)
    .env("TMPDIR", &attempt.tmp)
    .env("SKYNET_JOB_ID", rep.job.as_str())
    .env("SKYNET_ATTEMPT", rep.attempt.to_string())
    .env("SKYNET_STEP", index.to_string())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    spawn_and_wait(cmd, confine, index, ctx, rep, stop, deadline, job_deadline).await
}

/// Gives a supervisor the step's confinement (`first`), then passes the worker's lease on
/// to it, and a stop request when one comes.
async fn feed_supervisor(
    mut stdin: tokio::process::ChildStdin,
    first: String,
    mut lease: tokio::sync::watch::Receiver<i64>,
    stop: CancellationToken,
) {
    use tokio::io::AsyncWriteExt;
    tokio::select! {
        written = stdin.write_all(first.as_bytes()) => if written.is_err() {
            return;
        },
        _ = stop.cancelled() => {
            // Not started yet: closing the pipe ends it before it runs anything.
            return;
        }
    }
    loop {
        tokio::select! {
            changed = lease.changed() => {
                let line = format!("L{}\n", *lease.borrow_and_update());
                if changed.is_err() || stdin.write_all(line.as_bytes()).await.is_err() {
                    // The worker is shutting down, or the supervisor is gone: its pipe closes,
                    // which ends the step.
                    return;
                }
            }
            _ = stop.cancelled() => {
                let _ = stdin.write_all(b"S\n").await;
                // Keep the pipe open while the supervisor ends the group.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn spawn_and_wait(
    mut cmd: Command,
    confine: String,
    index: usize,
    ctx: &Ctx,
    rep: &Reporter,
    stop: &StopSignal,
    deadline: Instant,
    job_deadline: Instant,
) -> End {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            rep.log(
                "stderr",
                Some(index),
                format!("cannot start: {e}\n").as_bytes(),
            )
            .await;
            return End::Exited(127);
        }
    };
    let Some(pid) = child.id() else {
        return End::Exited(127);
    };
    let pgid = Pid::from_raw(pid as i32);
    if let Err(e) = set_pgid(ctx, rep, Some(pgid.as_raw())).await {
        tracing::warn!(error = %e, "recording the step's process group");
    }
    let stopping = CancellationToken::new();
    let feeder = child.stdin.take().map(|stdin| {
        tokio::spawn(feed_supervisor(
            stdin,
            confine,
            ctx.lease.clone(),
            stopping.clone(),
        ))
    });
    let (tx, rx) = mpsc::channel::<(&'static str, Vec<u8>)>(64);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, "stdout", tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, "stderr", tx.clone()));
    }
    drop(tx);
    let batcher = tokio::spawn(batch_output(rx, rep.clone(), index));

    let end = tokio::select! {
        status = child.wait() => {
            match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (s.code(), s.signal()) {
                        (Some(code), _) => End::Exited(code),
                        (None, Some(sig)) => End::Signaled(sig),
                        _ => End::Exited(1),
                    }
                }
                Err(_) => End::Exited(1),
            }
        }
        _ = tokio::time::sleep_until(deadline.into()) => {
            stop_group(&mut child, &stopping, pgid, ctx.kill_grace).await;
            End::TimedOut { job: deadline >= job_deadline }
        }
        _ = stop.token.cancelled() => {
            stop_group(&mut child, &stopping, pgid, ctx.kill_grace).await;
            End::Stopped(stop.reason())
        }
    };
    // The step is over when its supervisor is; whatever is left in its group goes.
    let _ = killpg(pgid, Signal::SIGKILL);
    wait_group_gone(pgid).await;
    if let Some(f) = feeder {
        f.abort();
    }
    if let Err(e) = set_pgid(ctx, rep, None).await {
        tracing::warn!(error = %e, "recording the step's end");
    }
    // Output still in the pipes is sent before the step's end is reported.
    let mut batcher = batcher;
    if tokio::time::timeout(Duration::from_secs(2), &mut batcher)
        .await
        .is_err()
    {
        // Something that left the group still holds the pipes open.
        let _ = batcher.await;
    }
    end
}

/// Asks the supervisor to end the step's group (SIGTERM, its grace, SIGKILL) and waits for
/// it; kills the group itself if the supervisor does not finish in time.
async fn stop_group(
    child: &mut tokio::process::Child,
    stopping: &CancellationToken,
    pgid: Pid,
    grace: Duration,
) {
    stopping.cancel();
    let waited = tokio::time::timeout(grace + Duration::from_secs(3), child.wait()).await;
    if waited.is_err() {
        tracing::warn!(
            pgid = pgid.as_raw(),
            "the supervisor did not end the step in time; killing the group"
        );
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Waits (bounded) until no live process is left in group `pgid`.
async fn wait_group_gone(pgid: Pid) {
    for _ in 0..250 {
        if !group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(
        pgid = pgid.as_raw(),
        "process group still present after SIGKILL"
    );
}

/// Whether any live process is in group `pgid`. Zombies do not count: they have exited,
/// and whether their parent has reaped them yet is not the job's business.
pub fn group_alive(pgid: Pid) -> bool {
    if matches!(killpg(pgid, None), Err(nix::errno::Errno::ESRCH)) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No /proc to look closer: the signal probe is the answer.
        return true;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may contain spaces, so split after ')'.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(pgid.as_raw()) && state != "Z" && state != "X"
    })
}

/// Records the process group of the attempt's running step, on a blocking thread (the
/// database is shared with the outbox's writer).
async fn set_pgid(ctx: &Ctx, rep: &Reporter, pgid: Option<i32>) -> anyhow::Result<()> {
    let (records, job, attempt) = (ctx.records.clone(), rep.job.clone(), rep.attempt);
    tokio::task::spawn_blocking(move || records.set_pgid(&job, attempt, pgid)).await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_that_change_what_runs_pass_only_when_the_approval_lists_them() {
        let step = Step::Shell {
            cmd: Some("git status".into()),
            argv: None,
            cwd: None,
            env: [
                ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
                ("LD_PRELOAD".to_string(), "/tmp/x.so".to_string()),
                ("GREETING".to_string(), "hi".to_string()),
            ]
            .into(),
            timeout_s: None,
            artifacts: vec![],
        };
        let (kept, dropped) = without_unapproved_env(&step, &["GIT_CONFIG_COUNT".into()]).unwrap();
        assert_eq!(dropped, vec!["LD_PRELOAD".to_string()]);
        let Step::Shell { env, .. } = kept else {
            unreachable!()
        };
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            ["GIT_CONFIG_COUNT", "GREETING"]
        );
        let all: Vec<String> = vec!["GIT_CONFIG_COUNT".into(), "LD_PRELOAD".into()];
        assert!(without_unapproved_env(&step, &all).is_none());
    }
}
