//! OpenTelemetry: one span per Check (`tracing:`), exported in batches over
//! OTLP/gRPC. A Check only queues its ended span; the SDK's batch thread
//! hands full or timed-out batches to the exporter, whose gRPC channel runs
//! on the Tokio runtime. A slow or absent collector costs spans (a full
//! queue drops them), never a Check's latency. Failed exports are counted
//! (`portcullis_trace_exports_total{result="failure"}`) and logged at most
//! once a minute.
//!
//! The span joins the trace the request is part of. Its parent is, first,
//! the `traceparent` of the gRPC call: Envoy's own ext_authz client span
//! when Envoy traces. Without one, the `traceparent` the checked request
//! carries (a client or an outer proxy that traces while this Envoy does
//! not). A header that is absent, repeated or malformed starts a new trace
//! (sampled by `sample_ratio`); it never fails a Check.
//!
//! What the span says is bounded and secret-free: the decision, status,
//! deny reason, rule or policy, what admitted the request, the identity
//! cache's answer and the verifiers' times. Never a user, a token, a path
//! or a header value other than the trace context itself (`tracestate`,
//! which the SDK keeps in the span, only up to 512 bytes): those are
//! Envoy's span's to show, under Envoy's own redaction.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::check::{Checker, Outcome};
use crate::config::TracingConfig;
use crate::telemetry::Metrics;

/// The span's name: `{rpc.service}/{rpc.method}`, as OpenTelemetry's RPC
/// conventions name a server span.
const SPAN_NAME: &str = "envoy.service.auth.v3.Authorization/Check";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// A `traceparent` is 55 bytes (version 00); later versions may append
/// fields, but nothing a parser needs is beyond this.
const MAX_TRACEPARENT_BYTES: usize = 256;
/// W3C Trace Context §3.3.1.5: a `tracestate` over 512 characters may be
/// dropped. It comes from the client (directly, or through Envoy's span),
/// and the SDK copies it into every span it queues: at the SDK's limits
/// (32 members of 512 bytes) ~16 KiB per span, ~2,048 spans queued.
const MAX_TRACESTATE_BYTES: usize = 512;

/// `value` of header `key`, or `None` (no parent, or no trace state) when
/// it is longer than a trace context header needs to be.
fn bounded<'a>(key: &str, value: &'a str) -> Option<&'a str> {
    let max = if key == TRACEPARENT {
        MAX_TRACEPARENT_BYTES
    } else {
        MAX_TRACESTATE_BYTES
    };
    (value.len() <= max).then_some(value)
}

#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint: {0}")]
pub struct TracesError(#[from] opentelemetry_otlp::ExporterBuildError);

pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// Also how long shutdown waits for the last export.
    export_timeout: std::time::Duration,
}

impl Traces {
    /// Within the Tokio runtime: the exporter's gRPC channel runs on it.
    /// Connects lazily: a collector that is not up yet is no start-up error.
    pub fn new(config: &TracingConfig, metrics: Arc<Metrics>) -> Result<Self, TracesError> {
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()?;
        let exporter = Counted {
            inner: otlp,
            metrics,
            last_warning: Mutex::new(None),
        };
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        // A parent's sampled flag decides for its trace (Envoy's, or the
        // client's: as in Envoy itself); `sample_ratio` for the rest.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder("portcullis")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Ok(Self {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            export_timeout: config.export_timeout,
        })
    }

    /// The Check's span, started now, as a child of its parent (see the module docs).
    pub fn start(&self, metadata: &tonic::metadata::MetadataMap, req: &CheckRequest) -> CheckSpan {
        let from_call = self.propagator.extract(&Metadata(metadata));
        let parent = if from_call.span().span_context().is_valid() {
            from_call
        } else {
            let http = req
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref());
            match http {
                Some(http) => self.propagator.extract(&RequestHeaders(http)),
                None => Context::new(),
            }
        };
        let span = self
            .tracer
            .span_builder(SPAN_NAME)
            .with_kind(SpanKind::Server)
            .with_attributes(RPC_ATTRIBUTES.map(|(k, v)| KeyValue::new(k, v)))
            .start_with_context(&self.tracer, &parent);
        CheckSpan(Some(span))
    }

    /// Ends the span with what the Check decided.
    pub fn finish(&self, mut check: CheckSpan, out: &Outcome<'_>, checker: &Checker) {
        let Some(mut span) = check.0.take().filter(Span::is_recording) else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("portcullis.decision", out.decision),
            KeyValue::new("portcullis.status", i64::from(out.status)),
        ];
        let mut add = |key: &'static str, value: Option<opentelemetry::Value>| {
            attributes.extend(value.map(|v| KeyValue::new(key, v)));
        };
        add("portcullis.reason", out.reason.map(Into::into));
        add("portcullis.source", out.source.map(Into::into));
        add("portcullis.cache", out.cache.map(|c| c.label().into()));
        add(
            "portcullis.policy",
            out.policy.map(|p| crate::check::bounded(p).to_string().into()),
        );
        if let Some(rule) = out.rule {
            // A named policy's rule has no place among the path rules.
            if out.policy.is_none() {
                add("portcullis.rule.prefix", Some(rule.path_prefix().to_string().into()));
                add(
                    "portcullis.rule.index",
                    checker
                        .rule_index(rule)
                        .and_then(|i| i64::try_from(i).ok())
                        .map(Into::into),
                );
            }
            add("portcullis.rule.require", Some(rule.require().name().into()));
        }
        for (key, took) in [
            ("portcullis.credential.verify_us", out.verify),
            ("portcullis.session.open_us", out.session),
            ("portcullis.warrant.verify_us", out.warrant),
        ] {
            add(
                key,
                took.and_then(|t| i64::try_from(t.as_micros()).ok()).map(Into::into),
            );
        }
        span.set_attributes(attributes);
        span.end();
    }

    /// Exports what is queued (within the export timeout) and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown_with_timeout(self.export_timeout) {
            tracing::warn!(event = "tracing_shutdown", error = %error, "spans may be lost");
        }
    }
}

const RPC_ATTRIBUTES: [(&str, &str); 3] = [
    ("rpc.system", "grpc"),
    ("rpc.service", "envoy.service.auth.v3.Authorization"),
    ("rpc.method", "Check"),
];

/// A Check's span, from `Traces::start` until `Traces::finish` ends it with
/// what was decided. Dropped before (the caller gave up, e.g. at Envoy's
/// timeout, and the Check's future was dropped mid-await), it ends marked
/// `portcullis.decision=cancelled`.
pub struct CheckSpan(Option<Span>);

impl CheckSpan {
    /// The trace's id, when this Check is sampled (for its log lines).
    pub fn trace_id(&self) -> Option<String> {
        let span = self.0.as_ref().filter(|s| s.is_recording())?;
        Some(span.span_context().trace_id().to_string())
    }
}

impl Drop for CheckSpan {
    fn drop(&mut self) {
        if let Some(span) = self.0.as_mut().filter(|s| s.is_recording()) {
            span.set_attribute(KeyValue::new("portcullis.decision", "cancelled"));
        }
    }
}

/// How often a failing collector is logged: its failures are counted each
/// time, but a collector that is down for an hour is one story, not 720.
const EXPORT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The OTLP exporter, with each export's result counted and failures logged
/// (the SDK reports them nowhere without its `internal-logs`, which would
/// log every failed batch: several a second under load).
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    metrics: Arc<Metrics>,
    last_warning: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.metrics.trace_exported(result.is_ok(), spans);
        if let Err(error) = &result {
            let now = Instant::now();
            // A poisoned lock (a panic while held) only skips the warning.
            let due = self.last_warning.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|t| now.duration_since(t) >= EXPORT_WARNING_EVERY);
                if due {
                    *last = Some(now);
                }
                due
            });
            if due {
                tracing::warn!(event = "trace_export_failed", spans, error = %error, "spans lost; counted in portcullis_trace_exports_total");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The gRPC call's metadata (HTTP/2 headers from Envoy).
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => one.to_str().ok().and_then(|v| bounded(key, v)),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The checked request's headers: `headers` (repeats joined with `,`, which
/// no `traceparent` parser takes) or, with `encode_raw_headers`,
/// `header_map`, where a repeated header is ignored here.
struct RequestHeaders<'a>(&'a HttpRequest);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key != TRACEPARENT && key != TRACESTATE {
            return None;
        }
        let Some(map) = &self.0.header_map else {
            return self.0.headers.get(key).and_then(|v| bounded(key, v));
        };
        let mut values = map.headers.iter().filter(|h| h.key.eq_ignore_ascii_case(key));
        let value = match (values.next(), values.next()) {
            (Some(h), None) if h.raw_value.is_empty() => Some(h.value.as_str()),
            (Some(h), None) => std::str::from_utf8(&h.raw_value).ok(),
            _ => None,
        };
        value.and_then(|v| bounded(key, v))
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn http(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn trace_context_longer_than_it_needs_to_be_is_not_read() {
        let long_parent = format!("{PARENT}-{}", "0".repeat(256 - PARENT.len()));
        let state = |n: usize| format!("k={}", "v".repeat(n - 2));
        let (state_512, state_513) = (state(512), state(513));
        let req = http(&[
            ("traceparent", PARENT),
            ("tracestate", &state_512),
            ("authorization", "Bearer x"),
        ]);
        let headers = RequestHeaders(&req);
        assert_eq!(headers.get("traceparent"), Some(PARENT));
        assert_eq!(headers.get("tracestate"), Some(state_512.as_str()));
        // Only trace context is read from the request, never another header.
        assert_eq!(headers.get("authorization"), None);
        let req = http(&[("traceparent", &long_parent), ("tracestate", &state_513)]);
        let headers = RequestHeaders(&req);
        assert_eq!((headers.get("traceparent"), headers.get("tracestate")), (None, None));

        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("traceparent", PARENT.parse().unwrap());
        md.insert("tracestate", state_513.parse().unwrap());
        let call = Metadata(&md);
        assert_eq!((call.get("traceparent"), call.get("tracestate")), (Some(PARENT), None));
        // Sent twice: neither is the parent.
        md.append("traceparent", PARENT.parse().unwrap());
        assert_eq!(Metadata(&md).get("traceparent"), None);
    }
}
