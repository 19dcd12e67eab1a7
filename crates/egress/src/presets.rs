//! Allowlist presets for common ecosystems (`allow = ["@github"]`), kept as plain files under
//! crates/egress/presets/ so that a reviewer reads exactly what a preset lets a job reach.

const PRESETS: &[(&str, &str)] = &[
    ("github", include_str!("../presets/github.txt")),
    ("npm", include_str!("../presets/npm.txt")),
    ("pypi", include_str!("../presets/pypi.txt")),
    ("crates", include_str!("../presets/crates.txt")),
    ("debian", include_str!("../presets/debian.txt")),
    ("docker-hub", include_str!("../presets/docker-hub.txt")),
    ("ghcr", include_str!("../presets/ghcr.txt")),
    ("gitlab", include_str!("../presets/gitlab.txt")),
];

/// The text of preset `name` (without the `@`).
pub fn get(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// The entries of a preset file: one per line, `#` starts a comment.
pub fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_has_entries_and_they_parse() {
        for name in names() {
            let text = get(name).unwrap();
            assert!(entries(text).count() > 0, "{name}");
            let p = crate::EgressPolicy {
                allow: vec![format!("@{name}")],
                ..Default::default()
            };
            p.validate().unwrap();
        }
    }
}
