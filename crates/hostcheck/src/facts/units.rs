//! systemd unit files under the root: where runner services are declared (User=, ExecStart=,
//! capabilities) on an image that is not running, and which services are enabled.

use crate::host::Host;

/// Where unit files live, most specific first (as systemd looks them up).
pub const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Debug, Clone, Default)]
pub struct Unit {
    pub name: String,
    pub path: String,
    /// (section, key, value) in file order, drop-ins after the main file.
    pub entries: Vec<(String, String, String)>,
}

impl Unit {
    /// The effective value: the last assignment wins, an empty assignment resets.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The last assignment as written, empty included (an empty CapabilityBoundingSet= means
    /// no capabilities at all).
    pub fn get_raw(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    }

    /// The first command line of ExecStart=, split into words.
    pub fn exec_start(&self) -> Vec<String> {
        self.get("Service", "ExecStart").map(split_exec).unwrap_or_default()
    }

    /// User= of the service; systemd runs it as root without one.
    pub fn user(&self) -> &str {
        self.get("Service", "User").unwrap_or("root")
    }
}

pub fn parse_unit(name: &str, path: &str, text: &str, into: &mut Unit) {
    into.name = name.to_string();
    if into.path.is_empty() {
        into.path = path.to_string();
    }
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        // A trailing backslash continues the value on the next line.
        if let Some(stripped) = line.strip_suffix('\\') {
            pending.push_str(stripped);
            pending.push(' ');
            continue;
        }
        let full = if pending.is_empty() {
            line.to_string()
        } else {
            let s = format!("{pending}{line}");
            pending.clear();
            s
        };
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_string();
        } else if let Some((k, v)) = full.split_once('=') {
            into.entries
                .push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Loads `name` from the unit directories with its drop-ins; Ok(None) when no such unit.
pub fn load(host: &Host, name: &str) -> Result<Option<Unit>, String> {
    let mut unit = Unit::default();
    let mut found = false;
    for dir in UNIT_DIRS {
        let path = format!("{dir}/{name}");
        match host.read_string(&path) {
            Ok(text) => {
                parse_unit(name, &path, &text, &mut unit);
                found = true;
                break;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if !found {
        return Ok(None);
    }
    for dir in UNIT_DIRS {
        let d = format!("{dir}/{name}.d");
        for conf in host.read_dir_optional(&d).unwrap_or_default() {
            if conf.ends_with(".conf") {
                let path = format!("{d}/{conf}");
                if let Ok(text) = host.read_string(&path) {
                    parse_unit(name, &path, &text, &mut unit);
                }
            }
        }
    }
    Ok(Some(unit))
}

/// Unit names in the unit directories (deduplicated), for discovery by name or content.
pub fn names(host: &Host) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for dir in UNIT_DIRS {
        for n in host.read_dir_optional(dir).unwrap_or_default() {
            if n.ends_with(".service") && !out.iter().any(|(m, _)| m == &n) {
                out.push((n, dir.to_string()));
            }
        }
    }
    out
}

/// Services enabled by `systemctl enable`: links in /etc/systemd/system/*.wants/.
pub fn enabled_services(host: &Host) -> Result<Vec<String>, String> {
    let base = "/etc/systemd/system";
    let dirs = match host.read_dir(base) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for d in dirs.iter().filter(|d| d.ends_with(".wants")) {
        for n in host.read_dir_optional(&format!("{base}/{d}")).unwrap_or_default() {
            if n.ends_with(".service") && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Splits an Exec line the way systemd does for the common cases: quotes, backslash escapes,
/// and the `@-:+!` prefixes of the executable.
pub fn split_exec(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, ';') if !in_word => break,
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if let Some(first) = words.first_mut() {
        *first = first.trim_start_matches(['@', '-', ':', '+', '!']).to_string();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_exec_lines() {
        assert_eq!(
            split_exec(
                r#"-/usr/bin/gitlab-runner "run" "--working-directory" "/home/gitlab runner" --user gitlab-runner"#
            ),
            vec![
                "/usr/bin/gitlab-runner",
                "run",
                "--working-directory",
                "/home/gitlab runner",
                "--user",
                "gitlab-runner"
            ]
        );
    }

    #[test]
    fn later_assignments_win() {
        let mut u = Unit::default();
        parse_unit(
            "x.service",
            "/a",
            "[Service]\n# c\nUser=runner\nExecStart=/opt/r/runsvc.sh \\\n  --flag\n",
            &mut u,
        );
        parse_unit("x.service", "/a.d/o.conf", "[Service]\nUser=root\n", &mut u);
        assert_eq!(u.user(), "root");
        assert_eq!(u.exec_start(), vec!["/opt/r/runsvc.sh", "--flag"]);
        assert_eq!(u.path, "/a");
    }
}
