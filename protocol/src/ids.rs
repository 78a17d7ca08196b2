//! Identifiers that end up inside NATS subjects, so their alphabet is strict.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} may only contain letters, digits, '-' and '_' (found {found:?})")]
    BadChar { kind: &'static str, found: char },
}

fn check(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = s.chars().count();
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    if let Some(found) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadChar { kind, found });
    }
    Ok(())
}

macro_rules! subject_token {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value.
            pub const MAX_LEN: usize = $max;

            /// Checks `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check($kind, s, $max)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

subject_token!(
    /// A job id: `[A-Za-z0-9_-]{1,48}`, short enough that `approve:<job_id>` fits Telegram's
    /// 64-byte callback data.
    JobId,
    "job id",
    48
);

subject_token!(
    /// A worker id: `[A-Za-z0-9_-]{1,64}`. It is one token of several subjects.
    WorkerId,
    "worker id",
    64
);

impl JobId {
    /// A fresh random id (32 hex digits). Random rather than time-ordered so that short
    /// prefixes stay unique, which `jobs.get` and people typing ids rely on.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// A stable id derived from some other unique key (a `Nats-Msg-Id`, a stream position):
    /// the same key always gives the same id, so a redelivered message never becomes a
    /// second job.
    pub fn derive(key: &str) -> Self {
        Self(
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes())
                .simple()
                .to_string(),
        )
    }

    /// The first 8 characters, as shown to people.
    pub fn short(&self) -> &str {
        let end = self.0.len().min(8);
        &self.0[..end]
    }
}

impl WorkerId {
    /// Turns a host name into a valid worker id: every character outside the alphabet
    /// becomes '-', and the result is cut to the maximum length.
    pub fn sanitize(raw: &str) -> Result<Self, IdError> {
        let cleaned: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(Self::MAX_LEN)
            .collect();
        Self::parse(&cleaned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_follow_the_contract_alphabet() {
        assert!(JobId::parse("nightly-42").is_ok());
        assert!(JobId::parse(&"a".repeat(48)).is_ok());
        assert!(matches!(
            JobId::parse(&"a".repeat(49)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(JobId::parse(""), Err(IdError::Empty { .. })));
        for bad in ["a.b", "a b", "a*", "a>", "ä", "a/b"] {
            assert!(
                matches!(JobId::parse(bad), Err(IdError::BadChar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn approve_callback_fits_telegram_limit() {
        let id = JobId::parse(&"x".repeat(JobId::MAX_LEN)).unwrap();
        assert!(format!("approve:{id}").len() <= 64);
    }

    #[test]
    fn generated_and_derived_ids_are_valid_and_stable() {
        let g = JobId::generate();
        assert_eq!(JobId::parse(g.as_str()).unwrap(), g);
        assert_eq!(JobId::derive("k"), JobId::derive("k"));
        assert_ne!(JobId::derive("k"), JobId::derive("l"));
        assert_eq!(g.short().len(), 8);
    }

    #[test]
    fn deserializing_checks_ids() {
        assert!(serde_json::from_str::<JobId>("\"ok_1\"").is_ok());
        assert!(serde_json::from_str::<JobId>("\"no.dots\"").is_err());
    }

    #[test]
    fn host_names_become_worker_ids() {
        assert_eq!(
            WorkerId::sanitize("my.laptop.local").unwrap().as_str(),
            "my-laptop-local"
        );
        assert!(WorkerId::sanitize("").is_err());
    }
}
