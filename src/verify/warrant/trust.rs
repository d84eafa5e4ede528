//! Everything a reload replaces at once: trusted issuers, the gateway
//! config, the revocation list, and the caches built on them. Caches live
//! here on purpose: a new trust set starts with empty caches, so no cached
//! decision outlives a removed issuer key or a newly revoked warrant.

use std::hash::Hasher;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use siphasher::sip128::{Hasher128, SipHasher13};
use tenuo::{Authorizer, CompiledGatewayConfig, GatewayConfig, PublicKey, SignedRevocationList};

use super::{Chain, Decision, WarrantDenial, ARC_BYTES};
use crate::cache::{weight, MacKeyHasher};
use crate::config::{Config, ConfigError, FieldError, GatewaySource, TenuoConfig};

const KEY_BYTES: usize = std::mem::size_of::<u128>();

/// Rejected stacks are retried after this, in case the reason was transient.
const REJECTED_TTL: Duration = Duration::from_secs(60);
/// Upper bound for any cached verified stack, whatever its expiry.
const MAX_STACK_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        field: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("invalid Tenuo gateway config: {0}")]
    Gateway(String),
    #[error("{0}")]
    Key(String),
    #[error("no trusted issuer: list keys in tenuo.trusted_issuers, TRUSTED_ISSUERS, TENUO_TRUSTED_KEYS or the gateway's settings.trusted_roots")]
    NoIssuers,
    #[error("revocation list: {0}")]
    Revocation(String),
}

impl LoadError {
    /// The config field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            LoadError::Read { field, .. } => field,
            LoadError::Gateway(_) => "tenuo.gateway_config",
            LoadError::Key(_) | LoadError::NoIssuers => "tenuo.trusted_issuers",
            LoadError::Revocation(_) => "tenuo.revocation_list",
        }
    }
}

impl From<LoadError> for FieldError {
    fn from(e: LoadError) -> Self {
        FieldError {
            path: e.field().into(),
            message: e.to_string(),
        }
    }
}

/// Reads and checks the files a config's `tenuo` section names, as a reload
/// would, and drops the result. They are part of the config: a bad gateway
/// config must stop `check-config` and start-up, not the first request.
pub fn check_files(config: &Config) -> Result<(), ConfigError> {
    match &config.tenuo {
        Some(tenuo) => Trust::load(tenuo)
            .map(drop)
            .map_err(|e| ConfigError::Invalid(vec![e.into()])),
        None => Ok(()),
    }
}

/// Header names from the gateway's `settings`, lower-case.
#[derive(Debug, Clone)]
pub struct Names {
    pub warrant: String,
    pub pop: String,
    pub approvals: String,
}

pub struct Trust {
    pub(super) authorizer: Authorizer,
    pub(super) gateway: CompiledGatewayConfig,
    /// The same routes with their literal segments lower-cased: what a
    /// case-insensitive upstream router would pick (see `WarrantVerifier::verify`).
    pub(super) folded: CompiledGatewayConfig,
    /// No route pattern has an upper-case letter in its literal text, so
    /// `folded` is `gateway` compiled from the same routes: for a target
    /// without upper-case letters its match is `gateway`'s, and need not be
    /// looked up again.
    pub(super) routes_fold_to_themselves: bool,
    pub names: Names,
    pub debug: bool,
    pub remove_credentials: bool,
    pub(super) max_warrant_bytes: usize,
    pub(super) max_chain: usize,
    pub issuers: usize,
    pub srl_version: Option<u64>,
    /// Hash of every input; a reload with the same inputs changes nothing.
    pub fingerprint: u128,
    // Keys are keyed SipHash outputs (`hasher`): moka need not hash them again.
    pub(super) stacks: Cache<u128, Arc<Chain>, MacKeyHasher>,
    pub(super) rejected: Cache<u128, Arc<WarrantDenial>, MacKeyHasher>,
    pub(super) decisions: Cache<u128, Decision, MacKeyHasher>,
    /// Trusted issuer keys, for refusing an untrusted root before any signature work.
    pub(super) roots: Vec<[u8; 32]>,
    /// How far in the future a warrant may be issued (the authorizer has no getter).
    clock_tolerance: chrono::Duration,
    keys: (u64, u64),
}

impl Trust {
    /// For unit tests: `issuer` trusted, the gateway config inline, the
    /// defaults of a `tenuo:` section otherwise.
    #[cfg(test)]
    pub(crate) fn for_tests(issuer: &tenuo::SigningKey, gateway: &str) -> Self {
        Self::load(&TenuoConfig {
            trusted_issuers: vec![hex::encode(issuer.public_key().to_bytes())],
            gateway: GatewaySource::Inline(gateway.into()),
            clock_tolerance: None,
            debug: None,
            remove_credential_headers: false,
            revocation_list: None,
            reload_interval: Duration::from_secs(10),
            max_warrant_bytes: 64 * 1024,
            max_chain_length: 8,
            cache_max_bytes: 1 << 20,
        })
        .expect("trust")
    }

    /// Reads the files the config names and builds the verifier state.
    pub fn load(cfg: &TenuoConfig) -> Result<Self, LoadError> {
        let (gateway_text, origin) = match &cfg.gateway {
            GatewaySource::File(path) => (read(path, "tenuo.gateway_config")?, path.display().to_string()),
            GatewaySource::Inline(text) => (text.clone(), "tenuo.gateway".to_string()),
        };
        let gateway =
            GatewayConfig::from_yaml(&gateway_text).map_err(|e| LoadError::Gateway(format!("{origin}: {e}")))?;
        if let Err(errors) = gateway.validate() {
            let list: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.location, e.message))
                .collect();
            return Err(LoadError::Gateway(format!("{origin}: {}", list.join("; "))));
        }
        let settings = gateway.settings.clone();
        let mut keys: Vec<PublicKey> = Vec::new();
        for hex_key in cfg.trusted_issuers.iter().chain(&settings.trusted_roots) {
            let key = parse_key(hex_key)?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(LoadError::NoIssuers);
        }
        let tolerance = cfg
            .clock_tolerance
            .unwrap_or(Duration::from_secs(settings.clock_tolerance_secs));
        let tolerance = chrono::Duration::from_std(tolerance).map_err(|e| LoadError::Key(e.to_string()))?;
        let mut authorizer = Authorizer::builder()
            .trusted_roots(keys.iter().cloned())
            .clock_tolerance(tolerance)
            .build()
            .map_err(|e| LoadError::Key(e.to_string()))?;
        let mut srl_bytes = Vec::new();
        let mut srl_version = None;
        if let Some(path) = &cfg.revocation_list {
            srl_bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                field: "tenuo.revocation_list",
                path: path.display().to_string(),
                source,
            })?;
            let srl = SignedRevocationList::from_bytes(&srl_bytes)
                .map_err(|e| LoadError::Revocation(format!("{}: {e}", path.display())))?;
            srl_version = Some(srl.version());
            authorizer.set_revocation_list_from_trusted_issuer(srl).map_err(|e| {
                LoadError::Revocation(format!("{}: not signed by a trusted issuer: {e}", path.display()))
            })?;
        }
        let names = Names {
            warrant: settings.warrant_header.to_ascii_lowercase(),
            pop: settings.pop_header.to_ascii_lowercase(),
            approvals: settings.approval_header.to_ascii_lowercase(),
        };
        let folded_config = folded_routes(&gateway);
        let routes_fold_to_themselves = folded_config
            .routes
            .iter()
            .zip(&gateway.routes)
            .all(|(folded, route)| folded.pattern == route.pattern);
        let folded = CompiledGatewayConfig::compile(folded_config).map_err(|e| {
            LoadError::Gateway(format!(
                "{origin}: routes that differ only in letter case cannot be told apart ({e})"
            ))
        })?;
        let compiled =
            CompiledGatewayConfig::compile(gateway).map_err(|e| LoadError::Gateway(format!("{origin}: {e}")))?;
        let fingerprint = {
            let mut h = SipHasher13::new_with_keys(0, 0);
            h.write(format!("{cfg:?}").as_bytes());
            h.write(gateway_text.as_bytes());
            h.write(&srl_bytes);
            h.finish128().as_u128()
        };
        Ok(Self {
            authorizer,
            gateway: compiled,
            folded,
            routes_fold_to_themselves,
            names,
            debug: cfg.debug.unwrap_or(settings.debug_mode),
            remove_credentials: cfg.remove_credential_headers,
            max_warrant_bytes: cfg.max_warrant_bytes,
            max_chain: cfg.max_chain_length,
            issuers: keys.len(),
            srl_version,
            fingerprint,
            // The byte budget: half for verified stacks (the expensive thing
            // to rebuild), three eighths for exact repeats, an eighth for
            // rejected stacks.
            stacks: Cache::builder()
                .weigher(|_: &u128, chain: &Arc<Chain>| chain.weight)
                .max_capacity(cfg.cache_max_bytes / 2)
                .expire_after(UntilChainExpiry)
                .build_with_hasher(MacKeyHasher::default()),
            rejected: Cache::builder()
                .weigher(|_: &u128, d: &Arc<WarrantDenial>| weight(KEY_BYTES + ARC_BYTES + d.heap_bytes()))
                .max_capacity(cfg.cache_max_bytes / 8)
                .time_to_live(REJECTED_TTL)
                .build_with_hasher(MacKeyHasher::default()),
            decisions: Cache::builder()
                .weigher(|_: &u128, d: &Decision| weight(KEY_BYTES + d.heap_bytes()))
                .max_capacity(cfg.cache_max_bytes - cfg.cache_max_bytes / 2 - cfg.cache_max_bytes / 8)
                .expire_after(UntilDecisionEnds)
                .build_with_hasher(MacKeyHasher::default()),
            roots: keys.iter().map(PublicKey::to_bytes).collect(),
            clock_tolerance: tolerance,
            keys: (rand::random(), rand::random()),
        })
    }

    /// Entries and weighted bytes of each warrant cache (stacks, rejected,
    /// decisions), after settling moka's pending work; for memory reports.
    pub fn cache_usage(&self) -> [(&'static str, u64, u64); 3] {
        self.stacks.run_pending_tasks();
        self.rejected.run_pending_tasks();
        self.decisions.run_pending_tasks();
        [
            ("stacks", self.stacks.entry_count(), self.stacks.weighted_size()),
            ("rejected", self.rejected.entry_count(), self.rejected.weighted_size()),
            (
                "decisions",
                self.decisions.entry_count(),
                self.decisions.weighted_size(),
            ),
        ]
    }

    // What the verifier applies, read by `portcullis explain` to show a
    // warrant's parts against it (it decides nothing with them).

    /// Whether `key` is a trusted root issuer.
    pub fn is_trusted_root(&self, key: &[u8; 32]) -> bool {
        self.roots.contains(key)
    }

    /// The PoP's window length (seconds) and how many windows are tried.
    pub fn pop_window(&self) -> (i64, u32) {
        self.authorizer.pop_window_config()
    }

    pub fn clock_tolerance(&self) -> chrono::Duration {
        self.clock_tolerance
    }

    pub fn max_warrant_bytes(&self) -> usize {
        self.max_warrant_bytes
    }

    pub fn max_chain(&self) -> usize {
        self.max_chain
    }

    /// Keyed 128-bit hash: cache keys cannot be predicted or made to collide.
    pub(super) fn hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.keys.0, self.keys.1)
    }
}

fn read(path: &Path, field: &'static str) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        field,
        path: path.display().to_string(),
        source,
    })
}

fn parse_key(hex_key: &str) -> Result<PublicKey, LoadError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| LoadError::Key(format!("{hex_key:?} is not hex")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| LoadError::Key(format!("{hex_key:?} is not a 32-byte key")))?;
    PublicKey::from_bytes(&bytes).map_err(|e| LoadError::Key(format!("{hex_key:?}: {e}")))
}

fn until(unix: i64) -> Duration {
    // moka's timers run on the real clock, so this is about real time.
    let now = crate::clock::unix(crate::clock::system_now());
    Duration::from_secs(u64::try_from(unix).unwrap_or(0).saturating_sub(now))
}

struct UntilChainExpiry;

impl Expiry<u128, Arc<Chain>> for UntilChainExpiry {
    fn expire_after_create(&self, _: &u128, chain: &Arc<Chain>, _: Instant) -> Option<Duration> {
        Some(until(chain.expires_at).min(MAX_STACK_TTL))
    }
}

struct UntilDecisionEnds;

impl Expiry<u128, Decision> for UntilDecisionEnds {
    fn expire_after_create(&self, _: &u128, d: &Decision, _: Instant) -> Option<Duration> {
        Some(until(d.until()).min(MAX_STACK_TTL))
    }
}

/// The gateway with every route pattern's literal text lower-cased
/// (parameter names inside `{…}` kept, so extraction rules still compile).
fn folded_routes(gateway: &GatewayConfig) -> GatewayConfig {
    let mut folded = gateway.clone();
    for route in &mut folded.routes {
        let mut in_param = false;
        route.pattern = route
            .pattern
            .chars()
            .map(|c| {
                match c {
                    '{' => in_param = true,
                    '}' => in_param = false,
                    _ => {}
                }
                if in_param {
                    c
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
    }
    folded
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config;

    const KEY_A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    /// What `check-config` runs: the config, then the files it names.
    fn load(path: &Path) -> Result<Config, ConfigError> {
        let c = config::read(path, &HashMap::new())?;
        check_files(&c)?;
        Ok(c)
    }

    #[test]
    fn files_named_by_the_tenuo_section_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = dir.path().join("gateway.yaml");
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "tenuo:\n  trusted_issuers: [{KEY_A}]\n  gateway_config: {}\n",
                gateway.display()
            ),
        )
        .unwrap();
        let missing = load(&config).unwrap_err().to_string();
        assert!(
            missing.contains("tenuo.gateway_config") && missing.contains("cannot read"),
            "{missing}"
        );
        std::fs::write(
            &gateway,
            "version: '1'\nsettings: {}\ntools: {}\nroutes:\n  - {pattern: /x, tool: nope}\n",
        )
        .unwrap();
        let undefined = load(&config).unwrap_err().to_string();
        assert!(undefined.contains("tenuo.gateway_config"), "{undefined}");
        std::fs::write(
            &gateway,
            "version: '1'\nsettings: {}\ntools: {}\nroutes: []\nextra: 1\n",
        )
        .unwrap();
        assert!(load(&config).is_err(), "unknown gateway keys are refused");
        std::fs::write(
            &gateway,
            "version: '1'\nsettings: {}\ntools:\n  t: {description: d, constraints: {}}\nroutes:\n  - {pattern: /x, tool: t}\n",
        )
        .unwrap();
        load(&config).unwrap();
    }
}
