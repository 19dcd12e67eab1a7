//! Landlock: even where a mount is writable, the job may write only beneath the paths its policy
//! names (workspace, tmpfs dirs, writable binds), and may not signal processes outside the job.

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    path_beneath_rules,
};
use std::path::PathBuf;

/// What Landlock achieved, for the report.
pub enum Outcome {
    Full,
    Partial,
    Unsupported,
}

/// Restricts this process (the job, right before exec) to read everywhere, write only beneath
/// `writable`, and keep signals inside its own domain.
pub fn restrict(writable: &[PathBuf]) -> Result<Outcome, String> {
    let abi = ABI::V6;
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?;
    rs = rs.scope(Scope::from_all(abi)).map_err(|e| e.to_string())?;
    let status = rs
        .create()
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(writable, AccessFs::from_all(abi))))
        // Writing to device nodes (/dev/null, the tty) and /proc/self files is not "writing files".
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                ["/dev", "/proc"],
                AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev,
            ))
        })
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Outcome::Full,
        RulesetStatus::PartiallyEnforced => Outcome::Partial,
        _ => Outcome::Unsupported,
    })
}
