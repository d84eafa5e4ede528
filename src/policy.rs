//! Route rules: the first rule whose `path_prefix` starts the normalized
//! path decides who may pass. Evaluated on every request (also on a cache
//! hit), because it is cheap and must follow the route, not the credential.

use crate::deny::Deny;
use crate::identity::Identity;

#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    path_prefix: String,
    allowed_users: Vec<String>,
    allowed_groups: Vec<String>,
}

// === impl Policy ===

impl Policy {
    /// No rules means: any authenticated identity, on every path.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// Plain string prefix on the normalized path: `/admin` also covers
    /// `/admin.json` and `/administrator`, which errs on the strict side.
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| path.starts_with(r.path_prefix.as_str()))
    }

    pub fn authorize(&self, path: &str, identity: &Identity) -> Result<(), Deny> {
        if self.rules.is_empty() {
            return Ok(());
        }
        self.rule_for(path).ok_or(Deny::NoMatchingRule)?.admits(identity)
    }
}

// === impl Rule ===

impl Rule {
    pub fn new(path_prefix: &str, allowed_users: &[String], allowed_groups: &[String]) -> Self {
        Self {
            path_prefix: path_prefix.to_string(),
            allowed_users: allowed_users.to_vec(),
            allowed_groups: allowed_groups.to_vec(),
        }
    }

    /// Empty lists admit any authenticated identity; otherwise the user must
    /// be listed or be in one of the listed groups.
    pub fn admits(&self, identity: &Identity) -> Result<(), Deny> {
        if self.allowed_users.is_empty() && self.allowed_groups.is_empty() {
            return Ok(());
        }
        if self.allowed_users.contains(&identity.user) || self.allowed_groups.iter().any(|g| identity.in_group(g)) {
            return Ok(());
        }
        Err(if self.allowed_groups.is_empty() {
            Deny::UserNotAllowed
        } else {
            Deny::GroupNotAllowed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(vec![
            Rule::new("/admin", &[], &["admins".into()]),
            Rule::new("/ops", &["bob".into()], &[]),
            Rule::new("/", &[], &[]),
        ])
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::test(user)
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = policy();
        assert_eq!(p.authorize("/admin/x", &who("alice", &["admins"])), Ok(()));
        assert_eq!(
            p.authorize("/admin/x", &who("alice", &["dev"])),
            Err(Deny::GroupNotAllowed)
        );
        assert_eq!(
            p.authorize("/administrator", &who("alice", &[])),
            Err(Deny::GroupNotAllowed)
        );
        assert_eq!(p.authorize("/ops", &who("bob", &[])), Ok(()));
        assert_eq!(
            p.authorize("/ops", &who("alice", &["admins"])),
            Err(Deny::UserNotAllowed)
        );
        assert_eq!(p.authorize("/anything", &who("eve", &[])), Ok(()));
    }

    #[test]
    fn unmatched_path_is_denied_when_rules_exist() {
        let p = Policy::new(vec![Rule::new("/api", &[], &[])]);
        assert_eq!(p.authorize("/other", &who("alice", &[])), Err(Deny::NoMatchingRule));
        assert_eq!(Policy::new(vec![]).authorize("/other", &who("alice", &[])), Ok(()));
    }
}
