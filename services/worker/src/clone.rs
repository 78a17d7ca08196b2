//! Which `git clone` URLs the worker takes, whatever the policy said: `https://`, `ssh://`
//! and scp-style `user@host:path` from anywhere; `file://` URLs and local paths only inside
//! the worker's roots (checked by the caller with [`crate::paths::Roots`]); never a remote
//! helper (`ext::sh -c ...` runs a program), an option in disguise (`--upload-pack=...`,
//! `-u ...`, `-c ...`), an ssh host that is an option (`-oProxyCommand=...`), nor anything
//! with spaces or control characters.

/// Where a clone comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A remote repository (https, ssh, scp-style): needs the network.
    Remote,
    /// A local path (from a `file://` URL or given as is), to be confined to the roots.
    Local(String),
}

const ALLOWED: &str = "clone takes https://, ssh:// and user@host:path URLs, or a local path inside the worker's roots";

/// Reads a clone URL; an error says why it is refused.
pub fn classify(url: &str) -> Result<Source, String> {
    if url.is_empty() {
        return Err("clone needs a url".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "clone url {url:?} contains spaces or control characters"
        ));
    }
    if url.starts_with('-') {
        return Err(format!(
            "clone url {url:?} looks like an option (--upload-pack, -u, -c, --config run programs)"
        ));
    }
    // `<transport>::<address>` makes git run `git-remote-<transport>`; `ext::` runs any
    // command.
    if let Some((helper, _)) = url.split_once("::")
        && !helper.is_empty()
        && helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-_".contains(c))
    {
        return Err(format!(
            "clone url {url:?} names the remote helper {helper:?} (helpers such as ext:: run programs)"
        ));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "https" | "ssh" | "git+ssh" | "ssh+git" => {
                let host = rest.split(['/', ':']).next().unwrap_or("");
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                if host.is_empty() || host.starts_with('-') {
                    Err(format!("clone url {url:?} has no proper host"))
                } else {
                    Ok(Source::Remote)
                }
            }
            "file" => match rest.strip_prefix("localhost").unwrap_or(rest) {
                p if p.starts_with('/') => Ok(Source::Local(p.to_owned())),
                _ => Err(format!(
                    "clone url {url:?}: a file:// url names a local path"
                )),
            },
            other => Err(format!(
                "clone url {url:?}: the {other}:// transport is not allowed ({ALLOWED})"
            )),
        };
    }
    // git's rule: a colon before any slash makes it scp-style host:path.
    if let Some(colon) = url.find(':')
        && !url[..colon].contains('/')
    {
        let host = &url[..colon];
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.is_empty() || host.starts_with('-') || host.starts_with('[') && !host.ends_with(']')
        {
            return Err(format!("clone url {url:?} has no proper host"));
        }
        return Ok(Source::Remote);
    }
    Ok(Source::Local(url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_of_the_allowed_kinds_pass() {
        for ok in [
            "https://github.com/a/b.git",
            "ssh://git@github.com/a/b",
            "ssh://git@github.com:2222/a/b",
            "git@github.com:a/b.git",
            "host:repo",
        ] {
            assert_eq!(classify(ok), Ok(Source::Remote), "{ok}");
        }
    }

    #[test]
    fn local_sources_are_for_the_caller_to_confine() {
        assert_eq!(
            classify("file:///home/a/src/x"),
            Ok(Source::Local("/home/a/src/x".into()))
        );
        assert_eq!(
            classify("file://localhost/srv/x"),
            Ok(Source::Local("/srv/x".into()))
        );
        assert_eq!(classify("~/src/x"), Ok(Source::Local("~/src/x".into())));
        assert_eq!(classify("./x/y:z"), Ok(Source::Local("./x/y:z".into())));
        assert_eq!(classify("/etc"), Ok(Source::Local("/etc".into())));
    }

    #[test]
    fn transports_and_options_that_run_programs_are_refused() {
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::3",
            "--upload-pack=touch /tmp/x",
            "-u",
            "-cprotocol.ext.allow=always",
            "--config=core.sshCommand=x",
            "ssh://-oProxyCommand=touch%20x/repo",
            "-oProxyCommand=x:repo",
            "git://example.com/a",
            "http://example.com/a",
            "ftp://example.com/a",
            "file://evil.example/x",
            "https://example.com/a b",
            "https://example.com/a\nb",
            "",
        ] {
            assert!(classify(bad).is_err(), "{bad:?}");
        }
    }
}
