//! The decision cache that makes a repeated credential cost microseconds.
//!
//! What a key must include: the credential bytes (hashed with a keyed
//! 128-bit SipHash, random per process, so keys cannot be forged or collide)
//! and the key-set generation, which changes whenever a published signing
//! key disappears or changes — so a revoked key stops admitting its cached
//! tokens at once. Route rules are not in the key: they run per request.
//!
//! Entry lifetime: positive entries live until `min(max_ttl, exp - now)`;
//! negative entries (stable denials only, see `Deny::is_stable`) live
//! `negative_ttl`, in their own smaller cache so a flood of garbage cannot
//! evict good identities.

use std::hash::Hasher;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::sync::Cache;
use moka::Expiry;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::config::CacheConfig;
use crate::deny::Deny;
use crate::identity::Identity;

pub type Key = u128;

#[derive(Debug, Clone)]
pub enum Cached {
    Allowed(Arc<Identity>),
    Denied(Deny),
}

#[derive(Clone)]
pub struct DecisionCache {
    positive: Cache<Key, Arc<Identity>>,
    negative: Cache<Key, Deny>,
    keys: (u64, u64),
    negative_enabled: bool,
}

struct UntilExpiry {
    max_ttl: Duration,
}

// === impl DecisionCache ===

impl DecisionCache {
    pub fn new(cfg: &CacheConfig) -> Self {
        let positive = Cache::builder()
            .max_capacity(cfg.max_entries)
            .expire_after(UntilExpiry { max_ttl: cfg.max_ttl })
            .build();
        let negative = Cache::builder()
            .max_capacity((cfg.max_entries / 10).max(1000))
            .time_to_live(cfg.negative_ttl.max(Duration::from_millis(1)))
            .build();
        Self {
            positive,
            negative,
            keys: (rand::random(), rand::random()),
            negative_enabled: cfg.negative_ttl > Duration::ZERO,
        }
    }

    pub fn key(&self, generation: u64, credential: &[u8]) -> Key {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write_u64(generation);
        h.write(credential);
        h.finish128().as_u128()
    }

    /// A hit is re-checked against the clock: moka's expiry is lazy.
    pub fn get(&self, key: &Key, now: SystemTime) -> Option<Cached> {
        if let Some(id) = self.positive.get(key) {
            if !id.is_expired(now) {
                return Some(Cached::Allowed(id));
            }
            self.positive.invalidate(key);
        }
        self.negative.get(key).map(Cached::Denied)
    }

    pub fn insert(&self, key: Key, result: &Result<Arc<Identity>, Deny>) {
        match result {
            Ok(id) => {
                if !id.is_expired(SystemTime::now()) {
                    self.positive.insert(key, Arc::clone(id));
                }
            }
            Err(d) if self.negative_enabled && d.is_stable() => self.negative.insert(key, d.clone()),
            Err(_) => {}
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.positive.entry_count()
    }

    /// Runs pending evictions; for tests and memory reports.
    pub fn sync(&self) {
        self.positive.run_pending_tasks();
        self.negative.run_pending_tasks();
    }
}

impl Expiry<Key, Arc<Identity>> for UntilExpiry {
    fn expire_after_create(&self, _: &Key, id: &Arc<Identity>, _: Instant) -> Option<Duration> {
        let left = id
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Some(left.min(self.max_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(negative_ttl: u64) -> DecisionCache {
        DecisionCache::new(&CacheConfig {
            max_entries: 100,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(negative_ttl),
        })
    }

    fn cache() -> DecisionCache {
        cache_with(10)
    }

    #[test]
    fn key_depends_on_credential_and_generation() {
        let c = cache();
        assert_eq!(c.key(1, b"tok"), c.key(1, b"tok"));
        assert_ne!(c.key(1, b"tok"), c.key(2, b"tok"));
        assert_ne!(c.key(1, b"tok"), c.key(1, b"tok2"));
        assert_ne!(cache().key(1, b"tok"), c.key(1, b"tok"), "keys are random per process");
    }

    #[test]
    fn expired_identity_is_never_returned() {
        let c = cache();
        let mut id = Identity::test("alice");
        id.expires_at = SystemTime::now() + Duration::from_secs(2);
        let k = c.key(0, b"t");
        c.insert(k, &Ok(Arc::new(id)));
        assert!(matches!(c.get(&k, SystemTime::now()), Some(Cached::Allowed(_))));
        let later = SystemTime::now() + Duration::from_secs(3);
        assert!(c.get(&k, later).is_none());
    }

    #[test]
    fn only_stable_denials_are_cached() {
        let c = cache();
        c.insert(1, &Err(Deny::InvalidSignature));
        c.insert(2, &Err(Deny::UnknownKey));
        assert!(matches!(
            c.get(&1, SystemTime::now()),
            Some(Cached::Denied(Deny::InvalidSignature))
        ));
        assert!(c.get(&2, SystemTime::now()).is_none());
        let off = cache_with(0);
        off.insert(3, &Err(Deny::TokenExpired));
        assert!(off.get(&3, SystemTime::now()).is_none());
    }
}
