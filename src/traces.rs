//! OpenTelemetry: one span per Check (`tracing:`), exported in batches over
//! OTLP/gRPC by the SDK's own thread, so a slow or absent collector costs
//! spans, never a Check's latency.
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
//! cache's answer and the verifiers' times. Never a user, a token, a
//! header value or a path: those are Envoy's span's to show, under
//! Envoy's own redaction.

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span};
use opentelemetry_sdk::Resource;

use crate::check::{Checker, Outcome};
use crate::config::TracingConfig;

/// The span's name: `{rpc.service}/{rpc.method}`, as OpenTelemetry's RPC
/// conventions name a server span.
const SPAN_NAME: &str = "envoy.service.auth.v3.Authorization/Check";
const TRACEPARENT: &str = "traceparent";

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
    pub fn new(config: &TracingConfig) -> Result<Self, TracesError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()?;
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
    pub fn start(&self, metadata: &tonic::metadata::MetadataMap, req: &CheckRequest) -> Span {
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
        self.tracer
            .span_builder(SPAN_NAME)
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent)
    }

    /// Ends the span with what the Check decided.
    pub fn finish(&self, mut span: Span, out: &Outcome<'_>, checker: &Checker) {
        if !span.is_recording() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", "envoy.service.auth.v3.Authorization"),
            KeyValue::new("rpc.method", "Check"),
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

/// The gRPC call's metadata (HTTP/2 headers from Envoy).
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => one.to_str().ok(),
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
        if key != TRACEPARENT && key != "tracestate" {
            return None;
        }
        let Some(map) = &self.0.header_map else {
            return self.0.headers.get(key).map(String::as_str);
        };
        let mut values = map.headers.iter().filter(|h| h.key.eq_ignore_ascii_case(key));
        match (values.next(), values.next()) {
            (Some(h), None) if h.raw_value.is_empty() => Some(h.value.as_str()),
            (Some(h), None) => std::str::from_utf8(&h.raw_value).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}
