//! The `rules:` and `policies:` sections: route rules (chosen by path) and
//! named policies (chosen by the proxy's route), which credentials each
//! needs ([`Require`], owned by `policy.rs`) and whose identities it
//! accepts. Both compile into [`Policy`], by one validation.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{Errors, RawConfig};
use crate::policy::{Policy, PrincipalPattern, Require, Rule, API_KEYS_PROVIDER};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub path_prefix: String,
    #[serde(default)]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Default: `any` of what is configured (`oidc` when users or groups are listed).
    #[serde(default)]
    pub require: Option<Require>,
    /// Browsers without a session are redirected to this login (a `login.name`).
    #[serde(default)]
    pub login: Option<String>,
    /// The providers (names or issuers) whose identities this rule accepts.
    /// Default: the login's provider when `login` is set, else every OIDC provider.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// Whether the session cookie is a credential here (default: only with `login`).
    #[serde(default)]
    pub accept_sessions: Option<bool>,
    /// Let an `Authorization` header that portcullis did not verify (on a
    /// warrant-only or cookie-authenticated request) reach the upstream.
    #[serde(default)]
    pub forward_unverified_authorization: bool,
    /// Workload principals (mTLS peer identities, e.g. SPIFFE IDs) admitted
    /// here, whole or as a prefix ending in `*`; empty: not asked for.
    #[serde(default)]
    pub allowed_principals: Vec<String>,
}

/// A named policy (`policies.<name>`): a rule without `path_prefix`. The
/// proxy's route names it (`request::POLICY_EXTENSION`); the keys mean what
/// they mean in [`RawRule`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPolicy {
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub require: Option<Require>,
    pub login: Option<String>,
    pub providers: Option<Vec<String>>,
    pub accept_sessions: Option<bool>,
    pub forward_unverified_authorization: bool,
    pub allowed_principals: Vec<String>,
}

impl RawPolicy {
    /// The same access as a rule, so both are validated and compiled alike.
    /// The prefix is a placeholder: a named policy is never matched by path.
    fn as_rule(&self) -> RawRule {
        RawRule {
            path_prefix: "/".into(),
            allowed_users: self.allowed_users.clone(),
            allowed_groups: self.allowed_groups.clone(),
            require: self.require,
            login: self.login.clone(),
            providers: self.providers.clone(),
            accept_sessions: self.accept_sessions,
            forward_unverified_authorization: self.forward_unverified_authorization,
            allowed_principals: self.allowed_principals.clone(),
        }
    }
}

/// `policies:` as a map that refuses a repeated name. YAML lets a mapping
/// repeat a key and the parser hands every entry over, so a plain map would
/// keep the last one: of two policies named alike, one would silently
/// disappear.
pub(super) fn unique_policies<'de, D>(d: D) -> Result<BTreeMap<String, RawPolicy>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, RawPolicy>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of policy names to policies")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut policies = BTreeMap::new();
            while let Some((name, policy)) = map.next_entry::<String, RawPolicy>()? {
                if policies.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!(
                        "{name:?} is defined twice (duplicate key)"
                    )));
                }
                policies.insert(name, policy);
            }
            Ok(policies)
        }
    }
    d.deserialize_map(Unique)
}

/// What every rule and policy is validated against.
struct Context<'a> {
    has_oidc: bool,
    has_tenuo: bool,
    /// `any` means: any of what is configured.
    any: Require,
    known: Vec<KnownProvider<'a>>,
}

pub(super) fn validate(raw: &RawConfig, errs: &mut Errors) -> Policy {
    // An API key proves an identity as an OIDC token does (`require: oidc`).
    let has_oidc = !raw.oidc.providers.is_empty() || raw.api_keys.is_some();
    let has_tenuo = raw.tenuo.is_some();
    let any = match (has_oidc, has_tenuo) {
        (true, false) => Require::Oidc,
        (false, true) => Require::Tenuo,
        _ => Require::Any,
    };
    let cx = Context {
        has_oidc,
        has_tenuo,
        any,
        known: known_providers(raw, errs),
    };
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("rules[{i}]");
            if let Err(problem) = check_path_prefix(&r.path_prefix) {
                errs.push(format!("{path}.path_prefix"), problem);
            }
            compile(&path, r, &cx, errs)
        })
        .collect();
    let named: BTreeMap<String, Rule> = raw
        .policies
        .iter()
        .map(|(name, p)| {
            let path = format!("policies.{name}");
            if let Err(problem) = check_policy_name(name) {
                errs.push(path.clone(), problem);
            }
            (name.clone(), compile(&path, &p.as_rule(), &cx, errs))
        })
        .collect();
    // No rules: every OIDC provider's tokens, no session cookie; with no
    // credential source at all, only what the policies admit.
    let policy = Policy::new(rules, any).with_named(named);
    if has_oidc || has_tenuo {
        policy
    } else {
        policy.without_fallback()
    }
}

/// A config with no credential source (no OIDC provider, API keys or
/// Tenuo) can still admit workloads by their mTLS principal: every rule and
/// policy must then say `require: workload`, and there must be one. A rule
/// that does not say it would wait for a credential nobody can verify.
pub(super) fn check_workload_only(raw: &RawConfig, errs: &mut Errors) {
    let rules = raw.rules.iter().map(|r| r.require);
    let policies = raw.policies.values().map(|p| p.require);
    let mut requires = rules.chain(policies).peekable();
    let workload_only = requires.peek().is_some() && requires.all(|r| r == Some(Require::Workload));
    if !workload_only {
        errs.push(
            "oidc.providers",
            "configure at least one OIDC provider, an `api_keys` or a `tenuo` section \
             (or only rules and policies with `require: workload`)",
        );
    }
}

/// A rule's (or a named policy's) access, checked against what is configured.
fn compile(path: &str, r: &RawRule, cx: &Context<'_>, errs: &mut Errors) -> Rule {
    let Context {
        has_oidc,
        has_tenuo,
        any,
        ref known,
    } = *cx;
    for (j, g) in r.allowed_groups.iter().enumerate() {
        if g.is_empty() {
            errs.push(format!("{path}.allowed_groups[{j}]"), "must not be empty");
        }
    }
    for (j, u) in r.allowed_users.iter().enumerate() {
        if u.is_empty() {
            errs.push(format!("{path}.allowed_users[{j}]"), "must not be empty");
        }
    }
    let lists_people = !r.allowed_users.is_empty() || !r.allowed_groups.is_empty();
    let require = match r.require {
        None if lists_people => Require::Oidc,
        None | Some(Require::Any) => any,
        Some(other) => other,
    };
    if lists_people && !matches!(require, Require::Oidc | Require::All) {
        errs.push(
            format!("{path}.require"),
            "allowed_users/allowed_groups are OIDC identities: use require: oidc or all",
        );
    }
    if matches!(require, Require::Oidc | Require::All) && !has_oidc {
        errs.push(format!("{path}.require"), "needs oidc.providers or api_keys");
    }
    if matches!(require, Require::Tenuo | Require::All) && !has_tenuo {
        errs.push(format!("{path}.require"), "needs a `tenuo` section");
    }
    if r.login.is_some() && matches!(require, Require::Tenuo | Require::Workload) {
        errs.push(
            format!("{path}.login"),
            "a login gives an OIDC session; this rule requires only tenuo or a workload",
        );
    }
    let principals = principal_patterns(path, &r.allowed_principals, errs);
    if require == Require::Workload && principals.is_empty() {
        errs.push(
            format!("{path}.allowed_principals"),
            "require: workload admits only the principals listed here: list at least one",
        );
    }
    let (tokens, sessions) = rule_providers(path, r, known, lists_people, errs);
    Rule::new(&r.path_prefix, &r.allowed_users, &r.allowed_groups, require)
        .with_login(r.login.as_deref())
        .with_providers(tokens, sessions)
        .with_forward_unverified_authorization(r.forward_unverified_authorization)
        .with_principals(principals)
}

/// `allowed_principals`: exact principals, or prefixes written with one
/// trailing `*`. A `*` anywhere else is refused rather than read literally
/// (it would look like a glob and match nothing), and so is a bare `*` (any
/// certificate the proxy accepts, whatever its subject: name the trust
/// domain instead, e.g. `spiffe://cluster.local/*`).
fn principal_patterns(path: &str, patterns: &[String], errs: &mut Errors) -> Vec<PrincipalPattern> {
    for (j, p) in patterns.iter().enumerate() {
        let field = format!("{path}.allowed_principals[{j}]");
        let body = p.strip_suffix('*').unwrap_or(p);
        if body.is_empty() {
            errs.push(
                field,
                "must not be empty or a bare '*' (name at least the trust domain)",
            );
        } else if body.contains('*') {
            errs.push(field, "'*' is allowed only at the end (a prefix)");
        } else if body.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            errs.push(field, "must be printable ASCII (as a URI SAN or subject is)");
        } else if p.ends_with('*') && !names_whole_trust_domain(body) {
            // `spiffe://prod*` would also admit `spiffe://prod-evil.example/…`.
            errs.push(
                field,
                "a spiffe:// prefix must name the whole trust domain: spiffe://DOMAIN/…*",
            );
        }
    }
    patterns.iter().map(|p| PrincipalPattern::parse(p)).collect()
}

/// A SPIFFE prefix pattern must reach past its trust domain (`/` after
/// `spiffe://DOMAIN`); other principals (certificate subjects) are free.
fn names_whole_trust_domain(prefix: &str) -> bool {
    match prefix.get(..9) {
        Some(scheme) if scheme.eq_ignore_ascii_case("spiffe://") => prefix[9..].contains('/'),
        _ => true,
    }
}

/// Policy names are compared with what the proxy's route sends, and
/// appear in logs: a short token, the same characters as a login name.
fn check_policy_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a policy name must have 1 to 64 characters".into());
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        Some(c) => Err(format!(
            "a policy name may contain only letters, digits, '-', '_' and '.' (found {c:?})"
        )),
        None => Ok(()),
    }
}

/// Every provider a rule can name: OIDC providers (bearer tokens, and
/// sessions when they have a login) and plain OAuth2 logins (sessions).
fn known_providers<'a>(raw: &'a RawConfig, errs: &mut Errors) -> Vec<KnownProvider<'a>> {
    let mut known: Vec<KnownProvider<'a>> = Vec::new();
    for (i, p) in raw.oidc.providers.iter().enumerate() {
        if let (Some(name), Some(login)) = (&p.name, &p.login) {
            if *name != login.name {
                errs.push(
                    format!("oidc.providers[{i}].name"),
                    "must equal login.name (a provider has one name; omit one of them)",
                );
            }
        }
        known.push(KnownProvider {
            field: format!("oidc.providers[{i}]"),
            name: p.name(),
            issuer: Some(&p.issuer),
            has_login: p.login.is_some(),
            oidc: true,
            api_keys: false,
        });
    }
    let oauth2 = raw.sessions.as_ref().map_or(&[][..], |s| &s.oauth2_providers[..]);
    for (i, p) in oauth2.iter().enumerate() {
        known.push(KnownProvider {
            field: format!("sessions.oauth2_providers[{i}]"),
            name: &p.login.name,
            issuer: None,
            has_login: true,
            oidc: false,
            api_keys: false,
        });
    }
    if raw.api_keys.is_some() {
        // Only named: a rule accepts API keys when its `providers:` says
        // so, so adding keys opens no route that did not ask for them.
        known.push(KnownProvider {
            field: "api_keys".into(),
            name: API_KEYS_PROVIDER,
            issuer: None,
            has_login: false,
            oidc: false,
            api_keys: true,
        });
    }
    for (i, k) in known.iter().enumerate() {
        if known[..i].iter().any(|o| o.name == k.name) {
            errs.push(
                format!("{}.name", k.field),
                format!("another provider is already named {:?}", k.name),
            );
        }
    }
    known
}

/// A provider as rules see it.
struct KnownProvider<'a> {
    field: String,
    name: &'a str,
    issuer: Option<&'a str>,
    has_login: bool,
    oidc: bool,
    /// The API keys (`api_keys:`), named `api-keys`.
    api_keys: bool,
}

/// The providers whose bearer tokens, and whose logins' session cookies, a
/// rule accepts. Defaults: with `login:` that login's provider (its tokens
/// and sessions); otherwise every OIDC provider's tokens and no sessions.
/// A rule that lists users or groups while accepting several providers must
/// name them: a user name means nothing without its provider.
fn rule_providers(
    path: &str,
    r: &RawRule,
    known: &[KnownProvider<'_>],
    lists_people: bool,
    errs: &mut Errors,
) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
    let chosen: Vec<&KnownProvider<'_>> = match (&r.providers, &r.login) {
        (Some(names), _) => names
            .iter()
            .enumerate()
            .filter_map(|(j, n)| {
                let found = known.iter().find(|k| k.name == n || k.issuer == Some(n.as_str()));
                if found.is_none() {
                    errs.push(
                        format!("{path}.providers[{j}]"),
                        format!("no provider is named {n:?} (a provider's name, login name or issuer)"),
                    );
                }
                found
            })
            .collect(),
        // An unknown login is reported with the sessions section.
        (None, Some(login)) => known.iter().filter(|k| k.has_login && k.name == login).collect(),
        (None, None) => known
            .iter()
            .filter(|k| k.oidc || (r.accept_sessions == Some(true) && k.has_login))
            .collect(),
    };
    if r.providers.as_ref().is_some_and(Vec::is_empty) {
        errs.push(
            format!("{path}.providers"),
            "must name at least one provider (or be omitted)",
        );
    }
    if lists_people && r.providers.is_none() && chosen.len() > 1 {
        errs.push(
            format!("{path}.providers"),
            "allowed_users/allowed_groups with several providers: list the providers whose users and groups these are",
        );
    }
    let accept_sessions = r.accept_sessions.unwrap_or(r.login.is_some());
    if let Some(login) = &r.login {
        if !chosen.iter().any(|k| k.has_login && k.name == login) && r.providers.is_some() {
            errs.push(
                format!("{path}.providers"),
                format!("must include the rule's login {login:?}"),
            );
        }
        if !accept_sessions {
            errs.push(
                format!("{path}.accept_sessions"),
                "a rule with a login must accept its sessions (or browsers would log in forever)",
            );
        }
    }
    let sessions: Vec<Arc<str>> = if accept_sessions {
        chosen.iter().filter(|k| k.has_login).map(|k| k.name.into()).collect()
    } else {
        Vec::new()
    };
    if accept_sessions && sessions.is_empty() && r.login.is_none() {
        errs.push(
            format!("{path}.accept_sessions"),
            "none of the rule's providers has a login, so there is no session to accept",
        );
    }
    let tokens = chosen
        .iter()
        .filter(|k| k.oidc || k.api_keys)
        .map(|k| k.name.into())
        .collect();
    (tokens, sessions)
}

/// Prefixes are compared with the raw path Envoy sends, so they may hold
/// only characters that never need encoding there, and be in the one form
/// a normalized path can have (see `request::judge_path`).
pub fn check_path_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if let Some(c) = p
        .chars()
        .find(|&c| !(c.is_ascii() && (crate::request::is_unreserved(c as u8) || c == '/')))
    {
        return Err(format!(
            "may contain only letters, digits, '-', '.', '_', '~' and '/' (found {c:?}): \
             a path with ';', '%' or other characters is refused before rules are read"
        ));
    }
    if p.contains("//") {
        return Err("must not contain '//' (Envoy merges slashes; such a path never arrives)".into());
    }
    if p.split('/').any(|s| s == "." || s == "..") {
        return Err("must not contain '.' or '..' segments (such a path never arrives)".into());
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(format!(
            "must not end with '/': prefixes match whole segments, so {:?} already covers {p:?}…",
            p.trim_end_matches('/')
        ));
    }
    Ok(())
}
