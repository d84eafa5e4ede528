//! API keys of machine clients: `pk_<id>_<secret>`, checked against a file
//! of SHA-256 hashes (`api_keys.file`) that is re-read every reload
//! interval and on SIGHUP.
//!
//! The id in the key finds its entry without scanning; the hash of the
//! whole presented key is then compared with the stored one in constant
//! time, so neither the lookup nor the comparison says how much of a
//! secret was right. The raw key is never logged, never a metric label,
//! and never a cache key (the decision cache keys it with a keyed hash).
//! Each installed key set has a new generation, which is part of every
//! cache key: a reload that removes or changes a key drops every decision
//! cached under the old set at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{ApiKeysConfig, Config, ConfigError, FieldError};
use crate::deny::Deny;
use crate::identity::{Identity, Source};
use crate::policy::API_KEYS_PROVIDER;
use crate::telemetry::Metrics;
use crate::verify::oidc::constant_time_eq;

/// Keys start with this, so a leaked one is recognisable (secret scanners).
pub const PREFIX: &str = "pk_";
const MAX_ID: usize = 32;
const MIN_SECRET: usize = 32;
/// Longer than any key we issue; bounds the hashing a client can ask for.
const MAX_KEY: usize = 256;

/// The issuer header of an API key's identity (no OIDC issuer vouches for it).
const ISSUER: &str = "portcullis:api-keys";
/// 3000-01-01T00:00:00Z: the latest `expires_at` a key may have.
const LATEST_EXPIRY: u64 = 32_503_680_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("api_keys.file: cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("api_keys.file: {path}: {message}")]
    Invalid { path: String, message: String },
}

/// `portcullis hash-api-key` was given something that is not a key.
#[derive(Debug, thiserror::Error)]
#[error("not an API key: expected pk_<id>_<secret>, id 1-32 of a-z 0-9 -, secret 32+ base64url characters")]
pub struct NotAKey;

/// The file: `keys: {<id>: {sha256, user, groups, expires_at}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    keys: HashMap<String, RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    /// Hex SHA-256 of the whole key (`pk_<id>_<secret>`).
    sha256: String,
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    expires_at: Option<When>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum When {
    Unix(u64),
    Rfc3339(String),
}

struct Entry {
    hash: [u8; 32],
    /// Built once per load; a verified key shares it.
    identity: Identity,
    expires_at: Option<SystemTime>,
}

/// One loaded file.
pub struct KeySet {
    keys: HashMap<Arc<str>, Entry>,
    generation: u64,
    /// Hash of the file's bytes: an unchanged file is not installed again.
    fingerprint: [u8; 32],
    /// How long a decision on a key without expiry may be cached: the reload interval.
    fallback: Duration,
}

impl KeySet {
    fn parse(text: &str, path: &Path, generation: u64, fallback: Duration) -> Result<Self, LoadError> {
        let invalid = |message: String| LoadError::Invalid {
            path: path.display().to_string(),
            message,
        };
        // YAML is a superset of JSON: one parser reads both.
        let raw: RawFile = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut keys = HashMap::with_capacity(raw.keys.len());
        for (id, k) in raw.keys {
            if !is_id(&id) {
                return Err(invalid(format!("keys.{id}: an id is 1 to {MAX_ID} of a-z, 0-9 and -")));
            }
            let hash = hex::decode(k.sha256.trim())
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| invalid(format!("keys.{id}.sha256: must be 64 hex digits")))?;
            if k.user.is_empty() || k.user.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "keys.{id}.user: must be non-empty, without control characters"
                )));
            }
            if k.groups
                .iter()
                .any(|g| g.is_empty() || g.contains(',') || g.chars().any(char::is_control))
            {
                return Err(invalid(format!(
                    "keys.{id}.groups: names must be non-empty, without ',' or control characters"
                )));
            }
            let expires_at = match k.expires_at {
                None => None,
                Some(When::Unix(s)) => Some(s),
                Some(When::Rfc3339(s)) => Some(
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .ok()
                        .and_then(|t| u64::try_from(t.timestamp()).ok())
                        .ok_or_else(|| invalid(format!("keys.{id}.expires_at: not RFC 3339 or unix seconds")))?,
                ),
            }
            .map(|s| {
                // Past the year 3000 is a mistake (milliseconds taken for
                // seconds would never expire) and would overflow `SystemTime`.
                (s <= LATEST_EXPIRY)
                    .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                    .ok_or_else(|| invalid(format!("keys.{id}.expires_at: after the year 3000 (milliseconds?)")))
            })
            .transpose()?;
            let id: Arc<str> = id.into();
            // Without an expiry the time is set per verification (`verify`).
            let identity = Identity::new(
                Source::ApiKey,
                ISSUER.into(),
                &id,
                &k.user,
                expires_at.unwrap_or(SystemTime::UNIX_EPOCH),
            )
            .with_provider(API_KEYS_PROVIDER.into())
            .with_groups(&k.groups);
            keys.insert(
                id,
                Entry {
                    hash,
                    identity,
                    expires_at,
                },
            );
        }
        Ok(Self {
            keys,
            generation,
            fingerprint: Sha256::digest(text.as_bytes()).into(),
            fallback,
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured id a presented key names, for metric labels (never
    /// an unconfigured one: labels stay bounded by the file).
    pub fn known_id(&self, key: &str) -> Option<&str> {
        let (id, _) = split(key).ok()?;
        self.keys.get_key_value(id).map(|(k, _)| &**k)
    }

    /// The identity `key` proves at `now`.
    pub fn verify(&self, key: &str, now: SystemTime) -> Result<Identity, Deny> {
        let (id, _) = split(key)?;
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let Some(entry) = self.keys.get(id) else {
            return Err(Deny::UnknownApiKey);
        };
        if !constant_time_eq(&presented, &entry.hash) {
            // The same reason as an unknown id: a wrong secret says nothing
            // about whether the id exists.
            return Err(Deny::UnknownApiKey);
        }
        match entry.expires_at {
            Some(at) if now >= at => Err(Deny::ApiKeyExpired),
            Some(_) => Ok(entry.identity.clone()),
            // A key without expiry: a cached decision lives at most a reload
            // interval (the new generation of a reload drops it before that).
            None => {
                let mut identity = entry.identity.clone();
                identity.expires_at = now + self.fallback;
                Ok(identity)
            }
        }
    }
}

/// `pk_<id>_<secret>` → (id, secret), or `invalid_api_key`.
pub fn split(key: &str) -> Result<(&str, &str), Deny> {
    if key.len() > MAX_KEY {
        return Err(Deny::InvalidApiKey);
    }
    let (id, secret) = key
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .ok_or(Deny::InvalidApiKey)?;
    let secret_ok = secret.len() >= MIN_SECRET
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if is_id(id) && secret_ok {
        Ok((id, secret))
    } else {
        Err(Deny::InvalidApiKey)
    }
}

fn is_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The line of the keys file for `key` (`portcullis hash-api-key`).
pub fn file_entry(key: &str, user: &str) -> Result<String, NotAKey> {
    let (id, _) = split(key).map_err(|_| NotAKey)?;
    // A JSON string is a YAML string too, whatever the name holds.
    let user = serde_json::Value::from(user);
    Ok(format!(
        "  {id}: {{sha256: {}, user: {user}, groups: []}}",
        hex::encode(Sha256::digest(key.as_bytes()))
    ))
}

/// Reads and checks the key file a config names, as start-up would, and
/// drops it: a bad file must stop `check-config`, not the first request.
pub fn check_file(config: &Config) -> Result<(), ConfigError> {
    match &config.api_keys {
        Some(k) => read(&k.file, 0, k.reload_interval).map(drop).map_err(|e| {
            ConfigError::Invalid(vec![FieldError {
                path: "api_keys.file".into(),
                message: e.to_string(),
            }])
        }),
        None => Ok(()),
    }
}

/// The key set in use, replaced whole by a reload.
pub struct ApiKeys {
    set: ArcSwap<KeySet>,
    file: PathBuf,
    header: Option<String>,
    reload_interval: Duration,
}

impl ApiKeys {
    /// Reads the file; an unreadable or invalid one stops start-up.
    pub fn load(cfg: &ApiKeysConfig) -> Result<Self, LoadError> {
        let set = read(&cfg.file, 0, cfg.reload_interval)?;
        Ok(Self {
            set: ArcSwap::from_pointee(set),
            file: cfg.file.clone(),
            header: cfg.header.clone(),
            reload_interval: cfg.reload_interval,
        })
    }

    /// The set to verify one request with; its generation goes into the cache key.
    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    /// The configured header that carries a key alone, if any (lower case).
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// Re-reads the file. `Ok(Some(n))`: a changed set of `n` keys was
    /// installed (and every cached decision dropped); `Ok(None)`: the file
    /// is unchanged. An invalid file keeps the set in use.
    pub fn reload(&self) -> Result<Option<usize>, LoadError> {
        let current = self.set.load();
        let next = read(&self.file, current.generation.wrapping_add(1), self.reload_interval)?;
        if next.fingerprint == current.fingerprint {
            return Ok(None);
        }
        let n = next.len();
        self.set.store(Arc::new(next));
        Ok(Some(n))
    }

    /// Runs forever: reloads every interval and on SIGHUP.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(event = "api_keys_reload", error = %e, "cannot listen for SIGHUP; reloading on the timer only");
                None
            }
        };
        let mut last_error = String::new();
        loop {
            let sighup = tokio::select! {
                _ = tokio::time::sleep(self.reload_interval) => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            match self.reload() {
                Ok(Some(keys)) => {
                    tracing::info!(event = "api_keys_reloaded", sighup, keys);
                    metrics.api_keys_reloaded(true);
                    last_error.clear();
                }
                Ok(None) => last_error.clear(),
                Err(error) => {
                    // The error names the file and the entry, never a key
                    // (the file holds only hashes).
                    let error = error.to_string();
                    if error != last_error || sighup {
                        tracing::error!(event = "api_keys_reload_failed", sighup, error = %error, "kept the previous keys");
                        metrics.api_keys_reloaded(false);
                    }
                    last_error = error;
                }
            }
        }
    }
}

fn read(path: &Path, generation: u64, fallback: Duration) -> Result<KeySet, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    KeySet::parse(&text, path, generation, fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "pk_ci-bot_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn file(extra: &str) -> String {
        format!(
            "keys:\n  ci-bot: {{sha256: {}, user: ci, groups: [deployers, bots]}}\n{extra}",
            hex::encode(Sha256::digest(KEY.as_bytes()))
        )
    }

    fn set(text: &str) -> KeySet {
        KeySet::parse(text, Path::new("keys.yaml"), 7, Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn an_expiry_past_the_year_3000_is_a_file_error_not_a_panic() {
        let hash = hex::encode(Sha256::digest(KEY.as_bytes()));
        for at in ["10000000000000000000", "1767225600000", "\"3001-01-01T00:00:00Z\""] {
            let text = format!("keys:\n  ci-bot: {{sha256: {hash}, user: ci, expires_at: {at}}}\n");
            let err = KeySet::parse(&text, Path::new("keys.yaml"), 1, Duration::from_secs(10))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("after the year 3000"), "{at}: {err}");
        }
        let text = format!("keys:\n  ci-bot: {{sha256: {hash}, user: ci, expires_at: 1767225600}}\n");
        assert!(KeySet::parse(&text, Path::new("keys.yaml"), 1, Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn keys_are_split_into_id_and_secret_or_refused() {
        assert_eq!(split(KEY), Ok(("ci-bot", &KEY[10..])));
        let secret = "A".repeat(32);
        assert_eq!(split(&format!("pk_a_{secret}_x-y")).map(|s| s.0), Ok("a"));
        for bad in [
            "",
            "pk_",
            "ci-bot_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &format!("pk__{secret}"),
            &format!("pk_CI_{secret}"),
            &format!("pk_{}_{secret}", "a".repeat(33)),
            "pk_ci_short",
            &format!("pk_ci_{secret}="),
            &format!("pk_ci_{}", "A".repeat(300)),
        ] {
            assert_eq!(split(bad), Err(Deny::InvalidApiKey), "{bad}");
        }
    }

    #[test]
    fn a_key_proves_its_entry_and_nothing_else() {
        let s = set(&file(""));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let id = s.verify(KEY, now).unwrap();
        assert_eq!((id.source, &*id.user, &*id.subject), (Source::ApiKey, "ci", "ci-bot"));
        assert_eq!(&*id.provider, API_KEYS_PROVIDER);
        assert_eq!(id.groups_header(), "deployers,bots");
        // The right id with another secret, and an id not in the file.
        let wrong = KEY.replace("AAAA", "AAAB");
        assert_eq!(s.verify(&wrong, now), Err(Deny::UnknownApiKey));
        let other = KEY.replace("ci-bot", "ci-bob");
        assert_eq!(s.verify(&other, now), Err(Deny::UnknownApiKey));
        assert_eq!(s.verify("pk_ci-bot_x", now), Err(Deny::InvalidApiKey));
        assert_eq!(s.known_id(&wrong), Some("ci-bot"));
        assert_eq!(s.known_id(&other), None);
    }

    #[test]
    fn an_expired_key_is_refused_from_its_expiry_on() {
        let hash = hex::encode(Sha256::digest(KEY.as_bytes()));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
        for when in ["2026-01-01T00:00:00Z", "1767225600", "2026-01-01T01:00:00+01:00"] {
            let s = set(&format!(
                "keys:\n  ci-bot: {{sha256: {hash}, user: ci, expires_at: {when}}}\n"
            ));
            let before = s.verify(KEY, at - Duration::from_secs(1)).unwrap();
            assert_eq!(before.expires_at, at, "{when}: a cached decision ends with the key");
            assert_eq!(s.verify(KEY, at), Err(Deny::ApiKeyExpired), "{when}");
        }
    }

    #[test]
    fn a_bad_file_is_refused_with_the_entry_it_concerns() {
        let parse = |t: &str| {
            KeySet::parse(t, Path::new("k.yaml"), 0, Duration::from_secs(1))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(parse("keys:\n  Bad: {sha256: aa, user: u}\n").contains("keys.Bad: an id is"));
        assert!(parse("keys:\n  a: {sha256: aa, user: u}\n").contains("keys.a.sha256"));
        let hash = "0".repeat(64);
        assert!(
            parse(&format!("keys:\n  a: {{sha256: {hash}, user: u, groups: [\"x,y\"]}}\n")).contains("keys.a.groups")
        );
        assert!(
            parse(&format!("keys:\n  a: {{sha256: {hash}, user: u, expires_at: soon}}\n"))
                .contains("keys.a.expires_at")
        );
        assert!(parse(&format!("keys:\n  a: {{sha256: {hash}, user: u, extra: 1}}\n")).contains("k.yaml"));
        // JSON is read too.
        let json = format!("{{\"keys\": {{\"a\": {{\"sha256\": \"{hash}\", \"user\": \"u\"}}}}}}");
        assert_eq!(parse(&json), "");
    }

    #[test]
    fn a_reload_installs_a_changed_file_under_a_new_generation_and_keeps_the_old_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, file("")).unwrap();
        let cfg = ApiKeysConfig {
            file: path.clone(),
            header: None,
            reload_interval: Duration::from_secs(5),
        };
        let keys = ApiKeys::load(&cfg).unwrap();
        let g0 = keys.current().generation();
        assert_eq!(keys.reload().unwrap(), None, "unchanged");
        assert_eq!(keys.current().generation(), g0);
        std::fs::write(&path, "keys: [broken").unwrap();
        assert!(keys.reload().is_err());
        assert_eq!(keys.current().len(), 1, "the old set stays");
        std::fs::write(&path, "keys: {}\n").unwrap();
        assert_eq!(keys.reload().unwrap(), Some(0));
        assert_ne!(keys.current().generation(), g0);
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(keys.current().verify(KEY, now), Err(Deny::UnknownApiKey));
    }

    #[test]
    fn the_file_entry_hashes_the_whole_key() {
        let line = file_entry(KEY, "ci").unwrap();
        assert!(line.starts_with("  ci-bot: {sha256: "), "{line}");
        let s = set(&format!("keys:\n{line}\n"));
        assert_eq!(&*s.verify(KEY, SystemTime::UNIX_EPOCH).unwrap().user, "ci");
        assert!(!line.contains(&KEY[10..]), "the secret is not in the file");
    }
}
