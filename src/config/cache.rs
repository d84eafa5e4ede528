//! The `cache:` section: the identity cache and the negative cache
//! (`cache.rs` builds them from [`CacheConfig`]).

use std::time::Duration;

use serde::Deserialize;

use super::Errors;

/// Smallest byte budget a cache accepts: a few hundred entries. The warrant
/// caches (`tenuo.cache_max_bytes`) have the same floor.
pub(super) const MIN_CACHE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCache {
    pub max_entries: u64,
    /// Byte budget of the decision cache (negative cache included).
    pub max_bytes: u64,
    pub max_ttl_seconds: u64,
    pub negative_ttl_seconds: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 32 << 20,
            max_ttl_seconds: 60,
            negative_ttl_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub max_bytes: u64,
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
}

pub(super) fn validate(c: &RawCache, errs: &mut Errors) -> CacheConfig {
    if c.max_ttl_seconds > 86_400 {
        errs.push("cache.max_ttl_seconds", "must be at most 86400");
    }
    if c.max_entries == 0 {
        errs.push("cache.max_entries", "must be at least 1");
    }
    if c.max_bytes < MIN_CACHE_BYTES {
        errs.push("cache.max_bytes", format!("must be at least {MIN_CACHE_BYTES}"));
    }
    if c.max_ttl_seconds == 0 {
        errs.push(
            "cache.max_ttl_seconds",
            "must be at least 1 (the cache is what makes repeats fast)",
        );
    }
    if c.negative_ttl_seconds > c.max_ttl_seconds {
        errs.push("cache.negative_ttl_seconds", "must not exceed cache.max_ttl_seconds");
    }
    CacheConfig {
        max_entries: c.max_entries,
        max_bytes: c.max_bytes,
        max_ttl: Duration::from_secs(c.max_ttl_seconds),
        negative_ttl: Duration::from_secs(c.negative_ttl_seconds),
    }
}
