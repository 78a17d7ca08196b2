//! Turning a request into a plan: explicit steps pass through (skills expanded), a goal goes
//! to the rules planner or an LLM (in `lib.rs`, which holds the LLM client and the worker
//! registry).

use std::fmt::Write as _;

use serde_json::Value;
use skynet_protocol::event::Usage;
use skynet_protocol::job::validate_steps;
use skynet_protocol::{JobRequest, Step};

use crate::skills::Skills;

/// A plan ready for policy: low-level actions only.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub summary: String,
    /// Which planner made it (`passthrough`, `rules`, `anthropic`, `openai`).
    pub planner: String,
    pub model: Option<String>,
    pub usage: Option<Usage>,
    /// The lock the plan takes by default (see [`default_lock`]).
    pub lock: Option<String>,
}

/// The skills that touch a repository, and the argument that names its directory.
const LOCKING_SKILLS: [(&str, &str); 4] = [
    ("git_sync", "repo"),
    ("git_commit", "repo"),
    ("run_tests", "dir"),
    ("build", "dir"),
];

/// A plan that uses a skill touching a repository locks that directory (`repo:<dir>`, the
/// first such skill's), so two such jobs never work in one checkout at once.
pub fn default_lock(original: &[Step]) -> Option<String> {
    original.iter().find_map(|step| {
        let Step::Skill { name, args, .. } = step else {
            return None;
        };
        let (_, arg) = LOCKING_SKILLS.iter().find(|(n, _)| n == name)?;
        let dir = args.get(*arg)?.as_str()?.trim().trim_end_matches('/');
        (!dir.is_empty()).then(|| {
            let lock = format!("repo:{dir}");
            lock.chars()
                .take(skynet_protocol::job::limits::LOCK_CHARS)
                .collect()
        })
    })
}

/// What planning a request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Plan(Plan),
    /// The request cannot be planned; the job ends `rejected` with this reason.
    Reject(String),
}

/// One step for people; a skill by its name, arguments and what it does.
fn describe(step: &Step, skills: &Skills) -> String {
    match step {
        Step::Skill { name, args, .. } => {
            let mut s = name.clone();
            let shown: Vec<String> = args
                .iter()
                .map(|(k, v)| match v {
                    Value::String(text) => format!("{k} {text}"),
                    other => format!("{k} {other}"),
                })
                .collect();
            if !shown.is_empty() {
                let _ = write!(s, " with {}", shown.join(", "));
            }
            if let Some(skill) = skills.get(name) {
                let _ = write!(s, " ({})", skill.description.trim_end_matches('.'));
            }
            s
        }
        other => other.describe(),
    }
}

/// A one-paragraph description of `steps` (as written, before skills expand) for people.
pub fn summarize(steps: &[Step], skills: &Skills) -> String {
    match steps {
        [] => "Nothing to do.".into(),
        [one] => format!("Run one step: {}.", describe(one, skills)),
        many => {
            let shown: Vec<String> = many.iter().take(5).map(|s| describe(s, skills)).collect();
            let more = if many.len() > 5 {
                format!("; and {} more", many.len() - 5)
            } else {
                String::new()
            };
            format!(
                "Run {} steps in order: {}{more}.",
                many.len(),
                shown.join("; ")
            )
        }
    }
}

/// Expands the skills of `original` and checks that what is left may go to a worker.
pub fn finish(original: &[Step], skills: &Skills, planner: &str) -> Outcome {
    let steps = match skills.expand(original) {
        Ok(s) => s,
        Err(e) => return Outcome::Reject(e.to_string()),
    };
    if let Err(e) = validate_steps(&steps, false) {
        return Outcome::Reject(format!(
            "once its skills are expanded, the plan is not valid: {e}"
        ));
    }
    Outcome::Plan(Plan {
        lock: default_lock(original),
        summary: summarize(original, skills),
        steps,
        planner: planner.into(),
        model: None,
        usage: None,
    })
}

/// Plans a request that carries explicit steps: skills are expanded, every other step goes
/// to policy unchanged. `None` for a goal-only request.
pub fn pass_through(req: &JobRequest, skills: &Skills) -> Option<Outcome> {
    let steps = req.steps.as_ref()?;
    Some(finish(steps, skills, "passthrough"))
}

/// Plans a goal with the offline rules planner.
pub fn rules(goal: &str, req: &JobRequest, skills: &Skills) -> Outcome {
    match crate::rules::plan(goal, req, skills) {
        Ok(steps) => finish(&steps, skills, "rules"),
        Err(reason) => Outcome::Reject(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skills() -> Skills {
        Skills::builtin().unwrap()
    }

    #[test]
    fn skills_that_touch_a_repository_lock_its_directory() {
        let req = JobRequest::from_slice(
            br#"{"steps":[{"action":"skill","name":"disk_usage","args":{}},{"action":"skill","name":"run_tests","args":{"dir":"~/src/app/"}}]}"#,
        )
        .unwrap();
        let Some(Outcome::Plan(p)) = pass_through(&req, &skills()) else {
            panic!("not planned")
        };
        assert_eq!(p.lock.as_deref(), Some("repo:~/src/app"));
        let req = JobRequest::from_slice(
            br#"{"steps":[{"action":"skill","name":"disk_usage","args":{"path":"~/src"}}]}"#,
        )
        .unwrap();
        let Some(Outcome::Plan(p)) = pass_through(&req, &skills()) else {
            panic!("not planned")
        };
        assert_eq!(p.lock, None);
    }

    #[test]
    fn explicit_steps_pass_through_unchanged() {
        let req = JobRequest::from_slice(
            br#"{"goal":"g","steps":[{"action":"shell","cmd":"ls","cwd":"~"}]}"#,
        )
        .unwrap();
        match pass_through(&req, &skills()).unwrap() {
            Outcome::Plan(p) => {
                assert_eq!(&p.steps, req.steps.as_ref().unwrap());
                assert_eq!(p.planner, "passthrough");
                assert!(p.summary.contains("ls"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn skills_in_requests_are_expanded_and_summarised_by_name() {
        let req = JobRequest::from_slice(
            br#"{"steps":[{"action":"skill","name":"disk_usage","args":{"path":"~/src"}}]}"#,
        )
        .unwrap();
        let Outcome::Plan(p) = pass_through(&req, &skills()).unwrap() else {
            panic!()
        };
        assert!(p.steps.iter().all(|s| !matches!(s, Step::Skill { .. })));
        assert!(
            p.summary
                .starts_with("Run one step: disk_usage with path ~/src (Shows how full"),
            "{}",
            p.summary
        );
    }

    #[test]
    fn skills_with_bad_arguments_reject_the_request() {
        let req = JobRequest::from_slice(
            br#"{"steps":[{"action":"shell","cmd":"ls"},{"action":"skill","name":"git_commit","args":{"repo":"~/r"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            pass_through(&req, &skills()).unwrap(),
            Outcome::Reject(
                "`steps[1]`: skill git_commit: argument `message` is required (the commit message)"
                    .into()
            )
        );
    }

    #[test]
    fn a_goal_alone_is_planned_by_the_rules_or_rejected_with_a_reason() {
        let req = JobRequest::from_slice(br#"{"goal":"run the tests in ~/app"}"#).unwrap();
        assert!(pass_through(&req, &skills()).is_none());
        let Outcome::Plan(p) = rules("run the tests in ~/app", &req, &skills()) else {
            panic!()
        };
        assert_eq!(p.planner, "rules");
        assert!(
            p.summary.contains("run_tests with dir ~/app"),
            "{}",
            p.summary
        );
        let Outcome::Reject(reason) = rules("make coffee", &req, &skills()) else {
            panic!()
        };
        assert!(reason.contains("does not understand"), "{reason}");
    }
}
