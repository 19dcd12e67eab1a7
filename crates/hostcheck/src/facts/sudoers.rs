//! Reads sudoers (with its includes) far enough to answer one question: which rules let a given
//! user run something through sudo without a password (NOPASSWD).

use crate::host::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub file: String,
    pub line: usize,
    pub users: Vec<String>,
    pub text: String,
    pub nopasswd: bool,
}

#[derive(Debug, Default)]
pub struct Sudoers {
    pub rules: Vec<Rule>,
    /// (alias name, members) of User_Alias lines.
    pub user_aliases: Vec<(String, Vec<String>)>,
    pub files: Vec<String>,
}

/// Ok(None) when there is no /etc/sudoers (sudo not installed).
pub fn load(host: &Host) -> Result<Option<Sudoers>, String> {
    let mut s = Sudoers::default();
    match host.read_optional("/etc/sudoers") {
        Ok(None) => return Ok(None),
        Ok(Some(text)) => parse_file(host, "/etc/sudoers", &text, &mut s, 0)?,
        Err(e) => return Err(e.to_string()),
    }
    Ok(Some(s))
}

fn include_dir(host: &Host, dir: &str, s: &mut Sudoers, depth: usize) -> Result<(), String> {
    let names = host.read_dir_optional(dir).map_err(|e| e.to_string())?;
    // sudo skips names that end in '~' or contain a '.', so that editor and package leftovers
    // are not read.
    for n in names.into_iter().filter(|n| !n.ends_with('~') && !n.contains('.')) {
        let path = format!("{}/{n}", dir.trim_end_matches('/'));
        let text = host.read_string(&path).map_err(|e| e.to_string())?;
        parse_file(host, &path, &text, s, depth + 1)?;
    }
    Ok(())
}

fn parse_file(host: &Host, path: &str, text: &str, s: &mut Sudoers, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("{path}: includes nested too deeply"));
    }
    s.files.push(path.to_string());
    let base_dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start_line = i + 1;
        }
        if let Some(stripped) = raw.strip_suffix('\\') {
            pending.push_str(stripped);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{raw}");
        pending.clear();
        let line = line.trim();
        for (directive, is_dir) in [
            ("#includedir", true),
            ("@includedir", true),
            ("#include", false),
            ("@include", false),
        ] {
            if let Some(arg) = line.strip_prefix(directive) {
                if !arg.starts_with(char::is_whitespace) {
                    continue;
                }
                let arg = arg.trim().trim_matches('"');
                let target = if arg.starts_with('/') {
                    arg.to_string()
                } else {
                    format!("{base_dir}/{arg}")
                };
                if is_dir {
                    include_dir(host, &target, s, depth)?;
                } else {
                    match host.read_optional(&target) {
                        Ok(Some(t)) => parse_file(host, &target, &t, s, depth + 1)?,
                        Ok(None) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                break;
            }
        }
        // '#' starts a comment, except "#123", a uid in a user list.
        let uid_item = line.starts_with('#') && line[1..].starts_with(|c: char| c.is_ascii_digit());
        if (line.starts_with('#') && !uid_item) || line.starts_with('@') || line.is_empty() {
            continue;
        }
        let line = strip_comment(line);
        if line.starts_with("Defaults") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("User_Alias") {
            for def in rest.split(':') {
                if let Some((name, members)) = def.split_once('=') {
                    s.user_aliases.push((name.trim().to_string(), split_list(members)));
                }
            }
            continue;
        }
        if ["Runas_Alias", "Host_Alias", "Cmnd_Alias", "Cmd_Alias"]
            .iter()
            .any(|a| line.starts_with(a))
        {
            continue;
        }
        let Some((left, right)) = line.split_once('=') else {
            continue;
        };
        // "alice, %ci  ALL" : the last word is the host list, the rest the user list.
        let normalized = left.replace(", ", ",").replace(" ,", ",");
        let mut words: Vec<&str> = normalized.split_whitespace().collect();
        if words.len() < 2 {
            continue;
        }
        words.pop();
        let users = split_list(&words.join(","));
        s.rules.push(Rule {
            file: path.to_string(),
            line: start_line,
            users,
            text: line.to_string(),
            nopasswd: right
                .split(|c: char| c.is_whitespace() || c == ',' || c == ')')
                .any(|w| w.starts_with("NOPASSWD:")),
        });
    }
    Ok(())
}

/// Removes a trailing comment: a '#' that does not start a `#uid`.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && !bytes.get(i + 1).is_some_and(|n| n.is_ascii_digit()) {
            return line[..i].trim_end();
        }
    }
    line
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

impl Sudoers {
    /// Does this user-list item name the user (by name, uid, group or alias)?
    fn item_matches(
        &self,
        item: &str,
        name: &str,
        uid: Option<u32>,
        groups: &[String],
        gids: &[u32],
        depth: usize,
    ) -> bool {
        if depth > 8 {
            return false;
        }
        if item == "ALL" || item == name {
            return true;
        }
        if let Some(n) = item.strip_prefix('#') {
            return uid.is_some_and(|u| n.parse() == Ok(u));
        }
        if let Some(g) = item.strip_prefix("%#") {
            return g.parse().is_ok_and(|g: u32| gids.contains(&g));
        }
        if let Some(g) = item.strip_prefix('%') {
            let g = g.trim_start_matches(':');
            return groups.iter().any(|x| x == g);
        }
        if let Some((_, members)) = self.user_aliases.iter().find(|(a, _)| a == item) {
            return self.list_matches(members, name, uid, groups, gids, depth + 1);
        }
        false
    }

    /// sudo reads a list left to right; a `!item` that matches excludes.
    fn list_matches(
        &self,
        list: &[String],
        name: &str,
        uid: Option<u32>,
        groups: &[String],
        gids: &[u32],
        depth: usize,
    ) -> bool {
        let mut matched = false;
        for item in list {
            let (neg, it) = match item.strip_prefix('!') {
                Some(i) => (true, i.trim()),
                None => (false, item.as_str()),
            };
            if self.item_matches(it, name, uid, groups, gids, depth) {
                matched = !neg;
            }
        }
        matched
    }

    /// The NOPASSWD rules that apply to this user.
    pub fn nopasswd_for(&self, name: &str, uid: Option<u32>, groups: &[String], gids: &[u32]) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.nopasswd && self.list_matches(&r.users, name, uid, groups, gids, 0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Sudoers {
        let mut s = Sudoers::default();
        // No includes in these samples, so any host will do: use the live one read-only.
        let live = crate::host::Host::open(std::path::Path::new("/")).unwrap();
        parse_file(&live, "/test/sudoers", text, &mut s, 0).unwrap();
        s
    }

    #[test]
    fn finds_nopasswd_by_name_group_alias_and_all() {
        let s = parse(
            "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\nUser_Alias CI = runner, %builders\nCI ALL=(ALL) NOPASSWD: /usr/bin/apt-get\n%sudo ALL=(ALL:ALL) ALL # admins\n%wheel ALL = (ALL) \\\n   NOPASSWD: ALL\n",
        );
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(s.nopasswd_for("runner", Some(1001), &g(&["runner"]), &[1001]).len(), 1);
        assert_eq!(s.nopasswd_for("bob", Some(1002), &g(&["builders"]), &[1003]).len(), 1);
        let w = s.nopasswd_for("carol", Some(1004), &g(&["wheel"]), &[10]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, 6);
        assert!(s.nopasswd_for("dave", Some(1005), &g(&["sudo"]), &[27]).is_empty());
    }

    #[test]
    fn negation_excludes() {
        let s = parse("ALL, !runner ALL=(ALL) NOPASSWD: /bin/true\n#1001 ALL=(ALL) NOPASSWD: ALL\n");
        assert_eq!(s.nopasswd_for("runner", Some(1001), &[], &[]).len(), 1);
        assert_eq!(s.nopasswd_for("runner", Some(1000), &[], &[]).len(), 0);
        assert_eq!(s.nopasswd_for("eve", Some(7), &[], &[]).len(), 1);
    }
}
