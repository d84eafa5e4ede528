//! OpenTelemetry tracing through real peers: Envoy (its own OpenTelemetry
//! tracer on) → portcullis, both exporting OTLP/gRPC to the real
//! OpenTelemetry Collector (tests/otelcol: the collector's OTLP receiver
//! and its file exporter, which writes what it received as OTLP JSON).
//! What the collector wrote is what is asserted: portcullis's span is in
//! the request's trace, a child of Envoy's ext_authz call span, and says
//! what was decided. Without Envoy tracing, the client's `traceparent` is
//! the parent. A collector that is down costs no Check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;

use common::*;
use portcullis::config::TracingConfig;
use portcullis::telemetry::Metrics;
use portcullis::traces::Traces;
use serde_json::{json, Value};

/// Envoy's OpenTelemetry tracer flushes every 5 s; portcullis's batch
/// processor too (OTEL_BSP_SCHEDULE_DELAY) unless it stops first.
const SPANS_TIMEOUT: Duration = Duration::from_secs(20);

fn otelcol_bin() -> PathBuf {
    let p = match std::env::var_os("OTELCOL_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".tools/bin/otelcol"),
    };
    assert!(
        p.exists(),
        "collector not found at {} (set OTELCOL_BIN, or run ./tests/run.sh, which builds it with tests/otelcol/install.sh)",
        p.display()
    );
    p
}

/// The collector, on a free loopback port, writing every export to a file.
struct Collector {
    _child: ChildGuard,
    port: u16,
    file: PathBuf,
}

impl Collector {
    fn start(logs: &Logs) -> Collector {
        for attempt in 1..=3 {
            let port = free_port();
            let file = logs.path().join(format!("spans-{attempt}.jsonl"));
            let config = json!({
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": format!("127.0.0.1:{port}")}}}},
                "exporters": {"file": {"path": file, "flush_interval": "100ms"}},
                "service": {
                    "telemetry": {"metrics": {"level": "none"}},
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}
                }
            });
            let config_path = logs.path().join(format!("otelcol-{attempt}.yaml"));
            std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
            let mut cmd = Command::new(otelcol_bin());
            cmd.arg("--config").arg(&config_path);
            let mut child = ChildGuard::spawn(&format!("otelcol-{attempt}"), cmd, logs);
            let up = child.wait_up("collector", Duration::from_secs(20), || {
                std::net::TcpStream::connect(loopback(port))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            if up {
                return Collector {
                    _child: child,
                    port,
                    file,
                };
            }
            if attempt == 3 {
                panic!("collector did not start:\n{}", child.logs_tail(40));
            }
        }
        unreachable!()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, with its resource's `service.name`.
    fn spans(&self) -> Vec<Span> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut spans = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let export: Value = serde_json::from_str(line).unwrap();
            for rs in export["resourceSpans"].as_array().unwrap() {
                let service = attribute(&rs["resource"]["attributes"], "service.name").unwrap_or(Value::Null);
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for span in ss["spans"].as_array().unwrap() {
                        spans.push(Span {
                            service: service.as_str().unwrap_or_default().to_string(),
                            json: span.clone(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Waits until `done` holds of the spans received.
    fn await_spans(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + SPANS_TIMEOUT;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; received:\n{spans:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[derive(Debug, Clone)]
struct Span {
    service: String,
    json: Value,
}

impl Span {
    fn trace_id(&self) -> &str {
        self.json["traceId"].as_str().unwrap()
    }
    fn span_id(&self) -> &str {
        self.json["spanId"].as_str().unwrap()
    }
    fn parent(&self) -> &str {
        self.json["parentSpanId"].as_str().unwrap_or_default()
    }
    fn attr(&self, key: &str) -> Option<Value> {
        attribute(&self.json["attributes"], key)
    }
    /// A string or integer attribute as a string (OTLP JSON writes int64 as a string).
    fn text(&self, key: &str) -> Option<String> {
        self.attr(key).map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

/// An OTLP JSON attribute's value: `{"key": k, "value": {"stringValue": …}}`.
fn attribute(attributes: &Value, key: &str) -> Option<Value> {
    let kv = attributes.as_array()?.iter().find(|kv| kv["key"] == key)?;
    let value = kv["value"].as_object()?;
    value.values().next().cloned()
}

const SERVICE: &str = "portcullis-under-test";
const ENVOY_SERVICE: &str = "envoy-under-test";

/// envoy/envoy.yaml with Envoy's own OpenTelemetry tracer on, exporting
/// to the collector: every request is traced (100 %).
fn with_envoy_tracing(rendered: &str, collector_port: u16) -> String {
    let hcm = "                stat_prefix: ingress_http\n";
    assert_eq!(rendered.matches(hcm).count(), 1);
    let tracing = format!(
        r#"{hcm}                tracing:
                  random_sampling: {{ value: 100 }}
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                      grpc_service:
                        envoy_grpc: {{ cluster_name: otel }}
                        timeout: 1s
                      service_name: {ENVOY_SERVICE}
"#
    );
    let clusters = "  clusters:\n";
    assert_eq!(rendered.matches(clusters).count(), 1);
    let otel = format!(
        r#"{clusters}    - name: otel
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {{ http2_protocol_options: {{}} }}
      load_assignment:
        cluster_name: otel
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: 127.0.0.1, port_value: {collector_port} }}
"#
    );
    rendered.replacen(hcm, &tracing, 1).replacen(clusters, &otel, 1)
}

fn traceparent(trace: &str, span: &str, flags: &str) -> String {
    format!("00-{trace}-{span}-{flags}")
}

fn ours(spans: &[Span]) -> Vec<&Span> {
    spans.iter().filter(|s| s.service == SERVICE).collect()
}

/// Stops portcullis with SIGTERM: its spans still queued are exported
/// before it exits.
fn stop(s: &mut Stack) {
    s.portcullis.signal("TERM");
    assert!(
        s.portcullis.wait_timeout(Duration::from_secs(15)).is_some(),
        "portcullis did not exit after SIGTERM"
    );
}

#[test]
fn the_check_span_is_a_child_of_envoy_s_ext_authz_span_and_says_what_was_decided() {
    let logs = Logs::new();
    let collector = Collector::start(&logs);
    let endpoint = collector.endpoint();
    let mut s = Stack::builder()
        .config(move |c| {
            c["tracing"] = json!({"otlp_endpoint": endpoint, "service_name": SERVICE});
            c["rules"] = json!([{"path_prefix": "/admin", "allowed_groups": ["admins"]}, {"path_prefix": "/"}]);
        })
        .without_envoy()
        .start();
    let port = collector.port;
    s.start_envoy_edited(|r| with_envoy_tracing(r, port));
    let alice = s.token_for("alice", &["users"]);
    // Each request in a trace of its own, chosen by the client; Envoy joins it.
    let traces = ["a1", "a2", "a3"].map(|t| format!("{t:0>32}"));
    let client_span = "00000000000000c1";
    let sent = |path: &str, trace: &str, token: Option<&str>| {
        let mut req = Req::get(path).header("traceparent", &traceparent(trace, client_span, "01"));
        if let Some(token) = token {
            req = req.bearer(token);
        }
        s.send(&req)
    };
    assert_allowed(&sent("/app/x", &traces[0], Some(&alice)));
    assert_allowed(&sent("/app/y", &traces[1], Some(&alice)));
    assert_denied(&sent("/admin/x", &traces[2], None), 401, "missing_credential");
    // And one Envoy starts itself (no traceparent from the client).
    assert_allowed(&s.get_bearer("/app/z", &alice));

    // Envoy exports in batches of its own: wait for its spans of each Check too.
    let spans = collector.await_spans("4 portcullis spans and their Envoy parents", |spans| {
        let envoy = || spans.iter().filter(|s| s.service == ENVOY_SERVICE);
        let mine = ours(spans);
        mine.len() >= 4
            && mine.iter().all(|m| {
                envoy()
                    .find(|e| e.span_id() == m.parent())
                    .is_some_and(|p| envoy().any(|e| e.span_id() == p.parent()))
            })
    });
    let mine = ours(&spans);
    assert_eq!(mine.len(), 4, "one span per Check: {mine:#?}");
    let envoy: Vec<&Span> = spans.iter().filter(|s| s.service == ENVOY_SERVICE).collect();
    for span in &mine {
        assert_eq!(span.json["name"], "envoy.service.auth.v3.Authorization/Check");
        assert_eq!(span.json["kind"], 2, "SPAN_KIND_SERVER");
        assert_eq!(span.text("rpc.system").as_deref(), Some("grpc"));
        // The parent is Envoy's span of the ext_authz call, in the same
        // trace, itself a child of Envoy's span of the request.
        let parent = envoy
            .iter()
            .find(|e| e.span_id() == span.parent())
            .unwrap_or_else(|| panic!("parent of {span:#?} is no Envoy span: {envoy:#?}"));
        assert_eq!(parent.trace_id(), span.trace_id());
        assert!(
            envoy.iter().any(|e| e.span_id() == parent.parent()),
            "Envoy's ext_authz span {parent:#?} has no Envoy parent"
        );
    }
    let in_trace = |t: &str| -> &Span {
        let found: Vec<&&Span> = mine.iter().filter(|s| s.trace_id() == t).collect();
        assert_eq!(found.len(), 1, "one portcullis span in trace {t}: {mine:#?}");
        found[0]
    };
    // The client's trace, joined by Envoy, then by portcullis.
    let first = in_trace(&traces[0]);
    assert_eq!(first.text("portcullis.decision").as_deref(), Some("allow"));
    assert_eq!(first.text("portcullis.status").as_deref(), Some("200"));
    assert_eq!(first.text("portcullis.source").as_deref(), Some("oidc_user"));
    assert_eq!(first.text("portcullis.rule.prefix").as_deref(), Some("/"));
    assert_eq!(first.text("portcullis.rule.index").as_deref(), Some("1"));
    assert_eq!(first.text("portcullis.rule.require").as_deref(), Some("oidc"));
    assert_eq!(first.text("portcullis.cache").as_deref(), Some("miss"));
    let verify_us: u64 = first.text("portcullis.credential.verify_us").unwrap().parse().unwrap();
    assert!(verify_us > 0, "{first:#?}");
    assert_eq!(first.attr("portcullis.reason"), None);
    // The same token again: from the cache, nothing verified.
    let second = in_trace(&traces[1]);
    assert_eq!(second.text("portcullis.cache").as_deref(), Some("hit"));
    assert_eq!(second.attr("portcullis.credential.verify_us"), None);
    // A denial: its reason and status, the rule that refused.
    let third = in_trace(&traces[2]);
    assert_eq!(third.text("portcullis.decision").as_deref(), Some("deny"));
    assert_eq!(third.text("portcullis.status").as_deref(), Some("401"));
    assert_eq!(third.text("portcullis.reason").as_deref(), Some("missing_credential"));
    assert_eq!(third.text("portcullis.rule.prefix").as_deref(), Some("/admin"));
    assert_eq!(third.text("portcullis.rule.index").as_deref(), Some("0"));
    assert_eq!(third.attr("portcullis.cache"), None);
    // Its log line names the trace.
    let logged: Vec<Value> = s
        .portcullis
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "authorization_denied")
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["trace_id"], json!(traces[2]));
    // The trace Envoy started: portcullis is in it too.
    let fourth = mine
        .iter()
        .find(|s| !traces.iter().any(|t| t == s.trace_id()))
        .expect("the span of the request Envoy traced by itself");
    assert_eq!(fourth.text("portcullis.cache").as_deref(), Some("hit"));
    // Nothing secret or personal in any span: not the token, not the user.
    let all = serde_json::to_string(&mine.iter().map(|s| &s.json).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains(&alice[..20]) && !all.contains("alice"), "{all}");
    let resource = std::fs::read_to_string(&collector.file).unwrap();
    assert!(resource.contains(env!("CARGO_PKG_VERSION")), "service.version");
    stop(&mut s);
}

#[test]
fn without_envoy_tracing_the_request_s_traceparent_is_the_parent() {
    let logs = Logs::new();
    let collector = Collector::start(&logs);
    let endpoint = collector.endpoint();
    let mut s = Stack::builder()
        .config(move |c| {
            c["tracing"] = json!({"otlp_endpoint": endpoint, "service_name": SERVICE});
        })
        .start();
    let alice = s.token_for("alice", &["users"]);
    let trace = format!("{:0>32}", "b1");
    let parent = "00000000000000b2";
    let with = |values: &[&str]| {
        let mut req = Req::get("/app/x").bearer(&alice);
        for v in values {
            req = req.header("traceparent", v);
        }
        s.send(&req)
    };
    assert_allowed(&with(&[&traceparent(&trace, parent, "01")]));
    // A parent that did not sample its trace: portcullis does not either.
    let unsampled = format!("{:0>32}", "b3");
    assert_allowed(&with(&[&traceparent(&unsampled, parent, "00")]));
    // Unusable parents start a trace of their own; the Check is unaffected.
    let repeated = format!("{:0>32}", "b4");
    assert_allowed(&with(&[
        &traceparent(&repeated, parent, "01"),
        &traceparent(&repeated, parent, "01"),
    ]));
    let zero = format!("{:0>32}", "0");
    assert_allowed(&with(&[&traceparent(&zero, parent, "01")]));
    assert_allowed(&with(&["not a traceparent"]));
    stop(&mut s);

    let spans = collector.await_spans("portcullis's spans", |spans| ours(spans).len() >= 4);
    let mine = ours(&spans);
    assert_eq!(mine.len(), 4, "the unsampled request has no span: {mine:#?}");
    let joined: Vec<&&Span> = mine.iter().filter(|s| s.trace_id() == trace).collect();
    assert_eq!(joined.len(), 1, "{mine:#?}");
    assert_eq!(joined[0].parent(), parent);
    for other in mine.iter().filter(|s| s.trace_id() != trace) {
        assert!(
            ![&unsampled, &repeated, &zero].contains(&&other.trace_id().to_string()),
            "{other:#?}"
        );
        assert_eq!(other.parent(), "", "a new trace: {other:#?}");
        assert_eq!(other.text("portcullis.decision").as_deref(), Some("allow"));
    }
}

/// Envoy's span carries the client's `tracestate` into the Check call's
/// gRPC metadata, unbounded up to Envoy's own header limit (60 KiB). A
/// large one still gets its Check answered (a refused call would be a 503,
/// or with `failure_mode_allow` an unchecked pass), and is not copied into
/// portcullis's span; a small one is.
#[test]
fn a_client_s_large_tracestate_neither_fails_the_check_nor_rides_in_the_span() {
    let logs = Logs::new();
    let collector = Collector::start(&logs);
    let endpoint = collector.endpoint();
    let mut s = Stack::builder()
        .config(move |c| {
            c["tracing"] = json!({"otlp_endpoint": endpoint, "service_name": SERVICE});
        })
        .without_envoy()
        .start();
    let port = collector.port;
    s.start_envoy_edited(|r| with_envoy_tracing(r, port));
    let alice = s.token_for("alice", &["users"]);
    // 80 members of 254 bytes: ~20 KiB, over the 16 KiB portcullis took as
    // a call's header block before (and many gRPC servers still do).
    let large: String = (0..80)
        .map(|i| format!("k{i:02}={}", "v".repeat(250)))
        .collect::<Vec<_>>()
        .join(",");
    let [small_trace, large_trace, denied_trace] = ["c1", "c2", "c3"].map(|t| format!("{t:0>32}"));
    let sent = |trace: &str, state: &str, token: Option<&str>| {
        let mut req = Req::get("/app/x")
            .header("traceparent", &traceparent(trace, "00000000000000c0", "01"))
            .header("tracestate", state);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        s.send(&req)
    };
    assert_allowed(&sent(&small_trace, "vendor=a1", Some(&alice)));
    assert_allowed(&sent(&large_trace, &large, Some(&alice)));
    assert_denied(&sent(&denied_trace, &large, None), 401, "missing_credential");
    stop(&mut s);

    let spans = collector.await_spans("3 portcullis spans", |spans| ours(spans).len() >= 3);
    let mine = ours(&spans);
    let state_in = |trace: &str| {
        let span = mine
            .iter()
            .find(|s| s.trace_id() == trace)
            .unwrap_or_else(|| panic!("no span in trace {trace}: {mine:#?}"));
        span.json["traceState"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(state_in(&small_trace), "vendor=a1");
    assert_eq!(state_in(&large_trace), "");
    assert_eq!(state_in(&denied_trace), "");
}

/// A Check its caller gave up on (Envoy's timeout cancels the call; the
/// Check's future is dropped mid-await) still ends its span, marked so.
#[test]
fn a_check_dropped_before_its_decision_ends_its_span_as_cancelled() {
    let logs = Logs::new();
    let collector = Collector::start(&logs);
    let trace = format!("{:0>32}", "d1");
    let parent = "00000000000000d2";
    let req = check_request("/x", &[("traceparent", &traceparent(&trace, parent, "01"))]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = TracingConfig {
            otlp_endpoint: collector.endpoint(),
            service_name: SERVICE.into(),
            sample_ratio: 1.0,
            export_timeout: Duration::from_secs(5),
        };
        let traces = Traces::new(&config, Arc::new(Metrics::new())).unwrap();
        let span = traces.start(&tonic::metadata::MetadataMap::new(), &req);
        assert_eq!(span.trace_id().as_deref(), Some(trace.as_str()));
        drop(span);
        tokio::task::spawn_blocking(move || traces.shutdown()).await.unwrap();
    });
    let spans = collector.await_spans("the cancelled Check's span", |spans| !ours(spans).is_empty());
    let mine = ours(&spans);
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!((mine[0].trace_id(), mine[0].parent()), (trace.as_str(), parent));
    assert_eq!(mine[0].text("portcullis.decision").as_deref(), Some("cancelled"));
    assert_eq!(mine[0].text("rpc.method").as_deref(), Some("Check"));
    assert_eq!(mine[0].attr("portcullis.status"), None);
}

/// A collector that takes connections and never answers: each export
/// waits its whole timeout, the worst case for anything on the request path.
fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

#[test]
fn a_collector_that_is_down_or_hangs_costs_no_check() {
    for (what, port) in [("closed port", free_port()), ("black hole", black_hole())] {
        let mut s = Stack::builder()
            .config(move |c| {
                c["tracing"] = json!({
                    "otlp_endpoint": format!("http://127.0.0.1:{port}"),
                    "export_timeout_seconds": 1
                });
            })
            .start();
        let alice = s.token_for("alice", &["users"]);
        let mut slowest = Duration::ZERO;
        // Over two batches (512 spans each), so exports fail more than once.
        const CHECKS: u64 = 1100;
        for i in 0..CHECKS {
            let started = Instant::now();
            if i % 2 == 0 {
                assert_allowed(&s.get_bearer("/app/x", &alice));
            } else {
                assert_denied(&s.get("/app/x", &[]), 401, "missing_credential");
            }
            slowest = slowest.max(started.elapsed());
        }
        // A coarse guard against a stall (an export in the request path
        // would wait for the collector); a request here takes about 1 ms.
        assert!(
            slowest < Duration::from_millis(500),
            "{what}: slowest request {slowest:?}"
        );
        // Each failed export is counted, with its spans (every Check's, in
        // the end); the log says so once.
        let failed = |series: &str| -> u64 {
            let metrics = s.admin("/metrics").text();
            let line = format!("portcullis_{series}_total{{result=\"failure\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .map_or(0, |v| v.trim().parse().unwrap())
        };
        let deadline = Instant::now() + SPANS_TIMEOUT;
        while failed("trace_export_spans") < CHECKS {
            assert!(
                Instant::now() < deadline,
                "{what}: {} spans counted as lost",
                failed("trace_export_spans")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(failed("trace_export_spans"), CHECKS, "{what}");
        assert!(failed("trace_exports") >= 3, "{what}");
        let warnings = s
            .portcullis
            .stdout()
            .lines()
            .filter(|l| l.contains("\"trace_export_failed\""))
            .count();
        assert_eq!(warnings, 1, "{what}: {}", s.portcullis.stdout());
        // Shutdown gives up on the collector within the export timeout.
        let started = Instant::now();
        stop(&mut s);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn an_unusable_tracing_section_is_a_config_error() {
    let logs = Logs::new();
    let mut config = base_config(loopback(free_port()), loopback(free_port()), &["https://issuer.test"]);
    config["tracing"] = json!({"otlp_endpoint": "https://collector.example:4317"});
    let path = logs.path().join("bad.yaml");
    write_config(&path, &config);
    let out = Command::new(portcullis_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tracing.otlp_endpoint: TLS to the collector is not supported"),
        "{stderr}"
    );
}
