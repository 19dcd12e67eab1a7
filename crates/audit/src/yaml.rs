//! A YAML tree that keeps where every key and value sits, built from saphyr-parser's events.
//! Rules need positions for findings; aliases and `<<` merges are resolved here, with limits.

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};
use std::borrow::Cow;

/// 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }
}

#[derive(Debug, Clone)]
pub enum Kind<'a> {
    Scalar(Cow<'a, str>, ScalarStyle),
    Seq(Vec<Node<'a>>),
    Map(Vec<(Node<'a>, Node<'a>)>),
}

#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub start: Pos,
    pub end: Pos,
    pub kind: Kind<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{message}")]
    Syntax { pos: Pos, message: String },
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep { pos: Pos },
    #[error("aliases expand to more than {MAX_NODES} nodes")]
    TooLarge { pos: Pos },
    #[error("alias refers to an unknown anchor")]
    UnknownAnchor { pos: Pos },
}

impl YamlError {
    pub fn pos(&self) -> Pos {
        match self {
            YamlError::Syntax { pos, .. }
            | YamlError::TooDeep { pos }
            | YamlError::TooLarge { pos }
            | YamlError::UnknownAnchor { pos } => *pos,
        }
    }
}

/// Guards against stack exhaustion (drop and rule walks recurse) and alias bombs.
pub const MAX_DEPTH: usize = 200;
pub const MAX_NODES: usize = 2_000_000;

static NULL_STR: &str = "";

impl<'a> Node<'a> {
    pub fn as_map(&self) -> Option<&[(Node<'a>, Node<'a>)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Node<'a>]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }
    /// The scalar's text; None for collections. A null (`~`, empty) is the empty string here.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s, ScalarStyle::Plain) if is_null(s) => Some(NULL_STR),
            Kind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }
    pub fn is_plain(&self) -> bool {
        matches!(self.kind, Kind::Scalar(_, ScalarStyle::Plain))
    }
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s, ScalarStyle::Plain) if is_null(s))
    }
    /// A YAML 1.2 core-schema boolean (plain scalars only: `"true"` is a string).
    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Scalar(s, ScalarStyle::Plain) => match s.as_ref() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
    pub fn is_true(&self) -> bool {
        self.as_bool() == Some(true)
    }
    pub fn is_false(&self) -> bool {
        self.as_bool() == Some(false)
    }
    pub fn as_i64(&self) -> Option<i64> {
        match &self.kind {
            Kind::Scalar(s, _) => s.trim().parse().ok(),
            _ => None,
        }
    }
    /// The entry for `key`: (key node, value node).
    pub fn entry(&self, key: &str) -> Option<(&Node<'a>, &Node<'a>)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.entry(key).map(|(_, v)| v)
    }
    /// Follows a path of map keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node<'a>> {
        let mut n = self;
        for k in keys {
            n = n.get(k)?;
        }
        Some(n)
    }
    pub fn entries(&self) -> impl Iterator<Item = (&Node<'a>, &Node<'a>)> {
        self.as_map().unwrap_or(&[]).iter().map(|(k, v)| (k, v))
    }
    pub fn items(&self) -> impl Iterator<Item = &Node<'a>> {
        self.as_seq().unwrap_or(&[]).iter()
    }
    /// A scalar as a one-element list, a sequence's scalars as they are.
    pub fn strings(&self) -> Vec<(&str, &Node<'a>)> {
        match &self.kind {
            Kind::Seq(s) => s.iter().filter_map(|n| n.as_str().map(|t| (t, n))).collect(),
            Kind::Scalar(..) => self.as_str().map(|t| vec![(t, self)]).unwrap_or_default(),
            Kind::Map(_) => Vec::new(),
        }
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn pos_of(m: &saphyr_parser::Marker) -> Pos {
    // saphyr's lines are 1-based and its columns 0-based.
    Pos::new(m.line() as u32, m.col() as u32 + 1)
}

enum Frame<'a> {
    Seq {
        start: Pos,
        anchor: usize,
        items: Vec<Node<'a>>,
    },
    Map {
        start: Pos,
        anchor: usize,
        entries: Vec<(Node<'a>, Node<'a>)>,
        pending_key: Option<Node<'a>>,
    },
}

/// Parses every document of a stream. `line_offset` shifts lines (YAML embedded in another file).
pub fn parse_stream(text: &str, line_offset: u32) -> Result<Vec<Node<'_>>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut anchors: Vec<Option<Node<'_>>> = Vec::new();
    let mut nodes: usize = 0;
    let shift = |mut p: Pos| {
        p.line += line_offset;
        p
    };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e: ScanError| YamlError::Syntax {
            pos: shift(pos_of(e.marker())),
            message: e.info().to_string(),
        })?;
        let start = shift(pos_of(&span.start));
        let end = shift(pos_of(&span.end));
        let done: Option<(Node<'_>, usize)> = match ev {
            Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd | Event::Nothing => None,
            Event::StreamEnd => break,
            Event::Scalar(value, style, anchor, _tag) => Some((
                Node {
                    start,
                    end,
                    kind: Kind::Scalar(value, style),
                },
                anchor,
            )),
            Event::Alias(id) => {
                let target = anchors
                    .get(id)
                    .and_then(|n| n.as_ref())
                    .ok_or(YamlError::UnknownAnchor { pos: start })?;
                let count = count_nodes(target, MAX_NODES - nodes.min(MAX_NODES));
                nodes += count;
                if nodes >= MAX_NODES {
                    return Err(YamlError::TooLarge { pos: start });
                }
                let mut n = target.clone();
                // The alias's place is where it is used, not where the anchor was defined.
                n.start = start;
                n.end = end;
                Some((n, 0))
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep { pos: start });
                }
                stack.push(Frame::Seq {
                    start,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep { pos: start });
                }
                stack.push(Frame::Map {
                    start,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    start: s,
                    anchor,
                    items,
                }) => Some((
                    Node {
                        start: s,
                        end,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )),
                _ => {
                    return Err(YamlError::Syntax {
                        pos: start,
                        message: "unbalanced sequence end".into(),
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    start: s,
                    anchor,
                    entries,
                    ..
                }) => Some((
                    Node {
                        start: s,
                        end,
                        kind: Kind::Map(merge_keys(entries)),
                    },
                    anchor,
                )),
                _ => {
                    return Err(YamlError::Syntax {
                        pos: start,
                        message: "unbalanced mapping end".into(),
                    });
                }
            },
        };
        let Some((node, anchor)) = done else { continue };
        nodes += 1;
        if nodes >= MAX_NODES {
            return Err(YamlError::TooLarge { pos: start });
        }
        if anchor > 0 {
            if anchors.len() <= anchor {
                anchors.resize(anchor + 1, None);
            }
            anchors[anchor] = Some(node.clone());
        }
        match stack.last_mut() {
            None => docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, pending_key, ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(docs)
}

/// Counts nodes up to `limit` (so that a bomb is refused without walking all of it).
fn count_nodes(n: &Node<'_>, limit: usize) -> usize {
    let mut count = 0usize;
    let mut todo = vec![n];
    while let Some(n) = todo.pop() {
        count += 1;
        if count >= limit {
            return count;
        }
        match &n.kind {
            Kind::Scalar(..) => {}
            Kind::Seq(s) => todo.extend(s.iter()),
            Kind::Map(m) => {
                for (k, v) in m {
                    todo.push(k);
                    todo.push(v);
                }
            }
        }
    }
    count
}

/// Applies `<<: *anchor` merges: explicit keys win, merged ones fill in what is missing.
fn merge_keys<'a>(entries: Vec<(Node<'a>, Node<'a>)>) -> Vec<(Node<'a>, Node<'a>)> {
    if !entries.iter().any(|(k, _)| k.is_plain() && k.as_str() == Some("<<")) {
        return entries;
    }
    let mut own = Vec::with_capacity(entries.len());
    let mut merged: Vec<(Node<'a>, Node<'a>)> = Vec::new();
    for (k, v) in entries {
        if k.is_plain() && k.as_str() == Some("<<") {
            let sources: Vec<Node<'a>> = match v.kind {
                Kind::Map(_) => vec![v],
                Kind::Seq(items) => items,
                Kind::Scalar(..) => Vec::new(),
            };
            for src in sources {
                if let Kind::Map(m) = src.kind {
                    for (mk, mv) in m {
                        let name = mk.as_str().map(str::to_owned);
                        let dup = merged.iter().any(|(k2, _)| k2.as_str() == name.as_deref());
                        if !dup {
                            merged.push((mk, mv));
                        }
                    }
                }
            }
        } else {
            own.push((k, v));
        }
    }
    for (mk, mv) in merged {
        let name = mk.as_str();
        if !own.iter().any(|(k, _)| k.as_str() == name) {
            own.push((mk, mv));
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_keys_and_values() {
        let docs = parse_stream("a:\n  bé: [1, x]\n  c: true\n", 0).unwrap();
        let root = &docs[0];
        let (k, v) = root.get("a").unwrap().entry("bé").unwrap();
        assert_eq!(k.start, Pos::new(2, 3));
        assert_eq!(v.start, Pos::new(2, 7));
        let (k, v) = root.get("a").unwrap().entry("c").unwrap();
        assert_eq!(k.start, Pos::new(3, 3));
        assert!(v.is_true());
    }

    #[test]
    fn merges_and_aliases_resolve() {
        let text = "base: &b {x: 1, y: 2}\njob:\n  <<: *b\n  y: 3\n";
        let docs = parse_stream(text, 10).unwrap();
        let job = docs[0].get("job").unwrap();
        assert_eq!(job.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(job.get("y").unwrap().as_str(), Some("3"));
        assert_eq!(job.start.line, 13);
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            bomb.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        assert!(matches!(parse_stream(&bomb, 0), Err(YamlError::TooLarge { .. })));
        let deep = "[".repeat(10_000);
        assert!(parse_stream(&deep, 0).is_err());
    }
}
