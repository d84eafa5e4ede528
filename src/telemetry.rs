//! JSON logs and Prometheus metrics. Every label value is bounded: reasons
//! come from `Deny::reason`, issuers from the config.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

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
struct ToolResultLabels {
    result: &'static str,
    tool: Arc<str>,
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
    tenuo_authz: Family<ToolResultLabels, Counter>,
    tenuo_duration: Histogram,
    tenuo_ttl: Histogram,
    tenuo_reloads: Family<ResultLabels, Counter>,
    tenuo_issuers: Gauge,
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
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("portcullis");
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
        let tenuo_reloads = Family::<ResultLabels, Counter>::default();
        let tenuo_issuers = Gauge::default();
        registry.register(
            "tenuo_reloads",
            "Reloads of the Tenuo trust set (issuers, gateway config, revocation list) by result",
            tenuo_reloads.clone(),
        );
        registry.register(
            "tenuo_trusted_issuers",
            "Trusted Tenuo issuer keys in use",
            tenuo_issuers.clone(),
        );
        // Tenuo's own metric names (its Kubernetes guide), unprefixed, so its dashboards work.
        let tenuo_authz = Family::<ToolResultLabels, Counter>::default();
        let tenuo_duration = Histogram::new(exponential_buckets(0.000_001, 2.5, 14));
        let tenuo_ttl = Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86_400.0]);
        root.register(
            "tenuo_authz",
            "Warrant decisions by result (allow, deny) and tool",
            tenuo_authz.clone(),
        );
        root.register(
            "tenuo_authz_duration_seconds",
            "Time to decide one warrant request",
            tenuo_duration.clone(),
        );
        root.register(
            "tenuo_warrant_ttl_remaining_seconds",
            "Seconds until the warrant chain expires, at each allowed request",
            tenuo_ttl.clone(),
        );
        Self {
            registry: root,
            tenuo_authz,
            tenuo_duration,
            tenuo_ttl,
            tenuo_reloads,
            tenuo_issuers,
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

    /// `source`: the identity's kind, with `+tenuo` when a warrant was verified too.
    pub fn allowed(&self, identity: Option<Source>, warrant: bool, seconds: f64) {
        let source = match (identity, warrant) {
            (Some(Source::OidcUser), false) => "oidc_user",
            (Some(Source::OidcClient), false) => "oidc_client",
            (Some(Source::Session), false) => "session",
            (Some(Source::OidcUser), true) => "oidc_user+tenuo",
            (Some(Source::OidcClient), true) => "oidc_client+tenuo",
            (Some(Source::Session), true) => "session+tenuo",
            (None, _) => "tenuo",
        };
        self.allow.get_or_create(&SourceLabels { source }).inc();
        self.duration.observe(seconds);
    }

    pub fn denied(&self, reason: &'static str, seconds: f64) {
        self.deny.get_or_create(&ReasonLabels { reason }).inc();
        self.duration.observe(seconds);
    }

    /// One warrant decision; `tool` is from the gateway config (bounded), `None` before a route matched.
    pub fn warrant_checked(&self, allowed: bool, tool: Option<&Arc<str>>, seconds: f64, ttl_remaining: Option<i64>) {
        let result = if allowed { "allow" } else { "deny" };
        // An Arc clone, not a String: this runs on every warrant request.
        let tool = tool.cloned().unwrap_or_else(|| Arc::from(""));
        self.tenuo_authz.get_or_create(&ToolResultLabels { result, tool }).inc();
        self.tenuo_duration.observe(seconds);
        if let Some(ttl) = ttl_remaining {
            self.tenuo_ttl.observe(ttl as f64);
        }
    }

    pub fn tenuo_reloaded(&self, ok: bool, issuers: Option<usize>) {
        let result = if ok { "success" } else { "failure" };
        self.tenuo_reloads.get_or_create(&ResultLabels { result }).inc();
        if let Some(n) = issuers {
            self.tenuo_issuers.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
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
