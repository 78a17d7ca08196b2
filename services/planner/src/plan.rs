//! Turning a request into a plan.

use skynet_protocol::event::Usage;
use skynet_protocol::{JobRequest, Step};

/// A plan ready for policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub summary: String,
    /// Which planner made it (`passthrough`, `rules`, `anthropic`, `openai`).
    pub planner: String,
    pub model: Option<String>,
    pub usage: Option<Usage>,
}

/// What planning a request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Plan(Plan),
    /// The request cannot be planned; the job ends `rejected` with this reason.
    Reject(String),
}

/// A one-paragraph description of `steps` for people.
pub fn summarize(steps: &[Step]) -> String {
    match steps {
        [] => "Nothing to do.".into(),
        [one] => format!("Run one step: {}.", one.describe()),
        many => {
            let shown: Vec<String> = many.iter().take(5).map(Step::describe).collect();
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

/// Plans a request that carries explicit steps: they go to policy unchanged.
pub fn pass_through(req: &JobRequest) -> Option<Outcome> {
    let steps = req.steps.as_ref()?;
    if let Some(Step::Skill { name, .. }) = steps.iter().find(|s| matches!(s, Step::Skill { .. })) {
        return Some(Outcome::Reject(format!(
            "step `skill` ({name}) needs the skill catalogue, which this planner does not have yet; \
             give low-level steps (shell, python, file_read, file_write, git)"
        )));
    }
    Some(Outcome::Plan(Plan {
        summary: summarize(steps),
        steps: steps.clone(),
        planner: "passthrough".into(),
        model: None,
        usage: None,
    }))
}

/// Plans a request: explicit steps pass through; a goal alone cannot be planned yet.
pub fn plan(req: &JobRequest) -> Outcome {
    pass_through(req).unwrap_or_else(|| {
        Outcome::Reject(
            "planning from a goal alone is not available yet: give explicit `steps` \
             (for example `skynet submit -- cargo test`)"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_steps_pass_through_unchanged() {
        let req = JobRequest::from_slice(
            br#"{"goal":"g","steps":[{"action":"shell","cmd":"ls","cwd":"~"}]}"#,
        )
        .unwrap();
        match plan(&req) {
            Outcome::Plan(p) => {
                assert_eq!(&p.steps, req.steps.as_ref().unwrap());
                assert_eq!(p.planner, "passthrough");
                assert!(p.summary.contains("ls"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_goal_alone_is_rejected_with_a_reason() {
        let req = JobRequest::from_slice(br#"{"goal":"run the tests"}"#).unwrap();
        match plan(&req) {
            Outcome::Reject(reason) => assert!(reason.contains("goal alone")),
            other => panic!("{other:?}"),
        }
    }
}
