//! awk is inert when its program can neither run commands nor write files: no `system()`,
//! no pipes (`print | "cmd"`, `"cmd" | getline`), no `getline` at all, no output
//! redirection in `print`/`printf`, no changes to its own inputs (`ARGV`, `ARGC`), no
//! `@load`/`@include`; and it is given only `-F`, `-v` and program text.

use skynet_protocol::shell::Word;

use super::fixed_all;

pub(super) fn check(args: &[Word]) -> Result<(), String> {
    let args = fixed_all(args)?;
    let mut sources: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        match a.as_str() {
            "-F" | "-v" => i += 1,
            "-e" | "--source" => {
                i += 1;
                sources.push(args.get(i).ok_or("-e without a program")?);
            }
            _ if a.starts_with("-F") || a.starts_with("-v") => {}
            _ if a.starts_with("--source=") => sources.push(&a["--source=".len()..]),
            other => {
                return Err(format!(
                    "option {other} may run or write (only -F, -v and program text are known inert)"
                ));
            }
        }
        i += 1;
    }
    if sources.is_empty() {
        sources.push(args.get(i).ok_or("no program text")?);
    }
    for s in sources {
        program(s)?;
    }
    Ok(())
}

/// Scans an awk program for what can run commands or write files.
pub(super) fn program(src: &str) -> Result<(), String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    // Whether a `/` here starts a regular expression (after an operator or at the start).
    let mut regex_ok = true;
    let mut in_print = false;
    let mut depth = 0i32;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("an unclosed string".into());
                }
                regex_ok = false;
            }
            '/' if regex_ok => {
                i += 1;
                let mut bracket = false;
                while i < chars.len() && (chars[i] != '/' || bracket) {
                    match chars[i] {
                        '\\' => i += 1,
                        '[' => bracket = true,
                        ']' => bracket = false,
                        '\n' => return Err("an unclosed regular expression".into()),
                        _ => {}
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("an unclosed regular expression".into());
                }
                regex_ok = false;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '@' => return Err("`@load`/`@include` bring in code".into()),
            '|' => {
                if chars.get(i + 1) == Some(&'|') {
                    i += 1;
                    regex_ok = true;
                } else {
                    return Err("a pipe runs a command".into());
                }
            }
            '>' if in_print && depth == 0 => {
                return Err("`print >` writes a file".into());
            }
            // `x++ / 2`: after `++` or `--` a `/` divides.
            '+' | '-' if chars.get(i + 1) == Some(&c) => {
                i += 1;
                regex_ok = false;
            }
            '(' => {
                depth += 1;
                regex_ok = true;
            }
            ')' => {
                depth -= 1;
                regex_ok = false;
            }
            ';' | '\n' | '{' | '}' => {
                in_print = false;
                depth = 0;
                regex_ok = true;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.as_str() {
                    "system" => return Err("system() runs a command".into()),
                    "getline" => return Err("getline reads commands or files".into()),
                    "ARGV" | "ARGC" => return Err("it changes its own input files".into()),
                    "print" | "printf" => {
                        in_print = true;
                        depth = 0;
                    }
                    _ => {}
                }
                regex_ok = matches!(
                    word.as_str(),
                    "print" | "printf" | "return" | "in" | "case" | "do" | "else"
                );
                continue;
            }
            c if c.is_ascii_digit() || c == '$' || c == ']' => regex_ok = c == '$',
            c if c.is_whitespace() => {}
            _ => regex_ok = true,
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_forms;
    use super::program;

    #[test]
    fn awk_programs_that_only_compute_are_inert() {
        assert_forms(
            &[
                "awk '{print $1}' f",
                "awk -F: '$3 > 1000 {print $1}' /etc/passwd",
                "awk -v n=2 'NR==n' f",
                "gawk '/foo|bar/ {n++} END {print n}'",
                "awk '{ if ($1 > 2 || $2 < 1) print ($1 > $2) }'",
                "awk '{ x = a / 2; print x / 3 }'",
                "awk -- '{print}' f",
                "mawk -e '{print}'",
            ],
            &[
                "awk 'BEGIN{system(\"touch x\")}'",
                "awk 'BEGIN { system (\"id\") }'",
                "awk '{print | \"sh\"}'",
                "awk 'BEGIN{\"id\" | getline x}'",
                "awk 'BEGIN{getline x < \"/etc/shadow\"}'",
                "awk '{print > \"out\"}'",
                "awk '{printf \"%s\", $0 >> \"out\"}'",
                "awk 'BEGIN{ARGV[1]=\"/x\"; ARGC=2} {print}'",
                "gawk '@load \"x\"; BEGIN{}'",
                "awk -f prog.awk f",
                "gawk -i inc '{print}'",
                "gawk -o out '{print}'",
                "awk \"$prog\" f",
                "awk '{ x = a / 2; system(\"id\"); y = b / 3 }'",
                "awk '{ x++ / 2; system(\"id\"); y = b / 3 }'",
                "awk '/unclosed'",
                "awk",
            ],
        );
        assert!(program("$1 ~ /a\\/b/ { print }").is_ok());
        assert!(program("/[/]/ {print}").is_ok());
    }
}
