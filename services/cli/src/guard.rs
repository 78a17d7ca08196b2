//! `skynet __guard --parent PID -- PROGRAM ARGS...`: the hidden first stage of every child
//! that must not outlive `skynet up` (its nats-server).
//!
//! `skynet up` re-executes its own binary with this subcommand instead of starting the child
//! directly, because setting a parent-death signal needs code between fork and exec, and
//! `pre_exec` is `unsafe` (forbidden here). The guard asks the kernel for SIGTERM when its
//! parent dies, checks that the parent is still the `skynet up` that started it (it may have
//! died before the request took effect), leaves the terminal's process group (so Ctrl-C
//! reaches `skynet up`, which then stops the server after the services have drained) and
//! then becomes the program with `exec`. The parent-death signal survives `exec`, so the
//! server itself carries it, with no process in between to forward signals or be reaped.
//!
//! Watching a pipe from `skynet up` instead would need a guard process that stays alive
//! beside the server, forwards its signals and reports its exit: more moving parts for the
//! same guarantee.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Args;
use nix::sys::signal::Signal;
use nix::unistd::{Pid, getppid, setpgid};

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The pid of the process whose death ends the program.
    #[arg(long)]
    parent: i32,

    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

pub fn main(args: GuardArgs) -> ExitCode {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        eprintln!("skynet __guard: cannot set the parent-death signal: {e}");
        return ExitCode::from(1);
    }
    // The parent may have died between fork and prctl: then nobody would signal us.
    if getppid() != Pid::from_raw(args.parent) {
        return ExitCode::from(1);
    }
    // Out of the terminal's foreground group: Ctrl-C is for `skynet up`, which stops us last.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let Some((program, rest)) = args.command.split_first() else {
        return ExitCode::from(64);
    };
    let err = std::process::Command::new(program).args(rest).exec();
    eprintln!(
        "skynet __guard: cannot start {}: {err}",
        program.to_string_lossy()
    );
    ExitCode::from(127)
}
