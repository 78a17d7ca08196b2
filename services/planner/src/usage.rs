//! Running totals of the tokens the LLM planners spend, one per UTC day, planner and model,
//! in the `skynet-planner-usage` KV bucket. Every planner copy adds with compare-and-set on
//! the entry's revision, so concurrent copies never lose a count.

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use skynet_protocol::event::Usage;
use skynet_protocol::streams;

/// One day's total for one planner and model: the value under
/// `<YYYY-MM-DD>.<planner>.<model>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    pub date: String,
    pub planner: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Answers the model gave (a repair round is a second one).
    pub answers: u64,
}

/// The key of a day's total. Characters a key may not hold (and `.`, which separates its
/// parts) become `_`.
pub fn key(date: &str, planner: &str, model: &str) -> String {
    let clean = |s: &str| -> String {
        let c: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if c.is_empty() { "_".into() } else { c }
    };
    format!("{}.{}.{}", clean(date), clean(planner), clean(model))
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    skynet_protocol::time::now().chars().take(10).collect()
}

/// The usage bucket.
#[derive(Clone)]
pub struct UsageBook {
    kv: kv::Store,
}

impl UsageBook {
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        let kv = js
            .get_key_value(streams::PLANNER_USAGE_BUCKET)
            .await
            .context("opening the planner usage bucket")?;
        Ok(Self { kv })
    }

    /// Adds `usage` and `answers` to today's total and returns the new total.
    pub async fn add(
        &self,
        planner: &str,
        model: &str,
        usage: &Usage,
        answers: u32,
    ) -> anyhow::Result<DailyUsage> {
        let date = today();
        let key = key(&date, planner, model);
        // Each conflict means another copy just added; a handful of rounds always suffices.
        for _ in 0..20 {
            let current = self.kv.entry(key.as_str()).await?;
            let (mut total, revision) = match current {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice::<DailyUsage>(&e.value).unwrap_or_default(),
                    Some(e.revision),
                ),
                _ => (DailyUsage::default(), None),
            };
            total.date = date.clone();
            total.planner = planner.to_owned();
            total.model = model.to_owned();
            total.input_tokens += usage.input_tokens;
            total.output_tokens += usage.output_tokens;
            total.answers += u64::from(answers);
            let body = serde_json::to_vec(&total)?.into();
            let written = match revision {
                Some(r) => self.kv.update(key.as_str(), body, r).await.map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        anyhow::Error::new(e),
                    )
                }),
                None => self.kv.create(key.as_str(), body).await.map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        anyhow::Error::new(e),
                    )
                }),
            };
            match written {
                Ok(_) => return Ok(total),
                Err((true, _)) => continue,
                Err((false, e)) => return Err(e.context("recording token usage")),
            }
        }
        anyhow::bail!("recording token usage: too many concurrent updates")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_three_valid_parts() {
        assert_eq!(
            key("2026-11-25", "openai", "llama3.1:8b"),
            "2026-11-25.openai.llama3_1_8b"
        );
        assert_eq!(key("2026-11-25", "anthropic", ""), "2026-11-25.anthropic._");
        assert_eq!(today().len(), 10);
    }
}
