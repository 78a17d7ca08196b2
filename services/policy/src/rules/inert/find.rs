//! find is inert when its expression only tests and prints: no `-exec`, `-execdir`, `-ok`,
//! `-okdir` (run commands), `-delete`, or `-fprint`, `-fprint0`, `-fprintf`, `-fls` (write
//! files). Every primary must be one it knows, with the arguments it takes.

use skynet_protocol::shell::Word;

use super::fixed_all;

/// Primaries without an argument.
const NO_ARG: &[&str] = &[
    "-depth",
    "-d",
    "-xdev",
    "-mount",
    "-noleaf",
    "-follow",
    "-ignore_readdir_race",
    "-noignore_readdir_race",
    "-daystart",
    "-nowarn",
    "-warn",
    "-help",
    "--help",
    "-version",
    "--version",
    "-empty",
    "-readable",
    "-writable",
    "-executable",
    "-nouser",
    "-nogroup",
    "-print",
    "-print0",
    "-ls",
    "-prune",
    "-quit",
    "-true",
    "-false",
    "(",
    ")",
    "!",
    "-not",
    "-a",
    "-and",
    "-o",
    "-or",
    ",",
];

/// Primaries that take one argument.
const ONE_ARG: &[&str] = &[
    "-maxdepth",
    "-mindepth",
    "-regextype",
    "-name",
    "-iname",
    "-path",
    "-ipath",
    "-wholename",
    "-iwholename",
    "-regex",
    "-iregex",
    "-type",
    "-xtype",
    "-size",
    "-mtime",
    "-mmin",
    "-atime",
    "-amin",
    "-ctime",
    "-cmin",
    "-newer",
    "-anewer",
    "-cnewer",
    "-perm",
    "-user",
    "-group",
    "-uid",
    "-gid",
    "-links",
    "-inum",
    "-samefile",
    "-lname",
    "-ilname",
    "-fstype",
    "-used",
    "-context",
    "-printf",
    "-files0-from",
];

pub(super) fn check(args: &[Word]) -> Result<(), String> {
    let args = fixed_all(args)?;
    let mut i = 0;
    // Options before the paths: -H -L -P -D debugopts -Olevel.
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-H" | "-L" | "-P" => i += 1,
            "-D" => i += 2,
            o if o.starts_with("-O") => i += 1,
            _ => break,
        }
    }
    while let Some(a) = args.get(i) {
        if a.starts_with('-') || matches!(a.as_str(), "(" | ")" | "!" | ",") {
            break;
        }
        i += 1;
    }
    while let Some(a) = args.get(i) {
        let p = a.as_str();
        match p {
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                return Err(format!("{p} runs a command on each file"));
            }
            "-delete" => return Err("-delete deletes files".into()),
            "-fprint" | "-fprint0" | "-fprintf" | "-fls" => {
                return Err(format!("{p} writes a file"));
            }
            _ if NO_ARG.contains(&p) => i += 1,
            _ if ONE_ARG.contains(&p) || (p.starts_with("-newer") && p.len() == 8) => {
                if args.get(i + 1).is_none() {
                    return Err(format!("{p} without its argument"));
                }
                i += 2;
            }
            other => return Err(format!("{other} is not a primary known to be inert")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_forms;

    #[test]
    fn find_expressions_that_only_test_and_print_are_inert() {
        assert_forms(
            &[
                "find . -name x -print",
                "find ~/src -maxdepth 2 -type f -name '*.rs'",
                "find -L . \\( -name a -o -name b \\) -print0",
                "find . -newermt 2024-01-01 -ls",
                "find . -name -exec",
                "find /tmp -mtime +7 -printf '%p\\n'",
                "find",
            ],
            &[
                "find . -exec rm {} \\;",
                "find . -execdir sh -c x \\;",
                "find . -ok rm {} \\;",
                "find . -delete",
                "find . -fls /tmp/out",
                "find . -fprint out",
                "find . -fprintf out %p",
                "find . -name x -frobnicate",
                "find . $expr",
                "find . -name",
            ],
        );
    }
}
