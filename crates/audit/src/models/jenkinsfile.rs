//! Jenkinsfiles are Groovy; this is a small tokenizer (strings, comments, identifiers) and a
//! matcher for the few shapes that decide isolation: docker agents and `.inside()` args,
//! `podTemplate`/`containerTemplate` named arguments, and inline pod YAML (`yaml '''...'''`).

use crate::source::Source;
use crate::yaml::Pos;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    /// Byte range of a string's contents (inside the quotes).
    inner: (usize, usize),
}

/// A string literal argument with where it sits.
#[derive(Debug, Clone)]
pub struct StrArg {
    pub text: String,
    pub start: Pos,
    pub end: Pos,
}

#[derive(Debug, Clone)]
pub struct DockerAgent {
    /// `agent docker`, `agent dockerfile`, `.inside()`, `.withRun()`.
    pub form: &'static str,
    pub pos: Pos,
    /// The args string literals (several when concatenated).
    pub args: Vec<StrArg>,
}

#[derive(Debug, Clone)]
pub struct NamedArg {
    pub key: String,
    pub key_pos: Pos,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub pos: Pos,
    pub args: Vec<NamedArg>,
}

impl Template {
    pub fn arg(&self, key: &str) -> Option<&NamedArg> {
        self.args.iter().find(|a| a.key == key)
    }
    pub fn name(&self) -> &str {
        self.arg("name").map(|a| a.value.as_str()).unwrap_or("?")
    }
}

#[derive(Debug, Clone)]
pub struct InlineYaml {
    pub text: String,
    /// Lines to add to the embedded YAML's own line numbers.
    pub line_offset: u32,
}

#[derive(Debug, Default)]
pub struct Jenkinsfile {
    pub docker_agents: Vec<DockerAgent>,
    pub container_templates: Vec<Template>,
    pub pod_templates: Vec<Template>,
    pub inline_yaml: Vec<InlineYaml>,
}

/// Whether a `.groovy` file is a pipeline at all.
pub fn looks_like_pipeline(text: &str) -> bool {
    ["pipeline", "podTemplate", "node(", "node {", "docker.image", "agent"]
        .iter()
        .any(|k| text.contains(k))
}

fn tokenize(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(b.len());
            continue;
        }
        if c == b'\'' || c == b'"' {
            let triple = b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&c);
            let q = if triple { 3 } else { 1 };
            let start = i;
            let inner_start = i + q;
            let mut j = inner_start;
            let mut value = String::new();
            let mut closed = false;
            while j < b.len() {
                if b[j] == b'\\' && j + 1 < b.len() {
                    // Keep the escaped character; Groovy's escapes are rare in what we read.
                    let ch_end = next_char_end(text, j + 1);
                    value.push_str(&text[j + 1..ch_end]);
                    j = ch_end;
                    continue;
                }
                if b[j] == c && (!triple || (b.get(j + 1) == Some(&c) && b.get(j + 2) == Some(&c))) {
                    closed = true;
                    break;
                }
                if !triple && b[j] == b'\n' {
                    break;
                }
                let ch_end = next_char_end(text, j);
                value.push_str(&text[j..ch_end]);
                j = ch_end;
            }
            let inner_end = j;
            let end = if closed { j + q } else { j };
            out.push(Token {
                tok: Tok::Str(value),
                start,
                inner: (inner_start, inner_end),
            });
            i = end.max(i + 1);
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                start,
                inner: (start, i),
            });
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(text[start..i].to_string()),
                start,
                inner: (start, i),
            });
            continue;
        }
        let end = next_char_end(text, i);
        let ch = text[i..end].chars().next().unwrap_or('?');
        out.push(Token {
            tok: Tok::Punct(ch),
            start: i,
            inner: (i, end),
        });
        i = end;
    }
    out
}

fn next_char_end(text: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < text.len() && !text.is_char_boundary(j) {
        j += 1;
    }
    j.min(text.len())
}

fn is_ident(t: Option<&Token>, name: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(s), .. }) if s == name)
}

fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

/// The index of the bracket closing the one at `open` (or the end).
fn matching(toks: &[Token], open: usize) -> usize {
    let (o, c) = match &toks[open].tok {
        Tok::Punct('(') => ('(', ')'),
        Tok::Punct('[') => ('[', ']'),
        _ => ('{', '}'),
    };
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if let Tok::Punct(p) = t.tok {
            if p == o {
                depth += 1;
            } else if p == c {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
        }
    }
    toks.len()
}

fn str_arg(src: &Source, t: &Token) -> Option<StrArg> {
    match &t.tok {
        Tok::Str(s) => Some(StrArg {
            text: s.clone(),
            start: src.pos_of_byte(t.inner.0),
            end: src.pos_of_byte(t.inner.1),
        }),
        _ => None,
    }
}

/// `key: value` pairs at the top level of a call's parentheses.
fn named_args(src: &Source, toks: &[Token], open: usize, close: usize) -> Vec<NamedArg> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut k = open + 1;
    while k < close {
        match &toks[k].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
            Tok::Ident(name) | Tok::Str(name) if depth == 0 && is_punct(toks.get(k + 1), ':') => {
                let value = match toks.get(k + 2).map(|t| &t.tok) {
                    Some(Tok::Str(s) | Tok::Ident(s) | Tok::Num(s)) => s.clone(),
                    _ => String::new(),
                };
                out.push(NamedArg {
                    key: name.clone(),
                    key_pos: src.pos_of_byte(toks[k].start),
                    value,
                });
            }
            _ => {}
        }
        k += 1;
    }
    out
}

pub fn parse(src: &Source) -> Jenkinsfile {
    let toks = tokenize(&src.text);
    let mut jf = Jenkinsfile::default();
    let n = toks.len();
    for i in 0..n {
        let t = &toks[i];
        let Tok::Ident(name) = &t.tok else { continue };
        let next = toks.get(i + 1);
        match name.as_str() {
            "docker" | "dockerfile" if is_punct(next, '{') => {
                let close = matching(&toks, i + 1);
                let mut args = Vec::new();
                for k in i + 2..close.min(n) {
                    if is_ident(toks.get(k), "args") {
                        let mut m = k + 1;
                        while let Some(a) = toks.get(m).and_then(|t| str_arg(src, t)) {
                            args.push(a);
                            m += 1;
                            if !is_punct(toks.get(m), '+') {
                                break;
                            }
                            m += 1;
                        }
                    }
                }
                jf.docker_agents.push(DockerAgent {
                    form: if name == "docker" {
                        "agent docker"
                    } else {
                        "agent dockerfile"
                    },
                    pos: src.pos_of_byte(t.start),
                    args,
                });
            }
            "docker"
                if matches!(next.map(|t| &t.tok), Some(Tok::Str(_)))
                    && is_punct(i.checked_sub(1).and_then(|p| toks.get(p)), '{')
                    && is_ident(i.checked_sub(2).and_then(|p| toks.get(p)), "agent") =>
            {
                jf.docker_agents.push(DockerAgent {
                    form: "agent docker",
                    pos: src.pos_of_byte(t.start),
                    args: Vec::new(),
                });
            }
            "inside" | "withRun"
                if is_punct(i.checked_sub(1).and_then(|p| toks.get(p)), '.') && is_punct(next, '(') =>
            {
                let close = matching(&toks, i + 1);
                let mut args = Vec::new();
                let mut m = i + 2;
                while let Some(a) = toks.get(m).filter(|_| m < close).and_then(|t| str_arg(src, t)) {
                    args.push(a);
                    m += 1;
                    if !is_punct(toks.get(m), '+') {
                        break;
                    }
                    m += 1;
                }
                jf.docker_agents.push(DockerAgent {
                    form: if name == "inside" { ".inside()" } else { ".withRun()" },
                    pos: src.pos_of_byte(t.start),
                    args,
                });
            }
            "containerTemplate" | "podTemplate" if is_punct(next, '(') => {
                let close = matching(&toks, i + 1);
                let tpl = Template {
                    pos: src.pos_of_byte(t.start),
                    args: named_args(src, &toks, i + 1, close.min(n)),
                };
                if name == "containerTemplate" {
                    jf.container_templates.push(tpl);
                } else {
                    jf.pod_templates.push(tpl);
                }
            }
            "yaml" => {
                // `yaml '''...'''` (declarative) or `yaml: '''...'''` (podTemplate argument).
                let at = if is_punct(next, ':') { i + 2 } else { i + 1 };
                if let Some(tok) = toks.get(at)
                    && let Tok::Str(_) = tok.tok
                {
                    let raw = &src.text[tok.inner.0..tok.inner.1];
                    let first_line = src.pos_of_byte(tok.inner.0).line;
                    jf.inline_yaml.push(InlineYaml {
                        text: raw.to_string(),
                        line_offset: first_line - 1,
                    });
                }
            }
            _ => {}
        }
    }
    jf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_agents_templates_and_yaml() {
        let text = r#"
// agent { docker { args '--privileged' } }
pipeline {
  agent {
    docker {
      image 'maven:3'
      args '-v /var/run/docker.sock:/var/run/docker.sock ' + '--cap-drop=ALL'
    }
  }
  stages { stage('x') { steps { script {
    docker.image("x").inside("--network=host") { sh 'make' }
  } } } }
}
podTemplate(containers: [containerTemplate(name: 'dind', image: 'docker:dind', privileged: true)], yaml: '''
spec:
  containers:
  - name: a
''') {}
"#;
        let src = Source::new("Jenkinsfile".into(), text.into());
        let jf = parse(&src);
        assert_eq!(jf.docker_agents.len(), 2);
        assert_eq!(jf.docker_agents[0].args.len(), 2);
        assert_eq!(jf.docker_agents[0].pos, Pos::new(5, 5));
        assert_eq!(jf.docker_agents[1].args[0].text, "--network=host");
        assert_eq!(jf.container_templates.len(), 1);
        let ct = &jf.container_templates[0];
        assert_eq!(ct.arg("privileged").unwrap().value, "true");
        assert_eq!(ct.name(), "dind");
        assert_eq!(jf.inline_yaml.len(), 1);
        assert_eq!(jf.inline_yaml[0].line_offset, 13);
    }
}
