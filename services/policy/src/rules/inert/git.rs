//! git is inert for the subcommands that only read (status, diff, log, show, ...), in their
//! reading forms (`branch` and `tag` that list, `config --get`, `remote -v`, `stash list`),
//! and without the global options that set configuration (`-c`, `--config-env`: a config
//! can run any command, `core.fsmonitor` say), change where git finds its programs
//! (`--exec-path=`) or start a pager. Any other subcommand may be an alias, and an alias
//! can run a shell command.

use skynet_protocol::shell::Word;

use super::{abbreviates, fixed_all};

/// Subcommands that only read, and the long options that make them write anyway.
const READERS: &[(&str, &[&str])] = &[
    ("status", &[]),
    ("diff", &["output"]),
    ("log", &["output"]),
    ("show", &["output"]),
    ("shortlog", &["output"]),
    ("whatchanged", &["output"]),
    ("blame", &[]),
    ("annotate", &[]),
    ("describe", &[]),
    ("rev-parse", &[]),
    ("rev-list", &[]),
    ("ls-files", &[]),
    ("ls-tree", &[]),
    ("cat-file", &[]),
    ("show-ref", &[]),
    ("for-each-ref", &[]),
    ("merge-base", &[]),
    ("count-objects", &[]),
    ("name-rev", &[]),
    ("grep", &["open-files-in-pager"]),
    ("version", &[]),
    ("cherry", &[]),
    ("check-ignore", &[]),
    ("check-attr", &[]),
    ("diff-tree", &["output"]),
    ("diff-files", &["output"]),
    ("diff-index", &["output"]),
    ("var", &[]),
];

pub(super) fn check(args: &[Word]) -> Result<(), String> {
    let args = fixed_all(args)?;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let a = a.as_str();
        if !a.starts_with('-') {
            break;
        }
        match a {
            "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--attr-source" => i += 1,
            "-c" | "--config-env" => {
                return Err(format!("{a} sets configuration, which can run any command"));
            }
            "-p" | "--paginate" => return Err("-p starts a pager".into()),
            "--help" | "-h" => return Err("--help starts a manual viewer".into()),
            "--version" | "-v" | "--exec-path" | "--html-path" | "--man-path" | "--info-path" => {
                return Ok(());
            }
            "-P"
            | "--no-pager"
            | "--bare"
            | "--no-replace-objects"
            | "--literal-pathspecs"
            | "--glob-pathspecs"
            | "--noglob-pathspecs"
            | "--icase-pathspecs"
            | "--no-optional-locks"
            | "--no-lazy-fetch"
            | "--no-advice" => {}
            _ if a.starts_with("--config-env=") => {
                return Err("--config-env sets configuration, which can run any command".into());
            }
            _ if a.starts_with("--exec-path=") => {
                return Err("--exec-path= runs git's programs from elsewhere".into());
            }
            _ if a.starts_with("--list-cmds=") => return Ok(()),
            _ if [
                "--git-dir=",
                "--work-tree=",
                "--namespace=",
                "--attr-source=",
            ]
            .iter()
            .any(|p| a.starts_with(p)) => {}
            other => return Err(format!("global option {other} is not known to be inert")),
        }
        i += 1;
    }
    let Some(sub) = args.get(i) else {
        return Ok(());
    };
    let rest = &args[i + 1..];
    if let Some((_, unsafe_long)) = READERS.iter().find(|(n, _)| n == sub) {
        for a in rest {
            if let Some(long) = a.strip_prefix("--") {
                let name = long.split('=').next().unwrap_or("");
                if let Some(u) = unsafe_long.iter().find(|u| abbreviates(name, u)) {
                    return Err(format!("`git {sub} --{u}` writes or starts a program"));
                }
            } else if sub == "grep" && a.starts_with('-') && !a.starts_with("--") && a.contains('O')
            {
                return Err("`git grep -O` opens files in a pager".into());
            }
        }
        return Ok(());
    }
    let first = rest.first().map(String::as_str);
    let ok = match sub.as_str() {
        "branch" => listing(rest, "dDmMcCfut", &BRANCH_WRITES, &["l", "list"]),
        "tag" => listing(rest, "asuvfdmFe", &TAG_WRITES, &["l", "list"]),
        "remote" => matches!(first, None | Some("-v" | "--verbose" | "get-url")),
        "config" => config(rest),
        "stash" => matches!(first, Some("list" | "show")),
        "reflog" => {
            matches!(first, None | Some("show" | "exists"))
                || first.is_some_and(|f| f.starts_with('-'))
        }
        "worktree" => first == Some("list"),
        "notes" => matches!(first, None | Some("list" | "show")),
        "submodule" => matches!(first, None | Some("status")),
        _ => {
            return Err(format!(
                "`git {sub}` is not a known read-only command (and could be an alias)"
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`git {sub}` in a form that changes the repository"))
    }
}

const BRANCH_WRITES: [&str; 11] = [
    "delete",
    "move",
    "copy",
    "force",
    "set-upstream-to",
    "unset-upstream",
    "edit-description",
    "track",
    "no-track",
    "create-reflog",
    "recurse-submodules",
];

const TAG_WRITES: [&str; 8] = [
    "annotate",
    "sign",
    "local-user",
    "verify",
    "force",
    "delete",
    "message",
    "file",
];

/// `git branch` and `git tag`: inert when they only list. A name without `--list` creates.
fn listing(rest: &[String], write_short: &str, write_long: &[&str], list: &[&str]) -> bool {
    let mut listing = false;
    let mut positional = false;
    for a in rest {
        if let Some(long) = a.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            if write_long.iter().any(|w| abbreviates(name, w)) {
                return false;
            }
            if list.contains(&name)
                || [
                    "contains",
                    "no-contains",
                    "merged",
                    "no-merged",
                    "points-at",
                ]
                .contains(&name)
            {
                listing = true;
            }
        } else if let Some(short) = a.strip_prefix('-') {
            if short.chars().any(|c| write_short.contains(c)) {
                return false;
            }
            if short.contains('l') || short.starts_with('n') {
                listing = true;
            }
        } else {
            positional = true;
        }
    }
    !positional || listing
}

/// `git config` only reading: `--get*`, `--list`, or the `get`/`list` subcommands.
fn config(rest: &[String]) -> bool {
    const WRITES: &[&str] = &[
        "add",
        "unset",
        "unset-all",
        "replace-all",
        "rename-section",
        "remove-section",
        "edit",
    ];
    let mut reads = matches!(rest.first().map(String::as_str), Some("get" | "list"));
    for a in rest {
        if let Some(long) = a.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            if WRITES.iter().any(|w| abbreviates(name, w)) {
                return false;
            }
            if name.starts_with("get") || name == "list" {
                reads = true;
            }
        } else if a == "-e" {
            return false;
        } else if a == "-l" {
            reads = true;
        }
    }
    reads
        && !matches!(
            rest.first().map(String::as_str),
            Some("set" | "unset" | "edit" | "rename-section" | "remove-section")
        )
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_forms;

    #[test]
    fn git_reads_are_inert_and_writes_configuration_and_aliases_are_not() {
        assert_forms(
            &[
                "git status",
                "git status --porcelain",
                "git log --oneline -n 5",
                "git diff HEAD~1",
                "git show HEAD:README.md",
                "git -C ~/src/app status",
                "git --no-pager log",
                "git branch",
                "git branch -a -v",
                "git branch --list 'feat/*'",
                "git branch --contains HEAD",
                "git tag",
                "git tag -l 'v*'",
                "git remote -v",
                "git config --get user.name",
                "git config --list",
                "git config get user.name",
                "git stash list",
                "git rev-parse --show-toplevel",
                "git --version",
                "git grep -n TODO",
                "git ls-files",
            ],
            &[
                "git -c core.fsmonitor='touch pwned' status",
                "git -c alias.x='!touch pwned' x",
                "git --config-env=core.pager=X log",
                "git --exec-path=/tmp/x status",
                "git -p log",
                "git help log",
                "git log --output=/tmp/x",
                "git diff --out=x",
                "git grep -O foo",
                "git branch newbranch",
                "git branch -D main",
                "git branch -m a b",
                "git tag v1",
                "git tag -d v1",
                "git remote add x y",
                "git config user.name x",
                "git config --unset user.name",
                "git config -e",
                "git stash",
                "git stash drop",
                "git commit -m x",
                "git frobnicate",
                "git st",
                "git log \"$x\"",
                "git -C \"$d\" status",
            ],
        );
    }
}
