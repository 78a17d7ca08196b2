//! Landlock itself (Linux): probing the kernel's ABI, and confining the calling thread
//! with a computed rule set.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::Confinement;

fn abi(n: u8) -> ABI {
    match n {
        0 | 1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V7,
    }
}

/// The newest ABI (up to [`super::MAX_ABI`]) whose features this kernel has, found by
/// creating (never applying) rulesets that require them.
pub fn probe() -> Result<u8, String> {
    let strict = || Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    let fs = |a: ABI| {
        strict()
            .handle_access(AccessFs::from_all(a))
            .and_then(|r| r.create())
            .map_err(|e| e.to_string())
    };
    if let Err(e) = fs(ABI::V1) {
        return Err(format!("Landlock is not available: {e}"));
    }
    let net = strict()
        .handle_access(AccessNet::from_all(ABI::V4))
        .and_then(|r| r.create())
        .is_ok();
    let scope = strict()
        .scope(Scope::from_all(ABI::V6))
        .and_then(|r| r.create())
        .is_ok();
    // ABI 7 brought the audit flags: asking to turn one off needs it.
    let flags = strict()
        .handle_access(AccessFs::from_all(ABI::V5))
        .and_then(|r| r.create())
        .and_then(|c| c.log_same_exec(false))
        .is_ok();
    let found = if scope && flags {
        7
    } else if scope {
        6
    } else if fs(ABI::V5).is_ok() && net {
        5
    } else if net {
        4
    } else if fs(ABI::V3).is_ok() {
        3
    } else if fs(ABI::V2).is_ok() {
        2
    } else {
        1
    };
    Ok(found)
}

/// Confines the calling thread with the rules of `spec` (paths that cannot be opened are
/// skipped: they are gone, so there is nothing to grant).
pub fn apply(spec: &Confinement) -> Result<(), String> {
    let a = abi(spec.abi);
    let level = if spec.require {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let err = |e: landlock::RulesetError| e.to_string();
    let all = AccessFs::from_all(a);
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(all)
        .map_err(err)?;
    if spec.abi >= 4 && !spec.network {
        ruleset = ruleset.handle_access(AccessNet::ConnectTcp).map_err(err)?;
    }
    if spec.abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(a)).map_err(err)?;
    }
    let mut created = ruleset.create().map_err(err)?;
    for r in &spec.rules {
        let Ok(fd) = PathFd::new(&r.path) else {
            continue;
        };
        let mut access = if r.list_only {
            AccessFs::ReadDir.into()
        } else if r.write {
            all
        } else {
            AccessFs::from_read(a)
        };
        if !r.dir {
            access &= AccessFs::from_file(a);
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("{}: {e}", r.path.display()))?;
    }
    let status = created.restrict_self().map_err(err)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(()),
        RulesetStatus::PartiallyEnforced if !spec.require => Ok(()),
        RulesetStatus::PartiallyEnforced => {
            Err("the kernel enforced only part of the rules".into())
        }
        RulesetStatus::NotEnforced => Err("the kernel enforced none of the rules".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_kernel_has_landlock() {
        // The test machines run kernels with Landlock ABI 7; elsewhere this says why not.
        match super::probe() {
            Ok(abi) => assert!((1..=super::super::MAX_ABI).contains(&abi)),
            Err(e) => assert!(e.contains("Landlock"), "{e}"),
        }
    }
}
