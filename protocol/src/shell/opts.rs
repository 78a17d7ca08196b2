//! The option syntax of each wrapper, as data: which short and long options it has and
//! which take a value, read the way getopt reads them (bundles, attached values, `--x=v`,
//! unambiguous abbreviations of long options).

use super::word::Word;

/// A program's options.
#[derive(Default)]
pub(super) struct Opts {
    /// Short options that take a value (attached or the next word).
    pub(super) short_val: &'static str,
    /// Short options that take a value only when attached (`xargs -i{}`).
    pub(super) short_opt: &'static str,
    /// Short flags.
    pub(super) short: &'static str,
    /// Long options that take a value (`--x=v` or `--x v`).
    pub(super) long_val: &'static [&'static str],
    /// Long options whose value is optional (`--x` or `--x=v`).
    pub(super) long_opt: &'static [&'static str],
    /// Long flags.
    pub(super) long: &'static [&'static str],
    /// A lone number is an option (`nice -5`).
    pub(super) numbers: bool,
}

pub(super) type Found = Vec<(String, Option<Word>)>;

/// Reads options from the front of `words`: those found (short ones as `-x`, long ones by
/// their full name as `--name`) and the index of the first operand.
pub(super) fn options(words: &[Word], spec: &Opts) -> Result<(Found, usize), String> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let Some(lit) = w.literal() else {
            if w.may_be_option() {
                return Err(format!("an option only known when it runs ({})", w.text()));
            }
            break;
        };
        if lit == "--" {
            i += 1;
            break;
        }
        if lit == "-" || !lit.starts_with('-') {
            break;
        }
        if spec.numbers && lit[1..].chars().all(|c| c.is_ascii_digit()) {
            found.push(("-n".into(), Some(Word::quoted(&lit[1..]))));
            i += 1;
            continue;
        }
        if let Some(long) = lit.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let all = spec
                .long_val
                .iter()
                .chain(spec.long_opt)
                .chain(spec.long)
                .copied();
            let full = resolve_long(name, all).ok_or_else(|| format!("--{name}"))?;
            let value = if spec.long_val.contains(&full) {
                match value {
                    Some(v) => Some(Word::quoted(v)),
                    None => {
                        i += 1;
                        Some(
                            words
                                .get(i)
                                .cloned()
                                .ok_or_else(|| format!("--{full} without a value"))?,
                        )
                    }
                }
            } else if spec.long_opt.contains(&full) {
                value.map(Word::quoted)
            } else if value.is_some() {
                return Err(format!("--{full}="));
            } else {
                None
            };
            found.push((format!("--{full}"), value));
        } else {
            let chars: Vec<char> = lit[1..].chars().collect();
            for (k, &c) in chars.iter().enumerate() {
                let rest: String = chars[k + 1..].iter().collect();
                if spec.short_val.contains(c) {
                    let value = if rest.is_empty() {
                        i += 1;
                        words
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("-{c} without a value"))?
                    } else {
                        Word::quoted(&rest)
                    };
                    found.push((format!("-{c}"), Some(value)));
                    break;
                }
                if spec.short_opt.contains(c) {
                    found.push((
                        format!("-{c}"),
                        (!rest.is_empty()).then(|| Word::quoted(&rest)),
                    ));
                    break;
                }
                if spec.short.contains(c) {
                    found.push((format!("-{c}"), None));
                } else {
                    return Err(format!("-{c}"));
                }
            }
        }
        i += 1;
    }
    Ok((found, i))
}

/// A long option's full name from what was given: exact, or the one it abbreviates.
pub(super) fn resolve_long<'a>(
    given: &str,
    all: impl Iterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    if let Some(exact) = all.clone().find(|n| *n == given) {
        return Some(exact);
    }
    if given.is_empty() {
        return None;
    }
    let mut matches = all.filter(|n| n.starts_with(given));
    let first = matches.next()?;
    matches.next().is_none().then_some(first)
}

pub(super) fn has(found: &Found, names: &[&str]) -> bool {
    found.iter().any(|(n, _)| names.contains(&n.as_str()))
}

pub(super) fn value<'a>(found: &'a Found, names: &[&str]) -> Option<&'a Word> {
    found
        .iter()
        .rev()
        .find(|(n, v)| names.contains(&n.as_str()) && v.is_some())
        .and_then(|(_, v)| v.as_ref())
}

pub(super) const SUDO: Opts = Opts {
    short_val: "CDgpRrTtUu",
    short_opt: "",
    short: "AbEeHhiKklnPSsVv",
    long_val: &[
        "close-from",
        "chdir",
        "group",
        "host",
        "prompt",
        "chroot",
        "role",
        "type",
        "command-timeout",
        "other-user",
        "user",
    ],
    long_opt: &["preserve-env"],
    long: &[
        "askpass",
        "background",
        "bell",
        "edit",
        "set-home",
        "help",
        "login",
        "remove-timestamp",
        "reset-timestamp",
        "list",
        "non-interactive",
        "preserve-groups",
        "stdin",
        "shell",
        "version",
        "validate",
    ],
    numbers: false,
};

pub(super) const DOAS: Opts = Opts {
    short_val: "uC",
    short: "nsL",
    ..EMPTY
};

pub(super) const EMPTY: Opts = Opts {
    short_val: "",
    short_opt: "",
    short: "",
    long_val: &[],
    long_opt: &[],
    long: &[],
    numbers: false,
};

pub(super) const ENV: Opts = Opts {
    short_val: "uCS",
    short: "i0v",
    long_val: &["unset", "chdir", "split-string"],
    long_opt: &["block-signal", "default-signal", "ignore-signal"],
    long: &[
        "ignore-environment",
        "null",
        "debug",
        "list-signal-handling",
        "help",
        "version",
    ],
    ..EMPTY
};

pub(super) const NICE: Opts = Opts {
    short_val: "n",
    long_val: &["adjustment"],
    long: &["help", "version"],
    numbers: true,
    ..EMPTY
};

pub(super) const IONICE: Opts = Opts {
    short_val: "cnpPu",
    short: "t",
    long_val: &["class", "classdata", "pid", "pgid", "uid"],
    long: &["ignore", "help", "version"],
    ..EMPTY
};

pub(super) const TIMEOUT: Opts = Opts {
    short_val: "ks",
    short: "v",
    long_val: &["kill-after", "signal"],
    long: &[
        "preserve-status",
        "foreground",
        "verbose",
        "help",
        "version",
    ],
    ..EMPTY
};

pub(super) const PLAIN: Opts = Opts {
    long: &["help", "version"],
    ..EMPTY
};

pub(super) const SETSID: Opts = Opts {
    short: "cfw",
    long: &["ctty", "fork", "wait", "help", "version"],
    ..EMPTY
};

pub(super) const STDBUF: Opts = Opts {
    short_val: "ioe",
    long_val: &["input", "output", "error"],
    long: &["help", "version"],
    ..EMPTY
};

pub(super) const TIME: Opts = Opts {
    short_val: "fo",
    short: "pvqa",
    long_val: &["format", "output"],
    long: &[
        "portability",
        "verbose",
        "quiet",
        "append",
        "help",
        "version",
    ],
    ..EMPTY
};

pub(super) const COMMAND: Opts = Opts {
    short: "pvV",
    ..EMPTY
};

pub(super) const EXEC: Opts = Opts {
    short_val: "a",
    short: "cl",
    ..EMPTY
};

pub(super) const XARGS: Opts = Opts {
    short_val: "adEILnPs",
    short_opt: "eil",
    short: "0prtx",
    long_val: &[
        "arg-file",
        "delimiter",
        "max-args",
        "max-procs",
        "max-chars",
        "process-slot-var",
    ],
    long_opt: &["eof", "replace", "max-lines"],
    long: &[
        "null",
        "interactive",
        "no-run-if-empty",
        "verbose",
        "exit",
        "show-limits",
        "open-tty",
        "help",
        "version",
    ],
    numbers: false,
};

pub(super) const SU: Opts = Opts {
    short_val: "cgGsw",
    short: "lmpfP",
    long_val: &[
        "command",
        "group",
        "supp-group",
        "shell",
        "whitelist-environment",
    ],
    long: &[
        "login",
        "preserve-environment",
        "pty",
        "fast",
        "help",
        "version",
    ],
    ..EMPTY
};

pub(super) const WATCH: Opts = Opts {
    short_val: "nq",
    short_opt: "d",
    short: "tbegcxpwhv",
    long_val: &["interval", "equexit"],
    long_opt: &["differences"],
    long: &[
        "no-title",
        "beep",
        "errexit",
        "chgexit",
        "color",
        "no-color",
        "exec",
        "precise",
        "no-wrap",
        "no-linewrap",
        "help",
        "version",
    ],
    numbers: false,
};
