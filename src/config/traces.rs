//! The `tracing:` section: OpenTelemetry spans, one per Check, exported
//! over OTLP/gRPC (`traces.rs` builds the exporter). Off unless
//! `otlp_endpoint` is set; off means no exporter, no span, no clock read.

use std::time::Duration;

use serde::Deserialize;

use super::Errors;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/gRPC address, `http://host:port`; empty: off.
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// The share of Checks that start a trace (no parent came with them).
    /// A parent's sampled flag decides for its own trace.
    pub sample_ratio: f64,
    /// One export call's limit; a slow collector costs spans, never Checks.
    pub export_timeout_seconds: u64,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "portcullis".into(),
            sample_ratio: 1.0,
            export_timeout_seconds: 5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TracingConfig {
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sample_ratio: f64,
    pub export_timeout: Duration,
}

/// `None` when tracing is off (no endpoint).
pub(super) fn validate(t: &RawTracing, errs: &mut Errors) -> Option<TracingConfig> {
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        errs.push("tracing.sample_ratio", "must be between 0 and 1");
    }
    if t.service_name.is_empty() || t.service_name.len() > 255 || t.service_name.chars().any(char::is_control) {
        errs.push("tracing.service_name", "must be 1 to 255 printable characters");
    }
    if !(1..=60).contains(&t.export_timeout_seconds) {
        errs.push("tracing.export_timeout_seconds", "must be between 1 and 60");
    }
    if t.otlp_endpoint.is_empty() {
        return None;
    }
    check_endpoint(&t.otlp_endpoint, errs);
    Some(TracingConfig {
        otlp_endpoint: t.otlp_endpoint.trim_end_matches('/').to_string(),
        service_name: t.service_name.clone(),
        sample_ratio: t.sample_ratio,
        export_timeout: Duration::from_secs(t.export_timeout_seconds),
    })
}

/// An OTLP/gRPC endpoint is a scheme, a host and a port: gRPC has no
/// path of its own, and credentials in a URL would end up in logs.
fn check_endpoint(endpoint: &str, errs: &mut Errors) {
    const PATH: &str = "tracing.otlp_endpoint";
    // The exporter parses it as an `http::Uri`, which takes no spaces,
    // tabs or non-ASCII host (`url` would strip or encode them).
    // The endpoint is not echoed: one that does not parse may still hold
    // credentials (`user:pass@`), and config errors are logged.
    if endpoint.parse::<tonic::codegen::http::Uri>().is_err() {
        return errs.push(PATH, "is not a URL like http://127.0.0.1:4317");
    }
    let url = match url::Url::parse(endpoint) {
        Ok(url) => url,
        Err(e) => return errs.push(PATH, format!("is not a URL like http://127.0.0.1:4317 ({e})")),
    };
    match url.scheme() {
        "http" => {}
        "https" => {
            return errs.push(
                PATH,
                "TLS to the collector is not supported: send to a collector or agent on the node or in the pod \
                 (http://…) and let it forward over TLS",
            )
        }
        // `collector:4317` parses as scheme `collector`: one error says it.
        other => return errs.push(PATH, format!("scheme {other:?}: OTLP/gRPC is http://host:port")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        errs.push(PATH, "needs a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        errs.push(
            PATH,
            "must not carry credentials (headers come from OTEL_EXPORTER_OTLP_HEADERS)",
        );
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        errs.push(PATH, "takes no path, query or fragment: http://host:port");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let raw: RawTracing = serde_norway::from_str(yaml).unwrap();
        let mut errs = Errors::default();
        validate(&raw, &mut errs);
        errs.0.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn off_without_an_endpoint() {
        let mut errs = Errors::default();
        assert!(validate(&RawTracing::default(), &mut errs).is_none());
        assert!(errs.0.is_empty());
    }

    #[test]
    fn an_endpoint_turns_it_on() {
        let raw: RawTracing = serde_norway::from_str("otlp_endpoint: http://127.0.0.1:4317/").unwrap();
        let mut errs = Errors::default();
        let t = validate(&raw, &mut errs).unwrap();
        assert!(errs.0.is_empty());
        assert_eq!(t.otlp_endpoint, "http://127.0.0.1:4317");
        assert_eq!(t.service_name, "portcullis");
        assert_eq!(t.export_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unusable_values_are_named() {
        assert_eq!(
            problems("otlp_endpoint: https://collector:4317"),
            [
                "tracing.otlp_endpoint: TLS to the collector is not supported: send to a collector or agent on the \
              node or in the pod (http://…) and let it forward over TLS"
            ]
        );
        assert_eq!(
            problems("otlp_endpoint: http://user:pw@collector:4317"),
            ["tracing.otlp_endpoint: must not carry credentials (headers come from OTEL_EXPORTER_OTLP_HEADERS)"]
        );
        assert_eq!(
            problems("otlp_endpoint: http://collector:4317/v1/traces"),
            ["tracing.otlp_endpoint: takes no path, query or fragment: http://host:port"]
        );
        assert_eq!(
            problems("otlp_endpoint: collector:4317"),
            ["tracing.otlp_endpoint: scheme \"collector\": OTLP/gRPC is http://host:port"]
        );
        assert_eq!(
            problems("{sample_ratio: 1.5, service_name: '', export_timeout_seconds: 0}"),
            [
                "tracing.sample_ratio: must be between 0 and 1",
                "tracing.service_name: must be 1 to 255 printable characters",
                "tracing.export_timeout_seconds: must be between 1 and 60",
            ]
        );
        // What `url` would clean up, and the exporter's URI parser refuses.
        for endpoint in [
            "\"http://collector:4317 \"",
            "\"http://coll\\tector:4317\"",
            "\"http://collé:4317\"",
        ] {
            assert_eq!(
                problems(&format!("otlp_endpoint: {endpoint}")),
                ["tracing.otlp_endpoint: is not a URL like http://127.0.0.1:4317"],
                "{endpoint}"
            );
        }
        // Unparsable, and with credentials: the error does not repeat them.
        let p = problems("otlp_endpoint: \"http://user:s3cret@coll ector:4317\"");
        assert!(p.len() == 1 && !p[0].contains("s3cret"), "{p:?}");
        assert_eq!(
            problems("sample_ratio: .nan"),
            ["tracing.sample_ratio: must be between 0 and 1"]
        );
    }
}
