//! Which commands are proven inert: they read and print, and nothing in their arguments can
//! make them run another program or write a file. A rule with `inert = true` only matches
//! those. Each program is one row of [`PROGRAMS`]: inert whatever its arguments, inert
//! unless given certain options, or inert only in the forms a small function accepts
//! (awk, sed, find, git, ...). A program not in the table is not inert.

mod awk;
mod find;
mod git;
mod sed;
mod small;

use small::{date, hostname, test, uniq, version, xxd};

use skynet_protocol::shell::{Command, Run, Word};

/// What the table says about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// Why it is not proven inert, if it is not.
    pub not_inert: Option<String>,
    /// Whether its operands may name files it reads (so a variable among them could be a
    /// secret); true for programs the table does not know.
    pub reads_files: bool,
    /// Whether the table has a row for it.
    pub known: bool,
}

impl Class {
    pub fn is_inert(&self) -> bool {
        self.not_inert.is_none()
    }
}

/// Options that make a program run or write something.
pub(crate) struct Unsafe {
    /// Short options that do.
    short: &'static str,
    /// Short options that take a value (the rest of the word or the next one).
    short_val: &'static str,
    /// Long options that do (an abbreviation counts).
    long: &'static [&'static str],
    why: &'static str,
}

enum Kind {
    /// No argument makes it run a program or write a file.
    Inert,
    /// Inert unless given one of these options.
    Unless(Unsafe),
    /// Inert only in the forms this accepts.
    Check(fn(&[Word]) -> Result<(), String>),
}

struct Program {
    names: &'static [&'static str],
    kind: Kind,
    /// Its operands name files it reads.
    files: bool,
}

const fn inert(names: &'static [&'static str], files: bool) -> Program {
    Program {
        names,
        kind: Kind::Inert,
        files,
    }
}

const fn unless(names: &'static [&'static str], files: bool, u: Unsafe) -> Program {
    Program {
        names,
        kind: Kind::Unless(u),
        files,
    }
}

const fn check(
    names: &'static [&'static str],
    files: bool,
    f: fn(&[Word]) -> Result<(), String>,
) -> Program {
    Program {
        names,
        kind: Kind::Check(f),
        files,
    }
}

const PROGRAMS: &[Program] = &[
    inert(
        &[
            "cat",
            "head",
            "tail",
            "wc",
            "grep",
            "egrep",
            "fgrep",
            "du",
            "stat",
            "md5sum",
            "sha1sum",
            "sha224sum",
            "sha256sum",
            "sha384sum",
            "sha512sum",
            "b2sum",
            "cksum",
            "base64",
            "base32",
            "hexdump",
            "od",
            "strings",
            "diff",
            "cmp",
            "comm",
            "cut",
            "nl",
            "rev",
            "tac",
            "fold",
            "fmt",
            "column",
            "jq",
            "tr",
            "ls",
            "ll",
            "la",
            "dir",
            "realpath",
            "readlink",
            "cd",
            "lsof",
            "bc",
            "paste",
            "join",
            "expand",
            "unexpand",
            "pr",
        ],
        true,
    ),
    inert(
        &[
            "echo",
            "printf",
            "true",
            "false",
            "sleep",
            "wait",
            "basename",
            "dirname",
            "seq",
            "expr",
            "pwd",
            "whoami",
            "id",
            "groups",
            "cal",
            "uname",
            "uptime",
            "free",
            "df",
            "ps",
            "pgrep",
            "pstree",
            "printenv",
            "env",
            "lsblk",
            "lscpu",
            "lsusb",
            "lspci",
            "vmstat",
            "iostat",
            "mpstat",
            "nproc",
            "which",
            "whereis",
            "type",
            "getconf",
            "locale",
            "tput",
            "tty",
            "users",
            "who",
            "w",
            "last",
            "sw_vers",
            "system_profiler",
            "ping",
            "top",
            "exit",
            "return",
            "set",
            "export",
            "unset",
            "shift",
            "read",
            "local",
            ":",
            "command",
            "arch",
            "logname",
            "hostid",
        ],
        false,
    ),
    unless(
        &["sort"],
        true,
        Unsafe {
            short: "o",
            short_val: "kStTy",
            long: &["output", "compress-program"],
            why: "writes a file (-o) or runs a compressor",
        },
    ),
    unless(
        &["rg"],
        true,
        Unsafe {
            short: "",
            short_val: "",
            long: &["pre", "hostname-bin"],
            why: "runs a program on each file (--pre)",
        },
    ),
    unless(
        &["ag"],
        true,
        Unsafe {
            short: "",
            short_val: "",
            long: &["pager"],
            why: "starts a pager",
        },
    ),
    unless(
        &["ack"],
        true,
        Unsafe {
            short: "",
            short_val: "",
            long: &["pager", "output"],
            why: "starts a pager or evaluates Perl (--output)",
        },
    ),
    unless(
        &["fd", "fdfind"],
        true,
        Unsafe {
            short: "xX",
            short_val: "etEdScjo",
            long: &["exec", "exec-batch"],
            why: "runs a command on each file (-x)",
        },
    ),
    unless(
        &["yq"],
        true,
        Unsafe {
            short: "is",
            short_val: "",
            long: &["inplace", "in-place", "split-exp"],
            why: "writes files (-i)",
        },
    ),
    unless(
        &["file"],
        true,
        Unsafe {
            short: "C",
            short_val: "emfFP",
            long: &["compile"],
            why: "writes a compiled magic file (-C)",
        },
    ),
    unless(
        &["tree"],
        true,
        Unsafe {
            short: "oR",
            short_val: "LPIHT",
            long: &["output"],
            why: "writes files (-o, -R)",
        },
    ),
    unless(
        &["journalctl"],
        false,
        Unsafe {
            short: "",
            short_val: "",
            long: &[
                "vacuum-size",
                "vacuum-time",
                "vacuum-files",
                "rotate",
                "flush",
                "sync",
                "relinquish-var",
                "smart-relinquish-var",
                "setup-keys",
                "update-catalog",
            ],
            why: "deletes or rewrites the journal",
        },
    ),
    unless(
        &["dmesg"],
        false,
        Unsafe {
            short: "CcnDE",
            short_val: "fFls",
            long: &[
                "clear",
                "read-clear",
                "console-level",
                "console-off",
                "console-on",
            ],
            why: "clears or reconfigures the kernel log",
        },
    ),
    unless(
        &["sensors"],
        false,
        Unsafe {
            short: "s",
            short_val: "c",
            long: &["set"],
            why: "sets sensor limits",
        },
    ),
    check(
        &["awk", "gawk", "mawk", "nawk", "busybox-awk"],
        true,
        awk::check,
    ),
    check(&["sed", "gsed"], true, sed::check),
    check(&["find", "gfind"], true, find::check),
    check(&["git"], true, git::check),
    check(&["date"], false, date),
    check(&["hostname"], false, hostname),
    check(&["uniq"], true, uniq),
    check(&["xxd"], true, xxd),
    check(&["test", "["], false, test),
    check(&["cargo"], false, |a| {
        version(a, &["--version", "-V", "version"])
    }),
    check(&["rustc", "python", "python3", "pip", "pip3"], false, |a| {
        version(a, &["--version", "-V"])
    }),
    check(&["node", "npm"], false, |a| {
        version(a, &["--version", "-v"])
    }),
    check(&["go"], false, |a| version(a, &["version"])),
    check(&["java", "javac"], false, |a| {
        version(a, &["-version", "--version"])
    }),
    check(&["gcc", "cc", "clang", "cmake", "ruby"], false, |a| {
        version(a, &["--version"])
    }),
    check(&["make"], false, |a| version(a, &["--version", "-v"])),
    check(&["perl"], false, |a| version(a, &["--version", "-v", "-V"])),
];

/// Directories whose programs are the system's own: `/usr/bin/cat` is cat, `./cat` is not.
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/usr/bin",
    "/usr/local/bin",
    "/sbin",
    "/usr/sbin",
    "/usr/local/sbin",
    "/opt/homebrew/bin",
];

/// Classifies one command by the table.
pub fn classify(cmd: &Command) -> Class {
    let Run::Program { name, path } = &cmd.run else {
        return Class {
            not_inert: Some("not a program the table knows".into()),
            reads_files: true,
            known: false,
        };
    };
    let Some(program) = PROGRAMS.iter().find(|p| p.names.contains(&name.as_str())) else {
        return Class {
            not_inert: Some(format!("`{name}` is not known to be read-only")),
            reads_files: true,
            known: false,
        };
    };
    let mut not_inert = match &program.kind {
        Kind::Inert => None,
        Kind::Unless(u) => unless_check(&cmd.args, u).err(),
        Kind::Check(f) => f(&cmd.args).err(),
    }
    .map(|why| format!("`{name}`: {why}"));
    if let Some(p) = path {
        let dir = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        if !SYSTEM_DIRS.contains(&dir) {
            not_inert = Some(format!("runs `{p}`, which is not the system's `{name}`"));
        }
    }
    Class {
        not_inert,
        reads_files: program.files,
        known: true,
    }
}

/// The text of a word that is fixed when the command runs, glob characters allowed; `None`
/// for an expansion, or a glob that could become an option.
pub(crate) fn fixed(w: &Word) -> Option<String> {
    if w.is_dynamic() {
        return None;
    }
    let t = w.text();
    if w.has_glob() && t.starts_with('-') {
        return None;
    }
    Some(t)
}

/// Every argument fixed, or why not.
pub(crate) fn fixed_all(args: &[Word]) -> Result<Vec<String>, String> {
    args.iter()
        .map(|a| {
            fixed(a).ok_or_else(|| format!("an argument only known when it runs ({})", a.text()))
        })
        .collect()
}

/// Whether `given` (after `--`, before any `=`) names or abbreviates `full`.
pub(crate) fn abbreviates(given: &str, full: &str) -> bool {
    !given.is_empty() && full.starts_with(given)
}

fn unless_check(args: &[Word], u: &Unsafe) -> Result<(), String> {
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        let Some(t) = fixed(a) else {
            if a.may_be_option() || a.may_split() {
                return Err(format!(
                    "an argument only known when it runs could be an option ({})",
                    a.text()
                ));
            }
            continue;
        };
        if t == "--" {
            return Ok(());
        }
        if let Some(long) = t.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            if u.long.iter().any(|l| abbreviates(name, l)) {
                return Err(format!("--{name} {}", u.why));
            }
        } else if let Some(short) = t.strip_prefix('-') {
            for (k, c) in short.chars().enumerate() {
                if u.short.contains(c) {
                    return Err(format!("-{c} {}", u.why));
                }
                if u.short_val.contains(c) {
                    skip = k + 1 == short.chars().count();
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_protocol::shell::parse;

    pub(super) fn inert_cmd(cmd: &str) -> Result<(), String> {
        let s = parse(cmd).map_err(|e| e.to_string())?;
        let c = s
            .commands
            .iter()
            .find(|c| matches!(c.run, Run::Program { .. }))
            .ok_or("no program")?;
        match classify(c).not_inert {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }

    pub(super) fn assert_forms(ok: &[&str], bad: &[&str]) {
        for cmd in ok {
            assert_eq!(inert_cmd(cmd), Ok(()), "{cmd}");
        }
        for cmd in bad {
            assert!(inert_cmd(cmd).is_err(), "{cmd} should not be inert");
        }
    }

    #[test]
    fn plain_readers_are_inert_whatever_their_arguments() {
        assert_forms(
            &[
                "cat -n a b",
                "ls -la ~/src",
                "grep -rn foo .",
                "wc -l *.rs",
                "echo $HOME",
                "env",
                "head -c 5 \"$f\"",
            ],
            &[
                "less README",
                "more x",
                "vi x",
                "man ls",
                "python3 -c 1",
                "./cat x",
                "/tmp/ls",
                "~/bin/cat",
            ],
        );
        assert_eq!(inert_cmd("/usr/bin/cat x"), Ok(()));
    }

    #[test]
    fn options_that_run_or_write_are_caught() {
        assert_forms(
            &[
                "sort -k2 -t: file",
                "sort -u -r x",
                "rg -n foo",
                "fd -e rs",
                "tree -L 2",
                "file x",
                "sort -- -o",
            ],
            &[
                "sort -o out in",
                "sort -uo out in",
                "sort --output=x",
                "sort --out=x",
                "sort --compress-program=sh",
                "sort \"$opt\" x",
                "rg --pre ./x foo",
                "rg --pre=sh foo",
                "fd -x rm",
                "fd --exec rm",
                "fd -HIx rm",
                "yq -i .a=1 f",
                "tree -o out",
                "file -C -m m",
                "journalctl --vacuum-time=1s",
                "dmesg -C",
                "ack --output='$&'",
            ],
        );
    }

    #[test]
    fn small_checks() {
        assert_forms(
            &[
                "date",
                "date +%s",
                "date -u -d yesterday +%F",
                "uniq a",
                "xxd f",
                "hostname -f",
                "test -f x",
                "[ -n \"$x\" ]",
                "[ \"$a\" = b ]",
                "cargo --version",
                "npm -v",
                "go version",
                "java -version",
            ],
            &[
                "date -s now",
                "date --set=x",
                "date 0101",
                "uniq in out",
                "xxd in out",
                "hostname evil",
                "test -v 'a[$(id)]'",
                "[ -v x ]",
                "[ \"$op\" x ]",
                "npm version patch",
                "python3 --version -c 'import os'",
                "ruby -v",
                "cargo build",
            ],
        );
    }
}
