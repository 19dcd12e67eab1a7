//! GitLab Runner's `config.toml`: each `[[runners]]` block with its executor and its
//! `[runners.docker]` / `[runners.kubernetes]` tables, keys and values kept with their positions.

use crate::source::Source;
use crate::yaml::Pos;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A TOML value with the position of its key (or of itself in an array).
#[derive(Debug, Clone)]
pub struct TNode {
    pub pos: Pos,
    pub value: TValue,
}

#[derive(Debug, Clone)]
pub enum TValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Other,
    Array(Vec<TNode>),
    Table(Vec<(String, TNode)>),
}

impl TNode {
    pub fn get(&self, key: &str) -> Option<&TNode> {
        match &self.value {
            TValue::Table(t) => t.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            TValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            TValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match &self.value {
            TValue::Int(i) => Some(*i),
            TValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    pub fn items(&self) -> &[TNode] {
        match &self.value {
            TValue::Array(a) => a,
            _ => &[],
        }
    }
    /// The strings of an array (non-strings skipped).
    pub fn strings(&self) -> Vec<(&str, Pos)> {
        self.items()
            .iter()
            .filter_map(|n| n.as_str().map(|s| (s, n.pos)))
            .collect()
    }
}

pub struct RunnerConfig {
    pub runners: Vec<Runner>,
}

pub struct Runner {
    /// The block as a table; its position is the `[[runners]]` header (or the key for inline).
    pub node: TNode,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    Shell,
    Docker,
    Kubernetes,
    Other,
}

impl Runner {
    pub fn executor(&self) -> Option<(&str, Pos)> {
        self.node.get("executor").and_then(|n| n.as_str().map(|s| (s, n.pos)))
    }

    pub fn executor_kind(&self) -> Executor {
        match self.executor().map(|(s, _)| s) {
            Some("shell") => Executor::Shell,
            Some(e) if e.starts_with("docker") => Executor::Docker,
            Some("kubernetes") => Executor::Kubernetes,
            Some(_) => Executor::Other,
            // No executor: the block is judged by the section it configures.
            None if self.node.get("docker").is_some() => Executor::Docker,
            None if self.node.get("kubernetes").is_some() => Executor::Kubernetes,
            None => Executor::Other,
        }
    }

    /// `[runners.docker]` when the runner uses a Docker executor.
    pub fn docker(&self) -> Option<&TNode> {
        (self.executor_kind() == Executor::Docker)
            .then(|| self.node.get("docker"))
            .flatten()
    }

    pub fn kubernetes(&self) -> Option<&TNode> {
        (self.executor_kind() == Executor::Kubernetes)
            .then(|| self.node.get("kubernetes"))
            .flatten()
    }

    /// Where a "missing key" finding of a section points: the section header, else the block.
    pub fn section_pos(&self, section: &str) -> Pos {
        self.node.get(section).map(|n| n.pos).unwrap_or(self.node.pos)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TomlError {
    pub pos: Pos,
    pub message: String,
}

pub fn parse(src: &Source) -> Result<RunnerConfig, TomlError> {
    let table = DeTable::parse(&src.text).map_err(|e| TomlError {
        pos: e.span().map(|s| src.pos_of_byte(s.start)).unwrap_or(Pos::new(1, 1)),
        message: e.message().to_string(),
    })?;
    let root = convert_table(src, table.get_ref(), src.pos_of_byte(table.span().start), 0);
    let mut runners = Vec::new();
    if let Some(r) = root.get("runners") {
        for (i, n) in r.items().iter().enumerate() {
            if matches!(n.value, TValue::Table(_)) {
                let name = n
                    .get("name")
                    .and_then(TNode::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("#{}", i + 1));
                runners.push(Runner { node: n.clone(), name });
            }
        }
    }
    Ok(RunnerConfig { runners })
}

const MAX_DEPTH: usize = 64;

fn convert_table(src: &Source, t: &DeTable<'_>, pos: Pos, depth: usize) -> TNode {
    let mut entries = Vec::new();
    for (k, v) in t.iter() {
        let key_pos = src.pos_of_byte(k.span().start);
        entries.push((k.get_ref().to_string(), convert_value(src, v, key_pos, depth + 1)));
    }
    TNode {
        pos,
        value: TValue::Table(entries),
    }
}

fn convert_value(src: &Source, v: &Spanned<DeValue<'_>>, key_pos: Pos, depth: usize) -> TNode {
    if depth > MAX_DEPTH {
        return TNode {
            pos: key_pos,
            value: TValue::Other,
        };
    }
    let value = match v.get_ref() {
        DeValue::String(s) => TValue::Str(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(TValue::Int)
            .unwrap_or(TValue::Other),
        DeValue::Boolean(b) => TValue::Bool(*b),
        DeValue::Float(_) | DeValue::Datetime(_) => TValue::Other,
        DeValue::Array(a) => TValue::Array(
            a.iter()
                .map(|item| {
                    // A table of `[[array]]` points at its header; other items at themselves.
                    let p = src.pos_of_byte(item.span().start);
                    convert_value(src, item, p, depth + 1)
                })
                .collect(),
        ),
        DeValue::Table(t) => {
            return convert_table(src, t, header_pos(src, v, key_pos), depth + 1);
        }
    };
    TNode { pos: key_pos, value }
}

/// A table's own span starts at its `[header]` line when it has one.
fn header_pos(src: &Source, v: &Spanned<DeValue<'_>>, key_pos: Pos) -> Pos {
    let start = v.span().start;
    let p = src.pos_of_byte(start);
    let line = src.line(p.line).unwrap_or("");
    if line.trim_start().starts_with('[') {
        Pos::new(p.line, (line.len() - line.trim_start().len()) as u32 + 1)
    } else {
        key_pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_keep_positions() {
        let text = "concurrent = 1\n\n[[runners]]\n  name = \"a\"\n  executor = \"docker\"\n  [runners.docker]\n    privileged = true\n\n[[runners]]\n  executor = \"shell\"\n";
        let src = Source::new("c.toml".into(), text.into());
        let cfg = parse(&src).unwrap();
        assert_eq!(cfg.runners.len(), 2);
        let r = &cfg.runners[0];
        assert_eq!(r.node.pos, Pos::new(3, 1));
        assert_eq!(r.executor_kind(), Executor::Docker);
        let d = r.docker().unwrap();
        assert_eq!(d.pos, Pos::new(6, 3));
        assert_eq!(d.get("privileged").unwrap().pos, Pos::new(7, 5));
        assert_eq!(cfg.runners[1].executor_kind(), Executor::Shell);
        assert_eq!(cfg.runners[1].executor().unwrap().1, Pos::new(10, 3));
    }
}
