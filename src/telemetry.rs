//! JSON logs and Prometheus metrics. Every label value is bounded: reasons
//! come from `Deny::reason`, issuers from the config.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

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
struct KeyResultLabels {
    key_id: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

/// A configured provider's name (bounded by the config).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
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
    api_key_checks: Family<KeyResultLabels, Counter>,
    api_key_reloads: Family<ResultLabels, Counter>,
    session_redirects: Counter,
    trace_exports: Family<ResultLabels, Counter>,
    trace_export_spans: Family<ResultLabels, Counter>,
    groups_dropped: Family<ProviderLabels, Counter>,
    /// Handles on `allow`'s and `cache`'s counters, taken from the family at
    /// first use (so a series still appears only once it has counted): a
    /// hit then costs one atomic add, not the family's lock and label hash.
    allow_by_source: [OnceLock<Counter>; SOURCES.len()],
    cache_by_result: [OnceLock<Counter>; CACHE_RESULTS.len()],
}

/// What admitted a request, as `authz_allow`'s `source` label (and a
/// Check span's `portcullis.source`) names it.
pub fn source_label(identity: Option<Source>, warrant: bool) -> &'static str {
    SOURCES[source_index(identity, warrant)]
}

fn source_index(identity: Option<Source>, warrant: bool) -> usize {
    match (identity, warrant) {
        (Some(Source::OidcUser), false) => 0,
        (Some(Source::OidcClient), false) => 1,
        (Some(Source::Session), false) => 2,
        (Some(Source::OidcUser), true) => 3,
        (Some(Source::OidcClient), true) => 4,
        (Some(Source::Session), true) => 5,
        (None, true) => 6,
        // Neither a user nor a warrant: only a `require: workload`
        // rule (its mTLS principal) admits that.
        (None, false) => 7,
        (Some(Source::ApiKey), false) => 8,
        (Some(Source::ApiKey), true) => 9,
    }
}

/// `authz_allow`'s `source` label values.
const SOURCES: [&str; 10] = [
    "oidc_user",
    "oidc_client",
    "session",
    "oidc_user+tenuo",
    "oidc_client+tenuo",
    "session+tenuo",
    "tenuo",
    "workload",
    "api_key",
    "api_key+tenuo",
];

/// `cache_lookups`' `result` label values, in `CacheResult` order.
const CACHE_RESULTS: [&str; 3] = ["hit", "negative_hit", "miss"];

/// Cache lookup outcome, for `portcullis_cache_lookups_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit = 0,
    NegativeHit = 1,
    Miss = 2,
}

impl CacheResult {
    /// The `result` label (and a Check span's `portcullis.cache`).
    pub fn label(self) -> &'static str {
        CACHE_RESULTS[self as usize]
    }
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
        let groups_dropped = Family::<ProviderLabels, Counter>::default();
        let trace_exports = Family::<ResultLabels, Counter>::default();
        let trace_export_spans = Family::<ResultLabels, Counter>::default();
        registry.register(
            "trace_exports",
            "Batches of spans sent to the OTLP collector, by result (success, failure)",
            trace_exports.clone(),
        );
        registry.register(
            "trace_export_spans",
            "Spans sent to the OTLP collector, by the result of their batch (success, failure)",
            trace_export_spans.clone(),
        );
        registry.register(
            "groups_dropped",
            "Groups dropped to fit a provider's groups.max_bytes (over_budget: drop), by provider",
            groups_dropped.clone(),
        );
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
        let api_key_checks = Family::<KeyResultLabels, Counter>::default();
        let api_key_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "api_key_checks",
            "API key checks by key id (configured ids only, else unknown) and result (allowed or the deny reason)",
            api_key_checks.clone(),
        );
        registry.register(
            "api_key_reloads",
            "Reloads of the API key file by result",
            api_key_reloads.clone(),
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
            api_key_checks,
            api_key_reloads,
            allow,
            deny,
            duration,
            cache,
            cache_entries,
            jwks_refresh,
            jwks_keys,
            jwks_last_success,
            session_redirects,
            trace_exports,
            trace_export_spans,
            groups_dropped,
            allow_by_source: Default::default(),
            cache_by_result: Default::default(),
        }
    }

    /// `source`: the identity's kind, with `+tenuo` when a warrant was verified too.
    pub fn allowed(&self, identity: Option<Source>, warrant: bool, seconds: f64) {
        let i = source_index(identity, warrant);
        counter(&self.allow, &self.allow_by_source[i], || SourceLabels {
            source: SOURCES[i],
        })
        .inc();
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

    /// `n` groups of an identity of `provider` did not fit its budget.
    pub fn groups_dropped(&self, provider: &str, n: usize) {
        self.groups_dropped
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// One API key check. `key_id` must be a configured id (or `None`):
    /// never the key, never an id only a client made up.
    pub fn api_key_checked(&self, key_id: Option<&str>, result: &'static str) {
        let key_id = key_id.unwrap_or("unknown").to_string();
        self.api_key_checks
            .get_or_create(&KeyResultLabels { key_id, result })
            .inc();
    }

    /// A reload of the key file, by result. The key count is logged, not a
    /// gauge: every exported family must be on the dashboard.
    pub fn api_keys_reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.api_key_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// One batch of `spans` sent to the OTLP collector, by result.
    pub fn trace_exported(&self, ok: bool, spans: usize) {
        let labels = ResultLabels {
            result: if ok { "success" } else { "failure" },
        };
        self.trace_exports.get_or_create(&labels).inc();
        self.trace_export_spans
            .get_or_create(&labels)
            .inc_by(u64::try_from(spans).unwrap_or(u64::MAX));
    }

    /// A login, callback or logout redirect.
    pub fn redirected(&self, seconds: f64) {
        self.session_redirects.inc();
        self.duration.observe(seconds);
    }

    pub fn cache_lookup(&self, r: CacheResult) {
        let i = r as usize;
        counter(&self.cache, &self.cache_by_result[i], || ResultLabels {
            result: CACHE_RESULTS[i],
        })
        .inc();
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

/// `family`'s counter for `labels`, through a handle `cell` keeps after
/// the first use. A counter's clone shares its value, so the family renders
/// what the handle counts.
fn counter<'a, L: Clone + std::hash::Hash + Eq>(
    family: &Family<L, Counter>,
    cell: &'a OnceLock<Counter>,
    labels: impl FnOnce() -> L,
) -> &'a Counter {
    cell.get_or_init(|| family.get_or_create_owned(&labels()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept handles count into the families' series, and a series still
    /// appears only once something has counted in it.
    #[test]
    fn counters_through_handles_render_as_the_family_would() {
        let m = Metrics::new();
        let before = m.render(0);
        assert!(!before.contains("portcullis_authz_allow_total{"), "{before}");
        assert!(!before.contains("portcullis_cache_lookups_total{"), "{before}");
        for _ in 0..3 {
            m.allowed(Some(Source::OidcUser), false, 0.0);
            m.cache_lookup(CacheResult::Hit);
        }
        m.allowed(None, true, 0.0);
        m.cache_lookup(CacheResult::Miss);
        let out = m.render(0);
        for line in [
            "portcullis_authz_allow_total{source=\"oidc_user\"} 3",
            "portcullis_authz_allow_total{source=\"tenuo\"} 1",
            "portcullis_cache_lookups_total{result=\"hit\"} 3",
            "portcullis_cache_lookups_total{result=\"miss\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
        assert!(!out.contains("source=\"session\""), "{out}");
        assert!(!out.contains("result=\"negative_hit\""), "{out}");
    }
}
