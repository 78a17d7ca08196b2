//! Applies the rules to a plan. Each step gives findings (a verdict and a reason each); the
//! plan takes the strictest. A shell step is read with the shared shell reader: every simple
//! command it can run is matched against the command rules, every word that could name a
//! path against the path rules (by everything it could match), every variable it sets or
//! carries in `env` against the env rules, and what cannot be known from the text
//! (`$c` as a command, `sh -c "$x"`) gets `defaults.dynamic`.

use std::collections::BTreeMap;

use skynet_protocol::Step;
use skynet_protocol::event::Risk;
use skynet_protocol::shell::env::risky;
use skynet_protocol::shell::{self, Command, Overlap, PathPattern, Run, Script, Vars, Word};

mod paths;
mod render;

use paths::{PathWord, best_overlap, command_words, shell_words};
use render::{MAX_PIPELINE_TEXTS, candidates, inner_of, render_inner, render_raw};

use super::inert::classify;
use super::{Finding, Judgement, Policy, Rule, Verdict};

pub(super) fn judge(policy: &Policy, steps: &[Step]) -> Judgement {
    let findings: Vec<Finding> = steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let mut j = Judge {
                policy,
                index: i,
                out: Vec::new(),
            };
            j.step(s);
            j.out
        })
        .collect();
    let verdict = findings
        .iter()
        .map(|f| f.verdict)
        .max()
        .unwrap_or(policy.default);
    let risk = findings
        .iter()
        .filter(|f| f.verdict >= Verdict::Approve)
        .map(|f| f.risk)
        .max()
        .unwrap_or(Risk::Low);
    // One line per step and reason: the same reason found in a command, its wrapper and
    // the whole line is said once, with the most precise text (the first found).
    let mut said: Vec<(usize, &str)> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for f in findings.iter().filter(|f| f.verdict == verdict) {
        if said.contains(&(f.step, f.reason.as_str())) {
            continue;
        }
        said.push((f.step, f.reason.as_str()));
        reasons.push(format!(
            "step {} `{}`: {}",
            f.step + 1,
            clip(&f.what, 80),
            f.reason
        ));
    }
    let mut allowed_env: Vec<String> = Vec::new();
    if verdict != Verdict::Deny {
        for s in steps {
            if let Step::Shell { env, .. } = s {
                allowed_env.extend(env.keys().filter(|k| risky(k).is_some()).cloned());
            }
        }
        allowed_env.sort();
        allowed_env.dedup();
    }
    let network = verdict == Verdict::Allow && findings.iter().any(|f| f.network);
    Judgement {
        verdict,
        risk,
        reasons,
        allowed_env,
        network,
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

struct Judge<'a> {
    policy: &'a Policy,
    index: usize,
    out: Vec<Finding>,
}

impl Judge<'_> {
    fn add(&mut self, verdict: Verdict, risk: Risk, what: &str, reason: &str) {
        self.out.push(Finding {
            step: self.index,
            verdict,
            risk,
            what: what.to_owned(),
            reason: reason.to_owned(),
            network: false,
        });
    }

    fn rule(&mut self, r: &Rule, what: &str) {
        self.add(r.verdict, r.risk, what, &r.reason);
        if let Some(f) = self.out.last_mut() {
            f.network = r.network;
        }
    }

    /// A strict rule's paths met only through something known at run time: ask.
    fn maybe(&mut self, r: &Rule, what: &str) {
        let v = r.verdict.min(Verdict::Approve);
        let reason = format!("{} (a path only known when it runs could be one)", r.reason);
        self.add(
            v,
            r.risk.min(v.default_risk()).max(Risk::Medium),
            what,
            &reason,
        );
    }

    fn step(&mut self, step: &Step) {
        let what = step.describe();
        let cwd = match step {
            Step::Shell { cwd, .. } | Step::Python { cwd, .. } => cwd.as_deref(),
            _ => None,
        };
        let base = PathPattern::base(cwd);
        let unknown = PathPattern::base(None);
        let own: Vec<(String, PathPattern)> = step_paths(step)
            .into_iter()
            .map(|p| {
                let pat = PathPattern::literal(p, &unknown);
                (p.to_owned(), pat)
            })
            .collect();
        let mut words: Vec<PathWord> = own
            .iter()
            .map(|(what, p)| PathWord {
                what: what.clone(),
                paths: vec![p.clone()],
                files: true,
            })
            .collect();
        let none = Vars::default();
        for a in step.artifacts() {
            words.push(PathWord {
                what: a.clone(),
                paths: PathPattern::of_word(&Word::unquoted(a), &base, &none),
                files: true,
            });
        }
        let parsed = match step {
            Step::Shell { cmd, argv, env, .. } => {
                let parsed = match (cmd, argv) {
                    (Some(cmd), _) => shell::parse(cmd),
                    (None, Some(argv)) => shell::parse_argv(argv),
                    (None, None) => Err(shell::ParseError("no command".into())),
                };
                Some((parsed, env))
            }
            _ => None,
        };
        if let Some((Ok(script), env)) = &parsed {
            let vars = Vars::new(script, env);
            shell_words(script, &vars, &base, &mut words);
            for v in env.values() {
                words.push(PathWord {
                    what: v.clone(),
                    paths: vec![PathPattern::literal(v, &base)],
                    files: false,
                });
            }
        }

        // Rules about the step itself (no command patterns, no variables).
        let mut covered = false;
        let policy = self.policy;
        for r in policy
            .rules
            .iter()
            .filter(|r| r.command.is_none() && r.env.is_empty() && base_match(r, step))
        {
            if r.paths.is_empty() {
                self.rule(r, &what);
                covered = true;
            } else if r.verdict == Verdict::Allow {
                // An allow rule's paths must hold for every path the step names.
                if !own.is_empty()
                    && own
                        .iter()
                        .all(|(_, p)| r.paths.iter().any(|pat| pat.overlap(p) == Overlap::Sure))
                {
                    self.rule(r, &what);
                    covered = true;
                }
            } else {
                match best_overlap(&r.paths, &words) {
                    Some((Overlap::Sure, w)) => self.rule(r, w),
                    Some((Overlap::Maybe, w)) => self.maybe(r, w),
                    _ => {}
                }
            }
        }

        match step {
            Step::Shell { cmd, .. } => {
                let full = cmd.clone().unwrap_or_else(|| what.clone());
                match &parsed {
                    Some((Ok(script), env)) => self.shell(step, script, env, &base, covered),
                    Some((Err(e), _)) => {
                        let v = self.policy.unparsable;
                        self.add(
                            v,
                            v.default_risk(),
                            &full,
                            &format!("cannot read the command ({e})"),
                        );
                    }
                    None => {}
                }
                self.strict_text(step, &full);
            }
            Step::Python { code, .. } => {
                for r in policy.rules.iter().filter(|r| {
                    r.command.is_some() && !r.inert && r.paths.is_empty() && base_match(r, step)
                }) {
                    if r.command.as_ref().is_some_and(|c| c.is_match(code)) {
                        self.rule(r, "python code");
                    }
                }
            }
            Step::Git { url: Some(url), .. } => self.strict_text(step, url),
            _ => {}
        }
        if matches!(step, Step::Skill { .. }) {
            self.add(
                Verdict::Deny,
                Risk::High,
                &what,
                "skills must be expanded by the planner before policy sees them",
            );
        }
        if self.out.is_empty() {
            let v = self.policy.default;
            self.add(v, v.default_risk(), &what, "no rule covers this step");
        }
    }

    /// Approve and deny rules also see texts as written (the whole line, a command with its
    /// wrappers, a pipeline).
    fn strict_text(&mut self, step: &Step, text: &str) {
        let policy = self.policy;
        for r in policy
            .rules
            .iter()
            .filter(|r| r.verdict >= Verdict::Approve && r.paths.is_empty() && base_match(r, step))
        {
            if r.command.as_ref().is_some_and(|c| c.is_match(text)) {
                self.rule(r, text);
            }
        }
    }

    fn shell(
        &mut self,
        step: &Step,
        script: &Script,
        env: &BTreeMap<String, String>,
        base: &PathPattern,
        covered: bool,
    ) {
        let policy = self.policy;
        let vars = Vars::new(script, env);
        for (ci, cmd) in script.commands.iter().enumerate() {
            let raw = render_raw(script, ci, 0);
            match &cmd.run {
                Run::Nothing => {}
                Run::Script => self.strict_text(step, &raw),
                Run::Dynamic { why, .. } => {
                    let v = policy.dynamic;
                    self.add(v, v.default_risk(), &raw, why);
                    // `c=rm; $c -rf ~`: judged as each value the line gives it, too.
                    for c in candidates(cmd, &vars) {
                        self.program(step, script, &c, &vars, base, true);
                    }
                    self.strict_text(step, &raw);
                }
                Run::Program { .. } => {
                    self.program(step, script, cmd, &vars, base, covered);
                    self.strict_text(step, &raw);
                }
            }
            for w in &cmd.writes {
                let v = policy.redirect;
                self.add(
                    v,
                    v.default_risk(),
                    &format!("> {}", w.text()),
                    "writes output into a file",
                );
            }
        }
        for n in script.pipelines() {
            let parts: Vec<usize> = (0..script.commands.len())
                .filter(|&i| script.commands[i].pipeline == n)
                .collect();
            if parts.len() < 2 {
                continue;
            }
            // Each command as written, and a command held in a variable as each value the
            // line gives it: `c=curl; $c x | sh` is also `curl x | sh`.
            let mut texts: Vec<Vec<String>> = vec![Vec::new()];
            for &i in &parts {
                let mut alts = vec![match script.commands[i].run {
                    Run::Program { .. } | Run::Dynamic { word: Some(_), .. } => {
                        render_inner(script, i, 0)
                    }
                    _ => render_raw(script, i, 0),
                }];
                alts.extend(
                    candidates(&script.commands[i], &vars)
                        .iter()
                        .map(|c| inner_of(script, c, 0)),
                );
                let mut next = Vec::new();
                for t in &texts {
                    for a in &alts {
                        let mut v = t.clone();
                        v.push(a.clone());
                        next.push(v);
                    }
                }
                next.truncate(MAX_PIPELINE_TEXTS);
                texts = next;
            }
            for t in texts {
                self.strict_text(step, &t.join(" | "));
            }
        }
        for a in &script.assigns {
            let shown = match &a.value {
                Some(v) => format!("{}={}", a.name, v.text()),
                None => a.name.clone(),
            };
            self.env_var(step, &a.name, &shown);
        }
        for k in env.keys() {
            self.env_var(step, k, &format!("env {k}"));
        }
        for r in script.redirects.iter().filter(|r| r.kind.writes()) {
            let target = r.target.literal();
            let harmless = target.as_deref().is_some_and(|t| {
                matches!(t, "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty")
                    || t.starts_with("/dev/fd/")
            });
            if !harmless {
                let v = policy.redirect;
                self.add(
                    v,
                    v.default_risk(),
                    &format!("> {}", r.target.text()),
                    "writes output into a file",
                );
            }
        }
        for note in &script.dynamic {
            let v = policy.dynamic;
            self.add(v, v.default_risk(), note, "cannot be judged from the text");
        }
    }

    /// One program with its arguments, against the command rules.
    fn program(
        &mut self,
        step: &Step,
        script: &Script,
        cmd: &Command,
        vars: &Vars,
        base: &PathPattern,
        covered: bool,
    ) {
        let policy = self.policy;
        let inner = inner_of(script, cmd, 0);
        let class = classify(cmd);
        let own = command_words(cmd, vars, base, class.reads_files);
        let mut matched = false;
        for r in policy
            .rules
            .iter()
            .filter(|r| r.command.is_some() && base_match(r, step))
        {
            if !r.command.as_ref().is_some_and(|c| c.is_match(&inner)) {
                continue;
            }
            if r.inert && !class.is_inert() {
                continue;
            }
            if r.paths.is_empty() {
                self.rule(r, &inner);
                matched = true;
                continue;
            }
            if r.verdict == Verdict::Allow {
                let own_paths: Vec<PathPattern> = step_paths(step)
                    .into_iter()
                    .map(|p| PathPattern::literal(p, &PathPattern::base(None)))
                    .collect();
                if !own_paths.is_empty()
                    && own_paths
                        .iter()
                        .all(|p| r.paths.iter().any(|pat| pat.overlap(p) == Overlap::Sure))
                {
                    self.rule(r, &inner);
                    matched = true;
                }
                continue;
            }
            match best_overlap(&r.paths, &own) {
                Some((Overlap::Sure, _)) => {
                    self.rule(r, &inner);
                    matched = true;
                }
                Some((Overlap::Maybe, _)) => {
                    self.maybe(r, &inner);
                    matched = true;
                }
                _ => {}
            }
        }
        if !matched && !covered {
            let v = policy.default;
            let reason = match (&class.not_inert, class.known) {
                (Some(why), true) => why.clone(),
                _ => "no rule covers this command".into(),
            };
            self.add(v, v.default_risk(), &inner, &reason);
        }
    }

    /// A variable the step sets: the env rules decide; with none, a variable that changes
    /// what runs gets `defaults.env`.
    fn env_var(&mut self, step: &Step, name: &str, shown: &str) {
        let policy = self.policy;
        let up = name.to_ascii_uppercase();
        let rules: Vec<&Rule> = policy
            .rules
            .iter()
            .filter(|r| !r.env.is_empty() && base_match(r, step))
            .filter(|r| r.env.iter().any(|g| name_glob(g, &up)))
            .collect();
        if !rules.is_empty() {
            for r in rules {
                self.rule(r, shown);
            }
        } else if let Some(why) = risky(name) {
            let v = policy.env;
            self.add(
                v,
                v.default_risk(),
                shown,
                &format!("sets {name}, which {why}"),
            );
        }
    }
}

/// Whether a rule's `actions` and `git_ops` admit the step.
fn base_match(r: &Rule, step: &Step) -> bool {
    let action_ok = r.actions.is_empty() || r.actions.iter().any(|a| a == step.action());
    let op_ok =
        r.git_ops.is_empty() || matches!(step, Step::Git { op, .. } if r.git_ops.contains(op));
    action_ok && op_ok
}

/// A glob over variable names: `*` and `?`.
fn name_glob(glob: &str, name: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut gi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == n[ni]) {
            gi += 1;
            ni += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ni;
            gi += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// The step's own paths: `path`, `repo`, `cwd`.
fn step_paths(step: &Step) -> Vec<&str> {
    let raw: Vec<&str> = match step {
        Step::Shell { cwd, .. } | Step::Python { cwd, .. } => {
            cwd.iter().map(String::as_str).collect()
        }
        Step::FileRead { path, .. } | Step::FileWrite { path, .. } => vec![path.as_str()],
        Step::Git { repo, .. } => vec![repo.as_str()],
        Step::Skill { .. } => vec![],
    };
    raw.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::name_glob;

    #[test]
    fn name_globs() {
        assert!(name_glob("GIT_*", "GIT_CONFIG_COUNT"));
        assert!(name_glob("LD_PRELOAD", "LD_PRELOAD"));
        assert!(name_glob("A?C", "ABC"));
        assert!(!name_glob("GIT_*", "MY_GIT"));
        assert!(name_glob("*", "X"));
    }
}
