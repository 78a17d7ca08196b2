//! Who may do what: allowed users create and control jobs, approvers decide them, and
//! everyone else is refused.

use std::collections::BTreeSet;

/// The two lists of Telegram user ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    allowed: BTreeSet<u64>,
    approvers: BTreeSet<u64>,
}

impl Access {
    pub fn new(allowed: BTreeSet<u64>, approvers: BTreeSet<u64>) -> Self {
        Self { allowed, approvers }
    }

    /// May submit and cancel jobs.
    pub fn can_run(&self, user: u64) -> bool {
        self.allowed.contains(&user)
    }

    /// May approve and deny jobs.
    pub fn can_approve(&self, user: u64) -> bool {
        self.approvers.contains(&user)
    }

    /// May look at jobs, their output and the workers (approvers must see what they
    /// decide, even when they may not run anything themselves).
    pub fn can_read(&self, user: u64) -> bool {
        self.can_run(user) || self.can_approve(user)
    }

    /// The approvers' own chats (a private chat's id is its user's id): where approval
    /// requests and alerts go.
    pub fn approver_chats(&self) -> impl Iterator<Item = i64> + '_ {
        self.approvers.iter().filter_map(|u| i64::try_from(*u).ok())
    }

    pub fn nobody_allowed(&self) -> bool {
        self.allowed.is_empty() && self.approvers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_separate() {
        let a = Access::new([1, 2].into(), [2, 3].into());
        assert!(a.can_run(1) && !a.can_approve(1));
        assert!(a.can_run(2) && a.can_approve(2));
        assert!(!a.can_run(3) && a.can_approve(3) && a.can_read(3));
        assert!(!a.can_read(4));
        assert_eq!(a.approver_chats().collect::<Vec<_>>(), vec![2, 3]);
        assert!(Access::default().nobody_allowed());
    }
}
