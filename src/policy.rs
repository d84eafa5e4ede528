//! Route rules: the first rule whose `path_prefix` starts the judged path
//! decides who may pass — unless the proxy's route names a policy
//! (`policies:`), which then decides instead. Evaluated on every request
//! (also on a cache hit), because it is cheap and must follow the route,
//! not the credential.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::deny::Deny;
use crate::identity::{Identity, Source};
use crate::request::RequestView;

/// The provider name of identities proven by an API key (`api_keys:`): a
/// rule accepts them only when its `providers:` lists this name.
pub const API_KEYS_PROVIDER: &str = "api-keys";

/// Which credentials a route needs. The config's `require:` values are
/// these, spelled in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// An OIDC identity.
    Oidc,
    /// A Tenuo warrant with proof of possession.
    Tenuo,
    /// Either one; every credential presented must be valid.
    Any,
    /// Both.
    All,
    /// Only the workload principal (`allowed_principals`): no OIDC or
    /// Tenuo credential is read.
    Workload,
}

impl Require {
    /// As the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Require::Oidc => "oidc",
            Require::Tenuo => "tenuo",
            Require::Any => "any",
            Require::All => "all",
            Require::Workload => "workload",
        }
    }
}

/// One entry of `allowed_principals`: a whole principal, or a prefix when
/// written with a trailing `*` (validated at load: non-empty, no other `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalPattern {
    Exact(String),
    Prefix(String),
}

impl PrincipalPattern {
    /// `spiffe://td/ns/ci/*` is a prefix; anything else is exact.
    pub fn parse(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => PrincipalPattern::Prefix(prefix.to_string()),
            None => PrincipalPattern::Exact(pattern.to_string()),
        }
    }

    /// As written in the config (`…*` for a prefix).
    pub fn pattern(&self) -> String {
        match self {
            PrincipalPattern::Exact(p) => p.clone(),
            PrincipalPattern::Prefix(p) => format!("{p}*"),
        }
    }

    pub fn matches(&self, principal: &str) -> bool {
        match self {
            PrincipalPattern::Exact(p) => p == principal,
            PrincipalPattern::Prefix(p) => principal.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Decides every path when there are no path rules (any configured
    /// credential); none in a config
    /// without a credential source (see [`Policy::without_fallback`]).
    fallback: Option<Rule>,
    /// Named policies, chosen by the proxy's route instead of by the path.
    named: BTreeMap<String, Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Only `A-Za-z0-9-._~` and single `/` between segments (config
    /// validation), no trailing `/` except for the root.
    path_prefix: String,
    access: Access,
}

/// What a rule asks of a request, apart from where it applies. Two rules
/// with equal access decide every request alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    allowed_users: Vec<String>,
    allowed_groups: Vec<String>,
    /// Resolved against what is configured: `Any` only when both OIDC and
    /// Tenuo are, so a route never waits for a credential nobody can verify.
    require: Require,
    /// The login (a `login.name`) browsers without a session are sent to.
    login: Option<String>,
    /// Providers whose bearer tokens this rule accepts; `None`: every one.
    token_providers: Option<Vec<Arc<str>>>,
    /// Providers (by login name) whose session cookies this rule accepts;
    /// empty: the cookie is not a credential here.
    session_providers: Vec<Arc<str>>,
    /// Let an `Authorization` header portcullis did not verify reach the upstream.
    forward_unverified_authorization: bool,
    /// Workload principals (the peer certificate's, as Envoy reports it)
    /// admitted here; empty: any connection, with or without one.
    allowed_principals: Vec<PrincipalPattern>,
}

// === impl Policy ===

impl Policy {
    /// No rules means: any authenticated request (`default_require`), on every path.
    pub fn new(rules: Vec<Rule>, default_require: Require) -> Self {
        Self {
            rules,
            fallback: Some(Rule::new("/", &[], &[], default_require)),
            named: BTreeMap::new(),
        }
    }

    /// No built-in rule: with no path rules, every path that no policy
    /// decides is `no_matching_rule`. For a config with no credential
    /// source (workload principals only), where the built-in rule would
    /// wait for a credential nothing could verify.
    pub fn without_fallback(mut self) -> Self {
        self.fallback = None;
        self
    }

    /// Adds the named policies (`policies:`); their rules' prefixes are
    /// never compared with a path.
    pub fn with_named(mut self, named: BTreeMap<String, Rule>) -> Self {
        self.named = named;
        self
    }

    /// The rule that decides this request. A route that names a policy
    /// gets that policy, whatever the path rules say; a name that is not
    /// configured (or empty) is refused rather than left to the path rules,
    /// so a typo in the proxy's config closes the route instead of opening
    /// it to whatever `/` allows. Routes without a name get
    /// [`rule_for`](Self::rule_for) of the path. The path itself was judged
    /// when the view was made, either way.
    pub fn rule_for_request(&self, view: &RequestView<'_>) -> Result<&Rule, Deny> {
        match view.policy {
            None => self.rule_for(view.path),
            Some(name) => self.named(name).ok_or(Deny::UnknownPolicy),
        }
    }

    /// The path rules in order (`portcullis explain` names a rule by its index).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The named policy `name` (`policies.<name>`), if configured.
    pub fn named(&self, name: &str) -> Option<&Rule> {
        self.named.get(name)
    }

    /// The rule that decides this path. Prefixes match case-sensitively on
    /// whole segments, but upstreams read paths more loosely: many route
    /// case-insensitively (Express by default, IIS…), and some take a
    /// `.format` suffix as the same route (Rails' `(.:format)`, Spring's old
    /// suffix matching: `/admin.json` is `/admin`). A path that such a
    /// reader would put under a rule with other access (`/ADMIN/x` or
    /// `/admin.json` beside an `/admin` rule) is refused as ambiguous rather
    /// than judged by the open rule.
    pub fn rule_for(&self, path: &str) -> Result<&Rule, Deny> {
        if self.rules.is_empty() {
            return self.fallback.as_ref().ok_or(Deny::NoMatchingRule);
        }
        let mut folded: Option<&Rule> = None;
        for rule in &self.rules {
            if !rule.matches_loosely(path) {
                continue;
            }
            let first = *folded.get_or_insert(rule);
            if rule.matches(path) {
                // Usually the first loose match is this very rule: no need
                // to compare its access with itself.
                return if std::ptr::eq(first, rule) || first.access == rule.access {
                    Ok(rule)
                } else {
                    Err(Deny::InvalidPath)
                };
            }
        }
        Err(if folded.is_some() {
            Deny::InvalidPath
        } else {
            Deny::NoMatchingRule
        })
    }

    /// The rule for `path` applied to an OIDC identity (tests and tools).
    pub fn authorize(&self, path: &str, identity: &Identity) -> Result<(), Deny> {
        self.rule_for(path)?.admits(Some(identity))
    }
}

// === impl Rule ===

impl Rule {
    /// A rule that accepts every provider's bearer tokens and no session
    /// cookie; see [`Rule::with_providers`].
    pub fn new(path_prefix: &str, allowed_users: &[String], allowed_groups: &[String], require: Require) -> Self {
        Self {
            path_prefix: path_prefix.to_string(),
            access: Access {
                allowed_users: allowed_users.to_vec(),
                allowed_groups: allowed_groups.to_vec(),
                require,
                login: None,
                token_providers: None,
                session_providers: Vec::new(),
                forward_unverified_authorization: false,
                allowed_principals: Vec::new(),
            },
        }
    }

    pub fn require(&self) -> Require {
        self.access.require
    }

    /// Browsers without a session are sent to this login; its sessions are accepted.
    pub fn with_login(mut self, login: Option<&str>) -> Self {
        self.access.login = login.map(str::to_string);
        if let Some(l) = login {
            if !self.access.session_providers.iter().any(|p| **p == *l) {
                self.access.session_providers.push(l.into());
            }
        }
        self
    }

    /// The providers whose bearer tokens, and whose logins' session cookies,
    /// this rule accepts (names as in [`Identity::provider`]).
    pub fn with_providers(mut self, tokens: Vec<Arc<str>>, sessions: Vec<Arc<str>>) -> Self {
        self.access.token_providers = Some(tokens);
        self.access.session_providers = sessions;
        self
    }

    pub fn with_forward_unverified_authorization(mut self, forward: bool) -> Self {
        self.access.forward_unverified_authorization = forward;
        self
    }

    /// The workload principals this rule admits (see [`Rule::admits_principal`]).
    pub fn with_principals(mut self, patterns: Vec<PrincipalPattern>) -> Self {
        self.access.allowed_principals = patterns;
        self
    }

    /// A rule that lists principals needs one of them, whatever `require`
    /// says about credentials: none at all is `missing_principal` (401),
    /// another one `principal_not_allowed` (403). A rule that lists none
    /// admits any connection. `principal` is what Envoy verified (`None`
    /// when the connection had no client certificate).
    pub fn admits_principal(&self, principal: Option<&str>) -> Result<(), Deny> {
        let allowed = &self.access.allowed_principals;
        if allowed.is_empty() {
            return Ok(());
        }
        let principal = principal.ok_or(Deny::MissingPrincipal)?;
        if allowed.iter().any(|p| p.matches(principal)) {
            Ok(())
        } else {
            Err(Deny::PrincipalNotAllowed)
        }
    }

    /// The login browsers are redirected to on this rule's paths, if any.
    pub fn login(&self) -> Option<&str> {
        self.access.login.as_deref()
    }

    /// Whether the session cookie is a credential on this rule at all. When
    /// it is not, the cookie is ignored (and still stripped for the
    /// upstream): a bearer-only API cannot be driven by a browser's cookie.
    pub fn accepts_sessions(&self) -> bool {
        !self.access.session_providers.is_empty()
    }

    /// Who may pass (`allowed_users`, `allowed_groups`; both empty: anyone verified).
    pub fn allowed(&self) -> (&[String], &[String]) {
        (&self.access.allowed_users, &self.access.allowed_groups)
    }

    /// The workload principals admitted here (empty: any connection).
    pub fn principals(&self) -> &[PrincipalPattern] {
        &self.access.allowed_principals
    }

    pub fn forwards_unverified_authorization(&self) -> bool {
        self.access.forward_unverified_authorization
    }

    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// Prefixes match whole path segments: `/admin` covers `/admin`,
    /// `/admin/` and `/admin/x`, not `/administrator`; so an open
    /// `/admin/public` rule cannot open `/admin/publicity`.
    fn matches(&self, path: &str) -> bool {
        path.strip_prefix(self.path_prefix.as_str())
            .is_some_and(|rest| self.at_boundary(rest.as_bytes()))
    }

    /// As a loose reader would match: any letter case, and a `.` after the
    /// prefix ends it like a `/`. Every exact match is also a loose one.
    fn matches_loosely(&self, path: &str) -> bool {
        let (p, prefix) = (path.as_bytes(), self.path_prefix.as_bytes());
        p.len() >= prefix.len() && p[..prefix.len()].eq_ignore_ascii_case(prefix) && {
            let rest = &p[prefix.len()..];
            self.at_boundary(rest) || rest.first() == Some(&b'.')
        }
    }

    fn at_boundary(&self, rest: &[u8]) -> bool {
        self.path_prefix == "/" || rest.is_empty() || rest[0] == b'/'
    }

    /// The identity's provider must be one this rule accepts (its users and
    /// groups are that provider's: a GitHub `alice` is not an Entra
    /// `alice`). Empty lists then admit any identity; otherwise the user must
    /// be listed or be in one of the listed groups. Users and groups are
    /// OIDC facts: a rule that lists them never admits a request without an
    /// OIDC identity (config validation makes such rules require one, so
    /// this is a second lock).
    pub fn admits(&self, identity: Option<&Identity>) -> Result<(), Deny> {
        if let Some(identity) = identity {
            self.accepts_provider(identity)?;
        }
        let a = &self.access;
        if a.allowed_users.is_empty() && a.allowed_groups.is_empty() {
            return Ok(());
        }
        let Some(identity) = identity else {
            return Err(Deny::MissingCredential);
        };
        if a.allowed_users.iter().any(|u| **u == *identity.user)
            || a.allowed_groups.iter().any(|g| identity.in_group(g))
        {
            return Ok(());
        }
        Err(if a.allowed_groups.is_empty() {
            Deny::UserNotAllowed
        } else {
            Deny::GroupNotAllowed
        })
    }

    fn accepts_provider(&self, identity: &Identity) -> Result<(), Deny> {
        let a = &self.access;
        let provider = &*identity.provider;
        let accepted = match identity.source {
            Source::Session => a.session_providers.iter().any(|p| **p == *provider),
            Source::OidcUser | Source::OidcClient => a
                .token_providers
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| **p == *provider)),
            // Never by default: only a rule that names `api-keys`.
            Source::ApiKey => a
                .token_providers
                .as_ref()
                .is_some_and(|ps| ps.iter().any(|p| **p == *API_KEYS_PROVIDER)),
        };
        if accepted {
            Ok(())
        } else {
            Err(Deny::ProviderNotAllowed)
        }
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
        assert_eq!(p.authorize("/admin/", &who("alice", &[])), Err(Deny::GroupNotAllowed));
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
    fn letter_case_or_a_format_suffix_that_would_change_the_rule_is_refused() {
        let p = policy();
        // Express routes /ADMIN/x into app.use('/admin'): never judge it by `/`.
        for path in ["/ADMIN/x", "/Admin", "/aDmIn/", "/OPS"] {
            assert_eq!(
                p.rule_for(path).map(Rule::path_prefix),
                Err(Deny::InvalidPath),
                "{path}"
            );
        }
        // A format suffix: `/admin` to Rails and old Spring.
        for path in ["/admin.json", "/admin.", "/ADMIN.xml", "/ops.html"] {
            assert_eq!(
                p.rule_for(path).map(Rule::path_prefix),
                Err(Deny::InvalidPath),
                "{path}"
            );
        }
        // Case that cannot change the rule is not ambiguous.
        assert_eq!(p.rule_for("/Users/Admin").map(Rule::path_prefix), Ok("/"));
        assert_eq!(p.rule_for("/admin/x.json").map(Rule::path_prefix), Ok("/admin"));
        assert_eq!(p.rule_for("/administrator").map(Rule::path_prefix), Ok("/"));
        // An open sub-prefix: `/admin/PUBLIC` is `/admin` to a case-sensitive
        // upstream and `/admin/public` to a case-insensitive one.
        let p = Policy::new(
            vec![
                Rule::new("/admin/public", &[], &[], Require::Oidc),
                Rule::new("/admin", &[], &["admins".into()], Require::Oidc),
                Rule::new("/", &[], &[], Require::Oidc),
            ],
            Require::Oidc,
        );
        assert_eq!(
            p.rule_for("/admin/PUBLIC").map(Rule::path_prefix),
            Err(Deny::InvalidPath)
        );
        // Two rules with the same access: either reading decides alike.
        let p = Policy::new(
            vec![
                Rule::new("/static", &[], &[], Require::Oidc),
                Rule::new("/", &[], &[], Require::Oidc),
            ],
            Require::Oidc,
        );
        assert_eq!(p.rule_for("/STATIC/app.js").map(Rule::path_prefix), Ok("/"));
        // Only a case-insensitive reading matches: refused, not "no rule".
        let p = Policy::new(vec![Rule::new("/api", &[], &[], Require::Oidc)], Require::Oidc);
        assert_eq!(p.rule_for("/API/x").map(Rule::path_prefix), Err(Deny::InvalidPath));
        assert_eq!(p.rule_for("/other").map(Rule::path_prefix), Err(Deny::NoMatchingRule));
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

    #[test]
    fn listed_principals_match_exactly_or_by_a_trailing_star() {
        let rule = Rule::new("/", &[], &[], Require::Workload).with_principals(vec![
            PrincipalPattern::parse("spiffe://cluster.local/ns/ci/sa/deployer"),
            PrincipalPattern::parse("spiffe://cluster.local/ns/build/*"),
        ]);
        for ok in [
            "spiffe://cluster.local/ns/ci/sa/deployer",
            "spiffe://cluster.local/ns/build/sa/a",
            "spiffe://cluster.local/ns/build/",
        ] {
            assert_eq!(rule.admits_principal(Some(ok)), Ok(()), "{ok}");
        }
        for no in [
            "spiffe://cluster.local/ns/ci/sa/deployer2",
            "spiffe://cluster.local/ns/ci/sa/deploye",
            "SPIFFE://cluster.local/ns/ci/sa/deployer",
            "spiffe://cluster.local/ns/builder/sa/a",
            "spiffe://cluster.local/ns/build",
            "",
        ] {
            assert_eq!(rule.admits_principal(Some(no)), Err(Deny::PrincipalNotAllowed), "{no}");
        }
        assert_eq!(rule.admits_principal(None), Err(Deny::MissingPrincipal));
        // No list: the principal is not asked for.
        let open = Rule::new("/", &[], &[], Require::Oidc);
        assert_eq!(open.admits_principal(None), Ok(()));
        assert_eq!(open.admits_principal(Some("spiffe://x/y")), Ok(()));
    }

    #[test]
    fn identities_belong_to_their_provider() {
        let entra_only = Rule::new("/internal", &["alice".into()], &[], Require::Oidc)
            .with_providers(vec!["entra".into()], vec!["entra".into()]);
        let alice_at = |provider: &str, source| {
            let mut id = who("alice", &[]).with_provider(provider.into());
            id.source = source;
            id
        };
        assert_eq!(entra_only.admits(Some(&alice_at("entra", Source::OidcUser))), Ok(()));
        assert_eq!(entra_only.admits(Some(&alice_at("entra", Source::Session))), Ok(()));
        // The same user name from GitHub is someone else.
        assert_eq!(
            entra_only.admits(Some(&alice_at("github", Source::Session))),
            Err(Deny::ProviderNotAllowed)
        );
        assert_eq!(
            entra_only.admits(Some(&alice_at("dex", Source::OidcUser))),
            Err(Deny::ProviderNotAllowed)
        );
        // Tokens only: a session of the same provider is not accepted.
        let api = Rule::new("/api", &[], &[], Require::Oidc).with_providers(vec!["entra".into()], vec![]);
        assert!(!api.accepts_sessions());
        assert_eq!(
            api.admits(Some(&alice_at("entra", Source::Session))),
            Err(Deny::ProviderNotAllowed)
        );
        assert_eq!(api.admits(Some(&alice_at("entra", Source::OidcUser))), Ok(()));
    }
}
