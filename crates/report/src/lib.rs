//! One finding model and one set of renderers shared by `audit` and `host-check`.
//! Renderers take plain data (findings, rule metadata, check results) and never reach into rules.

pub mod checks;
pub mod finding;
pub mod github;
pub mod json;
pub mod plain;
pub mod sarif;

pub use finding::{Diagnostic, Finding, RuleMeta, Severity};
