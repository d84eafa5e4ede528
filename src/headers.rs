//! Header hygiene: which request headers a client must never be able to set
//! for the upstream, and the identity headers portcullis injects instead.
//!
//! Envoy lower-cases header names, and `headers_to_remove` removes every
//! occurrence of a name. Some upstream frameworks (CGI/WSGI style) read
//! `x_user_id` and `x-user-id` as the same variable, so a request header
//! whose name equals a stripped name once `_` is read as `-` is removed too.

use envoy_types::ext_authz::v3::pb::HeaderValueOption;

use crate::identity::Identity;
use crate::response::overwrite;
use crate::verify::warrant::Grant;

/// What an allowed warrant request injects (Tenuo's names).
pub const WARRANT_ID: &str = "x-tenuo-warrant-id";
pub const WARRANT_TOOL: &str = "x-tenuo-tool";
pub const WARRANT_HOLDER: &str = "x-tenuo-holder";
pub const WARRANT_ROOT_ISSUER: &str = "x-tenuo-root-issuer";

/// Where the workload principal (the mTLS peer's identity) is injected by
/// default (`headers.principal`).
pub const PRINCIPAL: &str = "x-portcullis-principal";

/// Spoofable names every deployment strips, whatever its config says: the
/// identity headers other auth proxies inject (an upstream written for one
/// of them trusts its names), and routing overrides that would let a client
/// make the upstream act on another method or path than the one checked.
pub const BUILTIN_STRIP: &[&str] = &[
    "x-user-id",
    "x-auth-request-*",
    // oauth2-proxy
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    // Grafana and Gitea auth-proxy mode
    "x-webauth-user",
    "x-webauth-email",
    // Authelia (and apps configured for it)
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-remote-user",
    // Method and URL overrides (Rails, Express method-override, Symfony, IIS)
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    WARRANT_ID,
    WARRANT_TOOL,
    WARRANT_HOLDER,
    WARRANT_ROOT_ISSUER,
    // Stripped even when `headers.principal` names another header: an
    // upstream written for the default trusts this one.
    PRINCIPAL,
];

/// Names that are always listed in `headers_to_remove`, even when the
/// request does not carry them (Envoy may be configured to send only some
/// headers to Check, so the request view is not the whole truth).
const BUILTIN_EXACT: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
];

#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    pub user: String,
    pub email: String,
    pub groups: String,
    /// The verified identity's issuer (its provider's name for plain OAuth2).
    pub issuer: String,
    /// Where the workload principal goes; stripped like the others and
    /// removed from every allowed request unless a principal is injected.
    pub principal: String,
    /// The names stripped whole (normalized), grouped by byte length (the
    /// index): a request header name is compared only with the names of its
    /// own length, since every header of every allowed request is looked up
    /// here.
    exact_by_len: Vec<Vec<String>>,
    prefixes: Vec<String>,
    /// Whether a request header name may start with this byte (in any case
    /// or `_` spelling) and still be spoofable: most request headers
    /// (`:path`, `accept`, `user-agent`…) are ruled out by this one lookup.
    first_bytes: [bool; 256],
    /// The names stripped whole minus the names portcullis may inject: removed from every allowed request.
    fixed: Vec<String>,
    /// The names portcullis may inject (as configured, normalized), in
    /// `edits` order, each with the set of [`Slot`]s whose name equals it
    /// ignoring ASCII case: whether it was injected is then a bit test, not a
    /// string comparison with every header set.
    injectable: Vec<(String, String, u8)>,
}

/// The header edits of one allowed request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits {
    /// Set with overwrite semantics; built as the response holds them, so
    /// they are not copied into another list for it.
    pub set: Vec<HeaderValueOption>,
    pub remove: Vec<String>,
    /// `Set-Cookie` values for the client's response (session renewal).
    pub set_cookies: Vec<String>,
}

/// What to do with the request's `cookie` header so that some cookies never
/// reach the upstream while every other cookie passes unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieEdit {
    /// Nothing to drop.
    Keep,
    /// Only dropped cookies were sent.
    Remove,
    /// The remaining cookies, joined with `; ` (one header, overwriting).
    Set(String),
}

// === impl HeaderPolicy ===

impl HeaderPolicy {
    /// The principal goes in [`PRINCIPAL`].
    pub fn new(user: &str, email: &str, groups: &str, issuer: &str, strip: &[String]) -> Self {
        Self::with_principal(user, email, groups, issuer, PRINCIPAL, strip)
    }

    pub fn with_principal(
        user: &str,
        email: &str,
        groups: &str,
        issuer: &str,
        principal: &str,
        strip: &[String],
    ) -> Self {
        let mut exact: Vec<String> = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let all = BUILTIN_STRIP
            .iter()
            .chain(BUILTIN_EXACT)
            .copied()
            .chain(strip.iter().map(String::as_str))
            .chain([user, email, groups, issuer, principal]);
        for name in all {
            let name = normalize(name);
            match name.strip_suffix('*') {
                Some(p) if !prefixes.iter().any(|q| q == p) => prefixes.push(p.to_string()),
                Some(_) => {}
                None if !exact.contains(&name) => exact.push(name),
                None => {}
            }
        }
        let injectable = [
            user,
            email,
            groups,
            issuer,
            WARRANT_ID,
            WARRANT_TOOL,
            WARRANT_HOLDER,
            WARRANT_ROOT_ISSUER,
        ];
        let slots = Slot::ALL.map(|slot| slot.name(user, email, groups, issuer));
        let injectable: Vec<(String, String, u8)> = injectable
            .iter()
            .map(|n| {
                let in_slots = Slot::ALL
                    .iter()
                    .zip(slots)
                    .filter(|(_, s)| s.eq_ignore_ascii_case(n))
                    .fold(0, |bits, (slot, _)| bits | slot.bit());
                (n.to_string(), normalize(n), in_slots)
            })
            .collect();
        let fixed = exact
            .iter()
            .filter(|n| !injectable.iter().any(|(_, i, _)| i == *n))
            .cloned()
            .collect();
        let mut exact_by_len = vec![Vec::new(); exact.iter().map(String::len).max().unwrap_or(0) + 1];
        for name in &exact {
            if let Some(bucket) = exact_by_len.get_mut(name.len()) {
                bucket.push(name.clone());
            }
        }
        let mut first_bytes = [false; 256];
        for (b, may_start) in (0..=u8::MAX).zip(first_bytes.iter_mut()) {
            // An empty configured name (or prefix) would match anything.
            *may_start = exact
                .iter()
                .chain(&prefixes)
                .any(|n| n.as_bytes().first().is_none_or(|&f| f == fold(b)));
        }
        Self {
            user: user.to_string(),
            email: email.to_string(),
            groups: groups.to_string(),
            issuer: issuer.to_string(),
            principal: principal.to_string(),
            exact_by_len,
            prefixes,
            first_bytes,
            fixed,
            injectable,
        }
    }

    /// Whether a request header must not reach the upstream as sent.
    pub fn is_spoofable(&self, name: &str) -> bool {
        let name = name.as_bytes();
        if name.first().is_some_and(|&b| !self.first_bytes[usize::from(b)]) {
            return false;
        }
        // Names of one length are compared from their last byte: they tend
        // to share their start (`x-`, `x-forwarded-`), so most differ there
        // at once.
        self.exact_by_len.get(name.len()).is_some_and(|same_len| {
            same_len
                .iter()
                .any(|e| e.bytes().rev().zip(name.iter().rev()).all(|(e, &n)| e == fold(n)))
        }) || self
            .prefixes
            .iter()
            .any(|p| name.get(..p.len()).is_some_and(|start| same_name(p.as_bytes(), start)))
    }

    /// Whether `name` is one of the configured names exactly as normalized.
    fn is_exact(&self, name: &str) -> bool {
        self.exact_by_len
            .get(name.len())
            .is_some_and(|same_len| same_len.iter().any(|e| e == name))
    }

    /// Edits for an allowed request: inject what was proven (overwriting),
    /// and remove every other spoofable header — the fixed list plus any
    /// request header that matches by prefix or by its underscore spelling —
    /// and `also_remove` (credentials that must not reach the upstream).
    pub fn edits<'a>(
        &self,
        identity: Option<&Identity>,
        grant: Option<&Grant>,
        also_remove: &[&str],
        request_headers: impl Iterator<Item = &'a str>,
    ) -> Edits {
        // `set_slots`: which `Slot`s are in `set`. `String::from(&*…)`, not
        // `to_string()`: on a `Box<str>` or an `Arc<str>` that goes through
        // `Display` and the formatter (and grows the string), on every
        // allowed request.
        let mut set = Vec::with_capacity(8);
        let mut set_slots = 0;
        if let Some(identity) = identity {
            set.push(overwrite(self.user.clone(), String::from(&*identity.user)));
            set.push(overwrite(self.issuer.clone(), String::from(&*identity.issuer)));
            set_slots |= Slot::User.bit() | Slot::Issuer.bit();
            if let Some(email) = &identity.email {
                set.push(overwrite(self.email.clone(), String::from(&**email)));
                set_slots |= Slot::Email.bit();
            }
            if !identity.groups_header().is_empty() {
                set.push(overwrite(self.groups.clone(), String::from(identity.groups_header())));
                set_slots |= Slot::Groups.bit();
            }
        }
        if let Some(g) = grant {
            set.push(overwrite(WARRANT_ID, String::from(&*g.warrant_id)));
            set.push(overwrite(WARRANT_TOOL, String::from(&*g.tool)));
            set.push(overwrite(WARRANT_HOLDER, String::from(&*g.holder)));
            set.push(overwrite(WARRANT_ROOT_ISSUER, String::from(&*g.root_issuer)));
            set_slots |= Slot::WarrantId.bit()
                | Slot::WarrantTool.bit()
                | Slot::WarrantHolder.bit()
                | Slot::WarrantRootIssuer.bit();
        }
        let injected = |n: &str| {
            set.iter()
                .any(|h| h.header.as_ref().is_some_and(|h| h.key.eq_ignore_ascii_case(n)))
        };
        // Built from precomputed lists: this runs on every allowed request.
        let mut remove: Vec<String> = Vec::with_capacity(self.fixed.len() + self.injectable.len() + 4);
        remove.extend(self.fixed.iter().cloned());
        for (name, normalized, in_slots) in &self.injectable {
            // `in_slots & set_slots != 0` is `injected(name)`, precomputed.
            if in_slots & set_slots == 0 || name != normalized {
                remove.push(normalized.clone());
            }
        }
        remove.extend(also_remove.iter().map(|n| n.to_string()));
        // Request headers that are spoofable under another spelling (a
        // prefix match, `x_user_id`): the exact configured names are in the
        // lists above already, or overwritten when injected. Sorted and
        // deduplicated once instead of a scan per header: the request's
        // header count is capped, but this stays O(n log n) regardless.
        // `for_each`, not `filter().collect()`: it folds over the header
        // map directly instead of stepping through the adapters per header.
        let mut spelled: Vec<String> = Vec::new();
        request_headers.for_each(|name| {
            if self.is_spoofable(name) && !injected(name) && !self.is_exact(name) {
                spelled.push(name.to_string());
            }
        });
        spelled.sort_unstable();
        spelled.dedup();
        remove.append(&mut spelled);
        Edits {
            set,
            remove,
            ..Default::default()
        }
    }
}

impl HeaderPolicy {
    /// Injects the workload principal of an allowed request. `edits` removes
    /// the principal header from every request (it is not one of the
    /// `injectable` names), so a connection without a principal never
    /// passes a client's value on; this takes it off the removals, since
    /// Envoy applies removals after the headers set, and overwrites it.
    pub fn inject_principal(&self, edits: &mut Edits, principal: Option<&str>) {
        let Some(principal) = principal else {
            return;
        };
        // A configured name with `_` is another header than its `-`
        // spelling to Envoy: that spelling stays removed.
        edits.remove.retain(|r| *r != self.principal);
        edits.set.push(overwrite(self.principal.clone(), principal.to_string()));
    }
}

/// The headers `edits` may set, as bits (see `HeaderPolicy::injectable`).
#[derive(Debug, Clone, Copy)]
enum Slot {
    User,
    Issuer,
    Email,
    Groups,
    WarrantId,
    WarrantTool,
    WarrantHolder,
    WarrantRootIssuer,
}

impl Slot {
    const ALL: [Slot; 8] = [
        Slot::User,
        Slot::Issuer,
        Slot::Email,
        Slot::Groups,
        Slot::WarrantId,
        Slot::WarrantTool,
        Slot::WarrantHolder,
        Slot::WarrantRootIssuer,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The name `edits` sets this slot's header under.
    fn name<'a>(self, user: &'a str, email: &'a str, groups: &'a str, issuer: &'a str) -> &'a str {
        match self {
            Slot::User => user,
            Slot::Issuer => issuer,
            Slot::Email => email,
            Slot::Groups => groups,
            Slot::WarrantId => WARRANT_ID,
            Slot::WarrantTool => WARRANT_TOOL,
            Slot::WarrantHolder => WARRANT_HOLDER,
            Slot::WarrantRootIssuer => WARRANT_ROOT_ISSUER,
        }
    }
}

impl Edits {
    /// What `set` sets, as (name, value).
    #[cfg(test)]
    pub fn set_pairs(&self) -> Vec<(String, String)> {
        self.set
            .iter()
            .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
            .collect()
    }

    pub fn apply_cookie_edit(&mut self, edit: CookieEdit) {
        match edit {
            CookieEdit::Keep => {}
            CookieEdit::Remove => self.remove.push("cookie".into()),
            CookieEdit::Set(value) => self.set.push(overwrite("cookie", value)),
        }
    }
}

/// One `name=value` pair of a `cookie` header, as both the session reader
/// (`session::cookie`) and the stripper below read it, so the two can never
/// disagree on which cookie is which.
///
/// Only SP and HTAB are trimmed (RFC 6265 §5.4, RFC 9110 OWS): `str::trim`
/// would also drop Unicode spaces such as U+2000 or U+FEFF, and a sibling
/// subdomain could then toss `\u{2000}__Host-x`, which the browser does
/// not treat as `__Host-` but a lenient reader would. Names are compared as
/// bytes and must be an RFC 9110 token; anything else (no `=`, an empty
/// name, a control, a non-ASCII or separator byte) is `None`: not a cookie
/// we ever read as ours.
pub fn cookie_pair(pair: &str) -> Option<(&str, &str)> {
    let (name, value) = pair.split_once('=')?;
    let name = name.trim_matches(OWS);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return None;
    }
    Some((name, value.trim_matches(OWS)))
}

const OWS: [char; 2] = [' ', '\t'];

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether one `;`-separated part of a `cookie` header is a cookie `drop`
/// names. Parts that are not a token-named pair are never ours: they pass.
fn is_dropped(part: &str, drop: &impl Fn(&str) -> bool) -> bool {
    cookie_pair(part).is_some_and(|(name, _)| drop(name))
}

/// Drops the cookies whose name matches `drop` from the `cookie` header
/// values (Envoy may join several headers with `; ` or `,`). Other cookies
/// keep their bytes and order.
pub fn strip_cookies<'a>(values: impl Iterator<Item = &'a str>, drop: impl Fn(&str) -> bool) -> CookieEdit {
    let mut kept: Vec<&str> = Vec::new();
    let mut dropped = false;
    for value in values {
        for pair in value.split(';') {
            let pair = pair.trim_matches(OWS);
            if pair.is_empty() {
                continue;
            }
            if is_dropped(pair, &drop) {
                dropped = true;
            } else if pair.contains(',') && pair.split(',').any(|p| is_dropped(p, &drop)) {
                // Two headers merged with ',': keep the parts that stay.
                dropped = true;
                kept.extend(
                    pair.split(',')
                        .map(|p| p.trim_matches(OWS))
                        .filter(|p| !p.is_empty() && !is_dropped(p, &drop)),
                );
            } else {
                kept.push(pair);
            }
        }
    }
    match (dropped, kept.is_empty()) {
        (false, _) => CookieEdit::Keep,
        (true, true) => CookieEdit::Remove,
        (true, false) => CookieEdit::Set(kept.join("; ")),
    }
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// `normalized` is already lower-case with `-`; compares without allocating
/// because this runs for every request header.
fn same_name(normalized: &[u8], other: &[u8]) -> bool {
    normalized.iter().zip(other).all(|(&n, &o)| n == fold(o))
}

/// A name byte as `normalize` writes it.
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HeaderPolicy {
        HeaderPolicy::new(
            "x-user-id",
            "x-auth-request-email",
            "x-auth-request-groups",
            "x-auth-request-issuer",
            &["x-tenant".into(), "x-internal-*".into()],
        )
    }

    fn identity() -> Identity {
        Identity::test("alice").with_groups(&["dev"])
    }

    #[test]
    fn spoofable_names_match_in_any_case_and_underscore_spelling() {
        let p = policy();
        for n in [
            "x-user-id",
            "X-User-Id",
            "x_user_id",
            "X_USER_ID",
            "x-auth-request-anything",
            "x-tenant",
            "x-internal-a",
            "x-forwarded-user",
            "X-Forwarded-Access-Token",
            "x_webauth_user",
            "Remote-User",
            "REMOTE_GROUPS",
            "x-http-method-override",
            "X_Original_URL",
        ] {
            assert!(p.is_spoofable(n), "{n} should be spoofable");
        }
        for n in [
            "authorization",
            "x-user",
            "x-forwarded-for",
            "cookie",
            "x-tenants-list2",
        ] {
            // x-tenants-list2 is not x-tenant: exact entries match whole names.
            assert!(!p.is_spoofable(n), "{n} should pass");
        }
    }

    /// The length-bucketed lookup answers exactly as a scan of every
    /// configured name would.
    #[test]
    fn spoofable_lookup_agrees_with_a_full_scan() {
        let policies = [
            policy(),
            HeaderPolicy::new("X_Who", "x-mail", "Remote_Teams", "iss", &["_x-*".into(), "9-n".into()]),
            // `*` strips every header but what portcullis sets.
            HeaderPolicy::new("x-user-id", "x-mail", "x-groups", "x-iss", &["*".into()]),
        ];
        for p in &policies {
            let mut names: Vec<String> = vec!["".into(), "x".into(), "x-user-i".into(), "x-user-idd".into()];
            for name in p.exact_by_len.iter().flatten().chain(&p.prefixes) {
                names.push(name.clone());
                names.push(name.to_ascii_uppercase().replace('-', "_"));
                names.push(format!("{name}x"));
                if let Some((_, rest)) = name.split_at_checked(1) {
                    // Every first byte in front of the rest of a configured name.
                    names.extend((0..=127u8).map(|b| format!("{}{rest}", char::from(b))));
                    names.push(name[..name.len() - 1].to_string());
                }
            }
            names.push("y".repeat(300));
            for name in &names {
                assert_eq!(p.is_spoofable(name), spoofable_by_scan(p, name), "{name:?}");
            }
        }
    }

    /// `is_spoofable` as it was before its lookups were precomputed: every
    /// configured name and prefix compared with the header name.
    fn spoofable_by_scan(p: &HeaderPolicy, name: &str) -> bool {
        let n = name.as_bytes();
        p.exact_by_len
            .iter()
            .flatten()
            .any(|e| e.len() == n.len() && same_name(e.as_bytes(), n))
            || p.prefixes
                .iter()
                .any(|q| n.len() >= q.len() && same_name(q.as_bytes(), &n[..q.len()]))
    }

    /// `edits` as it was before its lookups were precomputed: removal by
    /// comparing every injectable name with every header set.
    fn edits_reference(
        p: &HeaderPolicy,
        identity: Option<&Identity>,
        grant: Option<&Grant>,
        also_remove: &[&str],
        request_headers: &[&str],
    ) -> Edits {
        let mut set = Vec::new();
        if let Some(identity) = identity {
            set.push((p.user.clone(), identity.user.to_string()));
            set.push((p.issuer.clone(), identity.issuer.to_string()));
            if let Some(email) = &identity.email {
                set.push((p.email.clone(), email.to_string()));
            }
            if !identity.groups_header().is_empty() {
                set.push((p.groups.clone(), identity.groups_header().to_string()));
            }
        }
        if let Some(g) = grant {
            set.push((WARRANT_ID.to_string(), g.warrant_id.to_string()));
            set.push((WARRANT_TOOL.to_string(), g.tool.to_string()));
            set.push((WARRANT_HOLDER.to_string(), g.holder.to_string()));
            set.push((WARRANT_ROOT_ISSUER.to_string(), g.root_issuer.to_string()));
        }
        let injected = |n: &str| set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n));
        let mut remove: Vec<String> = p.fixed.clone();
        for (name, normalized, _) in &p.injectable {
            if !injected(name) || name != normalized {
                remove.push(normalized.clone());
            }
        }
        remove.extend(also_remove.iter().map(|n| n.to_string()));
        let mut spelled: Vec<String> = request_headers
            .iter()
            .filter(|name| {
                spoofable_by_scan(p, name) && !injected(name) && !p.exact_by_len.iter().flatten().any(|e| e == *name)
            })
            .map(|n| n.to_string())
            .collect();
        spelled.sort_unstable();
        spelled.dedup();
        remove.append(&mut spelled);
        Edits {
            set: set.into_iter().map(|(k, v)| overwrite(k, v)).collect(),
            remove,
            ..Default::default()
        }
    }

    #[test]
    fn edits_agree_with_the_reference_for_every_kind_of_allowed_request() {
        let policies = [
            policy(),
            // Configured names in other spellings, and ones that collide
            // with each other or with the warrant headers.
            HeaderPolicy::new("X_User", "X-Tenuo-Tool", "x-auth-request-groups", "X-USER", &[]),
            HeaderPolicy::new("x-tenuo-holder", "x-mail", "x-mail", "x-iss", &["x-tenuo-*".into()]),
        ];
        let grant = grant();
        let plain = Identity::test("bob");
        let full = identity().with_email(Some("a@example.com"));
        let headers = [
            "accept",
            "x-user-id",
            "X_User",
            "x_user",
            "x-tenuo-tool",
            "X-Tenuo-Holder",
            "x-auth-request-x",
            "x-mail",
            "x_mail",
            "x-internal-y",
            "remote_user",
        ];
        for p in &policies {
            for id in [None, Some(&plain), Some(&full)] {
                for g in [None, Some(&grant)] {
                    for also in [&[][..], &["authorization", "x-tenuo-pop"][..]] {
                        assert_eq!(
                            p.edits(id, g, also, headers.iter().copied()),
                            edits_reference(p, id, g, also, &headers),
                            "{p:?} {id:?} {g:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn session_cookies_are_dropped_and_others_kept_verbatim() {
        let ours = |n: &str| n == "__Host-p" || n.starts_with("__Host-p-login-");
        assert_eq!(strip_cookies(["a=1; b=2"].into_iter(), ours), CookieEdit::Keep);
        assert_eq!(strip_cookies(["__Host-p=xyz"].into_iter(), ours), CookieEdit::Remove);
        assert_eq!(
            strip_cookies(["a=1; __Host-p=xyz;b=\"q r\"; __Host-p-login-abc=s"].into_iter(), ours),
            CookieEdit::Set("a=1; b=\"q r\"".into())
        );
        // Two cookie headers, as separate values or merged with ','.
        assert_eq!(
            strip_cookies(["a=1", "__Host-p=xyz; c=3"].into_iter(), ours),
            CookieEdit::Set("a=1; c=3".into())
        );
        assert_eq!(
            strip_cookies(["a=1,__Host-p=xyz"].into_iter(), ours),
            CookieEdit::Set("a=1".into())
        );
        // A look-alike name is not ours.
        assert_eq!(strip_cookies(["__Host-pp=1"].into_iter(), ours), CookieEdit::Keep);
    }

    /// Names that equal ours only once Unicode spaces or other controls are
    /// trimmed are not ours: never read as the session, and passed on as sent.
    #[test]
    fn only_sp_and_htab_are_trimmed_around_cookie_names() {
        for pad in ["\u{2000}", "\u{00a0}", "\u{feff}", "\x0b", "\x0c", "\r", "\0"] {
            for pair in [format!("{pad}__Host-p=v"), format!("__Host-p{pad}=v")] {
                assert_eq!(cookie_pair(&pair), None, "{pair:?}");
                let ours = |n: &str| n == "__Host-p";
                assert_eq!(
                    strip_cookies([pair.as_str()].into_iter(), ours),
                    CookieEdit::Keep,
                    "{pair:?}"
                );
                let header = format!("a=1; {pair}; __Host-p=real");
                assert_eq!(
                    strip_cookies([header.as_str()].into_iter(), ours),
                    CookieEdit::Set(format!("a=1; {pair}")),
                    "{pair:?}"
                );
            }
        }
        assert_eq!(cookie_pair(" \t__Host-p \t=\t v \t"), Some(("__Host-p", "v")));
        // The value keeps a Unicode space: only the name decides whose cookie it is.
        assert_eq!(cookie_pair("a=\u{2000}v"), Some(("a", "\u{2000}v")));
        for bad in ["=v", "a b=v", "a\"=v", "a(=v", "a@=v", "é=v", "novalue"] {
            assert_eq!(cookie_pair(bad), None, "{bad:?}");
        }
        assert_eq!(cookie_pair("a!#$%&'*+-.^_`|~9=v"), Some(("a!#$%&'*+-.^_`|~9", "v")));
    }

    #[test]
    fn injected_headers_are_set_and_absent_ones_removed() {
        let e = policy().edits(
            Some(&identity()),
            None,
            &[],
            ["x_user_id", "x-auth-request-foo", "accept", "x_user_id"].into_iter(),
        );
        assert_eq!(
            e.set_pairs(),
            vec![
                ("x-user-id".to_string(), "alice".to_string()),
                ("x-auth-request-issuer".into(), "https://issuer.test".into()),
                ("x-auth-request-groups".into(), "dev".into())
            ]
        );
        // `x_user_id` once, though a raw header map may repeat it.
        assert_eq!(e.remove.iter().filter(|n| *n == "x_user_id").count(), 1);
        assert!(
            e.remove.contains(&"x-auth-request-email".to_string()),
            "email not injected, so removed"
        );
        assert!(e.remove.contains(&"x_user_id".to_string()));
        assert!(e.remove.contains(&"x-auth-request-foo".to_string()));
        assert!(e.remove.contains(&"x-tenant".to_string()));
        assert!(
            !e.remove.contains(&"x-user-id".to_string()),
            "overwritten, not removed after being set"
        );
        assert!(!e.remove.contains(&"accept".to_string()));
        assert!(
            e.remove.contains(&WARRANT_ID.to_string()),
            "no warrant, so its headers go"
        );
    }

    fn grant() -> Grant {
        Grant {
            warrant_id: "tnu_wrt_1".into(),
            tool: "deploy".into(),
            holder: "ab12".into(),
            root_issuer: "00ff".into(),
            expires_at: 0,
        }
    }

    #[test]
    fn the_principal_is_injected_only_when_there_is_one_and_removed_otherwise() {
        let p = policy();
        let sent = ["x-portcullis-principal", "X_Portcullis_Principal", "accept"];
        let mut e = p.edits(Some(&identity()), None, &[], sent.into_iter());
        let without = e.clone();
        assert!(without.remove.contains(&PRINCIPAL.to_string()), "{without:?}");
        assert!(without.remove.contains(&"X_Portcullis_Principal".to_string()));
        p.inject_principal(&mut e, None);
        assert_eq!(e, without, "no principal: nothing injected, the header removed");
        p.inject_principal(&mut e, Some("spiffe://td/ns/ci/sa/deployer"));
        assert!(e
            .set_pairs()
            .contains(&(PRINCIPAL.to_string(), "spiffe://td/ns/ci/sa/deployer".to_string())));
        assert!(!e.remove.contains(&PRINCIPAL.to_string()), "set, so not removed after");
        assert!(
            e.remove.contains(&"X_Portcullis_Principal".to_string()),
            "other spellings still go"
        );
        // Another configured name: the default is still stripped, the
        // configured one carries the principal.
        let p = HeaderPolicy::with_principal("x-user-id", "x-mail", "x-groups", "x-iss", "x-spiffe-id", &[]);
        assert!(p.is_spoofable("X_Spiffe_Id") && p.is_spoofable(PRINCIPAL));
        let mut e = p.edits(None, None, &[], ["x-spiffe-id"].into_iter());
        assert!(e.remove.contains(&"x-spiffe-id".to_string()) && e.remove.contains(&PRINCIPAL.to_string()));
        p.inject_principal(&mut e, Some("spiffe://td/x"));
        assert!(!e.remove.contains(&"x-spiffe-id".to_string()));
        assert!(e.remove.contains(&PRINCIPAL.to_string()));
    }

    #[test]
    fn a_warrant_alone_injects_its_headers_and_no_user() {
        let grant = grant();
        let e = policy().edits(None, Some(&grant), &["x-tenuo-pop"], ["X-Tenuo-Tool"].into_iter());
        let set: Vec<String> = e.set_pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(set, [WARRANT_ID, WARRANT_TOOL, WARRANT_HOLDER, WARRANT_ROOT_ISSUER]);
        assert!(e.remove.contains(&"x-user-id".to_string()), "nothing proves a user");
        assert!(e.remove.contains(&"x-tenuo-pop".to_string()));
        assert!(!e.remove.iter().any(|r| r == WARRANT_TOOL), "overwritten, not removed");
    }
}
