//! Whether this kernel can confine steps with Landlock, found without confining anything:
//! a ruleset is created (never applied) with each ABI's rights as a hard requirement, the
//! newest first.

use landlock::{ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr};

pub enum Landlock {
    /// The newest ABI whose filesystem rights the kernel has (network rules from 4 on).
    Available {
        abi: u8,
    },
    Unavailable(String),
}

pub fn probe() -> Landlock {
    let fs = |abi: ABI| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| r.create())
    };
    let net = || {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessNet::from_all(ABI::V4))
            .and_then(|r| r.create())
    };
    let mut last_error = String::new();
    for (n, abi) in [(5, ABI::V5), (3, ABI::V3), (2, ABI::V2), (1, ABI::V1)] {
        match fs(abi) {
            Ok(_) => {
                let n = if n == 3 && net().is_ok() { 4 } else { n };
                return Landlock::Available { abi: n };
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Landlock::Unavailable(last_error)
}

/// The running kernel's release, for messages.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("Linux {}", r.trim()))
        .unwrap_or_else(|_| "unknown kernel".into())
}
