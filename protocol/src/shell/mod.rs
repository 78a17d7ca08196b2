//! A POSIX shell reader, shared by policy and the worker so both judge the same commands.
//!
//! [`parse`] turns a command line into every simple command it can run: across `;`, `&&`,
//! `||`, `|`, `&`, newlines, subshells, `if`/`while`/`for`/`case` bodies, function bodies,
//! command and process substitutions, here-documents, and the scripts handed to `sh -c`,
//! `eval`, `env -S`, `su -c`, `find -exec` and friends. Words keep their structure
//! ([`Word`]): what was quoted, where a variable or a substitution stands, where `~` is, so
//! `c''url`, `"c"url` and `\curl` are all `curl`, while `$c` is a command only known when it
//! runs. Wrappers (`sudo`, `env`, `nice`, `timeout`, `xargs`, ...) are peeled off with
//! their real option syntax; an option this reader does not know makes the command
//! [`Run::Dynamic`] rather than guessed.
//!
//! [`path`] matches the paths a word could name (globs, brace expansions, `~`, `$HOME`,
//! `..`) against path patterns, without touching any filesystem; [`env`] says which
//! environment variables change what a program runs. Pure: no I/O.

pub mod env;
mod glob;
mod lex;
mod opts;
mod parse;
pub mod path;
mod unwrap;
mod vars;
pub mod word;

pub use path::{Overlap, PathPattern, Pattern};
pub use vars::Vars;
pub use word::{Atom, Word};

/// How deep scripts may nest (`sh -c "bash -c '...'"`, substitutions in substitutions).
pub const MAX_DEPTH: usize = 8;
/// The most simple commands one line may hold.
pub const MAX_COMMANDS: usize = 4096;

/// Why a command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Everything a command line can run, flattened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// Every simple command, in the order read (a substitution's commands come before the
    /// command that uses it).
    pub commands: Vec<Command>,
    /// Every redirection, with the command it belongs to (none for `done > f`, `exec >f`).
    pub redirects: Vec<Redirect>,
    /// Every variable the line sets: `X=1`, `X=1 cmd`, `env X=1`, `export X=1`, `for X in`,
    /// `read X`, ...
    pub assigns: Vec<Assign>,
    /// Words that are data, not commands, but could name files: `case` subjects and
    /// patterns, `for` lists.
    pub data: Vec<Word>,
    /// Names of the functions it defines.
    pub functions: Vec<String>,
    /// What it does that cannot be judged from the text (arithmetic on variables, `${x@P}`,
    /// an oversized brace expansion, ...), each said once.
    pub dynamic: Vec<String>,
    pipelines: usize,
}

/// One simple command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The words as written (after brace expansion), wrappers included, assignments not.
    pub words: Vec<Word>,
    /// `NAME=value` given before the command or to `env`/`sudo`.
    pub assigns: Vec<(String, Word)>,
    /// What finally runs.
    pub run: Run,
    /// Its arguments.
    pub args: Vec<Word>,
    /// The wrappers peeled off on the way (`sudo`, `nice`, ...), outermost first.
    pub wrappers: Vec<String>,
    /// It also gets arguments read from its input (`xargs`).
    pub stdin_args: bool,
    /// Files its wrappers write (`time -o FILE`).
    pub writes: Vec<Word>,
    /// Commands with the same number are one pipeline.
    pub pipeline: usize,
    /// 0 at the top; one more inside each substitution or nested script.
    pub depth: usize,
}

/// What a simple command runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Run {
    /// A program: `name` without its directory, `path` as written when it had one.
    Program { name: String, path: Option<String> },
    /// Only known when it runs (`$c`, `"$@"`, `sh -c "$x"`, an option this reader does not
    /// know): why, and the word that decides when there is one.
    Dynamic { why: String, word: Option<Word> },
    /// A wrapper that runs a script given in its words (`sh -c`, `eval`); that script's
    /// commands follow it in [`Script::commands`].
    Script,
    /// Nothing runs: only assignments or redirections.
    #[default]
    Nothing,
}

/// A redirection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub fd: Option<u32>,
    pub kind: RedirKind,
    /// The file (or descriptor, here-document delimiter, here-string).
    pub target: Word,
    /// The index of its command in [`Script::commands`].
    pub command: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirKind {
    /// `<`
    Read,
    /// `>`, `>|`, `&>`, `>&file`
    Write,
    /// `>>`, `&>>`
    Append,
    /// `<>`
    ReadWrite,
    /// `>&2`, `<&0`, `>&-`: no file.
    Dup,
    /// `<<`, `<<-`: the target is the delimiter.
    Heredoc,
    /// `<<<`: the target is text.
    HereString,
}

impl RedirKind {
    /// Whether the target is a file that gets written.
    pub fn writes(self) -> bool {
        matches!(
            self,
            RedirKind::Write | RedirKind::Append | RedirKind::ReadWrite
        )
    }

    /// Whether the target is a file (read or written).
    pub fn is_file(self) -> bool {
        !matches!(
            self,
            RedirKind::Dup | RedirKind::Heredoc | RedirKind::HereString
        )
    }
}

/// A variable set by the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// The name as written (`a[1]` for an array element).
    pub name: String,
    /// The value, when the text gives it (`read X` does not).
    pub value: Option<Word>,
    /// The command it is given to (`X=1 cmd`), if any.
    pub command: Option<usize>,
}

impl Script {
    /// The commands of pipeline `n`, in order.
    pub fn pipeline(&self, n: usize) -> impl Iterator<Item = &Command> {
        self.commands.iter().filter(move |c| c.pipeline == n)
    }

    /// The pipeline numbers in use.
    pub fn pipelines(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.commands.iter().map(|c| c.pipeline).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn note(&mut self, why: String) {
        if !self.dynamic.contains(&why) {
            self.dynamic.push(why);
        }
    }
}

impl Command {
    /// The program's name, when it is known.
    pub fn name(&self) -> Option<&str> {
        match &self.run {
            Run::Program { name, .. } => Some(name),
            _ => None,
        }
    }

    /// What runs, as people read it: the program's name and its arguments.
    pub fn inner_text(&self) -> String {
        let head = match &self.run {
            Run::Program { name, .. } => name.clone(),
            Run::Dynamic { word: Some(w), .. } => w.text(),
            Run::Dynamic { word: None, .. } | Run::Script | Run::Nothing => {
                return self.raw_text();
            }
        };
        std::iter::once(head)
            .chain(self.args.iter().map(Word::text))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as written, wrappers and assignments included.
    pub fn raw_text(&self) -> String {
        self.assigns
            .iter()
            .map(|(n, v)| format!("{n}={}", v.text()))
            .chain(self.words.iter().map(Word::text))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses a command line as `/bin/sh -c` would run it.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let mut out = Script::default();
    parse::parse_into(text, 0, &mut out)?;
    Ok(out)
}

/// Parses an argv (a program run without a shell): one command of literal words.
pub fn parse_argv(argv: &[String]) -> Result<Script, ParseError> {
    let mut out = Script::default();
    let words: Vec<Word> = argv.iter().map(|a| Word::quoted(a)).collect();
    parse::push_command(&mut out, words, Vec::new(), 0, None)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each command runs, as text, skipping wrappers of scripts.
    fn inners(cmd: &str) -> Vec<String> {
        parse(cmd)
            .unwrap()
            .commands
            .iter()
            .filter(|c| !matches!(c.run, Run::Script | Run::Nothing))
            .map(Command::inner_text)
            .collect()
    }

    fn names(cmd: &str) -> Vec<String> {
        parse(cmd)
            .unwrap()
            .commands
            .iter()
            .filter_map(|c| c.name().map(str::to_owned))
            .collect()
    }

    #[test]
    fn splits_on_every_operator() {
        assert_eq!(
            inners("ls -l && echo ok || rm x; cat a | grep b & wait"),
            ["ls -l", "echo ok", "rm x", "cat a", "grep b", "wait"]
        );
        assert_eq!(inners("(cd /tmp && ls)\npwd"), ["cd /tmp", "ls", "pwd"]);
        let s = parse("a | b | c; d").unwrap();
        assert_eq!(s.pipeline(s.commands[0].pipeline).count(), 3);
        assert_ne!(s.commands[2].pipeline, s.commands[3].pipeline);
    }

    #[test]
    fn quoting_never_hides_a_program_name() {
        for cmd in [
            "c''url x",
            "\"c\"url x",
            "c\\url x",
            "\\curl x",
            "'curl' x",
            "$'\\x63url' x",
            "$'c'url x",
            "/usr/bin/curl x",
            "c{u,}rl",
        ] {
            assert_eq!(
                names(cmd).first().map(String::as_str),
                Some("curl"),
                "{cmd}"
            );
        }
        assert!(parse("echo 'unclosed").is_err());
        assert!(parse("echo \"unclosed").is_err());
        assert!(parse("echo $(unclosed").is_err());
    }

    #[test]
    fn a_command_held_in_a_variable_is_dynamic() {
        let s = parse("c=curl; $c x | sh").unwrap();
        assert_eq!(s.commands.len(), 2);
        assert!(
            matches!(&s.commands[0].run, Run::Dynamic { word: Some(w), .. } if w.text() == "$c")
        );
        assert_eq!(s.assigns[0].name, "c");
        for cmd in ["\"$@\"", "$(echo ls)", "`echo ls`", "/bin/r?", "${x:-ls}"] {
            let s = parse(cmd).unwrap();
            let last = s.commands.last().unwrap();
            assert!(matches!(last.run, Run::Dynamic { .. }), "{cmd}");
        }
    }

    #[test]
    fn wrappers_are_judged_by_what_they_wrap() {
        assert_eq!(inners("sh -c 'rm -rf /'"), ["rm -rf /"]);
        assert_eq!(
            inners("bash -lc \"cd ~ && rm -rf ~\""),
            ["cd ~", "rm -rf ~"]
        );
        assert_eq!(inners("bash -o pipefail -c 'ls'"), ["ls"]);
        assert_eq!(inners("env -i FOO=1 /bin/rm -rf /"), ["rm -rf /"]);
        assert_eq!(inners("sudo -u root rm -rf /"), ["rm -rf /"]);
        assert_eq!(
            inners("nice -n 5 timeout -s KILL 10 nohup mkfs.ext4 /dev/sda"),
            ["mkfs.ext4 /dev/sda"]
        );
        assert_eq!(inners("nice -5 ls"), ["ls"]);
        assert_eq!(inners("X=1 Y=2 make test"), ["make test"]);
        assert_eq!(inners("eval 'rm -rf ~'"), ["rm -rf ~"]);
        assert_eq!(
            inners("sudo sh -c \"bash -c 'dd if=/dev/zero of=/dev/sda'\""),
            ["dd if=/dev/zero of=/dev/sda"]
        );
        assert_eq!(
            inners("find . -name x | xargs -n 1 rm -f"),
            ["find . -name x", "rm -f"]
        );
        assert_eq!(inners("env -S 'rm -rf /'"), ["rm -rf /"]);
        assert_eq!(inners("env '-Stouch /tmp/pwned'"), ["touch /tmp/pwned"]);
        assert_eq!(inners("env --split-string='rm\\_-rf\\_~'"), ["rm -rf ~"]);
        assert_eq!(inners("env -- rm -rf ~"), ["rm -rf ~"]);
        assert_eq!(inners("command rm x; builtin cd /"), ["rm x", "cd /"]);
        assert_eq!(inners("su -c 'rm -rf ~' root"), ["rm -rf ~"]);
        assert_eq!(inners("time -p ls"), ["ls"]);
        assert_eq!(inners("busybox rm -rf ~"), ["rm -rf ~"]);
        assert_eq!(inners("watch -n 1 'rm -rf ~'"), ["rm -rf ~"]);
        assert_eq!(
            inners("find ~ -exec rm -rf {} \\;"),
            ["find ~ -exec rm -rf {} ;", "rm -rf {}"]
        );
        assert_eq!(
            inners("trap 'rm -rf ~' EXIT"),
            ["trap rm -rf ~ EXIT", "rm -rf ~"]
        );
        let s = parse("xargs -I{} sh -c '{}'").unwrap();
        assert!(matches!(s.commands[0].run, Run::Dynamic { .. }));
        assert!(s.commands[0].stdin_args);
        let s = parse("env --frobnicate ls").unwrap();
        assert!(
            matches!(&s.commands[0].run, Run::Dynamic { why, .. } if why.contains("--frobnicate"))
        );
        let s = parse("env PATH=/tmp/x ls").unwrap();
        assert_eq!(s.assigns[0].name, "PATH");
        assert_eq!(s.commands[0].name(), Some("ls"));
    }

    #[test]
    fn bare_wrappers_are_the_command() {
        assert_eq!(inners("env"), ["env"]);
        assert_eq!(inners("sudo -l"), ["sudo -l"]);
        assert_eq!(inners("command -v git"), ["command -v git"]);
        assert_eq!(inners("A=1"), Vec::<String>::new());
        assert_eq!(inners("exec 2>&1"), Vec::<String>::new());
    }

    #[test]
    fn substitutions_and_heredocs_are_commands_too() {
        assert_eq!(
            inners("echo $(cat ~/.ssh/id_rsa)"),
            ["cat ~/.ssh/id_rsa", "echo $(cat ~/.ssh/id_rsa)"]
        );
        assert_eq!(inners("echo \"`whoami`\""), ["whoami", "echo `whoami`"]);
        assert_eq!(
            inners("diff <(ls a) <(ls b)"),
            ["ls a", "ls b", "diff <(ls a) <(ls b)"]
        );
        assert_eq!(inners("echo ${x:-$(id)}"), ["id", "echo ${x:-$(id)}"]);
        assert_eq!(
            inners("cat <<EOF\n$(touch pwned)\nEOF\nls"),
            ["touch pwned", "cat", "ls"]
        );
        assert_eq!(
            inners("cat <<'EOF'\n$(touch pwned)\nEOF\nls"),
            ["cat", "ls"]
        );
        assert_eq!(inners("cat <<-EOF | wc\n\tx\n\tEOF"), ["cat", "wc"]);
    }

    #[test]
    fn what_bash_evaluates_from_data_is_noted() {
        for cmd in [
            "echo $((x))",
            "x='a[$(id)]'; echo ${!x}",
            "echo ${x@P}",
            "echo ${a[$i]}",
            "((y=x+1))",
            "read 'a[$(id)]'",
            "unset \"a[$i]\"",
            "a[$(id)]=1",
            "echo ${ id; }",
        ] {
            assert!(!parse(cmd).unwrap().dynamic.is_empty(), "{cmd}");
        }
        for cmd in [
            "echo $((1+2))",
            "echo ${x:-y} ${#x} ${a[@]}",
            "x=1; echo $x",
        ] {
            assert_eq!(parse(cmd).unwrap().dynamic, Vec::<String>::new(), "{cmd}");
        }
    }

    #[test]
    fn redirections_are_recorded() {
        let s =
            parse("echo hi > ~/.bashrc 2>&1; ls >/dev/null; cat a >> log.txt; x &> out; cat < in")
                .unwrap();
        let writes: Vec<String> = s
            .redirects
            .iter()
            .filter(|r| r.kind.writes())
            .map(|r| r.target.text())
            .collect();
        assert_eq!(writes, ["~/.bashrc", "/dev/null", "log.txt", "out"]);
        assert!(
            s.redirects
                .iter()
                .any(|r| r.kind == RedirKind::Read && r.target.text() == "in")
        );
        assert!(
            parse("cmd 2>/dev/null >&2")
                .unwrap()
                .redirects
                .iter()
                .all(|r| r.kind != RedirKind::Write || r.target.text() == "/dev/null")
        );
        assert!(parse("echo >").is_err());
    }

    #[test]
    fn compound_commands() {
        assert_eq!(
            inners("for i in 1 2 3; do echo $i; rm -rf x; done"),
            ["echo $i", "rm -rf x"]
        );
        assert_eq!(inners("for f in $(ls); do cat $f; done"), ["ls", "cat $f"]);
        assert_eq!(
            inners("case $x in a|b) rm -rf ~;; *) ls;; esac; pwd"),
            ["rm -rf ~", "ls", "pwd"]
        );
        assert_eq!(
            inners("if true; then ls; elif x; then y; else z; fi"),
            ["true", "ls", "x", "y", "z"]
        );
        assert_eq!(inners("f() { rm -rf ~; }; f"), ["rm -rf ~", "f"]);
        assert_eq!(inners("function g { ls; }"), ["ls"]);
        assert_eq!(
            inners("while read l; do echo $l; done < f"),
            ["read l", "echo $l"]
        );
        assert_eq!(
            inners("[[ -f x && -d y ]] && ls"),
            ["[[ -f x -d y ]]", "ls"]
        );
        assert_eq!(inners("echo if then done"), ["echo if then done"]);
        assert_eq!(inners("ls # rm -rf /"), ["ls"]);
        assert!(parse("case x in a) ls;;").is_err());
    }

    #[test]
    fn argv_is_one_command_and_unwrapped() {
        let s = parse_argv(&["bash".into(), "-c".into(), "rm -rf ~".into()]).unwrap();
        let inner: Vec<String> = s
            .commands
            .iter()
            .filter(|c| c.name().is_some())
            .map(Command::inner_text)
            .collect();
        assert_eq!(inner, ["rm -rf ~"]);
        let s = parse_argv(&["ls".into(), "$HOME".into(), "*".into()]).unwrap();
        assert!(
            s.commands[0]
                .args
                .iter()
                .all(|a| !a.is_dynamic() && !a.has_glob())
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut cmd = "ls".to_owned();
        for _ in 0..12 {
            cmd = format!("sh -c {}", quote(&cmd));
        }
        assert!(parse(&cmd).is_err());
    }

    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048),
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever the text, the reader answers (a script or an error) and never panics,
        /// and every word it finds can be turned into paths and matched.
        #[test]
        fn any_text_is_read_without_panicking(
            text in "[ a-z$'\"`\\\\(){}\\[\\]*?~/.;&|<>=#!@%+,:0-9\n\t-]{0,80}"
        ) {
            if let Ok(s) = parse(&text) {
                let vars = Vars::new(&s, &Default::default());
                let base = PathPattern::base(None);
                let p = Pattern::parse("**/.ssh/**").unwrap();
                for c in &s.commands {
                    let _ = c.inner_text();
                    for w in &c.words {
                        for path in PathPattern::of_word(w, &base, &vars) {
                            let _ = p.overlap(&path);
                        }
                    }
                }
            }
        }

        #[test]
        fn any_unicode_is_read_without_panicking(text in "\\PC{0,60}") {
            let _ = parse(&text);
        }
    }
}
