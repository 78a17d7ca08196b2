//! Environment variables that change what a program runs (a library preloaded, a shell's
//! start-up file, git's configuration, an interpreter's options, where programs are found,
//! ...). Policy asks about them; the worker drops every one of them a step carries unless
//! policy allowed it by name.

/// Exact names (compared without regard to case), and why each is risky.
const EXACT: &[(&str, &str)] = &[
    ("BASH_ENV", "a file every bash script runs first"),
    ("ENV", "a file every shell runs first"),
    ("ZDOTDIR", "where zsh reads its start-up files"),
    ("SHELLOPTS", "turns on shell options"),
    ("BASHOPTS", "turns on shell options"),
    ("IFS", "changes how the shell splits words"),
    (
        "PS4",
        "a prompt the shell expands (runs commands) when tracing",
    ),
    ("PS1", "a prompt the shell expands (runs commands)"),
    (
        "PROMPT_COMMAND",
        "a command the shell runs before each prompt",
    ),
    ("CDPATH", "changes where `cd` goes"),
    ("PATH", "changes which programs run"),
    ("HOME", "changes where programs read their configuration"),
    ("INPUTRC", "a readline configuration"),
    ("GLOBIGNORE", "changes what globs match"),
    ("SHELL", "the shell programs start"),
    ("PAGER", "a program started to page output"),
    ("MANPAGER", "a program started to page output"),
    ("SYSTEMD_PAGER", "a program started to page output"),
    ("EDITOR", "a program started to edit"),
    ("VISUAL", "a program started to edit"),
    ("BROWSER", "a program started to browse"),
    ("LESSOPEN", "a command `less` runs on every file"),
    ("LESSCLOSE", "a command `less` runs on every file"),
    ("LESSKEY", "`less` key bindings (can run commands)"),
    ("LESSKEYIN", "`less` key bindings (can run commands)"),
    ("MANOPT", "options for `man`"),
    ("GCONV_PATH", "where glibc loads code from"),
    ("GLIBC_TUNABLES", "changes how glibc runs programs"),
    ("HOSTALIASES", "changes how host names resolve"),
    ("RESOLV_HOST_CONF", "changes how host names resolve"),
    ("LOCPATH", "where glibc loads locale data from"),
    ("NLSPATH", "where programs load message catalogues from"),
    ("MALLOC_CHECK_", "changes the memory allocator"),
    ("PERLLIB", "where Perl loads modules from"),
    (
        "NODE_OPTIONS",
        "options for every Node.js program (can load code)",
    ),
    ("NODE_PATH", "where Node.js loads modules from"),
    ("NODE_EXTRA_CA_CERTS", "certificates Node.js trusts"),
    ("ELECTRON_RUN_AS_NODE", "makes Electron apps run scripts"),
    (
        "JAVA_TOOL_OPTIONS",
        "options for every Java program (can load agents)",
    ),
    ("_JAVA_OPTIONS", "options for every Java program"),
    ("JDK_JAVA_OPTIONS", "options for every Java program"),
    ("CLASSPATH", "where Java loads classes from"),
    ("LUA_INIT", "code Lua runs first"),
    ("LUA_PATH", "where Lua loads modules from"),
    ("LUA_CPATH", "where Lua loads modules from"),
    ("TCLLIBPATH", "where Tcl loads packages from"),
    ("PHPRC", "PHP's configuration"),
    ("PHP_INI_SCAN_DIR", "PHP's configuration"),
    ("GOFLAGS", "flags for every go command"),
    ("RUSTC_WRAPPER", "a program cargo runs instead of rustc"),
    ("RUSTC", "the compiler cargo runs"),
    ("RUSTDOC", "the program cargo runs for docs"),
    (
        "RUSTFLAGS",
        "flags for rustc (can load plugins, run linkers)",
    ),
    ("CC", "the C compiler build tools run"),
    ("CXX", "the C++ compiler build tools run"),
    ("LD", "the linker build tools run"),
    ("AR", "the archiver build tools run"),
    ("CFLAGS", "flags for the C compiler"),
    ("LDFLAGS", "flags for the linker"),
    ("MAKEFLAGS", "flags for make"),
    ("MAKE", "the make program"),
    ("MFLAGS", "flags for make"),
    ("SSH_ASKPASS", "a program run to ask for a password"),
    ("SUDO_ASKPASS", "a program run to ask for a password"),
    (
        "SSH_AUTH_SOCK",
        "access to the user's SSH agent (their keys)",
    ),
    ("GPG_AGENT_INFO", "access to the user's GnuPG agent"),
    ("GNUPGHOME", "where GnuPG keeps keys and configuration"),
    (
        "KUBECONFIG",
        "which cluster kubectl talks to, with which credentials",
    ),
    ("DOCKER_HOST", "which Docker daemon docker talks to"),
    ("DOCKER_CONFIG", "Docker's configuration and credentials"),
    ("OPENSSL_CONF", "OpenSSL's configuration (can load engines)"),
    ("OPENSSL_ENGINES", "where OpenSSL loads engines from"),
    ("SSLKEYLOGFILE", "a file TLS secrets are written to"),
    ("SSL_CERT_FILE", "certificates programs trust"),
    ("SSL_CERT_DIR", "certificates programs trust"),
    ("CURL_CA_BUNDLE", "certificates curl trusts"),
    ("REQUESTS_CA_BUNDLE", "certificates Python requests trusts"),
    ("CURL_HOME", "where curl reads its configuration"),
    ("WGETRC", "wget's configuration"),
    ("TERMINFO", "where terminal descriptions are loaded from"),
    ("TMPDIR", "where programs put temporary files"),
    ("TZDIR", "where time zone data is loaded from"),
    (
        "POSIXLY_CORRECT",
        "changes how programs read their arguments",
    ),
];

/// Name prefixes (compared without regard to case), and why.
const PREFIXES: &[(&str, &str)] = &[
    ("LD_", "changes how programs are loaded (can preload code)"),
    (
        "DYLD_",
        "changes how programs are loaded (can preload code)",
    ),
    (
        "BASH_FUNC_",
        "defines a shell function (can replace any command)",
    ),
    (
        "GIT_",
        "changes what git runs (configuration, hooks, ssh, editor)",
    ),
    (
        "PYTHON",
        "changes what Python runs (start-up code, module paths)",
    ),
    (
        "PERL5",
        "changes what Perl runs (options, module paths, debugger)",
    ),
    ("PERL_", "changes what Perl runs"),
    ("RUBY", "changes what Ruby runs (options, module paths)"),
    ("GEM_", "where Ruby loads gems from"),
    ("BUNDLE_", "changes what bundler runs"),
    ("NPM_CONFIG_", "npm's configuration (scripts, registries)"),
    ("YARN_", "yarn's configuration"),
    ("PIP_", "pip's configuration (indexes, builds)"),
    (
        "CARGO_",
        "cargo's configuration (wrappers, runners, registries)",
    ),
    ("RUSTUP_", "which Rust toolchain runs"),
    ("GO", "changes what the go command runs"),
    ("JAVA_", "changes which Java runs"),
    ("MAVEN_", "changes what Maven runs"),
    ("GRADLE_", "changes what Gradle runs"),
    ("R_", "changes what R runs"),
    ("XDG_", "where programs read their configuration and data"),
    ("SSH_", "changes what ssh runs or which keys it uses"),
    ("AWS_", "cloud credentials and endpoints"),
    ("AZURE_", "cloud credentials and endpoints"),
    ("GOOGLE_", "cloud credentials and endpoints"),
    ("CLOUDSDK_", "cloud credentials and endpoints"),
    ("KRB5", "Kerberos configuration and credentials"),
    ("LESS", "changes what `less` does"),
    ("MALLOC_", "changes the memory allocator"),
    ("GCONV_", "where glibc loads code from"),
    ("DOCKER_", "changes what docker talks to"),
    ("NIX_", "changes what nix runs"),
    ("TERRAFORM_", "changes what terraform runs"),
    ("TF_", "changes what terraform runs"),
];

/// Proxy variables, any case.
const PROXIES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "RSYNC_PROXY",
    "SOCKS_PROXY",
    "SOCKS5_PROXY",
    "RSYNC_RSH",
    "RSYNC_CONNECT_PROG",
    "CVS_RSH",
];

/// Why setting `name` could change what a program runs or where it sends things, if it
/// could. Names compare without regard to case (`path` is PATH in zsh).
pub fn risky(name: &str) -> Option<&'static str> {
    let up = name.to_ascii_uppercase();
    if PROXIES.contains(&up.as_str()) {
        return Some("changes where programs send network traffic");
    }
    if let Some((_, why)) = EXACT.iter().find(|(n, _)| *n == up) {
        return Some(why);
    }
    if let Some((_, why)) = PREFIXES.iter().find(|(p, _)| up.starts_with(p)) {
        return Some(why);
    }
    // zsh ties these arrays to PATH-like variables.
    if matches!(up.as_str(), "FPATH" | "MODULE_PATH" | "MANPATH") {
        return Some("changes where programs and functions are found");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::risky;

    #[test]
    fn variables_that_change_what_runs_are_risky() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "ENV",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "GIT_CONFIG_VALUE_0",
            "GIT_SSH_COMMAND",
            "GIT_EXEC_PATH",
            "GIT_DIR",
            "PATH",
            "path",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "PERL5LIB",
            "PERLLIB",
            "RUBYOPT",
            "NODE_OPTIONS",
            "NODE_PATH",
            "IFS",
            "PS4",
            "PROMPT_COMMAND",
            "SHELLOPTS",
            "LESSOPEN",
            "PAGER",
            "EDITOR",
            "VISUAL",
            "http_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "no_proxy",
            "BASH_FUNC_ls%%",
            "HOME",
            "XDG_CONFIG_HOME",
            "RUSTC_WRAPPER",
            "CARGO_BUILD_RUSTC_WRAPPER",
            "JAVA_TOOL_OPTIONS",
            "SSH_AUTH_SOCK",
            "GOFLAGS",
        ] {
            assert!(risky(name).is_some(), "{name}");
        }
        for name in [
            "RUST_LOG",
            "LANG",
            "TERM",
            "NO_COLOR",
            "CI",
            "MY_SETTING",
            "FOO",
        ] {
            assert_eq!(risky(name), None, "{name}");
        }
    }
}
