//! The words of a step that could name paths, and how they meet a rule's path patterns.

use skynet_protocol::shell::{
    Atom, Command, Overlap, PathPattern, Pattern, Run, Script, Vars, Word,
};

use super::super::inert::classify;

/// A word that could name a path, with what people see of it.
pub(super) struct PathWord {
    pub(super) what: String,
    pub(super) paths: Vec<PathPattern>,
    /// A file is read or written there, so a path only known at run time counts.
    pub(super) files: bool,
}

/// A word standing for something only known at run time (arguments read from input).
pub(super) fn unknown_word() -> Word {
    Word {
        atoms: vec![Atom::Param {
            name: String::new(),
            text: String::new(),
            quoted: true,
            plain: false,
        }],
    }
}

/// The strongest overlap of `words` with `patterns`; a `Maybe` only counts where files are
/// read or written. Returns the word that decided.
pub(super) fn best_overlap<'w>(
    patterns: &[Pattern],
    words: &'w [PathWord],
) -> Option<(Overlap, &'w str)> {
    let mut best: Option<(Overlap, &str)> = None;
    for w in words {
        for p in &w.paths {
            for pat in patterns {
                let mut o = pat.overlap(p);
                if o == Overlap::Maybe && !w.files {
                    o = Overlap::No;
                }
                if o > best.map(|b| b.0).unwrap_or(Overlap::No) {
                    best = Some((o, &w.what));
                    if o == Overlap::Sure {
                        return best;
                    }
                }
            }
        }
    }
    best
}

/// The words of one command that could name paths: every word (wrappers included, so
/// `env -C DIR` counts), the value after `=` in `--file=PATH` or `if=PATH`, what its
/// wrappers write, and for `xargs` the arguments read from input.
pub(super) fn command_words(
    cmd: &Command,
    vars: &Vars,
    base: &PathPattern,
    files: bool,
) -> Vec<PathWord> {
    let mut out = Vec::new();
    let mut push = |w: &Word, files: bool| {
        out.push(PathWord {
            what: w.text(),
            paths: PathPattern::of_word(w, base, vars),
            files,
        });
        if let Some(v) = w.after_equals() {
            out.push(PathWord {
                what: w.text(),
                paths: PathPattern::of_word(&v, base, vars),
                files,
            });
        }
    };
    for w in cmd.words.iter().chain(cmd.assigns.iter().map(|(_, v)| v)) {
        push(w, files);
    }
    for w in &cmd.writes {
        push(w, true);
    }
    if cmd.stdin_args && files {
        push(&unknown_word(), true);
    }
    out
}

/// Every word of a shell step that could name a path.
pub(super) fn shell_words(
    script: &Script,
    vars: &Vars,
    base: &PathPattern,
    out: &mut Vec<PathWord>,
) {
    for cmd in &script.commands {
        let files = match cmd.run {
            Run::Program { .. } => classify(cmd).reads_files,
            _ => true,
        };
        out.extend(command_words(cmd, vars, base, files));
    }
    for r in script.redirects.iter().filter(|r| r.kind.is_file()) {
        // bash refuses a target that brace-expands to several words; judged by each anyway.
        let targets = r
            .target
            .expand_braces()
            .unwrap_or_else(|| vec![r.target.clone()]);
        out.push(PathWord {
            what: r.target.text(),
            paths: targets
                .iter()
                .flat_map(|t| PathPattern::of_word(t, base, vars))
                .collect(),
            files: true,
        });
    }
    for a in script.assigns.iter().filter(|a| a.command.is_none()) {
        if let Some(v) = &a.value {
            out.push(PathWord {
                what: format!("{}={}", a.name, v.text()),
                paths: PathPattern::of_word(v, base, vars),
                files: false,
            });
        }
    }
    for d in &script.data {
        out.push(PathWord {
            what: d.text(),
            paths: PathPattern::of_word(d, base, vars),
            files: false,
        });
    }
}
