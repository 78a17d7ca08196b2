//! Documentation generated from the command tree itself: shell completions (`clap_complete`)
//! and manual pages (`clap_mangen`), so they can never disagree with `--help`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = crate::command();
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
