//! The planner's settings: which backend writes plans for goals, how to reach the LLM APIs,
//! the skills and the policy the LLM planners are told about. [`PlannerArgs`] is the flag
//! set, shared by `skynet-planner` and `skynet up`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use skynet_runtime::ConfigError;

use crate::skills::Skills;

/// The official Anthropic API.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The official OpenAI API.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The model asked when `SKYNET_PLANNER_MODEL` is not set.
pub const ANTHROPIC_DEFAULT_MODEL: &str = "claude-sonnet-4-5";
pub const OPENAI_DEFAULT_MODEL: &str = "gpt-4.1-mini";

/// An API key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            Err("an API key cannot be empty".into())
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

/// Which planner writes plans for goals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Offline and deterministic: a documented set of phrasings and every skill by name.
    Rules,
    /// Claude, through the Anthropic Messages API.
    Anthropic,
    /// Any chat-completions API with tools: OpenAI, Ollama, vLLM, llama.cpp.
    Openai,
}

/// The LLM APIs the planner speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    OpenAi,
}

impl Provider {
    /// The name in `planned` events (`planner`) and in usage totals.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
        }
    }
}

/// How failed API calls are retried: exponential backoff with jitter, at least as long as
/// the server's `retry-after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub initial: Duration,
    /// The longest wait between attempts (a `retry-after` may ask for more).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// How to reach an LLM.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: Provider,
    /// `https://api.anthropic.com` or `https://api.openai.com/v1` (or a local server).
    pub base_url: String,
    /// `None` only for local OpenAI-compatible servers that take none.
    pub api_key: Option<Secret>,
    pub model: String,
    /// Most tokens the model may write per answer.
    pub max_tokens: u32,
    /// Longest time to plan one goal, retries and the repair round included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl LlmConfig {
    /// Settings with the defaults for `provider`.
    pub fn new(provider: Provider, base_url: impl Into<String>, api_key: Option<Secret>) -> Self {
        Self {
            provider,
            base_url: base_url.into(),
            api_key,
            model: match provider {
                Provider::Anthropic => ANTHROPIC_DEFAULT_MODEL,
                Provider::OpenAi => OPENAI_DEFAULT_MODEL,
            }
            .into(),
            max_tokens: 4096,
            timeout: Duration::from_secs(90),
            retry: RetryPolicy::default(),
        }
    }
}

/// The backend that plans goals.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    #[default]
    Rules,
    Llm(LlmConfig),
}

impl Backend {
    /// The backend's name in `planned` events.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Rules => "rules",
            Backend::Llm(l) => l.provider.name(),
        }
    }
}

/// Settings of the planner. `Config::default()` is the offline `rules` backend with the
/// built-in skills and the built-in policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests planned at the same time.
    pub concurrency: usize,
    pub backend: Backend,
    pub skills: Arc<Skills>,
    /// The policy's rules in brief, for the LLM planners' system prompt.
    pub policy_brief: Arc<str>,
}

impl Default for Config {
    fn default() -> Self {
        let skills = Skills::builtin().unwrap_or_else(|e| {
            // The built-in file is checked by a unit test; this cannot happen in a release.
            tracing::error!(error = %e, "the built-in skills do not load");
            Skills::default()
        });
        Self {
            concurrency: 32,
            backend: Backend::Rules,
            skills: Arc::new(skills),
            policy_brief: crate::llm::prompt::policy_brief(skynet_policy::rules::DEFAULT_POLICY)
                .into(),
        }
    }
}

/// The planner's flags (each with its environment variable), for `skynet-planner` and
/// `skynet up`.
#[derive(Debug, Clone, Args)]
pub struct PlannerArgs {
    /// Which planner writes plans for goals: `rules` (offline, deterministic), `anthropic`
    /// (Claude) or `openai` (OpenAI or any server with its chat-completions API).
    #[arg(long = "planner", env = "SKYNET_PLANNER", value_enum, default_value_t = BackendKind::Rules)]
    pub planner: BackendKind,

    /// The model the LLM planner asks (default: claude-sonnet-4-5 for anthropic, gpt-4.1-mini
    /// for openai; local servers need their own model name).
    #[arg(long = "planner-model", env = "SKYNET_PLANNER_MODEL")]
    pub model: Option<String>,

    /// Anthropic API key (needed with --planner anthropic).
    #[arg(
        long = "anthropic-api-key",
        env = "ANTHROPIC_API_KEY",
        hide_env_values = true
    )]
    pub anthropic_api_key: Option<Secret>,

    /// Anthropic API base URL.
    #[arg(long = "anthropic-base-url", env = "ANTHROPIC_BASE_URL", default_value = ANTHROPIC_BASE_URL)]
    pub anthropic_base_url: String,

    /// OpenAI API key (needed for the official API; local servers may take none).
    #[arg(
        long = "openai-api-key",
        env = "OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub openai_api_key: Option<Secret>,

    /// OpenAI-compatible API base URL, e.g. http://localhost:11434/v1 for Ollama.
    #[arg(long = "openai-base-url", env = "OPENAI_BASE_URL", default_value = OPENAI_BASE_URL)]
    pub openai_base_url: String,

    /// A skills file (TOML) whose skills are added to the built-in ones; a skill with a
    /// built-in's name replaces it.
    #[arg(long = "skills", env = "SKYNET_SKILLS_FILE")]
    pub skills: Option<PathBuf>,

    /// Longest time to plan one goal with an LLM, retries and the repair round included.
    #[arg(long = "planner-timeout", env = "SKYNET_PLANNER_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Retries of an LLM call that failed with 429, 529 or 5xx.
    #[arg(
        long = "planner-retries",
        env = "SKYNET_PLANNER_RETRIES",
        default_value_t = 4
    )]
    pub retries: u32,

    /// Most tokens the model may write per answer.
    #[arg(
        long = "planner-max-tokens",
        env = "SKYNET_PLANNER_MAX_TOKENS",
        default_value_t = 4096
    )]
    pub max_tokens: u32,
}

fn check_url(flag: &str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len()
    {
        return Err(ConfigError::new(
            flag,
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    Ok(url.to_owned())
}

impl PlannerArgs {
    /// The configuration these flags describe. `policy` is the policy file skynet-policy
    /// uses (`None`: the built-in one); it is read only to brief the LLM planners.
    pub fn config(&self, policy: Option<&Path>) -> Result<Config, ConfigError> {
        let skills = match &self.skills {
            Some(path) => Skills::with_file(path)
                .map_err(|e| ConfigError::new("--skills", format!("{}: {e}", path.display())))?,
            None => Skills::builtin().map_err(|e| ConfigError::new("--skills", e.to_string()))?,
        };
        let policy_text = match policy {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("--policy", format!("{}: {e}", path.display())))?,
            None => skynet_policy::rules::DEFAULT_POLICY.to_owned(),
        };
        // The policy service would refuse a broken file too; say so before planning with it.
        skynet_policy::Policy::from_toml(&policy_text)
            .map_err(|e| ConfigError::new("--policy", e.to_string()))?;
        let model = self
            .model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty());
        if self.max_tokens == 0 {
            return Err(ConfigError::new(
                "--planner-max-tokens",
                "must be at least 1",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "--planner-timeout",
                "must be longer than 0",
            ));
        }
        let llm = |provider: Provider, base: String, key: Option<Secret>| {
            let mut c = LlmConfig::new(provider, base, key);
            if let Some(m) = model {
                c.model = m.to_owned();
            }
            c.max_tokens = self.max_tokens;
            c.timeout = self.timeout;
            c.retry.max_retries = self.retries;
            c
        };
        let backend = match self.planner {
            BackendKind::Rules => Backend::Rules,
            BackendKind::Anthropic => {
                let base = check_url("--anthropic-base-url", &self.anthropic_base_url)?;
                let key = self.anthropic_api_key.clone().ok_or_else(|| {
                    ConfigError::new(
                        "--anthropic-api-key",
                        "the anthropic planner needs an API key: set ANTHROPIC_API_KEY",
                    )
                })?;
                Backend::Llm(llm(Provider::Anthropic, base, Some(key)))
            }
            BackendKind::Openai => {
                let base = check_url("--openai-base-url", &self.openai_base_url)?;
                if self.openai_api_key.is_none() && base == OPENAI_BASE_URL {
                    return Err(ConfigError::new(
                        "--openai-api-key",
                        "the OpenAI API needs an API key: set OPENAI_API_KEY (or point \
                         OPENAI_BASE_URL at a local server)",
                    ));
                }
                Backend::Llm(llm(Provider::OpenAi, base, self.openai_api_key.clone()))
            }
        };
        Ok(Config {
            backend,
            skills: Arc::new(skills),
            policy_brief: crate::llm::prompt::policy_brief(&policy_text).into(),
            ..Config::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        planner: PlannerArgs,
    }

    fn args(list: &[&str]) -> PlannerArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(list);
        Cli::try_parse_from(argv).unwrap().planner
    }

    #[test]
    fn the_default_is_the_offline_rules_planner() {
        let c = Config::default();
        assert!(matches!(c.backend, Backend::Rules));
        assert_eq!(c.skills.names().len(), 6);
        assert!(c.policy_brief.contains("deny"));
    }

    #[test]
    fn llm_backends_take_their_keys_urls_and_model() {
        let c = args(&[
            "--planner",
            "anthropic",
            "--anthropic-api-key",
            "sk-ant-secret",
            "--anthropic-base-url",
            "http://127.0.0.1:9/",
            "--planner-model",
            "claude-x",
        ])
        .config(None)
        .unwrap();
        let Backend::Llm(l) = &c.backend else {
            panic!("{c:?}")
        };
        assert_eq!(l.provider, Provider::Anthropic);
        assert_eq!(l.base_url, "http://127.0.0.1:9");
        assert_eq!(l.model, "claude-x");
        assert_eq!(l.api_key.as_ref().unwrap().expose(), "sk-ant-secret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-ant-secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn missing_keys_and_bad_urls_are_configuration_errors_naming_the_flag() {
        let e = args(&["--planner", "anthropic"]).config(None).unwrap_err();
        assert_eq!(e.flag, "--anthropic-api-key");
        let e = args(&["--planner", "openai"]).config(None).unwrap_err();
        assert_eq!(e.flag, "--openai-api-key");
        // A local server may take no key.
        let c = args(&[
            "--planner",
            "openai",
            "--openai-base-url",
            "http://localhost:11434/v1",
        ])
        .config(None)
        .unwrap();
        assert!(matches!(
            c.backend,
            Backend::Llm(LlmConfig { api_key: None, .. })
        ));
        let e = args(&[
            "--planner",
            "openai",
            "--openai-base-url",
            "localhost:11434",
        ])
        .config(None)
        .unwrap_err();
        assert_eq!(e.flag, "--openai-base-url");
        let e = args(&["--skills", "/nonexistent/skills.toml"])
            .config(None)
            .unwrap_err();
        assert_eq!(e.flag, "--skills");
        let e = args(&[])
            .config(Some(Path::new("/nonexistent/policy.toml")))
            .unwrap_err();
        assert_eq!(e.flag, "--policy");
        assert!(Cli::try_parse_from(["test", "--planner", "magic"]).is_err());
    }
}
