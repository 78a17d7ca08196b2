//! Programs inert in all but a few forms: `date` that sets the clock, `hostname` that sets
//! the name, `uniq` and `xxd` that write their second operand, bash's `test -v`, and
//! interpreters and build tools asked only for their version.

use skynet_protocol::shell::Word;

use super::{abbreviates, fixed_all};

fn operands(args: &[Word], with_value: &str) -> Result<Vec<String>, String> {
    let args = fixed_all(args)?;
    let mut out = Vec::new();
    let mut i = 0;
    let mut options = true;
    while i < args.len() {
        let a = &args[i];
        if options && a == "--" {
            options = false;
        } else if options && a.starts_with('-') && a.len() > 1 {
            let flags = &a[1..];
            if let Some(pos) = flags.find(|c| with_value.contains(c))
                && pos + 1 == flags.len()
            {
                i += 1;
            }
        } else {
            out.push(a.clone());
        }
        i += 1;
    }
    Ok(out)
}

pub(super) fn date(args: &[Word]) -> Result<(), String> {
    let fixed = fixed_all(args)?;
    for a in &fixed {
        if a.starts_with("--") && abbreviates(a[2..].split('=').next().unwrap_or(""), "set") {
            return Err("sets the clock".into());
        }
        if a.starts_with('-') && !a.starts_with("--") && a[1..].contains('s') {
            return Err("sets the clock".into());
        }
    }
    match operands(args, "dfrI")?.iter().find(|o| !o.starts_with('+')) {
        Some(o) => Err(format!("sets the clock ({o})")),
        None => Ok(()),
    }
}

pub(super) fn hostname(args: &[Word]) -> Result<(), String> {
    let fixed = fixed_all(args)?;
    if fixed.iter().any(|a| {
        a.starts_with("--file")
            || a.starts_with("--boot")
            || (a.starts_with('-') && !a.starts_with("--") && a.contains(['F', 'b']))
    }) {
        return Err("sets the host name".into());
    }
    if !operands(args, "")?.is_empty() {
        return Err("sets the host name".into());
    }
    Ok(())
}

pub(super) fn uniq(args: &[Word]) -> Result<(), String> {
    if operands(args, "fsw")?.len() > 1 {
        return Err("writes its second operand".into());
    }
    Ok(())
}

pub(super) fn xxd(args: &[Word]) -> Result<(), String> {
    if operands(args, "cglosnC")?.len() > 1 {
        return Err("writes its second operand".into());
    }
    Ok(())
}

/// bash's `test -v` evaluates an array subscript, which can run a command.
pub(super) fn test(args: &[Word]) -> Result<(), String> {
    let real: Vec<&Word> = args
        .iter()
        .filter(|a| a.literal().as_deref() != Some("]"))
        .collect();
    if real.iter().any(|a| a.literal().as_deref() == Some("-v")) {
        return Err("-v evaluates a variable's subscript (bash runs commands in it)".into());
    }
    if real.len() <= 2 && real.first().is_some_and(|a| a.is_dynamic()) {
        return Err("an operator only known when it runs".into());
    }
    Ok(())
}

/// Only `--version` (or the program's own spelling of it), alone.
pub(super) fn version(args: &[Word], forms: &[&str]) -> Result<(), String> {
    match args {
        [a] if a.literal().is_some_and(|l| forms.contains(&l.as_str())) => Ok(()),
        _ => Err("only its version query is known to be read-only".into()),
    }
}
