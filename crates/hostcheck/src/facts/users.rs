//! The host's user and group databases (/etc/passwd, /etc/group) under the root, so that uids,
//! gids and group memberships in evidence carry names and "who can reach this" can be answered.

use crate::host::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Users {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// Files that could not be read, as reasons ("/etc/group: permission denied").
    pub errors: Vec<String>,
}

impl Users {
    pub fn load(host: &Host) -> Users {
        let mut u = Users::default();
        match host.read_string("/etc/passwd") {
            Ok(text) => u.users = parse_passwd(&text),
            Err(e) => u.errors.push(e.to_string()),
        }
        match host.read_string("/etc/group") {
            Ok(text) => u.groups = parse_group(&text),
            Err(e) => u.errors.push(e.to_string()),
        }
        u
    }

    pub fn by_uid(&self, uid: u32) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// "runner (uid 1001)" or "uid 1001" when the name is not in /etc/passwd.
    pub fn describe_uid(&self, uid: u32) -> String {
        match self.by_uid(uid) {
            Some(u) => format!("{} (uid {uid})", u.name),
            None => format!("uid {uid}"),
        }
    }

    pub fn group_name(&self, gid: u32) -> String {
        match self.group_by_gid(gid) {
            Some(g) => g.name.clone(),
            None => format!("gid {gid}"),
        }
    }

    /// Primary group plus every group that lists the user as a member.
    pub fn gids_of(&self, user: &User) -> Vec<u32> {
        let mut gids = vec![user.gid];
        for g in &self.groups {
            if g.members.iter().any(|m| m == &user.name) && !gids.contains(&g.gid) {
                gids.push(g.gid);
            }
        }
        gids
    }

    /// Everyone whose primary or supplementary group is `gid`.
    pub fn members_of(&self, gid: u32) -> Vec<String> {
        let mut out: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.gid == gid)
            .map(|u| u.name.clone())
            .collect();
        if let Some(g) = self.group_by_gid(gid) {
            for m in &g.members {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }
}

pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_include_primary_and_listed_groups() {
        let users = Users {
            users: parse_passwd(
                "root:x:0:0:root:/root:/bin/bash\nrunner:x:1001:1001::/home/runner:/bin/bash\nbad line\n",
            ),
            groups: parse_group("root:x:0:\ndocker:x:998:runner,alice\nrunner:x:1001:\n"),
            errors: vec![],
        };
        let runner = users.by_name("runner").unwrap();
        assert_eq!(users.gids_of(runner), vec![1001, 998]);
        assert_eq!(users.members_of(998), vec!["runner", "alice"]);
        assert_eq!(users.describe_uid(1001), "runner (uid 1001)");
        assert_eq!(users.describe_uid(5), "uid 5");
    }
}
