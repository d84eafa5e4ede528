//! Route rules: the first rule whose `path_prefix` starts the normalized
//! path decides who may pass. Evaluated on every request (also on a cache
//! hit), because it is cheap and must follow the route, not the credential.

use crate::config::Require;
use crate::deny::Deny;
use crate::identity::Identity;

#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Used when no rules are configured: every path, any configured credential.
    fallback: Rule,
}

#[derive(Debug, Clone)]
pub struct Rule {
    path_prefix: String,
    allowed_users: Vec<String>,
    allowed_groups: Vec<String>,
    /// Resolved against what is configured: `Any` only when both OIDC and
    /// Tenuo are, so a route never waits for a credential nobody can verify.
    require: Require,
    /// The login (a `login.name`) browsers without a session are sent to.
    login: Option<String>,
}

// === impl Policy ===

impl Policy {
    /// No rules means: any authenticated request (`default_require`), on every path.
    pub fn new(rules: Vec<Rule>, default_require: Require) -> Self {
        Self {
            rules,
            fallback: Rule::new("/", &[], &[], default_require),
        }
    }

    /// The rule that decides this path.
    pub fn rule_for(&self, path: &str) -> Result<&Rule, Deny> {
        if self.rules.is_empty() {
            return Ok(&self.fallback);
        }
        self.rules.iter().find(|r| r.matches(path)).ok_or(Deny::NoMatchingRule)
    }

    /// The rule for `path` applied to an OIDC identity (tests and tools).
    pub fn authorize(&self, path: &str, identity: &Identity) -> Result<(), Deny> {
        self.rule_for(path)?.admits(Some(identity))
    }
}

// === impl Rule ===

impl Rule {
    pub fn new(path_prefix: &str, allowed_users: &[String], allowed_groups: &[String], require: Require) -> Self {
        Self {
            path_prefix: path_prefix.to_string(),
            allowed_users: allowed_users.to_vec(),
            allowed_groups: allowed_groups.to_vec(),
            require,
            login: None,
        }
    }

    pub fn require(&self) -> Require {
        self.require
    }

    pub fn with_login(mut self, login: Option<&str>) -> Self {
        self.login = login.map(str::to_string);
        self
    }

    /// The login browsers are redirected to on this rule's paths, if any.
    pub fn login(&self) -> Option<&str> {
        self.login.as_deref()
    }

    /// Prefixes match whole path segments: `/admin` covers `/admin` and
    /// `/admin/x`, not `/administrator`; so an open `/admin/public` rule
    /// cannot open `/admin/publicity`.
    fn matches(&self, path: &str) -> bool {
        let prefix = self.path_prefix.as_str();
        match path.strip_prefix(prefix) {
            Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Empty lists admit any authenticated identity; otherwise the user must
    /// be listed or be in one of the listed groups.
    /// Users and groups are OIDC facts: a rule that lists them never admits a
    /// request without an OIDC identity (config validation makes such rules
    /// require one, so this is a second lock).
    pub fn admits(&self, identity: Option<&Identity>) -> Result<(), Deny> {
        if self.allowed_users.is_empty() && self.allowed_groups.is_empty() {
            return Ok(());
        }
        let Some(identity) = identity else {
            return Err(Deny::MissingCredential);
        };
        if self.allowed_users.iter().any(|u| **u == *identity.user)
            || self.allowed_groups.iter().any(|g| identity.in_group(g))
        {
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
        Policy::new(
            vec![
                Rule::new("/admin", &[], &["admins".into()], Require::Oidc),
                Rule::new("/ops", &["bob".into()], &[], Require::Oidc),
                Rule::new("/", &[], &[], Require::Oidc),
            ],
            Require::Oidc,
        )
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity::test(user).with_groups(groups)
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = policy();
        assert_eq!(p.authorize("/admin/x", &who("alice", &["admins"])), Ok(()));
        assert_eq!(
            p.authorize("/admin/x", &who("alice", &["dev"])),
            Err(Deny::GroupNotAllowed)
        );
        assert_eq!(p.authorize("/admin", &who("alice", &[])), Err(Deny::GroupNotAllowed));
        // Segment boundary: not the /admin rule, so the open / rule decides.
        assert_eq!(p.authorize("/administrator", &who("alice", &[])), Ok(()));
        assert_eq!(p.authorize("/ops", &who("bob", &[])), Ok(()));
        assert_eq!(
            p.authorize("/ops", &who("alice", &["admins"])),
            Err(Deny::UserNotAllowed)
        );
        assert_eq!(p.authorize("/anything", &who("eve", &[])), Ok(()));
    }

    #[test]
    fn open_sub_prefix_does_not_open_siblings() {
        let p = Policy::new(
            vec![
                Rule::new("/admin/public", &[], &[], Require::Oidc),
                Rule::new("/admin", &[], &["admins".into()], Require::Oidc),
            ],
            Require::Oidc,
        );
        assert_eq!(p.authorize("/admin/public/x", &who("eve", &[])), Ok(()));
        assert_eq!(
            p.authorize("/admin/publicity", &who("eve", &[])),
            Err(Deny::GroupNotAllowed)
        );
    }

    #[test]
    fn unmatched_path_is_denied_when_rules_exist() {
        let p = Policy::new(vec![Rule::new("/api", &[], &[], Require::Any)], Require::Any);
        assert_eq!(p.authorize("/other", &who("alice", &[])), Err(Deny::NoMatchingRule));
        let open = Policy::new(vec![], Require::Tenuo);
        assert_eq!(open.authorize("/other", &who("alice", &[])), Ok(()));
        assert_eq!(open.rule_for("/x").map(Rule::require), Ok(Require::Tenuo));
    }

    #[test]
    fn listed_users_or_groups_need_an_oidc_identity() {
        let p = Policy::new(vec![Rule::new("/", &[], &["dev".into()], Require::All)], Require::Any);
        let rule = p.rule_for("/x").expect("rule");
        assert_eq!(rule.admits(None), Err(Deny::MissingCredential));
        assert_eq!(rule.admits(Some(&who("a", &["dev"]))), Ok(()));
    }
}
