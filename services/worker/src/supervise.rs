//! The step supervisor: a small process between the worker and each step, so that a step's
//! processes never outlive their worker.
//!
//! The worker starts every step as `<worker binary> __supervise <until> <grace_ms> --
//! <program> <args>...` in a process group of its own, with a pipe on the supervisor's
//! stdin; `until` is the end of the worker's lease, in milliseconds of [`boottime_ms`] (one
//! clock for every process of the machine). The first line on the pipe is the step's
//! [`crate::sandbox::Confinement`] as JSON (the rules can be longer than one argument may
//! be), or `-` for none; a first line that is neither, or none, and the step does not run.
//! The supervisor makes itself the reaper of the step's orphans (`PR_SET_CHILD_SUBREAPER`),
//! confines itself with those rules (so the step and all it starts are confined: Landlock
//! domains are inherited and cannot be left; one it cannot apply stops the step with a line
//! on stderr under `require`), starts the step in its group, and ends the whole group when
//! - the pipe closes: the worker is gone (killed, crashed, exited);
//! - the worker sends `S` on it: stop, as asked (a cancel, a time limit, a fenced attempt);
//! - its lease runs out: the worker extends it (`L<until>` lines on the pipe) each time one
//!   of its heartbeats reaches the server; a frozen worker (SIGSTOP, a sleeping laptop) or
//!   one cut off from NATS does not, so the step ends before anyone can declare the worker
//!   lost and run the job elsewhere. The clock counts the machine's sleep too.
//!
//! Ending the group is SIGTERM to every process in it, `grace_ms` to exit, then SIGKILL to
//! what is left, and to every orphan that moved to a group of its own. When the step exits
//! by itself, whatever it left behind goes the same way, and the supervisor exits as the
//! step did (the same code, or the same signal), so the worker sees the step's own status.

use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::sandbox::Confinement;

/// The hidden first argument that makes a worker binary a supervisor.
pub const SUBCOMMAND: &str = "__supervise";

/// The command line that supervises `program args` (after the supervisor program itself),
/// with the lease ending at `until` ([`boottime_ms`]).
pub fn args(until: i64, grace: Duration, program: &str, rest: &[String]) -> Vec<String> {
    let mut v = vec![
        SUBCOMMAND.to_owned(),
        until.to_string(),
        grace.as_millis().to_string(),
        "--".to_owned(),
        program.to_owned(),
    ];
    v.extend(rest.iter().cloned());
    v
}

/// The first line the worker writes to a supervisor: how the step is confined.
pub fn first_line(confinement: Option<&Confinement>) -> String {
    match confinement.and_then(|c| serde_json::to_string(c).ok()) {
        Some(json) => format!("{json}\n"),
        None => "-\n".to_owned(),
    }
}

/// Reads [`first_line`] back: `Ok(None)` for none; an error for anything else.
fn read_first_line(line: &str) -> Result<Option<Confinement>, String> {
    match line.trim_end_matches('\n') {
        "-" => Ok(None),
        "" => Err("the worker sent no confinement".into()),
        json => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| format!("unreadable confinement: {e}")),
    }
}

/// Runs as a supervisor when the command line asks for it; every binary that can host a
/// worker calls this first thing in `main`.
pub fn main_if_asked() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(SUBCOMMAND) {
        return None;
    }
    Some(match parse(&args[2..]) {
        Some(p) => supervise(p),
        None => {
            eprintln!(
                "usage: {SUBCOMMAND} <until_ms> <grace_ms> -- <program> [args...] \
                 (the confinement as JSON, or -, on the first line of stdin)"
            );
            ExitCode::from(64)
        }
    })
}

struct Parsed {
    until: i64,
    grace: Duration,
    program: String,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Option<Parsed> {
    let [until, grace, dashes, program, rest @ ..] = args else {
        return None;
    };
    if dashes != "--" {
        return None;
    }
    Some(Parsed {
        until: until.parse().ok()?,
        grace: Duration::from_millis(grace.parse().ok()?),
        program: program.clone(),
        rest: rest.to_vec(),
    })
}

/// Milliseconds on a clock that keeps counting while the machine sleeps.
pub fn boottime_ms() -> i64 {
    #[cfg(target_os = "linux")]
    let clock = nix::time::ClockId::CLOCK_BOOTTIME;
    #[cfg(not(target_os = "linux"))]
    let clock = nix::time::ClockId::CLOCK_MONOTONIC;
    nix::time::clock_gettime(clock)
        .map(|t| t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000)
        .unwrap_or(0)
}

enum Event {
    Lease(i64),
    Stop,
    WorkerGone,
    Exited(std::io::Result<std::process::ExitStatus>),
}

/// A line on stderr, if anyone still reads it: the worker that did may be gone, and a
/// failed write must never stop the supervisor from ending the step.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn supervise(p: Parsed) -> ExitCode {
    let Parsed {
        until,
        grace,
        program,
        rest,
    } = p;
    let program = program.as_str();
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        say(&format!(
            "skynet supervisor: cannot reap the step's orphans: {e}"
        ));
    }
    // The confinement comes first on the pipe; the stdin thread reads the rest from the
    // same buffer.
    let mut line = String::new();
    let sandbox = match std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)
        .map_err(|e| e.to_string())
        .and_then(|_| read_first_line(&line))
    {
        Ok(s) => s,
        Err(e) => {
            say(&format!(
                "skynet: cannot confine the step ({e}); not running it"
            ));
            return ExitCode::from(126);
        }
    };
    // Before any thread starts: Landlock confines the calling thread and what it starts.
    if let Some(spec) = &sandbox {
        match crate::sandbox::enforce(spec) {
            Ok(()) => {}
            Err(e) if spec.require => {
                say(&format!(
                    "skynet: cannot confine the step ({e}); not running it (--sandbox require)"
                ));
                return ExitCode::from(126);
            }
            Err(e) => say(&format!("skynet: the step runs unconfined: {e}")),
        }
    }
    let me = nix::unistd::getpid();
    let mut child = match Command::new(program)
        .args(&rest)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            say(&format!("cannot start {program}: {e}"));
            return ExitCode::from(127);
        }
    };
    let (tx, rx) = mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let stdin = std::io::stdin().lock();
            for line in stdin.lines() {
                let Ok(line) = line else { break };
                let event = match line.trim() {
                    "S" => Event::Stop,
                    l => match l.strip_prefix('L').and_then(|n| n.parse().ok()) {
                        Some(until) => Event::Lease(until),
                        None => continue,
                    },
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::WorkerGone);
        });
    }
    std::thread::spawn(move || {
        // Waiting for this one child only; the other reaping happens while ending the group.
        let _ = tx.send(Event::Exited(child.wait()));
    });

    let mut until = until;
    let end = loop {
        // Checked often, so a machine waking from sleep ends an expired step at once.
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Lease(u)) => until = until.max(u),
            Ok(Event::Stop) => break None,
            Ok(Event::WorkerGone) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                say("skynet: the worker is gone; stopping the step");
                break None;
            }
            Ok(Event::Exited(status)) => break Some(status),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if boottime_ms() > until {
            say("skynet: the worker lost touch with the server; stopping the step");
            break None;
        }
    };
    match end {
        Some(status) => {
            // The step is over: whatever it left behind goes.
            end_group(me, Duration::ZERO);
            exit_like(status)
        }
        None => {
            end_group(me, grace);
            // The step's own status, if it is known by now.
            let status = rx.try_iter().find_map(|e| match e {
                Event::Exited(s) => Some(s),
                _ => None,
            });
            match status {
                Some(s) => exit_like(s),
                None => ExitCode::from(137),
            }
        }
    }
}

/// Mirrors the step's status: its exit code, or death by its signal.
fn exit_like(status: std::io::Result<std::process::ExitStatus>) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
            (None, Some(sig)) => {
                if let Ok(sig) = Signal::try_from(sig) {
                    let _ = nix::sys::signal::raise(sig);
                }
                ExitCode::from((128 + sig).clamp(0, 255) as u8)
            }
            _ => ExitCode::FAILURE,
        },
        Err(_) => ExitCode::FAILURE,
    }
}

/// The processes of our group (but us), and our children that left it.
fn members(me: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            if pid == me.as_raw() {
                return None;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp ...; comm may contain spaces, so split after ')'.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            let pgrp: i32 = fields.next()?.parse().ok()?;
            if state == "Z" || state == "X" {
                // A zombie child of ours is reaped below; others are not ours to wait for.
                return None;
            }
            (pgrp == me.as_raw() || ppid == me.as_raw()).then(|| Pid::from_raw(pid))
        })
        .collect()
}

/// Reaps every exited child of ours, without blocking.
fn reap() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Whether this process has any child left (alive, or exited and not yet reaped).
fn has_children() -> bool {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    !matches!(
        waitpid(None, Some(WaitPidFlag::WNOHANG)),
        Err(nix::errno::Errno::ECHILD)
    )
}

/// SIGTERM to everything of the step, `grace` to exit, then SIGKILL until nothing is left.
fn end_group(me: Pid, grace: Duration) {
    reap();
    // Every process the step left is a child of ours: its parent is, or it was orphaned and
    // came to us (we are the subreaper). With no child left there is nothing to end, and
    // the scan of every process on the machine is spared.
    if !has_children() {
        return;
    }
    let left = members(me);
    if left.is_empty() {
        reap();
        return;
    }
    if !grace.is_zero() {
        for p in &left {
            let _ = kill(*p, Signal::SIGTERM);
        }
        let until = std::time::Instant::now() + grace;
        while std::time::Instant::now() < until {
            reap();
            if members(me).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for _ in 0..500 {
        let left = members(me);
        if left.is_empty() {
            break;
        }
        for p in left {
            let _ = kill(p, Signal::SIGKILL);
        }
        reap();
        std::thread::sleep(Duration::from_millis(10));
    }
    reap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses_back() {
        let a = args(
            123_456,
            Duration::from_millis(500),
            "sh",
            &["-c".into(), "echo -- x".into()],
        );
        assert_eq!(a[0], SUBCOMMAND);
        let p = parse(&a[1..]).unwrap();
        assert_eq!(p.until, 123_456);
        assert_eq!(p.grace, Duration::from_millis(500));
        assert_eq!(p.program, "sh");
        assert_eq!(p.rest, vec!["-c".to_string(), "echo -- x".to_string()]);
        assert!(parse(&["1".into(), "2".into(), "x".into(), "sh".into()]).is_none());
    }

    #[test]
    fn the_confinement_line_reads_back_and_anything_else_is_refused() {
        let c = Confinement {
            abi: 7,
            require: true,
            network: false,
            rules: vec![crate::sandbox::rules::Rule {
                path: "/h/src".into(),
                write: true,
                dir: true,
                list_only: false,
            }],
        };
        let line = first_line(Some(&c));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert_eq!(read_first_line(&line), Ok(Some(c)));
        assert_eq!(read_first_line(&first_line(None)), Ok(None));
        assert!(
            read_first_line("").is_err(),
            "the worker died before it said"
        );
        assert!(read_first_line("L123\n").is_err());
        assert!(read_first_line("{\"abi\":7}\n").is_err());
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boottime_ms() > a);
    }
}
