//! The decision cache that makes a repeated credential cost microseconds.
//!
//! What a key must include: the credential bytes (hashed with a keyed
//! 128-bit SipHash, random per process, so keys cannot be forged or collide)
//! and the key-set generation, which changes whenever a published signing
//! key disappears or changes — so a revoked key stops admitting its cached
//! tokens at once. Route rules are not in the key: they run per request.
//!
//! Entry lifetime: positive entries live until `min(now + max_ttl, exp)`;
//! negative entries (stable denials only, see `Deny::is_stable`) live
//! `negative_ttl`, in their own smaller cache so a flood of garbage cannot
//! evict good identities. Each entry carries its end, judged against the
//! Check's `now` on every hit: moka's own expiry (in real time) only frees
//! the memory.
//!
//! Memory: every cache in portcullis is bounded in bytes, not entries. Each
//! entry weighs `ENTRY_OVERHEAD` (moka's own bookkeeping, measured) plus
//! its key and its value's heap, so a cache's weighted size is an estimate
//! of the memory it holds and `max_capacity` is a byte budget.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::sync::Cache;
use moka::Expiry;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::clock;
use crate::config::CacheConfig;
use crate::deny::Deny;
use crate::identity::Identity;

pub type Key = u128;

/// Separates API keys' cache keys from bearer tokens' (see [`DecisionCache::api_key`]).
const API_KEY_DOMAIN: u64 = 0x6170_695f_6b65_7973; // "api_keys"

/// moka's hasher for keys that already are keyed 128-bit SipHash outputs
/// (the decision cache's and the warrant caches'): hashing them again with
/// moka's default SipHash costs every lookup for nothing. The two halves,
/// folded, are as uniform and as unpredictable as the key itself, so a
/// client still cannot aim entries at one bucket without the secret key.
pub type MacKeyHasher = BuildHasherDefault<FoldMac>;

#[derive(Debug, Default, Clone, Copy)]
pub struct FoldMac(u64);

impl Hasher for FoldMac {
    fn write_u128(&mut self, key: u128) {
        // Truncation on purpose: both halves are folded in.
        self.0 ^= (key as u64) ^ ((key >> 64) as u64);
    }

    /// Not reached for `u128` keys (they hash with `write_u128`); kept
    /// correct for any input all the same.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone)]
pub enum Cached {
    Allowed(Arc<Identity>),
    Denied(Deny),
}

#[derive(Clone)]
pub struct DecisionCache {
    positive: Cache<Key, Entry<Arc<Identity>>, MacKeyHasher>,
    negative: Cache<Key, Entry<Deny>, MacKeyHasher>,
    keys: (u64, u64),
    max_ttl: Duration,
    negative_ttl: Duration,
}

/// A cached answer and the instant it stops being one.
#[derive(Clone)]
struct Entry<T> {
    until: SystemTime,
    value: T,
}

struct UntilExpiry {
    max_ttl: Duration,
}

// === impl DecisionCache ===

impl DecisionCache {
    /// `max_bytes` is shared: nine tenths for identities, one tenth for
    /// denials. `max_entries` still bounds the count (older configs).
    pub fn new(cfg: &CacheConfig) -> Self {
        let positive_bytes = cfg.max_bytes - cfg.max_bytes / 10;
        let positive = Cache::builder()
            .weigher(|_: &Key, e: &Entry<Arc<Identity>>| weight(KEY_BYTES + UNTIL_BYTES + identity_bytes(&e.value)))
            .max_capacity(capacity(
                positive_bytes,
                cfg.max_entries,
                KEY_BYTES + IDENTITY_MIN_BYTES,
            ))
            .expire_after(UntilExpiry { max_ttl: cfg.max_ttl })
            .build_with_hasher(MacKeyHasher::default());
        let negative = Cache::builder()
            .weigher(|_: &Key, _: &Entry<Deny>| weight(DENY_BYTES))
            .max_capacity(capacity(
                cfg.max_bytes / 10,
                (cfg.max_entries / 10).max(1000),
                DENY_BYTES,
            ))
            .time_to_live(cfg.negative_ttl.max(Duration::from_millis(1)))
            .build_with_hasher(MacKeyHasher::default());
        Self {
            positive,
            negative,
            keys: (rand::random(), rand::random()),
            max_ttl: cfg.max_ttl,
            negative_ttl: cfg.negative_ttl,
        }
    }

    pub fn key(&self, generation: u64, credential: &[u8]) -> Key {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write_u64(generation);
        h.write(credential);
        h.finish128().as_u128()
    }

    /// The key of an API key's decision: a SipHash under other keys than
    /// [`key`](Self::key)'s, so an API key and a bearer token of the same
    /// bytes never share an entry; `generation` is the key set's.
    pub fn api_key(&self, generation: u64, credential: &[u8]) -> Key {
        let mut h = SipHasher13::new_with_keys(self.keys.0 ^ API_KEY_DOMAIN, self.keys.1);
        h.write_u64(generation);
        h.write(credential);
        h.finish128().as_u128()
    }

    /// A hit is re-checked against the clock: moka's expiry is lazy.
    pub fn get(&self, key: &Key, now: SystemTime) -> Option<Cached> {
        if let Some(e) = self.positive.get(key) {
            if now < e.until {
                return Some(Cached::Allowed(e.value));
            }
            self.positive.invalidate(key);
        }
        match self.negative.get(key) {
            Some(e) if now < e.until => Some(Cached::Denied(e.value)),
            Some(_) => {
                self.negative.invalidate(key);
                None
            }
            None => None,
        }
    }

    /// Caches a verifier's answer given at `now`.
    pub fn insert(&self, key: Key, result: &Result<Arc<Identity>, Deny>, now: SystemTime) {
        match result {
            Ok(id) => {
                let until = id.expires_at.min(now + self.max_ttl);
                if now < until {
                    let value = Arc::clone(id);
                    self.positive.insert(key, Entry { until, value });
                }
            }
            Err(d) if self.negative_ttl > Duration::ZERO && d.is_stable() => {
                let until = now + self.negative_ttl;
                self.negative.insert(
                    key,
                    Entry {
                        until,
                        value: d.clone(),
                    },
                );
            }
            Err(_) => {}
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.positive.entry_count()
    }

    /// Estimated bytes held by both caches (after `sync`, exact for moka).
    pub fn weighted_size(&self) -> u64 {
        self.positive.weighted_size() + self.negative.weighted_size()
    }

    /// Runs pending evictions; for tests and memory reports.
    pub fn sync(&self) {
        self.positive.run_pending_tasks();
        self.negative.run_pending_tasks();
    }
}

/// moka's bookkeeping per entry (its node, deque links, hash-table slot and
/// timer-wheel entry) plus allocator slack, calibrated with `cargo run --release
/// --example cache_rss`: RSS growth per cached identity (≈ 575 B) minus the
/// key and value bytes weighed below (≈ 200 B).
pub const ENTRY_OVERHEAD: usize = 384;
const KEY_BYTES: usize = std::mem::size_of::<Key>();
/// Each entry's end (`Entry::until`).
const UNTIL_BYTES: usize = std::mem::size_of::<SystemTime>();
const DENY_BYTES: usize = KEY_BYTES + UNTIL_BYTES + std::mem::size_of::<Deny>();
/// An `Arc<Identity>` with empty strings: the lightest positive entry.
const IDENTITY_MIN_BYTES: usize = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Identity>();

/// An entry's weight: its bytes plus moka's overhead, saturating.
pub fn weight(bytes: usize) -> u32 {
    u32::try_from(ENTRY_OVERHEAD.saturating_add(bytes)).unwrap_or(u32::MAX)
}

/// A byte capacity that also holds at most `max_entries` entries when no
/// entry weighs less than `weight(min_bytes)`.
pub fn capacity(max_bytes: u64, max_entries: u64, min_bytes: usize) -> u64 {
    max_bytes.min(max_entries.saturating_mul(u64::from(weight(min_bytes))))
}

/// Heap bytes of a shared identity: the `Arc` block and its strings (the
/// issuer is shared by every identity of a provider, so not counted).
pub fn identity_bytes(id: &Identity) -> usize {
    let groups: usize = id.groups().map(|g| g.len() + 1).sum();
    IDENTITY_MIN_BYTES + id.subject.len() + id.user.len() + id.email.as_ref().map_or(0, |e| e.len()) + groups
}

/// Frees an entry's memory once its end has passed in real time (moka's
/// timers run on the real clock; `get` judges hits by the Check's `now`).
impl Expiry<Key, Entry<Arc<Identity>>> for UntilExpiry {
    fn expire_after_create(&self, _: &Key, e: &Entry<Arc<Identity>>, _: Instant) -> Option<Duration> {
        let left = e.until.duration_since(clock::system_now()).unwrap_or(Duration::ZERO);
        Some(left.min(self.max_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(negative_ttl: u64) -> DecisionCache {
        DecisionCache::new(&CacheConfig {
            max_entries: 100,
            max_bytes: 1 << 20,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(negative_ttl),
        })
    }

    fn big_identity(i: usize) -> Arc<Identity> {
        let groups: Vec<String> = (0..50).map(|g| format!("group-{g:04}-{}", "x".repeat(20))).collect();
        let id = Identity::test(&format!("user-{i}-{}", "y".repeat(500))).with_groups(&groups);
        Arc::new(id)
    }

    #[test]
    fn cache_stays_within_its_byte_budget() {
        let budget: u64 = 256 * 1024;
        let c = DecisionCache::new(&CacheConfig {
            max_entries: 1_000_000,
            max_bytes: budget,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
        });
        let one = weight(KEY_BYTES + UNTIL_BYTES + identity_bytes(&big_identity(0)));
        let now = clock::system_now();
        assert!(one > 2000, "a large identity weighs its strings: {one}");
        for i in 0usize..2_000 {
            c.insert(c.key(0, &i.to_le_bytes()), &Ok(big_identity(i)), now);
            c.insert(c.key(1, &i.to_le_bytes()), &Err(Deny::InvalidSignature), now);
        }
        c.sync();
        let (pos, neg) = (c.positive.weighted_size(), c.negative.weighted_size());
        assert!(pos <= budget - budget / 10, "positive {pos} B");
        assert!(neg <= budget / 10, "negative {neg} B");
        assert!(pos > budget / 2, "the budget is used, not wasted: {pos} B");
        assert!(c.entry_count() < 2_000 && c.entry_count() * u64::from(one) <= budget);
    }

    #[test]
    fn max_entries_still_bounds_the_count() {
        let c = DecisionCache::new(&CacheConfig {
            max_entries: 50,
            max_bytes: 64 << 20,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
        });
        for i in 0u32..500 {
            c.insert(
                c.key(0, &i.to_le_bytes()),
                &Ok(Arc::new(Identity::test("a"))),
                clock::system_now(),
            );
        }
        c.sync();
        assert!(c.entry_count() <= 50, "{}", c.entry_count());
        assert!(c.entry_count() >= 40, "{}", c.entry_count());
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
    fn moka_hashes_a_key_by_folding_its_halves() {
        use std::hash::BuildHasher;
        let k: Key = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        assert_eq!(
            MacKeyHasher::default().hash_one(k),
            0x0123_4567_89ab_cdef ^ 0xfedc_ba98_7654_3210
        );
    }

    /// Seconds from the start of the test. The start is the real time:
    /// moka frees entries by real time, so a test clock must not run behind it.
    fn at(secs: u64) -> SystemTime {
        static START: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
        *START.get_or_init(clock::system_now) + Duration::from_secs(secs)
    }

    fn identity_until(exp: SystemTime) -> Arc<Identity> {
        let mut id = Identity::test("alice");
        id.expires_at = exp;
        Arc::new(id)
    }

    #[test]
    fn an_identity_is_served_until_its_expiry_and_not_an_instant_longer() {
        let c = cache();
        let k = c.key(0, b"t");
        c.insert(k, &Ok(identity_until(at(30))), at(0));
        assert!(matches!(c.get(&k, at(0)), Some(Cached::Allowed(_))));
        assert!(matches!(
            c.get(&k, at(30) - Duration::from_millis(1)),
            Some(Cached::Allowed(_))
        ));
        assert!(c.get(&k, at(30)).is_none(), "expired at exp");
        assert!(
            c.get(&k, at(0)).is_none(),
            "an expired hit is dropped, not kept for later"
        );
    }

    #[test]
    fn max_ttl_bounds_a_long_lived_identity() {
        let c = cache(); // max_ttl 60 s
        let k = c.key(0, b"t");
        c.insert(k, &Ok(identity_until(at(3600))), at(0));
        assert!(matches!(c.get(&k, at(59)), Some(Cached::Allowed(_))));
        assert!(c.get(&k, at(60)).is_none());
    }

    #[test]
    fn an_identity_already_expired_is_not_cached() {
        let c = cache();
        let k = c.key(0, b"t");
        c.insert(k, &Ok(identity_until(at(10))), at(10));
        assert!(c.get(&k, at(0)).is_none());
    }

    #[test]
    fn only_stable_denials_are_cached_and_for_negative_ttl() {
        let c = cache(); // negative_ttl 10 s
        c.insert(1, &Err(Deny::InvalidSignature), at(0));
        c.insert(2, &Err(Deny::UnknownKey), at(0));
        assert!(matches!(c.get(&1, at(9)), Some(Cached::Denied(Deny::InvalidSignature))));
        assert!(c.get(&1, at(10)).is_none());
        assert!(c.get(&2, at(0)).is_none());
        let off = cache_with(0);
        off.insert(3, &Err(Deny::TokenExpired), at(0));
        assert!(off.get(&3, at(0)).is_none());
    }
}
