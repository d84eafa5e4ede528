//! Configuration in three stages: [`RawConfig`] (serde, unknown keys
//! rejected) → [`RawConfig::validate`] (every problem, with its field path)
//! → [`Config`] (what the request path reads, immutable).
//!
//! One module per section, each with its raw type, its validation and its
//! compiled type: `headers`, `oidc`, `tenuo`, `rules` (with `policies`),
//! `cache`, `sessions`, `api_keys`, `groups`, `traces` (`tracing:`).
//! This file keeps the top level, the environment overlay, reading the file
//! and the error types. Every key is documented, with its default, in
//! `portcullis.example.yaml` at the repository root.
//!
//! Dependencies point one way. `config` uses the types it compiles into
//! (`policy::{Policy, Rule, Require}`, `headers::HeaderPolicy`) and the path
//! rules of `request`; the verifiers, sessions and caches use only the
//! compiled types (`OidcConfig`, `TenuoConfig`, `SessionsConfig`,
//! `CacheConfig`). `config` uses no verifier: the files the `tenuo` section
//! names are read by `verify::warrant` (`check_files`, `Trust::load`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::headers::HeaderPolicy;
use crate::policy::Policy;

pub mod api_keys;
pub mod cache;
pub mod groups;
pub mod headers;
pub mod oidc;
pub mod rules;
pub mod sessions;
pub mod tenuo;
pub mod traces;

pub use self::api_keys::{ApiKeysConfig, RawApiKeys};
pub use self::cache::{CacheConfig, RawCache};
pub use self::headers::RawHeaders;
pub use self::oidc::{is_local_host, OidcConfig, ProviderConfig, RawClientCredentials, RawOidc, RawProvider};
pub use self::rules::{check_path_prefix, RawPolicy, RawRule};
pub use self::tenuo::{read_tenuo, GatewaySource, RawTenuo, TenuoConfig};
pub use self::traces::{RawTracing, TracingConfig};
pub use crate::policy::Require;
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

/// The problems found so far; each section's validation adds to it.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub admin_listen: String,
    pub debug: bool,
    pub realm: String,
    pub shutdown_delay_seconds: u64,
    pub shutdown_grace_seconds: u64,
    pub headers: RawHeaders,
    pub oidc: RawOidc,
    pub tenuo: Option<RawTenuo>,
    pub rules: Vec<RawRule>,
    /// Named policies the proxy's route chooses (`context_extensions`); see `config/rules.rs`.
    #[serde(deserialize_with = "rules::unique_policies")]
    pub policies: std::collections::BTreeMap<String, RawPolicy>,
    pub cache: RawCache,
    /// Browser sessions (cookie keys, plain OAuth2 providers); see `config/sessions.rs`.
    pub sessions: Option<RawSessions>,
    /// Hashed keys of machine clients; see `config/api_keys.rs`.
    pub api_keys: Option<RawApiKeys>,
    /// OpenTelemetry spans of Checks; see `config/traces.rs`.
    pub tracing: RawTracing,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9090".into(),
            admin_listen: "0.0.0.0:9091".into(),
            debug: false,
            realm: "portcullis".into(),
            shutdown_delay_seconds: 0,
            shutdown_grace_seconds: 10,
            headers: RawHeaders::default(),
            oidc: RawOidc::default(),
            tenuo: None,
            rules: Vec::new(),
            policies: Default::default(),
            cache: RawCache::default(),
            sessions: None,
            api_keys: None,
            tracing: RawTracing::default(),
        }
    }
}

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
    pub api_keys: Option<ApiKeysConfig>,
    /// `None`: tracing is off.
    pub tracing: Option<TracingConfig>,
}

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
        let realm = &self.realm;
        if realm.is_empty() || !realm.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
            errs.push(
                "realm",
                "must be non-empty printable ASCII without quotes or backslashes",
            );
        }
        let raw_headers = api_keys::strip_key_header(&self.headers, self.api_keys.as_ref());
        let headers = headers::validate(&raw_headers, &mut errs);
        let oidc = oidc::validate(&self.oidc, &mut errs);
        let tenuo = self.tenuo.as_ref().and_then(|t| tenuo::validate(t, &mut errs));
        let policy = rules::validate(self, &mut errs);
        let sessions = sessions::validate(self, &mut errs);
        for (path, value) in [
            ("shutdown_delay_seconds", self.shutdown_delay_seconds),
            ("shutdown_grace_seconds", self.shutdown_grace_seconds),
        ] {
            if value > 3600 {
                errs.push(path, "must be at most 3600");
            }
        }
        let cache = cache::validate(&self.cache, &mut errs);
        let tracing = traces::validate(&self.tracing, &mut errs);
        let api_keys = self
            .api_keys
            .as_ref()
            .map(|k| api_keys::validate(k, &self.headers, &mut errs));
        if self.oidc.providers.is_empty() && self.tenuo.is_none() && self.api_keys.is_none() {
            rules::check_workload_only(self, &mut errs);
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
                cache,
                sessions,
                api_keys,
                tracing,
            }),
            _ => Err(ConfigError::Parse("listen: invalid address".into())),
        }
    }
}

/// Reads, applies env overrides, validates a config file and reads the
/// secrets it references. The files the `tenuo` section names are checked
/// by `verify::warrant::check_files`.
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

#[cfg(test)]
pub(crate) mod tests;
