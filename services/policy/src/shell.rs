//! A small POSIX shell reader, enough to judge commands: it splits a command line into the
//! simple commands it runs (across `;`, `&&`, `||`, `|`, `&`, newlines, subshells, `$(...)`
//! and backticks), notes where output is redirected to files, and unwraps the commands that
//! only run other commands (`sh -c`, `bash -lc`, `env`, `sudo`, `nice`, `timeout`, `xargs`,
//! `eval`, ...) so each is judged by what it finally runs.

/// One simple command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The words as written (quotes removed), joined by single spaces.
    pub raw: String,
    /// What actually runs once wrappers are peeled off, program name without its directory.
    /// Empty when the segment only assigns variables.
    pub inner: String,
}

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub segments: Vec<Segment>,
    /// Files that output is redirected into (not counting /dev/null and fd duplications).
    pub writes: Vec<String>,
}

const MAX_DEPTH: usize = 8;

/// Parses `cmd`. An error means the line is not well formed (an unclosed quote, say).
pub fn parse(cmd: &str) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    parse_into(cmd, 0, &mut out)?;
    Ok(out)
}

/// Parses an argv (a command run without a shell).
pub fn parse_argv(argv: &[String]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    push_segment(argv.to_vec(), 0, &mut out)?;
    Ok(out)
}

#[derive(Debug)]
enum Tok {
    Word(String),
    /// `;`, `&&`, `||`, `|`, `&`, newline, `(`, `)`.
    Sep,
    /// An output redirection whose target is the next word.
    RedirOut,
    /// An input redirection or here-document whose operand is the next word.
    RedirIn,
}

fn parse_into(cmd: &str, depth: usize, out: &mut Parsed) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("commands nested too deeply".into());
    }
    let (toks, substitutions) = tokenize(cmd)?;
    for sub in substitutions {
        parse_into(&sub, depth + 1, out)?;
    }
    let mut words: Vec<String> = Vec::new();
    let mut iter = toks.into_iter().peekable();
    while let Some(tok) = iter.next() {
        match tok {
            Tok::Word(w) => words.push(w),
            Tok::Sep => {
                push_segment(std::mem::take(&mut words), depth, out)?;
            }
            Tok::RedirOut => match iter.next() {
                Some(Tok::Word(target)) => {
                    if target != "/dev/null"
                        && !target.starts_with('&')
                        && !target.chars().all(|c| c.is_ascii_digit() || c == '-')
                    {
                        out.writes.push(target);
                    }
                }
                _ => return Err("a redirection without a target".into()),
            },
            Tok::RedirIn => {
                iter.next();
            }
        }
    }
    push_segment(words, depth, out)
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

const KEYWORDS: &[&str] = &[
    "!", "if", "then", "else", "elif", "do", "while", "until", "{", "}", "time", "fi", "done",
];

fn push_segment(words: Vec<String>, depth: usize, out: &mut Parsed) -> Result<(), String> {
    let words: Vec<String> = words
        .into_iter()
        .filter(|w| !matches!(w.as_str(), "fi" | "done" | "esac" | "}"))
        .collect();
    if words.is_empty() {
        return Ok(());
    }
    let raw = words.join(" ");
    // Loop and case headers run nothing themselves (their `$(...)` parts are judged apart).
    if matches!(words[0].as_str(), "for" | "case" | "select" | "in") {
        out.segments.push(Segment {
            raw,
            inner: String::new(),
        });
        return Ok(());
    }
    let mut rest: &[String] = &words;
    loop {
        while let Some(first) = rest.first() {
            if is_assignment(first) || KEYWORDS.contains(&first.as_str()) {
                rest = &rest[1..];
            } else {
                break;
            }
        }
        let Some(first) = rest.first() else { break };
        let prog = basename(first);
        let before = rest;
        match prog {
            "sudo" | "doas" => {
                rest = skip_flags(
                    &rest[1..],
                    &["-u", "-g", "-U", "-C", "-D", "-h", "-p", "-r", "-t", "-T"],
                );
            }
            "env" => {
                let mut r = &rest[1..];
                loop {
                    match r.first().map(String::as_str) {
                        Some("-S" | "--split-string") if r.len() > 1 => {
                            // `env -S "cmd args"` runs the string as a command line.
                            let line = r[1..].join(" ");
                            return parse_into(&line, depth + 1, out).map(|_| {
                                out.segments.push(Segment {
                                    raw: raw.clone(),
                                    inner: String::new(),
                                });
                            });
                        }
                        Some("-u" | "-C" | "--unset" | "--chdir") => r = r.get(2..).unwrap_or(&[]),
                        Some(w) if w.starts_with('-') || is_assignment(w) => r = &r[1..],
                        _ => break,
                    }
                }
                rest = r;
            }
            "nice" => rest = skip_flags(&rest[1..], &["-n", "--adjustment"]),
            "ionice" => rest = skip_flags(&rest[1..], &["-c", "-n", "-p", "-t"]),
            "stdbuf" => rest = skip_flags(&rest[1..], &["-i", "-o", "-e"]),
            "nohup" | "command" | "builtin" | "exec" | "setsid" | "unbuffer" => {
                rest = skip_flags(&rest[1..], &[]);
            }
            "timeout" => {
                let r = skip_flags(&rest[1..], &["-s", "-k", "--signal", "--kill-after"]);
                rest = r.get(1..).unwrap_or(&[]);
            }
            "xargs" => {
                rest = skip_flags(
                    &rest[1..],
                    &[
                        "-a",
                        "-d",
                        "-E",
                        "-I",
                        "-L",
                        "-n",
                        "-P",
                        "-s",
                        "--arg-file",
                        "--delimiter",
                        "--max-args",
                        "--max-procs",
                        "--replace",
                    ],
                );
            }
            "eval" => {
                let line = rest[1..].join(" ");
                out.segments.push(Segment {
                    raw,
                    inner: String::new(),
                });
                return parse_into(&line, depth + 1, out);
            }
            "sh" | "bash" | "zsh" | "dash" | "ksh" | "ash" | "mksh" | "fish" | "busybox" => {
                // `sh -c SCRIPT`, `bash -lc SCRIPT`, `bash -x -c SCRIPT`: judge the script.
                let mut i = 1;
                let mut script = None;
                while i < rest.len() && rest[i].starts_with('-') {
                    let flag = &rest[i];
                    if !flag.starts_with("--") && flag.contains('c') {
                        script = rest.get(i + 1).cloned();
                        break;
                    }
                    i += 1;
                }
                match script {
                    Some(script) => {
                        out.segments.push(Segment {
                            raw,
                            inner: String::new(),
                        });
                        return parse_into(&script, depth + 1, out);
                    }
                    None => break,
                }
            }
            _ => break,
        }
        if rest.is_empty() {
            // A wrapper with nothing to run (`env`, `sudo -l`) is itself the command.
            rest = before;
            break;
        }
    }
    let inner = match rest.split_first() {
        Some((prog, args)) => {
            let mut v = vec![basename(prog).to_owned()];
            v.extend(args.iter().cloned());
            v.join(" ")
        }
        None => String::new(),
    };
    out.segments.push(Segment { raw, inner });
    Ok(())
}

/// Skips option words; the options in `with_arg` take the next word as their value.
fn skip_flags<'a>(mut r: &'a [String], with_arg: &[&str]) -> &'a [String] {
    while let Some(w) = r.first() {
        if w == "--" {
            return &r[1..];
        }
        if !w.starts_with('-') || w == "-" {
            break;
        }
        let takes = with_arg.contains(&w.as_str());
        r = if takes {
            r.get(2..).unwrap_or(&[])
        } else {
            &r[1..]
        };
    }
    r
}

/// Splits into tokens, collecting the bodies of command substitutions separately.
fn tokenize(s: &str) -> Result<(Vec<Tok>, Vec<String>), String> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut subs = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    macro_rules! end_word {
        () => {
            if in_word {
                toks.push(Tok::Word(std::mem::take(&mut word)));
                in_word = false;
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => {
                end_word!();
                i += 1;
            }
            '\n' | ';' | '(' | ')' => {
                end_word!();
                toks.push(Tok::Sep);
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '&' | '|' => {
                if c == '&' && chars.get(i + 1) == Some(&'>') {
                    end_word!();
                    i += 2;
                    if chars.get(i) == Some(&'>') {
                        i += 1;
                    }
                    toks.push(Tok::RedirOut);
                    continue;
                }
                end_word!();
                toks.push(Tok::Sep);
                i += 1;
                if i < chars.len() && (chars[i] == c || (c == '|' && chars[i] == '&')) {
                    i += 1;
                }
            }
            '>' | '<' => {
                // A word of digits right before is a file descriptor, not an argument.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                } else {
                    end_word!();
                }
                let out = c == '>';
                i += 1;
                while i < chars.len() && (chars[i] == '>' || chars[i] == '<' || chars[i] == '|') {
                    i += 1;
                }
                if i < chars.len() && chars[i] == '&' {
                    // `>&2`, `2>&1`: duplicating a descriptor writes no file.
                    i += 1;
                    let mut target = String::from("&");
                    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '-') {
                        target.push(chars[i]);
                        i += 1;
                    }
                    toks.push(if out { Tok::RedirOut } else { Tok::RedirIn });
                    toks.push(Tok::Word(target));
                    continue;
                }
                toks.push(if out { Tok::RedirOut } else { Tok::RedirIn });
            }
            '\'' => {
                in_word = true;
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unclosed single quote".into());
                }
                word.extend(&chars[start..i]);
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unclosed double quote".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            if let Some(&n) = chars.get(i + 1) {
                                if !matches!(n, '"' | '\\' | '$' | '`' | '\n') {
                                    word.push('\\');
                                }
                                word.push(n);
                            }
                            i += 2;
                        }
                        Some('$') if chars.get(i + 1) == Some(&'(') => {
                            let (body, next) = balanced(&chars, i + 2)?;
                            subs.push(body.clone());
                            word.push_str(&format!("$({body})"));
                            i = next;
                        }
                        Some('`') => {
                            let (body, next) = backtick(&chars, i + 1)?;
                            subs.push(body.clone());
                            word.push_str(&format!("`{body}`"));
                            i = next;
                        }
                        Some(&ch) => {
                            word.push(ch);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(&n) = chars.get(i + 1)
                    && n != '\n'
                {
                    word.push(n);
                }
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                in_word = true;
                let (body, next) = balanced(&chars, i + 2)?;
                subs.push(body.clone());
                word.push_str(&format!("$({body})"));
                i = next;
            }
            '`' => {
                in_word = true;
                let (body, next) = backtick(&chars, i + 1)?;
                subs.push(body.clone());
                word.push_str(&format!("`{body}`"));
                i = next;
            }
            _ => {
                in_word = true;
                word.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        toks.push(Tok::Word(word));
    }
    Ok((toks, subs))
}

/// The body of `$( ... )` starting just after the `(`, and the index after its `)`.
fn balanced(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    let start = i;
    let mut depth = 1;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => i += 1,
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Ok((chars[start..i].iter().collect(), i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err("unclosed $(".into())
}

fn backtick(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    let start = i;
    while i < chars.len() && chars[i] != '`' {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    if i >= chars.len() {
        return Err("unclosed backtick".into());
    }
    Ok((chars[start..i].iter().collect(), i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inners(cmd: &str) -> Vec<String> {
        parse(cmd)
            .unwrap()
            .segments
            .into_iter()
            .map(|s| s.inner)
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn splits_on_every_operator() {
        assert_eq!(
            inners("ls -l && echo ok || rm x; cat a | grep b & wait"),
            ["ls -l", "echo ok", "rm x", "cat a", "grep b", "wait"]
        );
        assert_eq!(inners("(cd /tmp && ls)\npwd"), ["cd /tmp", "ls", "pwd"]);
    }

    #[test]
    fn quotes_are_removed_and_kept_together() {
        assert_eq!(inners(r#"echo "a b" 'c;d' e\ f"#), [r#"echo a b c;d e f"#]);
        assert!(parse("echo 'unclosed").is_err());
        assert!(parse("echo \"unclosed").is_err());
    }

    #[test]
    fn wrappers_are_judged_by_what_they_wrap() {
        assert_eq!(inners("sh -c 'rm -rf /'"), ["rm -rf /"]);
        assert_eq!(
            inners("bash -lc \"cd ~ && rm -rf ~\""),
            ["cd ~", "rm -rf ~"]
        );
        assert_eq!(inners("env -i FOO=1 /bin/rm -rf /"), ["rm -rf /"]);
        assert_eq!(inners("sudo -u root rm -rf /"), ["rm -rf /"]);
        assert_eq!(
            inners("nice -n 5 timeout -s KILL 10 nohup mkfs.ext4 /dev/sda"),
            ["mkfs.ext4 /dev/sda"]
        );
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
    }

    #[test]
    fn substitutions_are_commands_too() {
        assert_eq!(
            inners("echo $(cat ~/.ssh/id_rsa)"),
            ["cat ~/.ssh/id_rsa", "echo $(cat ~/.ssh/id_rsa)"]
        );
        assert_eq!(inners("echo \"`whoami`\""), ["whoami", "echo `whoami`"]);
    }

    #[test]
    fn redirections_to_files_are_writes() {
        let p =
            parse("echo hi > ~/.bashrc 2>&1; ls >/dev/null; cat a >> log.txt; x &> out").unwrap();
        assert_eq!(p.writes, ["~/.bashrc", "log.txt", "out"]);
        assert_eq!(
            parse("cmd 2>/dev/null >&2").unwrap().writes,
            Vec::<String>::new()
        );
        assert_eq!(inners("sort < in.txt"), ["sort"]);
    }

    #[test]
    fn argv_is_one_segment_and_unwrapped() {
        let p = parse_argv(&["bash".into(), "-c".into(), "rm -rf ~".into()]).unwrap();
        let inner: Vec<_> = p
            .segments
            .iter()
            .map(|s| s.inner.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(inner, ["rm -rf ~"]);
    }

    #[test]
    fn a_bare_wrapper_is_the_command() {
        assert_eq!(inners("env"), ["env"]);
        assert_eq!(inners("sudo -l"), ["sudo -l"]);
        assert_eq!(inners("A=1"), Vec::<String>::new());
    }

    #[test]
    fn loop_headers_run_nothing_but_their_bodies_count() {
        assert_eq!(
            inners("for i in 1 2 3; do echo $i; rm -rf x; done"),
            ["echo $i", "rm -rf x"]
        );
        assert_eq!(inners("for f in $(ls); do cat $f; done"), ["ls", "cat $f"]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(inners("ls # rm -rf /"), ["ls"]);
    }
}
