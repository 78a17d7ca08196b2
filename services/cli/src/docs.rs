//! Documentation generated from the command tree itself: shell completions (`clap_complete`)
//! and manual pages (`clap_mangen`), so they can never disagree with `--help`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The command tree without its hidden subcommands (`clap_complete` would offer them).
fn visible() -> clap::Command {
    let full = crate::command();
    let mut cmd = clap::Command::new("skynet")
        .version(skynet_protocol::VERSION)
        .propagate_version(true);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = visible();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "skynet", &mut out);
    let _ = out.flush();
    ExitCode::SUCCESS
}

pub fn man(out: Option<&Path>) -> ExitCode {
    let cmd = crate::command();
    let result = match out {
        None => {
            let mut stdout = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut stdout)
                .and_then(|()| stdout.flush())
        }
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| {
            clap_mangen::generate_to(cmd, dir)?;
            println!("manual pages written to {}", dir.display());
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skynet man: {e}");
            ExitCode::FAILURE
        }
    }
}
