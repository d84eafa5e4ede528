//! The `oidc:` section: bearer-token settings and the providers (issuer,
//! audiences, claims, algorithms, client credentials). A provider's `login:`
//! block belongs to browser sessions (`sessions.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use url::{Host, Url};

use super::groups::RawGroups;
use super::sessions::RawLogin;
use super::Errors;
use crate::groups::GroupFilter;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOidc {
    pub clock_skew_seconds: u64,
    pub max_token_bytes: usize,
    pub jwks_refresh_seconds: u64,
    pub jwks_min_refetch_seconds: u64,
    pub fetch_timeout_seconds: u64,
    pub check_fetch_budget_ms: u64,
    pub providers: Vec<RawProvider>,
}

impl Default for RawOidc {
    fn default() -> Self {
        Self {
            clock_skew_seconds: 60,
            max_token_bytes: 8192,
            jwks_refresh_seconds: 300,
            jwks_min_refetch_seconds: 5,
            fetch_timeout_seconds: 5,
            // Below Envoy's ext_authz timeout (0.75 s in envoy/envoy.yaml) and
            // Istio's (0.5 s in istio/mesh/), so a Check answers before the
            // proxy gives up.
            check_fetch_budget_ms: 400,
            providers: Vec::new(),
        }
    }
}

/// `issuer` is required, so this struct has no `Default`: the fields that
/// have one name it with `default = "…"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// What rules name in `providers:` (default: `login.name`, else the issuer).
    #[serde(default)]
    pub name: Option<String>,
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default)]
    pub require_groups: bool,
    /// Which groups reach the identity, and their byte budget.
    #[serde(default)]
    pub groups: RawGroups,
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub client_credentials: RawClientCredentials,
    /// Browser login with this issuer (needs `sessions:`).
    #[serde(default)]
    pub login: Option<RawLogin>,
}

fn default_user_claim() -> String {
    "sub".into()
}
pub(super) fn default_email_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

impl RawProvider {
    /// The name rules use for this provider.
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.login.as_ref().map(|l| l.name.as_str()))
            .unwrap_or(&self.issuer)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawClientCredentials {
    pub enabled: bool,
    pub allowed_clients: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub clock_skew: Duration,
    pub max_token_bytes: usize,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    pub fetch_timeout: Duration,
    /// Longest a Check waits for a JWKS refetch (unknown `kid`).
    pub check_fetch_budget: Duration,
    pub providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// What rules name in `providers:`: `name`, else `login.name`, else the issuer.
    pub name: Arc<str>,
    /// Shared with every identity this provider verifies.
    pub issuer: Arc<str>,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<Url>,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    pub require_groups: bool,
    /// Applied to bearer tokens and ID tokens alike, so a session cookie
    /// holds what a bearer token would inject.
    pub groups: GroupFilter,
    /// Empty means: any asymmetric algorithm the key itself allows.
    pub algorithms: Vec<Algorithm>,
    pub client_credentials: Option<Vec<String>>,
}

pub(super) fn validate(o: &RawOidc, errs: &mut Errors) -> OidcConfig {
    if o.max_token_bytes < 256 || o.max_token_bytes > 64 * 1024 {
        errs.push("oidc.max_token_bytes", "must be between 256 and 65536");
    }
    if o.jwks_refresh_seconds < 10 {
        errs.push("oidc.jwks_refresh_seconds", "must be at least 10");
    } else if o.jwks_refresh_seconds > 86_400 {
        errs.push("oidc.jwks_refresh_seconds", "must be at most 86400");
    }
    if o.jwks_min_refetch_seconds == 0 {
        errs.push(
            "oidc.jwks_min_refetch_seconds",
            "must be at least 1 (it bounds fetches caused by forged kids)",
        );
    } else if o.jwks_min_refetch_seconds > 3600 {
        errs.push("oidc.jwks_min_refetch_seconds", "must be at most 3600");
    }
    if o.fetch_timeout_seconds == 0 || o.fetch_timeout_seconds > 60 {
        errs.push("oidc.fetch_timeout_seconds", "must be between 1 and 60");
    }
    if o.check_fetch_budget_ms == 0 || o.check_fetch_budget_ms > 10_000 {
        errs.push("oidc.check_fetch_budget_ms", "must be between 1 and 10000");
    }
    if o.clock_skew_seconds > 600 {
        errs.push("oidc.clock_skew_seconds", "must be at most 600");
    }
    let mut seen = HashSet::new();
    let providers = o
        .providers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let path = format!("oidc.providers[{i}]");
            if !seen.insert(p.issuer.clone()) {
                errs.push(format!("{path}.issuer"), "duplicate issuer");
            }
            validate_provider(&path, p, errs)
        })
        .collect();
    OidcConfig {
        clock_skew: Duration::from_secs(o.clock_skew_seconds),
        max_token_bytes: o.max_token_bytes,
        jwks_refresh: Duration::from_secs(o.jwks_refresh_seconds),
        jwks_min_refetch: Duration::from_secs(o.jwks_min_refetch_seconds),
        fetch_timeout: Duration::from_secs(o.fetch_timeout_seconds),
        check_fetch_budget: Duration::from_millis(o.check_fetch_budget_ms),
        providers,
    }
}

fn validate_provider(path: &str, p: &RawProvider, errs: &mut Errors) -> Option<ProviderConfig> {
    let issuer_ok = fetch_url(&format!("{path}.issuer"), &p.issuer, errs).is_some();
    let jwks_uri = p
        .jwks_uri
        .as_ref()
        .and_then(|raw| fetch_url(&format!("{path}.jwks_uri"), raw, errs));
    if p.audiences.is_empty() || p.audiences.iter().any(String::is_empty) {
        errs.push(
            format!("{path}.audiences"),
            "list at least one non-empty audience (the token `aud` this service accepts)",
        );
    }
    for (field, claim) in [
        ("user_claim", &p.user_claim),
        ("email_claim", &p.email_claim),
        ("groups_claim", &p.groups_claim),
    ] {
        if claim.is_empty() {
            errs.push(format!("{path}.{field}"), "must not be empty");
        }
    }
    let groups = super::groups::validate(&format!("{path}.groups"), &p.groups, errs);
    let mut algorithms = Vec::new();
    for (i, name) in p.algorithms.iter().enumerate() {
        match name.parse::<Algorithm>() {
            Ok(alg) if is_asymmetric(alg) => algorithms.push(alg),
            Ok(_) => errs.push(
                format!("{path}.algorithms[{i}]"),
                "HMAC algorithms are never accepted for OIDC tokens",
            ),
            Err(_) => errs.push(
                format!("{path}.algorithms[{i}]"),
                "unknown algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)",
            ),
        }
    }
    let cc = &p.client_credentials;
    if cc.enabled && cc.allowed_clients.is_empty() {
        errs.push(
            format!("{path}.client_credentials.allowed_clients"),
            "list the client ids allowed when enabled is true",
        );
    }
    if !cc.enabled && !cc.allowed_clients.is_empty() {
        errs.push(
            format!("{path}.client_credentials.enabled"),
            "allowed_clients is set but enabled is false",
        );
    }
    if let Some(c) = cc.allowed_clients.iter().find(|c| p.audiences.contains(c)) {
        errs.push(
            format!("{path}.client_credentials.allowed_clients"),
            format!("{c:?} is also an audience; a client id must differ from this service's audiences"),
        );
    }
    issuer_ok.then(|| ProviderConfig {
        name: p.name().into(),
        issuer: p.issuer.as_str().into(),
        audiences: p.audiences.clone(),
        jwks_uri,
        user_claim: p.user_claim.clone(),
        email_claim: p.email_claim.clone(),
        groups_claim: p.groups_claim.clone(),
        require_groups: p.require_groups,
        groups,
        algorithms,
        client_credentials: cc.enabled.then(|| cc.allowed_clients.clone()),
    })
}

/// An allowlist can only narrow what the key allows, and a key never allows
/// HMAC (`jwks.rs` drops `oct` keys); listing HS* is a mistake to report.
fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// A URL something is fetched from (keys, tokens, userinfo): see
/// [`check_fetch_url`]. Shared with the `sessions:` section.
pub(super) fn fetch_url(path: &str, raw: &str, errs: &mut Errors) -> Option<Url> {
    match Url::parse(raw) {
        Ok(url) => check_fetch_url(path, &url, errs).then_some(url),
        Err(e) => {
            errs.push(path, format!("not a URL: {e}"));
            None
        }
    }
}

/// Keys are fetched from here, so it must be HTTPS unless the host cannot be
/// reached from outside this machine or cluster.
fn check_fetch_url(path: &str, url: &Url, errs: &mut Errors) -> bool {
    match url.scheme() {
        "https" => true,
        "http" if is_local_host(url) => true,
        "http" => {
            errs.push(
                path,
                "must use https (http is allowed only for loopback and in-cluster hosts)",
            );
            false
        }
        other => {
            errs.push(path, format!("unsupported scheme {other:?}"));
            false
        }
    }
}

/// Loopback addresses, `localhost`, and Kubernetes in-cluster service names.
pub fn is_local_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".svc")
                || d.ends_with(".svc.cluster.local")
                || d.ends_with(".cluster.local")
        }
        None => false,
    }
}
