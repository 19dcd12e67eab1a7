//! One file's text with a line index: turns byte offsets into line/column and back, and reads
//! the `stockade: ignore[...]` comments that suppress findings on a line.

use crate::yaml::{Node, Pos};

#[derive(Debug)]
pub struct Source {
    /// The path as shown in findings (relative when the user gave a relative path).
    pub path: String,
    pub text: String,
    /// Built on first use: most files have no finding, and never need it.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

/// Which comment opens a suppression on a line of this kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentStyle {
    Hash,
    /// Jenkinsfiles: `//`, and `#` inside embedded pod YAML.
    SlashesAndHash,
}

impl Source {
    pub fn new(path: String, text: String) -> Source {
        Source {
            path,
            text,
            line_starts: std::cell::OnceCell::new(),
        }
    }

    fn starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            let mut v = vec![0];
            v.extend(self.text.match_indices('\n').map(|(i, _)| i + 1));
            v
        })
    }

    /// The 1-based line `n` without its line break, if it exists.
    pub fn line(&self, n: u32) -> Option<&str> {
        let i = (n as usize).checked_sub(1)?;
        let start = *self.starts().get(i)?;
        let end = self.starts().get(i + 1).map(|e| e - 1).unwrap_or(self.text.len());
        let l = self.text.get(start..end)?;
        Some(l.strip_suffix('\r').unwrap_or(l))
    }

    pub fn pos_of_byte(&self, byte: usize) -> Pos {
        let byte = byte.min(self.text.len());
        let i = match self.starts().binary_search(&byte) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts()[i];
        let col = self
            .text
            .get(start..byte)
            .map(|s| s.chars().count())
            .unwrap_or(byte - start);
        Pos::new(i as u32 + 1, col as u32 + 1)
    }

    pub fn byte_of_pos(&self, pos: Pos) -> usize {
        let Some(&start) = self.starts().get((pos.line as usize).saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let skip = (pos.col as usize).saturating_sub(1);
        rest.char_indices()
            .nth(skip)
            .map(|(b, _)| start + b)
            .unwrap_or(self.text.len())
    }

    /// Where `needle` first appears inside a node's source text, else the node's start.
    /// Used to point at `--privileged` inside an options string or a `run:` script.
    pub fn find_in_node(&self, node: &Node<'_>, needle: &str) -> Pos {
        self.find_between(node.start, node.end, needle).unwrap_or(node.start)
    }

    pub fn find_between(&self, start: Pos, end: Pos, needle: &str) -> Option<Pos> {
        let a = self.byte_of_pos(start);
        let b = self.byte_of_pos(end).max(a);
        let hay = self.text.get(a..b)?;
        hay.find(needle).map(|off| self.pos_of_byte(a + off))
    }

    /// True when line `line` or the line above carries `stockade: ignore[..rule..]` in a comment.
    pub fn suppressed(&self, line: u32, rule: &str, style: CommentStyle) -> bool {
        [line, line.saturating_sub(1)]
            .into_iter()
            .filter(|l| *l > 0)
            .filter_map(|l| self.line(l))
            .any(|l| line_suppresses(l, rule, style))
    }
}

fn line_suppresses(line: &str, rule: &str, style: CommentStyle) -> bool {
    const MARK: &str = "stockade: ignore[";
    let Some(at) = line.find(MARK) else {
        return false;
    };
    let before = &line[..at];
    let in_comment = match style {
        CommentStyle::Hash => before.contains('#'),
        CommentStyle::SlashesAndHash => before.contains("//") || before.contains('#'),
    };
    if !in_comment {
        return false;
    }
    let rest = &line[at + MARK.len()..];
    let Some(close) = rest.find(']') else {
        return false;
    };
    rest[..close].split(',').any(|id| id.trim() == rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_positions_round_trip() {
        let s = Source::new("f".into(), "ab\ncé d\r\nx".into());
        assert_eq!(s.line(2), Some("cé d"));
        assert_eq!(s.line(3), Some("x"));
        assert_eq!(s.line(4), None);
        let p = s.pos_of_byte(s.text.find('d').unwrap());
        assert_eq!(p, Pos::new(2, 4));
        assert_eq!(s.byte_of_pos(p), s.text.find('d').unwrap());
    }

    #[test]
    fn suppression_needs_a_comment_and_the_rule_id() {
        let s = Source::new(
            "f".into(),
            "a: 1 # stockade: ignore[r1, r2] known\nb: stockade: ignore[r3]\n// stockade: ignore[r4]\nc: 2\n".into(),
        );
        assert!(s.suppressed(1, "r2", CommentStyle::Hash));
        assert!(s.suppressed(2, "r1", CommentStyle::Hash));
        assert!(!s.suppressed(2, "r3", CommentStyle::Hash));
        assert!(!s.suppressed(4, "r4", CommentStyle::Hash));
        assert!(s.suppressed(4, "r4", CommentStyle::SlashesAndHash));
        assert!(!s.suppressed(1, "r3", CommentStyle::Hash));
    }
}
