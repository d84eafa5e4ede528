//! JSON logs and Prometheus metrics. Every label value is bounded: reasons
//! come from `Deny::reason`, issuers from the config.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::identity::Source;

/// Environment variable with a tracing filter (e.g. `info`, `portcullis=debug`).
pub const ENV_LOG: &str = "PORTCULLIS_LOG";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResultLabels {
    issuer: String,
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    allow: Family<SourceLabels, Counter>,
    deny: Family<ReasonLabels, Counter>,
    duration: Histogram,
    cache: Family<ResultLabels, Counter>,
    cache_entries: Gauge,
    jwks_refresh: Family<IssuerResultLabels, Counter>,
    jwks_keys: Family<IssuerLabels, Gauge>,
    jwks_last_success: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    session_redirects: Counter,
}

/// Cache lookup outcome, for `portcullis_cache_lookups_total{result}`.
#[derive(Debug, Clone, Copy)]
pub enum CacheResult {
    Hit,
    NegativeHit,
    Miss,
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let allow = Family::<SourceLabels, Counter>::default();
        let deny = Family::<ReasonLabels, Counter>::default();
        // 5 µs … ~1.3 s: cache hits land in the first buckets, JWKS refetches in the last.
        let duration = Histogram::new(exponential_buckets(0.000_005, 2.5, 14));
        let cache = Family::<ResultLabels, Counter>::default();
        let cache_entries = Gauge::default();
        let jwks_refresh = Family::<IssuerResultLabels, Counter>::default();
        let jwks_keys = Family::<IssuerLabels, Gauge>::default();
        let jwks_last_success = Family::<IssuerLabels, Gauge<f64, AtomicU64>>::default();
        let session_redirects = Counter::default();
        registry.register(
            "session_redirects",
            "Browser redirects answered by portcullis (login, callback, logout)",
            session_redirects.clone(),
        );
        registry.register(
            "authz_allow",
            "Checks that allowed the request, by credential source",
            allow.clone(),
        );
        registry.register("authz_deny", "Checks that denied the request, by reason", deny.clone());
        registry.register("check_duration_seconds", "Time to decide one Check", duration.clone());
        registry.register(
            "cache_lookups",
            "Decision cache lookups by result (hit, negative_hit, miss)",
            cache.clone(),
        );
        registry.register(
            "cache_entries",
            "Identities in the decision cache",
            cache_entries.clone(),
        );
        registry.register(
            "jwks_refresh",
            "JWKS fetches by issuer and result (success, failure)",
            jwks_refresh.clone(),
        );
        registry.register("jwks_keys", "Usable signing keys per issuer", jwks_keys.clone());
        registry.register(
            "jwks_last_success_timestamp_seconds",
            "Unix time of the last successful JWKS fetch per issuer",
            jwks_last_success.clone(),
        );
        Self {
            registry,
            allow,
            deny,
            duration,
            cache,
            cache_entries,
            jwks_refresh,
            jwks_keys,
            jwks_last_success,
            session_redirects,
        }
    }

    pub fn allowed(&self, source: Source, seconds: f64) {
        let source = match source {
            Source::OidcUser => "oidc_user",
            Source::OidcClient => "oidc_client",
            Source::Session => "session",
        };
        self.allow.get_or_create(&SourceLabels { source }).inc();
        self.duration.observe(seconds);
    }

    pub fn denied(&self, reason: &'static str, seconds: f64) {
        self.deny.get_or_create(&ReasonLabels { reason }).inc();
        self.duration.observe(seconds);
    }

    /// A login, callback or logout redirect.
    pub fn redirected(&self, seconds: f64) {
        self.session_redirects.inc();
        self.duration.observe(seconds);
    }

    pub fn cache_lookup(&self, r: CacheResult) {
        let result = match r {
            CacheResult::Hit => "hit",
            CacheResult::NegativeHit => "negative_hit",
            CacheResult::Miss => "miss",
        };
        self.cache.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn jwks_refreshed(&self, issuer: &str, ok: bool, now_unix: f64) {
        let result = if ok { "success" } else { "failure" };
        self.jwks_refresh
            .get_or_create(&IssuerResultLabels {
                issuer: issuer.to_string(),
                result,
            })
            .inc();
        if ok {
            self.jwks_last_success
                .get_or_create(&IssuerLabels {
                    issuer: issuer.to_string(),
                })
                .set(now_unix);
        }
    }

    pub fn jwks_keys(&self, issuer: &str, n: usize) {
        self.jwks_keys
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Prometheus text exposition; `cache_entries` is sampled at scrape time.
    pub fn render(&self, cache_entries: u64) -> String {
        self.cache_entries.set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// JSON lines on stdout; the filter comes from `PORTCULLIS_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(ENV_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(false)
        .with_env_filter(filter)
        .init();
}
