//! The `tenuo:` section: trusted issuer keys, where the gateway config is,
//! limits and reload interval. Only the section is checked here; the files
//! it names are read by `verify::warrant` (`Trust::load`, `check_files`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::cache::MIN_CACHE_BYTES;
use super::{ConfigError, Errors, Strings, ENV_DEBUG_MODE, ENV_TENUO_TRUSTED_KEYS, ENV_TRUSTED_ISSUERS};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTenuo {
    pub trusted_issuers: Vec<String>,
    /// Path of a Tenuo gateway config (tenuo-authorizer's `--config`), read unchanged.
    pub gateway_config: Option<String>,
    /// The same gateway config inline, instead of a path.
    pub gateway: Option<serde_norway::Value>,
    /// Overrides the gateway's `settings.clock_tolerance_secs`.
    pub clock_tolerance_seconds: Option<u64>,
    /// Overrides the gateway's `settings.debug_mode`.
    pub debug: Option<bool>,
    pub remove_credential_headers: bool,
    pub revocation_list: Option<String>,
    pub reload_interval_seconds: u64,
    pub max_warrant_bytes: usize,
    pub max_chain_length: usize,
    /// Byte budget of the warrant caches (verified stacks, rejected stacks, exact repeats).
    pub cache_max_bytes: u64,
}

impl Default for RawTenuo {
    fn default() -> Self {
        Self {
            trusted_issuers: Vec::new(),
            gateway_config: None,
            gateway: None,
            clock_tolerance_seconds: None,
            debug: None,
            remove_credential_headers: false,
            revocation_list: None,
            reload_interval_seconds: 5,
            max_warrant_bytes: 16 * 1024,
            max_chain_length: 8,
            cache_max_bytes: 16 << 20,
        }
    }
}

/// Tenuo settings as configured; the files they name are read by
/// `verify::warrant::Trust::load` (at start and on every reload).
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

impl RawTenuo {
    /// The environment overrides of the `tenuo` section (Tenuo's own variable names).
    pub(super) fn apply_env(&mut self, env: &impl Strings) {
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
    let config = validate(&tenuo, &mut errs);
    errs.finish()?;
    Ok(config)
}

pub(super) fn validate(t: &RawTenuo, errs: &mut Errors) -> Option<TenuoConfig> {
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
