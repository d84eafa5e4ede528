//! The `sessions:` section and the `login:` blocks of providers: browser
//! login (OIDC authorization code + PKCE, or plain OAuth2 with a userinfo
//! URL) and encrypted, stateless session cookies.
//!
//! Secrets (cookie keys, client secrets) are references to a file or an
//! environment variable, never inline values. [`RawConfig::validate`] checks
//! the references; `config::read` reads them ([`Config::resolve_secrets`]),
//! so `check-config` reports a missing key file with its field path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use url::Url;

use super::groups::RawGroups;
use super::oidc::{fetch_url, is_local_host};
use super::{Config, ConfigError, Errors, FieldError, RawConfig, Strings};
use crate::groups::GroupFilter;
use crate::request::judge_path;

/// Bytes of a cookie encryption key (XChaCha20-Poly1305).
pub const KEY_BYTES: usize = 32;

// === raw (serde) ===

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSessions {
    pub cookie_name: String,
    /// First encrypts, all decrypt.
    pub keys: Vec<RawSecret>,
    pub max_age_seconds: u64,
    pub login_timeout_seconds: u64,
    pub refresh: RawRefresh,
    /// Default `public_url` of every `login:` block.
    pub public_url: Option<String>,
    /// Plain OAuth2 providers (no OIDC: no ID token, no JWKS), e.g. GitHub.
    pub oauth2_providers: Vec<RawOAuth2Provider>,
}

impl Default for RawSessions {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-portcullis".into(),
            keys: Vec::new(),
            max_age_seconds: 8 * 3600,
            login_timeout_seconds: 600,
            refresh: RawRefresh::default(),
            public_url: None,
            oauth2_providers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRefresh {
    pub enabled: bool,
    pub before_expiry_seconds: u64,
}

impl Default for RawRefresh {
    fn default() -> Self {
        Self {
            enabled: true,
            before_expiry_seconds: 60,
        }
    }
}

/// `{file: /path}` or `{env: NAME}` (exactly one of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSecret {
    pub file: Option<String>,
    pub env: Option<String>,
}

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(String),
    Env(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file:{p}"),
            SecretSource::Env(n) => write!(f, "env:{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body (GitHub).
    ClientSecretPost,
}

/// `name` and `client_id` are required, so this struct has no `Default`:
/// the fields that have one name it with `default = "…"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    /// What rules name in `login: <name>`.
    pub name: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<RawSecret>,
    #[serde(default)]
    pub token_auth: TokenAuth,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default = "default_redirect_path")]
    pub redirect_path: String,
    #[serde(default = "default_logout_path")]
    pub logout_path: String,
    #[serde(default)]
    pub post_logout_redirect: Option<String>,
    #[serde(default)]
    pub public_url: Option<String>,
    /// OIDC: optional overrides of discovery. Plain OAuth2: required.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// `userinfo_url` and `login` are required: no `Default`, as for [`RawLogin`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2Provider {
    /// GET with the access token; its JSON object gives the identity.
    pub userinfo_url: String,
    #[serde(default = "default_oauth2_user_claim")]
    pub user_claim: String,
    /// The same default as an OIDC provider's.
    #[serde(default = "super::oidc::default_email_claim")]
    pub email_claim: String,
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// The same block as an OIDC provider's, for the userinfo groups.
    #[serde(default)]
    pub groups: RawGroups,
    pub login: RawLogin,
}

fn default_redirect_path() -> String {
    "/oauth2/callback".into()
}
fn default_logout_path() -> String {
    "/oauth2/logout".into()
}
fn default_oauth2_user_claim() -> String {
    "login".into()
}

// === compiled ===

#[derive(Debug, Clone)]
pub struct SessionsConfig {
    pub cookie_name: String,
    /// First encrypts, all decrypt.
    pub keys: Vec<Secret>,
    pub max_age: Duration,
    pub login_timeout: Duration,
    /// `None`: refresh disabled; else refresh this long before expiry.
    pub refresh_before: Option<Duration>,
    pub logins: Vec<LoginConfig>,
}

#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub name: String,
    pub kind: LoginKind,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub token_auth: TokenAuth,
    pub scopes: Vec<String>,
    pub redirect_path: String,
    pub logout_path: String,
    /// `public_url` + `redirect_path`: never built from the request's Host.
    pub redirect_uri: Url,
    /// `scheme://host[:port]` of `public_url`; where the user returns to.
    pub public_origin: String,
    pub post_logout_redirect: Option<Url>,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub end_session_endpoint: Option<Url>,
}

#[derive(Debug, Clone)]
pub enum LoginKind {
    /// The ID token is verified by the OIDC verifier of this issuer.
    Oidc { issuer: Arc<str> },
    /// The identity comes from `userinfo_url`.
    OAuth2 {
        userinfo_url: Url,
        user_claim: String,
        email_claim: String,
        groups_claim: Option<String>,
        /// Boxed: a compiled regex is large, and `Oidc` is small.
        groups: Box<GroupFilter>,
    },
}

/// A secret reference and, once [`Config::resolve_secrets`] ran, its value.
#[derive(Clone)]
pub struct Secret {
    /// Field path, for error messages.
    pub field: String,
    pub source: SecretSource,
    value: Option<Arc<[u8]>>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.value.is_some() { "loaded" } else { "not loaded" };
        write!(f, "Secret({:?}, {state})", self.source)
    }
}

impl Secret {
    pub fn new(field: impl Into<String>, source: SecretSource) -> Self {
        Self {
            field: field.into(),
            source,
            value: None,
        }
    }

    /// A secret given directly (tests, benchmarks).
    pub fn with_value(field: impl Into<String>, value: &[u8]) -> Self {
        Self {
            field: field.into(),
            source: SecretSource::Env(String::new()),
            value: Some(value.into()),
        }
    }

    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    fn read(&self, env: &impl Strings) -> Result<Vec<u8>, String> {
        match &self.source {
            SecretSource::File(path) => std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}")),
            SecretSource::Env(name) => env
                .get(name)
                .map(String::into_bytes)
                .ok_or_else(|| format!("environment variable {name} is not set")),
        }
    }
}

/// A 32-byte key: 32 raw bytes (file only), or 64 hex digits, or base64
/// (standard or URL-safe, padded or not), surrounding whitespace ignored.
///
/// 32 bytes that are all printable text are never taken raw: that is a
/// typed passphrase (`my-cookie-secret-of-32-chars-ok!`), far weaker than
/// a key, while random bytes are all printable with odds of ~1e-14.
pub fn parse_key(bytes: &[u8]) -> Result<[u8; KEY_BYTES], String> {
    if let Ok(raw) = <[u8; KEY_BYTES]>::try_from(bytes) {
        if !raw.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
            return Ok(raw);
        }
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "a key must be 32 raw bytes, 64 hex digits or base64 of 32 bytes".to_string())?
        .trim();
    let decoded = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..KEY_BYTES)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
            .collect::<Result<Vec<u8>, _>>()?
    } else {
        [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| "a key must be 32 raw bytes, 64 hex digits or base64 of 32 bytes".to_string())?
    };
    <[u8; KEY_BYTES]>::try_from(decoded.as_slice()).map_err(|_| {
        format!(
            "a key must be {KEY_BYTES} bytes, this one has {} (generate one with `openssl rand -base64 32`)",
            decoded.len()
        )
    })
}

// === validation ===

/// Rule-facing result: the compiled section, if any.
pub(super) fn validate(raw: &RawConfig, errs: &mut Errors) -> Option<SessionsConfig> {
    let logins_in_oidc: Vec<(String, &RawLogin, Arc<str>)> = raw
        .oidc
        .providers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.login.as_ref().map(|l| {
                (
                    format!("oidc.providers[{i}].login"),
                    l,
                    Arc::<str>::from(p.issuer.as_str()),
                )
            })
        })
        .collect();
    // The login's ID tokens have `aud = client_id`. Were that one of the
    // provider's audiences, every ID token would also pass as a bearer
    // token — and ID tokens leave the cookie (the logout URL's
    // `id_token_hint` sits in browser history and IdP logs).
    for (i, p) in raw.oidc.providers.iter().enumerate() {
        if let Some(l) = p.login.as_ref().filter(|l| p.audiences.contains(&l.client_id)) {
            errs.push(
                format!("oidc.providers[{i}].login.client_id"),
                format!(
                    "{:?} is also an audience: its ID tokens would pass as bearer tokens; register a separate client for the login",
                    l.client_id
                ),
            );
        }
    }
    let Some(s) = &raw.sessions else {
        for (path, _, _) in &logins_in_oidc {
            errs.push(
                path,
                "a login block needs the top-level `sessions:` section (cookie keys)",
            );
        }
        check_rule_logins(raw, &[], errs);
        return None;
    };
    if !is_cookie_name(&s.cookie_name) {
        errs.push(
            "sessions.cookie_name",
            "must be a cookie name (letters, digits, - _ . and no spaces)",
        );
    } else if s.cookie_name.starts_with("__Host-") && s.cookie_name.len() == "__Host-".len() {
        errs.push("sessions.cookie_name", "needs a name after the __Host- prefix");
    }
    if s.keys.is_empty() {
        errs.push(
            "sessions.keys",
            "list at least one 32-byte key ({file: path} or {env: NAME}); the first encrypts, all decrypt",
        );
    }
    let keys = s
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let path = format!("sessions.keys[{i}]");
            check_secret_ref(&path, k, errs).map(|source| Secret::new(path, source))
        })
        .collect();
    if !(60..=30 * 86_400).contains(&s.max_age_seconds) {
        errs.push("sessions.max_age_seconds", "must be between 60 and 2592000 (30 days)");
    }
    if !(5..=3600).contains(&s.login_timeout_seconds) {
        errs.push("sessions.login_timeout_seconds", "must be between 5 and 3600");
    }
    if s.refresh.before_expiry_seconds > 3600 {
        errs.push("sessions.refresh.before_expiry_seconds", "must be at most 3600");
    }
    let global_public = s
        .public_url
        .as_ref()
        .and_then(|u| public_url("sessions.public_url", u, errs));

    let mut logins = Vec::new();
    for (path, login, issuer) in &logins_in_oidc {
        if let Some(l) = validate_login(
            path,
            login,
            global_public.as_ref(),
            LoginKind::Oidc { issuer: issuer.clone() },
            errs,
        ) {
            logins.push(l);
        }
    }
    for (i, p) in s.oauth2_providers.iter().enumerate() {
        let path = format!("sessions.oauth2_providers[{i}]");
        let userinfo = fetch_url(&format!("{path}.userinfo_url"), &p.userinfo_url, errs);
        for (field, v) in [("user_claim", &p.user_claim), ("email_claim", &p.email_claim)] {
            if v.is_empty() {
                errs.push(format!("{path}.{field}"), "must not be empty");
            }
        }
        if p.groups_claim.as_deref() == Some("") {
            errs.push(format!("{path}.groups_claim"), "must not be empty (omit it instead)");
        }
        let groups = super::groups::validate(&format!("{path}.groups"), &p.groups, errs);
        let login_path = format!("{path}.login");
        for (field, v) in [
            ("authorization_endpoint", &p.login.authorization_endpoint),
            ("token_endpoint", &p.login.token_endpoint),
        ] {
            if v.is_none() {
                errs.push(
                    format!("{login_path}.{field}"),
                    "is required for a plain OAuth2 provider",
                );
            }
        }
        if let Some(userinfo_url) = userinfo {
            let kind = LoginKind::OAuth2 {
                userinfo_url,
                user_claim: p.user_claim.clone(),
                email_claim: p.email_claim.clone(),
                groups_claim: p.groups_claim.clone(),
                groups: Box::new(groups),
            };
            if let Some(l) = validate_login(&login_path, &p.login, global_public.as_ref(), kind, errs) {
                logins.push(l);
            }
        }
    }
    if logins_in_oidc.is_empty() && s.oauth2_providers.is_empty() {
        errs.push(
            "sessions",
            "no provider has a login block (oidc.providers[].login or sessions.oauth2_providers)",
        );
    }
    let names: Vec<&str> = logins.iter().map(|l| l.name.as_str()).collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            errs.push("sessions", format!("two login blocks are named {name:?}"));
        }
    }
    // A path is either a callback or a logout path, never both.
    for l in &logins {
        if logins.iter().any(|o| o.redirect_path == l.logout_path) {
            errs.push(
                "sessions",
                format!("{:?} is both a redirect_path and a logout_path", l.logout_path),
            );
        }
    }
    check_rule_logins(raw, &names, errs);
    Some(SessionsConfig {
        cookie_name: s.cookie_name.clone(),
        keys,
        max_age: Duration::from_secs(s.max_age_seconds),
        login_timeout: Duration::from_secs(s.login_timeout_seconds),
        refresh_before: s
            .refresh
            .enabled
            .then(|| Duration::from_secs(s.refresh.before_expiry_seconds)),
        logins,
    })
}

fn check_rule_logins(raw: &RawConfig, names: &[&str], errs: &mut Errors) {
    for (i, r) in raw.rules.iter().enumerate() {
        if let Some(name) = &r.login {
            if !names.contains(&name.as_str()) {
                errs.push(format!("rules[{i}].login"), format!("no login block is named {name:?}"));
            }
        }
    }
    for (policy, p) in &raw.policies {
        if let Some(name) = p.login.as_ref().filter(|n| !names.contains(&n.as_str())) {
            errs.push(
                format!("policies.{policy}.login"),
                format!("no login block is named {name:?}"),
            );
        }
    }
}

fn validate_login(
    path: &str,
    l: &RawLogin,
    global_public: Option<&Url>,
    kind: LoginKind,
    errs: &mut Errors,
) -> Option<LoginConfig> {
    if l.name.is_empty()
        || !l
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        errs.push(format!("{path}.name"), "must be non-empty: letters, digits, - _ .");
    }
    if l.client_id.is_empty() || l.client_id.chars().any(char::is_control) {
        errs.push(format!("{path}.client_id"), "must be non-empty");
    }
    let client_secret = l.client_secret.as_ref().and_then(|s| {
        let field = format!("{path}.client_secret");
        check_secret_ref(&field, s, errs).map(|source| Secret::new(field, source))
    });
    if l.client_secret.is_none() && l.token_auth == TokenAuth::ClientSecretPost {
        errs.push(
            format!("{path}.client_secret"),
            "token_auth client_secret_post needs a client_secret",
        );
    }
    let is_oidc = matches!(kind, LoginKind::Oidc { .. });
    let scopes = l.scopes.clone().unwrap_or_else(|| {
        if is_oidc {
            vec!["openid".into(), "email".into(), "profile".into()]
        } else {
            Vec::new()
        }
    });
    if is_oidc && !scopes.iter().any(|s| s == "openid") {
        errs.push(
            format!("{path}.scopes"),
            "an OIDC login must request the `openid` scope",
        );
    }
    if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        errs.push(format!("{path}.scopes"), "scopes are non-empty and have no spaces");
    }
    for (field, p) in [("redirect_path", &l.redirect_path), ("logout_path", &l.logout_path)] {
        if !p.starts_with('/') || p.contains('?') || judge_path(p) != Ok(p.as_str()) {
            errs.push(
                format!("{path}.{field}"),
                "must be a normalized absolute path without query, e.g. /oauth2/callback",
            );
        }
    }
    if l.redirect_path == l.logout_path {
        errs.push(format!("{path}.logout_path"), "must differ from redirect_path");
    }
    let post_logout = l
        .post_logout_redirect
        .as_ref()
        .and_then(|u| fetch_url(&format!("{path}.post_logout_redirect"), u, errs));
    let own_public = l
        .public_url
        .as_ref()
        .and_then(|u| public_url(&format!("{path}.public_url"), u, errs));
    if l.public_url.is_none() && global_public.is_none() {
        errs.push(
            format!("{path}.public_url"),
            "set it here or in sessions.public_url: the redirect URI is built from it, never from the Host header",
        );
    }
    let endpoint = |field: &str, v: &Option<String>, errs: &mut Errors| {
        v.as_ref().and_then(|u| fetch_url(&format!("{path}.{field}"), u, errs))
    };
    let authorization_endpoint = endpoint("authorization_endpoint", &l.authorization_endpoint, errs);
    let token_endpoint = endpoint("token_endpoint", &l.token_endpoint, errs);
    let end_session_endpoint = endpoint("end_session_endpoint", &l.end_session_endpoint, errs);
    let public = own_public.or_else(|| global_public.cloned())?;
    let redirect_uri = public.join(&l.redirect_path).ok()?;
    Some(LoginConfig {
        name: l.name.clone(),
        kind,
        client_id: l.client_id.clone(),
        client_secret,
        token_auth: l.token_auth,
        scopes,
        redirect_path: l.redirect_path.clone(),
        logout_path: l.logout_path.clone(),
        redirect_uri,
        public_origin: public.origin().ascii_serialization(),
        post_logout_redirect: post_logout,
        authorization_endpoint,
        token_endpoint,
        end_session_endpoint,
    })
}

/// An origin (`https://app.example.com`, no path, query or credentials).
fn public_url(path: &str, raw: &str, errs: &mut Errors) -> Option<Url> {
    let url = fetch_url(path, raw, errs)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        errs.push(
            path,
            "must be an origin like https://app.example.com (no path, query or user)",
        );
        return None;
    }
    if url.scheme() == "http" && !is_local_host(&url) {
        return None;
    }
    Some(url)
}

fn check_secret_ref(path: &str, s: &RawSecret, errs: &mut Errors) -> Option<SecretSource> {
    match (&s.file, &s.env) {
        (Some(p), None) if !p.is_empty() => Some(SecretSource::File(p.clone())),
        (None, Some(n)) if !n.is_empty() && !n.contains('=') => Some(SecretSource::Env(n.clone())),
        (Some(_), None) => {
            errs.push(format!("{path}.file"), "must not be empty");
            None
        }
        (None, Some(_)) => {
            errs.push(format!("{path}.env"), "must be an environment variable name");
            None
        }
        _ => {
            errs.push(path, "give exactly one of file: or env: (secrets are never inline)");
            None
        }
    }
}

/// RFC 6265 cookie-name token, restricted to the usual characters.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

// === secrets ===

impl Config {
    /// Reads every secret reference (cookie keys, client secrets) and checks
    /// cookie keys are 32 bytes. Every problem is reported with its path.
    pub fn resolve_secrets(&mut self, env: &impl Strings) -> Result<(), ConfigError> {
        let Some(s) = self.sessions.as_mut() else {
            return Ok(());
        };
        let mut errors = Vec::new();
        let secrets = s.keys.iter_mut().map(|k| (k, true)).chain(
            s.logins
                .iter_mut()
                .filter_map(|l| l.client_secret.as_mut())
                .map(|k| (k, false)),
        );
        for (secret, is_key) in secrets {
            let value = secret.read(env).and_then(|bytes| {
                if is_key {
                    parse_key(&bytes).map(|k| k.to_vec())
                } else {
                    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
                    let text = text.trim();
                    if text.is_empty() {
                        Err("the secret is empty".to_string())
                    } else {
                        Ok(text.as_bytes().to_vec())
                    }
                }
            });
            match value {
                Ok(v) => secret.value = Some(v.into()),
                Err(message) => errors.push(FieldError {
                    path: secret.field.clone(),
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_raw_hex_and_base64() {
        let key = [7u8; 32];
        assert_eq!(parse_key(&key), Ok(key));
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_key(hex.as_bytes()), Ok(key));
        assert_eq!(parse_key(format!("{}\n", STANDARD.encode(key)).as_bytes()), Ok(key));
        assert_eq!(parse_key(URL_SAFE_NO_PAD.encode(key).as_bytes()), Ok(key));
        assert!(parse_key(STANDARD.encode([1u8; 16]).as_bytes()).is_err());
        assert!(parse_key(b"not a key").is_err());
        // Typed text of 32 bytes is a passphrase, not raw key bytes.
        assert!(parse_key(b"my-cookie-secret-of-32-chars-ok!").is_err());
        assert!(parse_key(b"correct horse battery staple 31\n").is_err());
        assert!(parse_key(URL_SAFE_NO_PAD.encode([0xfbu8; 24]).as_bytes()).is_err());
    }

    #[test]
    fn a_login_client_id_must_not_be_a_bearer_audience() {
        let yaml = "
oidc:
  providers:
    - issuer: https://dex.example.com/dex
      audiences: [portcullis, web]
      login: {name: dex, client_id: web}
sessions:
  keys: [{file: /k}]
  public_url: https://app.example.com
";
        let errs = match RawConfig::from_yaml(yaml).and_then(|r| r.validate()) {
            Err(ConfigError::Invalid(e)) => e,
            other => panic!("expected field errors, got {other:?}"),
        };
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["oidc.providers[0].login.client_id"]);
        let ok = yaml.replace("[portcullis, web]", "[portcullis]");
        assert!(RawConfig::from_yaml(&ok).and_then(|r| r.validate()).is_ok());
    }
}
