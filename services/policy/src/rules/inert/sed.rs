//! sed is inert when its script only edits the text it prints: no `e` (runs a command), no
//! `w`/`W` or `s///w` (write files), no `r`/`R` (read files the script names), no `s///e`,
//! and no `-i` (edit in place) or `-f` (a script from a file).

use skynet_protocol::shell::Word;

use super::{abbreviates, fixed_all};

const FLAGS: &[&str] = &[
    "quiet",
    "silent",
    "regexp-extended",
    "separate",
    "unbuffered",
    "null-data",
    "posix",
    "debug",
    "sandbox",
    "follow-symlinks",
    "zero-terminated",
];

pub(super) fn check(args: &[Word]) -> Result<(), String> {
    let args = fixed_all(args)?;
    let mut scripts: Vec<String> = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    let mut options = true;
    while let Some(a) = args.get(i) {
        if options && a == "--" {
            options = false;
        } else if options && a.starts_with("--") {
            let (name, value) = match a[2..].split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (&a[2..], None),
            };
            if abbreviates(name, "in-place") {
                return Err("-i edits files in place".into());
            }
            if abbreviates(name, "file") {
                return Err("-f reads its script from a file".into());
            }
            if abbreviates(name, "expression") {
                let s = match value {
                    Some(v) => v.to_owned(),
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or("--expression without a script")?
                    }
                };
                scripts.push(s);
            } else if abbreviates(name, "line-length") {
                if value.is_none() {
                    i += 1;
                }
            } else if !FLAGS.iter().any(|f| abbreviates(name, f)) {
                return Err(format!("option --{name} is not known to be inert"));
            }
        } else if options && a.starts_with('-') && a.len() > 1 {
            let flags: Vec<char> = a[1..].chars().collect();
            for (k, c) in flags.iter().enumerate() {
                match c {
                    'n' | 'E' | 'r' | 's' | 'u' | 'z' => {}
                    'e' | 'l' => {
                        let rest: String = flags[k + 1..].iter().collect();
                        let v = if rest.is_empty() {
                            i += 1;
                            args.get(i).cloned().ok_or("-e without a script")?
                        } else {
                            rest
                        };
                        if *c == 'e' {
                            scripts.push(v);
                        }
                        break;
                    }
                    'i' | 'I' => return Err("-i edits files in place".into()),
                    'f' => return Err("-f reads its script from a file".into()),
                    other => return Err(format!("option -{other} is not known to be inert")),
                }
            }
        } else {
            operands.push(a.as_str());
        }
        i += 1;
    }
    if scripts.is_empty() {
        scripts.push(operands.first().map(|o| o.to_string()).ok_or("no script")?);
    }
    for s in &scripts {
        script(s)?;
    }
    Ok(())
}

/// Reads a sed script, refusing what can run or touch files.
pub(super) fn script(s: &str) -> Result<(), String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let skip_blank = |i: &mut usize| {
        while *i < c.len() && matches!(c[*i], ' ' | '\t') {
            *i += 1;
        }
    };
    loop {
        while i < c.len() && matches!(c[i], ' ' | '\t' | '\n' | ';') {
            i += 1;
        }
        if i >= c.len() {
            return Ok(());
        }
        if c[i] == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        address(&c, &mut i)?;
        skip_blank(&mut i);
        if i < c.len() && c[i] == ',' {
            i += 1;
            skip_blank(&mut i);
            if i < c.len() && matches!(c[i], '+' | '~') {
                i += 1;
            }
            address(&c, &mut i)?;
        }
        skip_blank(&mut i);
        while i < c.len() && c[i] == '!' {
            i += 1;
            skip_blank(&mut i);
        }
        let Some(&cmd) = c.get(i) else {
            return Err("an address without a command".into());
        };
        i += 1;
        match cmd {
            '{' | '}' | '=' | 'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'n' | 'N' | 'p' | 'P' | 'x'
            | 'z' | 'F' => {}
            'l' | 'q' | 'Q' | 'L' => {
                skip_blank(&mut i);
                while i < c.len() && c[i].is_ascii_digit() {
                    i += 1;
                }
            }
            'a' | 'i' | 'c' => {
                // Text to the end of the line; a line ending in `\` continues it.
                while i < c.len() {
                    if c[i] == '\\' {
                        i += 2;
                        continue;
                    }
                    if c[i] == '\n' {
                        break;
                    }
                    i += 1;
                }
            }
            ':' | 'b' | 't' | 'T' | 'v' => {
                while i < c.len() && !matches!(c[i], '\n' | ';') {
                    i += 1;
                }
            }
            's' => {
                let delim = *c.get(i).ok_or("an unfinished s command")?;
                if matches!(delim, '\n' | '\\') {
                    return Err("an s command it cannot read".into());
                }
                i += 1;
                part(&c, &mut i, delim)?;
                part(&c, &mut i, delim)?;
                while let Some(&f) = c.get(i) {
                    match f {
                        'g' | 'p' | 'i' | 'I' | 'm' | 'M' | '0'..='9' => i += 1,
                        'e' => return Err("the s///e flag runs the result as a command".into()),
                        'w' => return Err("the s///w flag writes a file".into()),
                        ';' | '\n' | '}' | ' ' | '\t' | '#' => break,
                        other => return Err(format!("an s flag it does not know ({other})")),
                    }
                }
            }
            'y' => {
                let delim = *c.get(i).ok_or("an unfinished y command")?;
                i += 1;
                part(&c, &mut i, delim)?;
                part(&c, &mut i, delim)?;
            }
            'e' => return Err("the e command runs a command".into()),
            'w' | 'W' => return Err("the w command writes a file".into()),
            'r' | 'R' => return Err("the r command reads a file the script names".into()),
            other => return Err(format!("a sed command it does not know ({other})")),
        }
    }
}

/// One part of `s/re/repl/` up to its delimiter.
fn part(c: &[char], i: &mut usize, delim: char) -> Result<(), String> {
    while *i < c.len() && c[*i] != delim {
        if c[*i] == '\\' {
            *i += 1;
        }
        *i += 1;
    }
    if *i >= c.len() {
        return Err("an unfinished s or y command".into());
    }
    *i += 1;
    Ok(())
}

/// An address: a line number (`3`, `1~2`), `$`, `/re/` or `\%re%` (with `I`/`M`).
fn address(c: &[char], i: &mut usize) -> Result<(), String> {
    match c.get(*i) {
        Some(d) if d.is_ascii_digit() => {
            while *i < c.len() && (c[*i].is_ascii_digit() || c[*i] == '~') {
                *i += 1;
            }
        }
        Some('$') => *i += 1,
        Some('/') => {
            *i += 1;
            part(c, i, '/')?;
            while matches!(c.get(*i), Some('I' | 'M')) {
                *i += 1;
            }
        }
        Some('\\') => {
            let delim = *c.get(*i + 1).ok_or("an unfinished address")?;
            *i += 2;
            part(c, i, delim)?;
            while matches!(c.get(*i), Some('I' | 'M')) {
                *i += 1;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_forms;

    #[test]
    fn sed_scripts_that_only_edit_their_output_are_inert() {
        assert_forms(
            &[
                "sed -n 's/a/b/p' file",
                "sed 's/a/b/g; s|x|y|2' f",
                "sed -n '1,5p' f",
                "sed -e '/^#/d' -e 's/ *$//' f",
                "sed -E 's/(a)(b)/\\2\\1/' f",
                "sed '$!N;P;D' f",
                "sed -n '/start/,/end/{p}' f",
                "sed '1~2d' f",
                "sed 's/e/w/' f",
                "sed 'y/abc/xyz/' f",
                "sed -ne 's/x/y/p' f",
                "sed --quiet --expression='s/a/b/p' f",
                "sed '/x/a\\\nappended' f",
            ],
            &[
                "sed 1e f",
                "sed -n '1e touch pwned' f",
                "sed 's/x/touch pwned/e' f",
                "sed 's/a/b/w out' f",
                "sed 'w out' f",
                "sed '1W out' f",
                "sed '1r /etc/shadow' f",
                "sed -i s/a/b/ f",
                "sed -i.bak s/a/b/ f",
                "sed --in-place s/a/b/ f",
                "sed --in=x s/a/b/ f",
                "sed -ni p f",
                "sed -f script f",
                "sed \"$s\" f",
                "sed 's/a/b' f",
                "sed '/x/!e' f",
                "sed -e p -e 1e f",
                "sed",
            ],
        );
    }
}
