//! The policy rules: a TOML file of rules that judge each step allow / approve / deny.
//! `default-policy.toml` (next to this crate) is the built-in policy and documents the format.
//! Loading and the file format live here; [`judge`] applies the rules to a plan, with the
//! shared shell reader ([`skynet_protocol::shell`]) and the table of inert programs
//! ([`inert`]).

mod inert;
mod judge;
#[cfg(test)]
mod tests;

use std::time::Duration;

use regex::RegexSet;
use serde::Deserialize;
use skynet_protocol::event::Risk;
use skynet_protocol::shell::Pattern;
use skynet_protocol::{GitOp, Step};

pub use inert::{Class, classify};

/// The built-in policy, as shipped.
pub const DEFAULT_POLICY: &str = include_str!("../default-policy.toml");

/// What policy says about a step or a job. Ordered: the strictest is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Approve,
    Deny,
}

impl Verdict {
    fn default_risk(self) -> Risk {
        match self {
            Verdict::Allow => Risk::Low,
            Verdict::Approve => Risk::Medium,
            Verdict::Deny => Risk::High,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    defaults: DefaultsSpec,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsSpec {
    verdict: Verdict,
    #[serde(default = "default_ttl")]
    approval_ttl: String,
    #[serde(default = "approve")]
    redirect: Verdict,
    #[serde(default = "approve")]
    unparsable: Verdict,
    #[serde(default = "approve")]
    dynamic: Verdict,
    #[serde(default = "approve")]
    env: Verdict,
}

fn default_ttl() -> String {
    "1h".into()
}

fn approve() -> Verdict {
    Verdict::Approve
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    verdict: Verdict,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    risk: Option<Risk>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    git_ops: Vec<GitOp>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    inert: bool,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    network: bool,
}

pub(crate) struct Rule {
    pub(crate) verdict: Verdict,
    pub(crate) reason: String,
    pub(crate) risk: Risk,
    pub(crate) actions: Vec<String>,
    pub(crate) git_ops: Vec<GitOp>,
    pub(crate) command: Option<RegexSet>,
    /// Only commands the table proves inert.
    pub(crate) inert: bool,
    pub(crate) paths: Vec<Pattern>,
    /// Globs over variable names (upper-cased).
    pub(crate) env: Vec<String>,
    /// An allow rule that lets the plans it allows open TCP connections.
    pub(crate) network: bool,
}

/// A loaded policy.
pub struct Policy {
    pub default: Verdict,
    pub approval_ttl: Duration,
    pub(crate) redirect: Verdict,
    pub(crate) unparsable: Verdict,
    pub(crate) dynamic: Verdict,
    pub(crate) env: Verdict,
    pub(crate) rules: Vec<Rule>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("default", &self.default)
            .field("approval_ttl", &self.approval_ttl)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// Why a policy file was refused; the message names the rule and the pattern.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("not a valid policy file: {0}")]
    Toml(String),
    #[error("rule {rule:?}: {problem}")]
    Rule { rule: String, problem: String },
    #[error("defaults.approval_ttl: {0}")]
    Ttl(String),
}

const ACTIONS: [&str; 5] = ["shell", "python", "file_read", "file_write", "git"];

/// One reason that counted towards a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub step: usize,
    pub verdict: Verdict,
    pub risk: Risk,
    pub what: String,
    pub reason: String,
    /// The finding's rule grants network access (`network = true`).
    pub network: bool,
}

/// Policy's judgement of a whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub risk: Risk,
    /// People-readable reasons for the verdict (the findings that decided it).
    pub reasons: Vec<String>,
    /// The variables of the steps' `env` that change what programs run
    /// ([`skynet_protocol::shell::env::risky`]) and that this verdict lets through: a rule
    /// allowed them, or a person approves the plan with them. Sorted, each once; empty when
    /// the plan is denied. The worker drops every risky variable not named here.
    pub allowed_env: Vec<String>,
    /// Whether the plan may open TCP connections: it is allowed, and a rule with
    /// `network = true` allowed one of its steps. Policy seals it into the grant; a person's
    /// approval grants network whatever this says.
    pub network: bool,
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Result<Self, PolicyError> {
        Self::from_toml(DEFAULT_POLICY)
    }

    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        let approval_ttl = humantime::parse_duration(&spec.defaults.approval_ttl)
            .map_err(|e| PolicyError::Ttl(e.to_string()))?;
        let mut rules = Vec::with_capacity(spec.rules.len());
        for r in spec.rules {
            rules.push(rule(r)?);
        }
        Ok(Self {
            default: spec.defaults.verdict,
            approval_ttl,
            redirect: spec.defaults.redirect,
            unparsable: spec.defaults.unparsable,
            dynamic: spec.defaults.dynamic,
            env: spec.defaults.env,
            rules,
        })
    }

    /// Judges every step; the plan takes the strictest verdict.
    pub fn judge(&self, steps: &[Step]) -> Judgement {
        judge::judge(self, steps)
    }
}

fn rule(r: RuleSpec) -> Result<Rule, PolicyError> {
    let bad = |problem: String| PolicyError::Rule {
        rule: r.name.clone(),
        problem,
    };
    if let Some(a) = r.actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
        return Err(bad(format!(
            "unknown action {a:?} (one of {})",
            ACTIONS.join(", ")
        )));
    }
    if r.command.is_empty()
        && r.paths.is_empty()
        && r.actions.is_empty()
        && r.git_ops.is_empty()
        && r.env.is_empty()
    {
        return Err(bad(
            "matches everything: give actions, git_ops, command, paths or env".into(),
        ));
    }
    if !r.env.is_empty() && (!r.command.is_empty() || !r.paths.is_empty() || r.inert) {
        return Err(bad(
            "env rules judge variables: give them no command, paths or inert".into(),
        ));
    }
    if r.network && r.verdict != Verdict::Allow {
        return Err(bad(
            "network = true belongs on allow rules (a person's approval always grants network)"
                .into(),
        ));
    }
    if r.inert && r.command.is_empty() {
        return Err(bad("inert = true needs command patterns".into()));
    }
    if let Some(e) = r.env.iter().find(|e| {
        e.is_empty()
            || !e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_*?%".contains(c))
    }) {
        return Err(bad(format!(
            "bad env pattern {e:?} (a variable name with * and ?)"
        )));
    }
    let command = if r.command.is_empty() {
        None
    } else {
        Some(RegexSet::new(&r.command).map_err(|e| bad(format!("bad command pattern: {e}")))?)
    };
    let paths = r
        .paths
        .iter()
        .map(|p| Pattern::parse(p).map_err(|e| bad(format!("bad path glob {p:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        verdict: r.verdict,
        reason: r.reason.unwrap_or_else(|| r.name.clone()),
        risk: r.risk.unwrap_or_else(|| r.verdict.default_risk()),
        actions: r.actions,
        git_ops: r.git_ops,
        command,
        inert: r.inert,
        paths,
        env: r.env.iter().map(|e| e.to_ascii_uppercase()).collect(),
        network: r.network,
    })
}
