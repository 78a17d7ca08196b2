//! Commands as people (and the rules' regular expressions) read them: quotes removed,
//! substitutions shown as the commands they run, a command held in a variable as each
//! program the line puts there.

use skynet_protocol::shell::{Atom, Command, Run, Script, Vars, Word};

pub(super) const MAX_RENDER_DEPTH: usize = 12;
pub(super) const MAX_PIPELINE_TEXTS: usize = 16;

/// A command whose name is held in a variable, as each program the line (or the step's
/// env) puts in that variable.
pub(super) fn candidates(cmd: &Command, vars: &Vars) -> Vec<Command> {
    let Run::Dynamic { word: Some(w), .. } = &cmd.run else {
        return Vec::new();
    };
    let Some(names) = vars.literals(w) else {
        return Vec::new();
    };
    names
        .into_iter()
        .map(|n| {
            let mut c = cmd.clone();
            c.run = Run::Program {
                name: n.rsplit('/').next().unwrap_or(&n).to_owned(),
                path: n.contains('/').then(|| n.clone()),
            };
            c
        })
        .collect()
}

/// A word as people read it, with each substitution shown as the commands it runs (so
/// `$(c''url x)` reads `$(curl x)`).
pub(super) fn render(script: &Script, w: &Word, depth: usize) -> String {
    let mut s = String::new();
    for a in &w.atoms {
        match a {
            Atom::Subst { text, commands, .. }
                if !commands.is_empty() && depth < MAX_RENDER_DEPTH =>
            {
                let open = if text.starts_with('<') {
                    "<("
                } else if text.starts_with('>') {
                    ">("
                } else {
                    "$("
                };
                let top = commands
                    .clone()
                    .map(|i| script.commands[i].depth)
                    .min()
                    .unwrap_or(0);
                let inner: Vec<String> = commands
                    .clone()
                    .filter(|&i| script.commands[i].depth == top)
                    .map(|i| match script.commands[i].run {
                        Run::Program { .. } => render_inner(script, i, depth + 1),
                        _ => render_raw(script, i, depth + 1),
                    })
                    .collect();
                s.push_str(open);
                s.push_str(&inner.join("; "));
                s.push(')');
            }
            other => s.push_str(
                &Word {
                    atoms: vec![other.clone()],
                }
                .text(),
            ),
        }
    }
    s
}

pub(super) fn render_inner(script: &Script, i: usize, depth: usize) -> String {
    inner_of(script, &script.commands[i], depth)
}

pub(super) fn inner_of(script: &Script, cmd: &Command, depth: usize) -> String {
    let head = match &cmd.run {
        Run::Program { name, .. } => name.clone(),
        Run::Dynamic { word: Some(w), .. } => render(script, w, depth),
        _ => return raw_of(script, cmd, depth),
    };
    std::iter::once(head)
        .chain(cmd.args.iter().map(|a| render(script, a, depth)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn render_raw(script: &Script, i: usize, depth: usize) -> String {
    raw_of(script, &script.commands[i], depth)
}

pub(super) fn raw_of(script: &Script, cmd: &Command, depth: usize) -> String {
    cmd.assigns
        .iter()
        .map(|(n, v)| format!("{n}={}", render(script, v, depth)))
        .chain(cmd.words.iter().map(|w| render(script, w, depth)))
        .collect::<Vec<_>>()
        .join(" ")
}
