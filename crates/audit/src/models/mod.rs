//! Span-keeping models, one per kind of file: what rules read instead of raw text.
//! Each model only exposes structure; judging it is the rules' business.

pub mod gitlab_ci;
pub mod jenkinsfile;
pub mod k8s;
pub mod runner_config;
pub mod workflow;

use crate::yaml::Node;

/// A Jenkins Configuration-as-Code file: its top-level `jenkins:` mapping.
pub struct Jcasc<'a> {
    pub jenkins: &'a Node<'a>,
}

/// An actions-runner-controller object (by kind) or a gha-runner-scale-set values file.
pub struct ArcResource<'a> {
    pub doc: &'a Node<'a>,
    /// `None` for Helm values.
    pub kind: Option<&'a str>,
}
