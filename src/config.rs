//! Configuration in three stages: [`RawConfig`] (serde, unknown keys
//! rejected) → [`RawConfig::validate`] (every problem, with its field path)
//! → [`Config`] (what the request path reads, immutable).
//!
//! Every key is documented in `portcullis.example.yaml` at the repository root.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::{Host, Url};

use crate::headers::HeaderPolicy;
use crate::policy::{Policy, Rule};

pub mod sessions;
pub use sessions::{LoginConfig, LoginKind, RawLogin, RawSessions, SessionsConfig};

/// Environment variable naming the config file (same as `--config`).
pub const ENV_CONFIG: &str = "PORTCULLIS_CONFIG";
/// Overrides `headers.user`; the name Tenure and oauth2-proxy users know.
pub const ENV_USER_HEADER: &str = "OIDC_PROXY_HEADER";
/// Overrides `listen`.
pub const ENV_LISTEN: &str = "PORTCULLIS_LISTEN";
/// Overrides `admin_listen`.
pub const ENV_ADMIN_LISTEN: &str = "PORTCULLIS_ADMIN_LISTEN";
/// Comma list of trusted Tenuo issuer keys (hex), added to `tenuo.trusted_issuers`;
/// the name Tenuo's Kubernetes guide uses.
pub const ENV_TRUSTED_ISSUERS: &str = "TRUSTED_ISSUERS";
/// Same, under the name `tenuo-authorizer` reads.
pub const ENV_TENUO_TRUSTED_KEYS: &str = "TENUO_TRUSTED_KEYS";
/// `true` turns on `tenuo.debug` (tenuo-authorizer's switch).
pub const ENV_DEBUG_MODE: &str = "DEBUG_MODE";

/// Where environment overrides come from; a map in tests, the process
/// environment in production.
pub trait Strings {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct Env;

impl Strings for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Strings for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).map(|v| v.to_string())
    }
}

/// A configuration problem, with the path of the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Parse(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

// === raw (serde) ===

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    #[serde(default)]
    pub debug: bool,
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_shutdown_delay")]
    pub shutdown_delay_seconds: u64,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_seconds: u64,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub oidc: RawOidc,
    #[serde(default)]
    pub tenuo: Option<RawTenuo>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub cache: RawCache,
    /// Browser sessions (cookie keys, plain OAuth2 providers); see `config/sessions.rs`.
    #[serde(default)]
    pub sessions: Option<RawSessions>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default = "default_user_header")]
    pub user: String,
    #[serde(default = "default_email_header")]
    pub email: String,
    #[serde(default = "default_groups_header")]
    pub groups: String,
    #[serde(default = "default_issuer_header")]
    pub issuer: String,
    #[serde(default)]
    pub strip: Vec<String>,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            user: default_user_header(),
            email: default_email_header(),
            groups: default_groups_header(),
            issuer: default_issuer_header(),
            strip: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch_seconds: u64,
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_seconds: u64,
    #[serde(default = "default_check_fetch_budget")]
    pub check_fetch_budget_ms: u64,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
}

impl Default for RawOidc {
    fn default() -> Self {
        Self {
            clock_skew_seconds: default_skew(),
            max_token_bytes: default_max_token_bytes(),
            jwks_refresh_seconds: default_jwks_refresh(),
            jwks_min_refetch_seconds: default_jwks_min_refetch(),
            fetch_timeout_seconds: default_fetch_timeout(),
            check_fetch_budget_ms: default_check_fetch_budget(),
            providers: Vec::new(),
        }
    }
}

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
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub client_credentials: RawClientCredentials,
    /// Browser login with this issuer (needs `sessions:`).
    #[serde(default)]
    pub login: Option<RawLogin>,
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
#[serde(deny_unknown_fields)]
pub struct RawClientCredentials {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub allowed_clients: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenuo {
    #[serde(default)]
    pub trusted_issuers: Vec<String>,
    /// Path of a Tenuo gateway config (tenuo-authorizer's `--config`), read unchanged.
    #[serde(default)]
    pub gateway_config: Option<String>,
    /// The same gateway config inline, instead of a path.
    #[serde(default)]
    pub gateway: Option<serde_norway::Value>,
    /// Overrides the gateway's `settings.clock_tolerance_secs`.
    #[serde(default)]
    pub clock_tolerance_seconds: Option<u64>,
    /// Overrides the gateway's `settings.debug_mode`.
    #[serde(default)]
    pub debug: Option<bool>,
    #[serde(default)]
    pub remove_credential_headers: bool,
    #[serde(default)]
    pub revocation_list: Option<String>,
    #[serde(default = "default_reload_interval")]
    pub reload_interval_seconds: u64,
    #[serde(default = "default_max_warrant_bytes")]
    pub max_warrant_bytes: usize,
    #[serde(default = "default_max_chain_length")]
    pub max_chain_length: usize,
    /// Byte budget of the warrant caches (verified stacks, rejected stacks, exact repeats).
    #[serde(default = "default_tenuo_cache_bytes")]
    pub cache_max_bytes: u64,
}

impl RawTenuo {
    /// The environment overrides of the `tenuo` section (Tenuo's own variable names).
    fn apply_env(&mut self, env: &impl Strings) {
        for name in [ENV_TRUSTED_ISSUERS, ENV_TENUO_TRUSTED_KEYS] {
            if let Some(list) = env.get(name) {
                self.trusted_issuers.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(String::from),
                );
            }
        }
        if let Some(v) = env.get(ENV_DEBUG_MODE) {
            self.debug = Some(matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        }
    }
}

/// Which credentials a route needs.
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
}

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
    /// Byte budget of the decision cache (negative cache included).
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_cache_ttl")]
    pub max_ttl_seconds: u64,
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl_seconds: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
            max_bytes: default_cache_bytes(),
            max_ttl_seconds: default_cache_ttl(),
            negative_ttl_seconds: default_negative_ttl(),
        }
    }
}

fn default_listen() -> String {
    "0.0.0.0:9090".into()
}
fn default_admin_listen() -> String {
    "0.0.0.0:9091".into()
}
fn default_realm() -> String {
    "portcullis".into()
}
fn default_shutdown_delay() -> u64 {
    0
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_user_header() -> String {
    "x-user-id".into()
}
fn default_email_header() -> String {
    "x-auth-request-email".into()
}
fn default_groups_header() -> String {
    "x-auth-request-groups".into()
}
fn default_issuer_header() -> String {
    "x-auth-request-issuer".into()
}
fn default_skew() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refetch() -> u64 {
    5
}
fn default_fetch_timeout() -> u64 {
    5
}
/// Below Envoy's ext_authz timeout (0.75 s in envoy/envoy.yaml) and Istio's
/// (0.5 s in istio/mesh/), so a Check answers before the proxy gives up.
fn default_check_fetch_budget() -> u64 {
    400
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_reload_interval() -> u64 {
    5
}
fn default_max_warrant_bytes() -> usize {
    16 * 1024
}
fn default_max_chain_length() -> usize {
    8
}
fn default_cache_entries() -> u64 {
    100_000
}
fn default_cache_bytes() -> u64 {
    32 << 20
}
fn default_tenuo_cache_bytes() -> u64 {
    16 << 20
}
/// Smallest byte budget a cache accepts: a few hundred entries.
const MIN_CACHE_BYTES: u64 = 64 * 1024;
fn default_cache_ttl() -> u64 {
    60
}
fn default_negative_ttl() -> u64 {
    10
}

// === compiled ===

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub debug: bool,
    pub realm: String,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub headers: HeaderPolicy,
    pub oidc: OidcConfig,
    pub tenuo: Option<TenuoConfig>,
    pub policy: Policy,
    pub cache: CacheConfig,
    pub sessions: Option<SessionsConfig>,
}

/// Tenuo settings as configured; the files they name are read by
/// [`crate::verify::warrant::Trust::load`] (at start and on every reload).
#[derive(Debug, Clone, PartialEq)]
pub struct TenuoConfig {
    /// Hex keys from the config and the environment, deduplicated.
    pub trusted_issuers: Vec<String>,
    pub gateway: GatewaySource,
    pub clock_tolerance: Option<Duration>,
    pub debug: Option<bool>,
    pub remove_credential_headers: bool,
    pub revocation_list: Option<PathBuf>,
    pub reload_interval: Duration,
    pub max_warrant_bytes: usize,
    pub max_chain_length: usize,
    pub cache_max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatewaySource {
    File(PathBuf),
    /// YAML text.
    Inline(String),
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
    /// Empty means: any asymmetric algorithm the key itself allows.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub client_credentials: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub max_bytes: u64,
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
}

// === impl RawConfig ===

impl RawConfig {
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Applies the documented environment overrides.
    pub fn apply_env(&mut self, env: &impl Strings) {
        if let Some(v) = env.get(ENV_USER_HEADER) {
            self.headers.user = v;
        }
        if let Some(v) = env.get(ENV_LISTEN) {
            self.listen = v;
        }
        if let Some(v) = env.get(ENV_ADMIN_LISTEN) {
            self.admin_listen = v;
        }
        if let Some(t) = &mut self.tenuo {
            t.apply_env(env);
        }
    }

    /// Checks everything and reports every problem at once.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut errs = Errors::default();
        let listen = errs.addr("listen", &self.listen);
        let admin_listen = errs.addr("admin_listen", &self.admin_listen);
        if self.realm.is_empty()
            || !self
                .realm
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            errs.push(
                "realm",
                "must be non-empty printable ASCII without quotes or backslashes",
            );
        }
        let headers = self.validate_headers(&mut errs);
        let oidc = self.validate_oidc(&mut errs);
        let tenuo = self.tenuo.as_ref().and_then(|t| validate_tenuo(t, &mut errs));
        let policy = self.validate_rules(&mut errs);
        let sessions = sessions::validate(self, &mut errs);
        for (path, value, max) in [
            ("shutdown_delay_seconds", self.shutdown_delay_seconds, 3600),
            ("shutdown_grace_seconds", self.shutdown_grace_seconds, 3600),
            ("oidc.jwks_refresh_seconds", self.oidc.jwks_refresh_seconds, 86_400),
            (
                "oidc.jwks_min_refetch_seconds",
                self.oidc.jwks_min_refetch_seconds,
                3600,
            ),
            ("cache.max_ttl_seconds", self.cache.max_ttl_seconds, 86_400),
        ] {
            if value > max {
                errs.push(path, format!("must be at most {max}"));
            }
        }
        if self.cache.max_entries == 0 {
            errs.push("cache.max_entries", "must be at least 1");
        }
        if self.cache.max_bytes < MIN_CACHE_BYTES {
            errs.push("cache.max_bytes", format!("must be at least {MIN_CACHE_BYTES}"));
        }
        if self.cache.max_ttl_seconds == 0 {
            errs.push(
                "cache.max_ttl_seconds",
                "must be at least 1 (the cache is what makes repeats fast)",
            );
        }
        if self.cache.negative_ttl_seconds > self.cache.max_ttl_seconds {
            errs.push("cache.negative_ttl_seconds", "must not exceed cache.max_ttl_seconds");
        }
        if self.oidc.providers.is_empty() && self.tenuo.is_none() {
            errs.push(
                "oidc.providers",
                "configure at least one OIDC provider, or a `tenuo` section",
            );
        }
        errs.finish()?;
        // finish() returned Ok only if every Option above is Some.
        match (listen, admin_listen) {
            (Some(listen), Some(admin_listen)) => Ok(Config {
                listen,
                admin_listen,
                debug: self.debug,
                realm: self.realm.clone(),
                shutdown_delay: Duration::from_secs(self.shutdown_delay_seconds),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
                headers,
                oidc,
                tenuo,
                policy,
                cache: CacheConfig {
                    max_entries: self.cache.max_entries,
                    max_bytes: self.cache.max_bytes,
                    max_ttl: Duration::from_secs(self.cache.max_ttl_seconds),
                    negative_ttl: Duration::from_secs(self.cache.negative_ttl_seconds),
                },
                sessions,
            }),
            _ => Err(ConfigError::Invalid(vec![FieldError {
                path: "listen".into(),
                message: "invalid address".into(),
            }])),
        }
    }

    fn validate_headers(&self, errs: &mut Errors) -> HeaderPolicy {
        let h = &self.headers;
        for (path, name) in [
            ("headers.user", &h.user),
            ("headers.email", &h.email),
            ("headers.groups", &h.groups),
            ("headers.issuer", &h.issuer),
        ] {
            if !is_header_name(name) {
                errs.push(path, "must be a lower-case HTTP header name, e.g. x-user-id");
            } else if is_reserved_header(name) {
                errs.push(
                    path,
                    "must not be a pseudo-header, hop-by-hop, host or authorization header",
                );
            }
        }
        let names = [&h.user, &h.email, &h.groups, &h.issuer];
        if names.iter().enumerate().any(|(i, n)| names[..i].contains(n)) {
            errs.push("headers", "user, email, groups and issuer must be distinct headers");
        }
        for (i, name) in h.strip.iter().enumerate() {
            let bare = name.strip_suffix('*').unwrap_or(name);
            if !is_header_name(bare) {
                errs.push(
                    format!("headers.strip[{i}]"),
                    "must be a lower-case header name, optionally ending in '*'",
                );
            } else if is_reserved_header(bare) || bare.len() < 3 {
                errs.push(
                    format!("headers.strip[{i}]"),
                    "would strip a header Envoy needs (or far too broad a prefix)",
                );
            }
        }
        HeaderPolicy::new(&h.user, &h.email, &h.groups, &h.issuer, &h.strip)
    }

    fn validate_oidc(&self, errs: &mut Errors) -> OidcConfig {
        let o = &self.oidc;
        if o.max_token_bytes < 256 || o.max_token_bytes > 64 * 1024 {
            errs.push("oidc.max_token_bytes", "must be between 256 and 65536");
        }
        if o.jwks_refresh_seconds < 10 {
            errs.push("oidc.jwks_refresh_seconds", "must be at least 10");
        }
        if o.jwks_min_refetch_seconds == 0 {
            errs.push(
                "oidc.jwks_min_refetch_seconds",
                "must be at least 1 (it bounds fetches caused by forged kids)",
            );
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

    fn validate_rules(&self, errs: &mut Errors) -> Policy {
        let (has_oidc, has_tenuo) = (!self.oidc.providers.is_empty(), self.tenuo.is_some());
        // `any` means: any of what is configured.
        let any = match (has_oidc, has_tenuo) {
            (true, false) => Require::Oidc,
            (false, true) => Require::Tenuo,
            _ => Require::Any,
        };
        let known = self.known_providers(errs);
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let path = format!("rules[{i}]");
                if let Err(problem) = check_path_prefix(&r.path_prefix) {
                    errs.push(format!("{path}.path_prefix"), problem);
                }
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
                    errs.push(format!("{path}.require"), "needs oidc.providers");
                }
                if matches!(require, Require::Tenuo | Require::All) && !has_tenuo {
                    errs.push(format!("{path}.require"), "needs a `tenuo` section");
                }
                if r.login.is_some() && require == Require::Tenuo {
                    errs.push(
                        format!("{path}.login"),
                        "a login gives an OIDC session; this rule requires only tenuo",
                    );
                }
                let (tokens, sessions) = rule_providers(&path, r, &known, lists_people, errs);
                Rule::new(&r.path_prefix, &r.allowed_users, &r.allowed_groups, require)
                    .with_login(r.login.as_deref())
                    .with_providers(tokens, sessions)
                    .with_forward_unverified_authorization(r.forward_unverified_authorization)
            })
            .collect();
        // No rules: every OIDC provider's tokens, no session cookie.
        Policy::new(rules, any)
    }

    /// Every provider a rule can name: OIDC providers (bearer tokens, and
    /// sessions when they have a login) and plain OAuth2 logins (sessions).
    fn known_providers(&self, errs: &mut Errors) -> Vec<KnownProvider<'_>> {
        let mut known: Vec<KnownProvider<'_>> = Vec::new();
        for (i, p) in self.oidc.providers.iter().enumerate() {
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
            });
        }
        let oauth2 = self.sessions.as_ref().map_or(&[][..], |s| &s.oauth2_providers[..]);
        for (i, p) in oauth2.iter().enumerate() {
            known.push(KnownProvider {
                field: format!("sessions.oauth2_providers[{i}]"),
                name: &p.login.name,
                issuer: None,
                has_login: true,
                oidc: false,
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
}

/// A provider as rules see it.
struct KnownProvider<'a> {
    field: String,
    name: &'a str,
    issuer: Option<&'a str>,
    has_login: bool,
    oidc: bool,
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
    let tokens = chosen.iter().filter(|k| k.oidc).map(|k| k.name.into()).collect();
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

fn validate_tenuo(t: &RawTenuo, errs: &mut Errors) -> Option<TenuoConfig> {
    let mut trusted_issuers: Vec<String> = Vec::new();
    for (i, key) in t.trusted_issuers.iter().enumerate() {
        let key = key.trim().to_ascii_lowercase();
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Env entries are appended after the file's, so the index still points somewhere useful.
            errs.push(
                format!("tenuo.trusted_issuers[{i}]"),
                "must be a 32-byte Ed25519 public key in hex (64 characters)",
            );
        } else if !trusted_issuers.contains(&key) {
            trusted_issuers.push(key);
        }
    }
    let gateway = match (&t.gateway_config, &t.gateway) {
        (Some(path), None) if !path.is_empty() => Some(GatewaySource::File(PathBuf::from(path))),
        (None, Some(inline)) => match serde_norway::to_string(inline) {
            Ok(text) => Some(GatewaySource::Inline(text)),
            Err(e) => {
                errs.push("tenuo.gateway", format!("cannot be re-encoded as YAML: {e}"));
                None
            }
        },
        (Some(_), Some(_)) => {
            errs.push("tenuo", "set gateway_config (a path) or gateway (inline), not both");
            None
        }
        _ => {
            errs.push(
                "tenuo.gateway_config",
                "required: the path of a Tenuo gateway config (tools and routes)",
            );
            None
        }
    };
    if t.clock_tolerance_seconds.is_some_and(|s| s > 600) {
        errs.push("tenuo.clock_tolerance_seconds", "must be at most 600");
    }
    if t.reload_interval_seconds == 0 || t.reload_interval_seconds > 3600 {
        errs.push("tenuo.reload_interval_seconds", "must be between 1 and 3600");
    }
    if !(1024..=256 * 1024).contains(&t.max_warrant_bytes) {
        errs.push("tenuo.max_warrant_bytes", "must be between 1024 and 262144");
    }
    if !(1..=64).contains(&t.max_chain_length) {
        errs.push("tenuo.max_chain_length", "must be between 1 and 64");
    }
    if t.cache_max_bytes < MIN_CACHE_BYTES {
        errs.push("tenuo.cache_max_bytes", format!("must be at least {MIN_CACHE_BYTES}"));
    }
    Some(TenuoConfig {
        trusted_issuers,
        gateway: gateway?,
        clock_tolerance: t.clock_tolerance_seconds.map(Duration::from_secs),
        debug: t.debug,
        remove_credential_headers: t.remove_credential_headers,
        revocation_list: t.revocation_list.as_ref().map(PathBuf::from),
        reload_interval: Duration::from_secs(t.reload_interval_seconds),
        max_warrant_bytes: t.max_warrant_bytes,
        max_chain_length: t.max_chain_length,
        cache_max_bytes: t.cache_max_bytes,
    })
}

fn validate_provider(path: &str, p: &RawProvider, errs: &mut Errors) -> Option<ProviderConfig> {
    let issuer_ok = match Url::parse(&p.issuer) {
        Ok(url) => check_fetch_url(&format!("{path}.issuer"), &url, errs),
        Err(e) => {
            errs.push(format!("{path}.issuer"), format!("not a URL: {e}"));
            false
        }
    };
    let jwks_uri = match &p.jwks_uri {
        None => None,
        Some(raw) => match Url::parse(raw) {
            Ok(url) => check_fetch_url(&format!("{path}.jwks_uri"), &url, errs).then_some(url),
            Err(e) => {
                errs.push(format!("{path}.jwks_uri"), format!("not a URL: {e}"));
                None
            }
        },
    };
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
    let mut algorithms = Vec::new();
    for (i, name) in p.algorithms.iter().enumerate() {
        match name.parse::<jsonwebtoken::Algorithm>() {
            Ok(alg) if crate::verify::oidc::jwks::is_asymmetric(alg) => algorithms.push(alg),
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
        algorithms,
        client_credentials: cc.enabled.then(|| cc.allowed_clients.clone()),
    })
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

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_reserved_header(name: &str) -> bool {
    matches!(
        name,
        "host" | "authorization" | "connection" | "te" | "transfer-encoding" | "upgrade" | "content-length" | "cookie"
    ) || name.starts_with(':')
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(path, format!("{value:?} is not an address like 0.0.0.0:9090"));
                None
            }
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

/// Reads, applies env overrides and validates a config file, and checks the
/// files its `tenuo` section names.
pub fn load(path: &Path, env: &impl Strings) -> Result<Config, ConfigError> {
    let config = read(path, env)?;
    // The files the tenuo section names are part of the config: a bad gateway
    // config must stop `check-config` and start-up, not the first request.
    if let Some(tenuo) = &config.tenuo {
        crate::verify::warrant::Trust::load(tenuo).map_err(|e| {
            ConfigError::Invalid(vec![FieldError {
                path: e.field().into(),
                message: e.to_string(),
            }])
        })?;
    }
    Ok(config)
}

/// Reads, applies env overrides and validates a config file (no other file).
pub fn read(path: &Path, env: &impl Strings) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut raw = RawConfig::from_yaml(&text)?;
    raw.apply_env(env);
    let mut config = raw.validate()?;
    config.resolve_secrets(env)?;
    Ok(config)
}

/// Reads only the `tenuo` section of a config file, with its environment
/// overrides, validated: what a trust reload applies. The other sections
/// take effect only at start-up, so their problems (a session key file
/// gone, a bad listen address) are no reason to refuse a trust reload, and
/// are not reported as one.
pub fn read_tenuo(path: &Path, env: &impl Strings) -> Result<Option<TenuoConfig>, ConfigError> {
    /// Every other key is ignored here; `RawTenuo` still refuses unknown keys.
    #[derive(Deserialize)]
    struct TenuoOnly {
        #[serde(default)]
        tenuo: Option<RawTenuo>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let raw: TenuoOnly = serde_norway::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let Some(mut tenuo) = raw.tenuo else {
        return Ok(None);
    };
    tenuo.apply_env(env);
    let mut errs = Errors::default();
    let config = validate_tenuo(&tenuo, &mut errs);
    errs.finish()?;
    Ok(config)
}

#[cfg(test)]
mod tests;
