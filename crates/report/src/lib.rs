//! One finding model and one set of renderers shared by `audit` and `host-check`.
//! Renderers take plain data (findings, rule metadata, check results) and never reach into rules.

pub mod finding;

pub use finding::{Diagnostic, Finding, RuleMeta, Severity};
