//! The operator files under `deploy/observability/` (Grafana dashboard,
//! Prometheus alert rules and their promtool unit tests) query only what a
//! real portcullis exports.
//!
//! A stack is driven through every state the files look at (allowed, denied
//! for several reasons, cache hit, negative hit and miss, a JWKS fetch that
//! succeeds and one that fails), `/metrics` is scraped from the admin
//! listener, and then:
//!
//! - every `portcullis_…` name in a PromQL query (dashboard targets and
//!   variables, rule `expr`, test input series) is a series in the scrape —
//!   `portcullis_authz_allow_total`, not the family name
//!   `portcullis_authz_allow`; `portcullis_check_duration_seconds_bucket`,
//!   not `portcullis_check_duration_seconds`;
//! - every label such a selector matches on exists on that series (or is
//!   `job`/`instance`, added by Prometheus), and every fixed value it
//!   matches (`result="failure"`, `reason=~"a|b"`) was seen;
//! - every other `portcullis_…` word in those files (descriptions, prose)
//!   is a series or a metric family (`# TYPE`);
//! - the dashboard shows every family portcullis exports.
//!
//! promtool (quickstart/validate.sh) checks the syntax; this checks the names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const DASHBOARD: &str = "deploy/observability/portcullis-dashboard.json";
const RULES: &str = "deploy/observability/portcullis-alerts.yaml";
const RULE_TESTS: &str = "deploy/observability/portcullis-alerts.test.yaml";

/// Labels Prometheus attaches when it scrapes; never in `/metrics`.
const TARGET_LABELS: &[&str] = &["job", "instance"];
/// Labels whose values are not a fixed set (checked by name only).
const FREE_VALUED_LABELS: &[&str] = &["issuer", "le"];

// ---------------------------------------------------------------------------
// The exposition.

/// What one scrape of `/metrics` holds.
#[derive(Debug, Default)]
struct Exposition {
    /// Family name (`# TYPE` line) -> type.
    families: BTreeMap<String, String>,
    /// Series name -> label name -> values seen.
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                    out.families.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = out.series.entry(line[..end].to_string()).or_default();
            if line[end..].starts_with('{') {
                let chars: Vec<char> = line[end + 1..].chars().collect();
                for (name, _, value) in parse_matchers(&chars, &mut 0) {
                    labels.entry(name).or_default().insert(value);
                }
            }
        }
        out
    }

    /// The family a series belongs to (`x_total` -> `x` for a counter, …).
    fn family_of(&self, series: &str) -> Option<String> {
        std::iter::once(series)
            .chain(
                ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
                    .iter()
                    .filter_map(|suffix| series.strip_suffix(suffix)),
            )
            .find(|f| self.families.contains_key(*f))
            .map(str::to_string)
    }
}

// ---------------------------------------------------------------------------
// PromQL, just enough of it: selectors of `portcullis_…` series.

#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    /// (label, operator, value)
    matchers: Vec<(String, String, String)>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the string literal starting at `i` (`"…"`, `'…'` or `` `…` ``).
fn skip_string(b: &[char], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != quote {
        if b[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Reads `name op "value", …}` from `*i` (just after the `{`), leaving `*i`
/// just after the `}`. Understands the escapes of the text format and PromQL.
fn parse_matchers(b: &[char], i: &mut usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(i);
        if *i >= b.len() {
            return out;
        }
        if b[*i] == '}' {
            *i += 1;
            return out;
        }
        if b[*i] == ',' {
            *i += 1;
            continue;
        }
        let start = *i;
        while *i < b.len() && is_ident(b[*i]) {
            *i += 1;
        }
        let name: String = b[start..*i].iter().collect();
        skip_ws(i);
        let op_start = *i;
        while *i < b.len() && matches!(b[*i], '=' | '!' | '~') {
            *i += 1;
        }
        let op: String = b[op_start..*i].iter().collect();
        skip_ws(i);
        let mut value = String::new();
        if *i < b.len() && matches!(b[*i], '"' | '\'' | '`') {
            let end = skip_string(b, *i);
            let mut j = *i + 1;
            while j + 1 < end {
                if b[j] == '\\' && b[*i] != '`' {
                    j += 1;
                }
                value.push(b[j]);
                j += 1;
            }
            *i = end;
        }
        if name.is_empty() || op.is_empty() {
            // Not a matcher list after all; stop rather than loop.
            return out;
        }
        out.push((name, op, value));
    }
}

/// Every `portcullis_…` selector in a PromQL expression.
fn selectors(expr: &str) -> Vec<Selector> {
    let b: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&b, i);
        } else if c.is_ascii_digit() {
            // Numbers and durations (`5m`, `1e-3`): not identifiers.
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let name: String = b[start..i].iter().collect();
            if !name.starts_with("portcullis_") {
                continue;
            }
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let matchers = if j < b.len() && b[j] == '{' {
                j += 1;
                let m = parse_matchers(&b, &mut j);
                i = j;
                m
            } else {
                Vec::new()
            };
            out.push(Selector { name, matchers });
        } else {
            i += 1;
        }
    }
    out
}

/// Every `portcullis_[a-z0-9_]+` word of a text.
fn words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("portcullis_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(is_ident) {
            out.insert(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    out
}

// ---------------------------------------------------------------------------
// The files.

/// A PromQL expression and where it comes from.
struct Query {
    origin: String,
    expr: String,
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    fn panels(list: &Value, out: &mut Vec<Query>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        origin: format!(
                            "{DASHBOARD}: panel {:?} query {}",
                            p["title"].as_str().unwrap_or("?"),
                            t["refId"].as_str().unwrap_or("?")
                        ),
                        expr: expr.to_string(),
                    });
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        if let (Some(q), Some("query")) = (q, v["type"].as_str()) {
            out.push(Query {
                origin: format!("{DASHBOARD}: variable {}", v["name"].as_str().unwrap_or("?")),
                expr: q.to_string(),
            });
        }
    }
    out
}

fn rule_queries(rules: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for g in rules["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            out.push(Query {
                origin: format!("{RULES}: {name}"),
                expr: r["expr"].as_str().expect("rule without expr").to_string(),
            });
        }
    }
    out
}

fn rule_test_series(tests: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for t in tests["tests"].as_array().into_iter().flatten() {
        for s in t["input_series"].as_array().into_iter().flatten() {
            out.push(Query {
                origin: format!("{RULE_TESTS}: test {:?}", t["name"].as_str().unwrap_or("?")),
                expr: s["series"].as_str().expect("input series").to_string(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The check.

/// Everything in `queries` and `prose` that `/metrics` does not back.
fn problems(exp: &Exposition, queries: &[Query], prose: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for q in queries {
        for sel in selectors(&q.expr) {
            let Some(labels) = exp.series.get(&sel.name) else {
                let hint = match exp.families.get(&sel.name) {
                    Some(kind) => format!(" (that is the {kind} family; query one of its series)"),
                    None => String::new(),
                };
                out.push(format!("{}: {} is not a series in /metrics{hint}", q.origin, sel.name));
                continue;
            };
            for (label, op, value) in &sel.matchers {
                if TARGET_LABELS.contains(&label.as_str()) {
                    continue;
                }
                let Some(seen) = labels.get(label) else {
                    out.push(format!(
                        "{}: {} has no label {label:?} (it has {:?})",
                        q.origin,
                        sel.name,
                        labels.keys().collect::<Vec<_>>()
                    ));
                    continue;
                };
                if FREE_VALUED_LABELS.contains(&label.as_str()) {
                    continue;
                }
                let wanted: Vec<&str> = match op.as_str() {
                    "=" => vec![value.as_str()],
                    "=~" if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') => {
                        value.split('|').collect()
                    }
                    _ => Vec::new(),
                };
                for w in wanted.into_iter().filter(|w| !w.is_empty() && !seen.contains(*w)) {
                    out.push(format!(
                        "{}: {}{{{label}=\"{w}\"}} never appeared in /metrics (seen: {seen:?}); \
                         a typo, or make tests/observability.rs exercise it",
                        q.origin, sel.name
                    ));
                }
            }
        }
    }
    for (origin, text) in prose {
        for w in words(text) {
            if !exp.series.contains_key(&w) && !exp.families.contains_key(&w) {
                out.push(format!(
                    "{origin}: {w} is neither a series nor a metric family in /metrics"
                ));
            }
        }
    }
    out
}

fn observability_files() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/observability");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn relative(p: &Path) -> String {
    p.strip_prefix(repo_root()).unwrap_or(p).display().to_string()
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn dashboard_and_alert_rules_use_only_metrics_portcullis_exports() {
    // Two issuers, the second one down: its JWKS fetches fail (and its
    // tokens are denied keys_unavailable) while the first one works.
    // A Tenuo section too, so its families have samples (a trust set loaded at start).
    // An API key file (one key), so the API key families have samples.
    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("api-keys.yaml");
    let key = "pk_ci-bot_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo";
    std::fs::write(
        &key_file,
        format!(
            "keys:\n  ci-bot: {{sha256: {}, user: ci}}\n",
            hex::encode(Sha256::digest(key))
        ),
    )
    .expect("write keys");
    let key_file = key_file.display().to_string();
    // And tracing to a collector that is not there: exports fail, counted.
    let collector = free_port();
    let s = Stack::builder()
        .idps(2)
        .idps_down_at_start(&[1])
        // A small budget that drops, so portcullis_groups_dropped_total has a sample.
        .provider0(|p| p["groups"] = serde_json::json!({"max_bytes": 64, "over_budget": "drop"}))
        .rules(serde_json::json!([
            {"path_prefix": "/deploy", "providers": ["api-keys"]},
            {"path_prefix": "/"}
        ]))
        .config(move |c| {
            c["api_keys"] = serde_json::json!({"file": key_file});
            c["tracing"] = serde_json::json!({"otlp_endpoint": format!("http://127.0.0.1:{collector}")});
            c["tenuo"] = serde_json::json!({
                "trusted_issuers": ["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"],
                "gateway": {
                    "version": "1",
                    "settings": {},
                    "tools": {"read_file": {"description": "d", "constraints": {"path": {"from": "query", "path": "path", "required": true}}}},
                    "routes": [{"pattern": "/files", "tool": "read_file"}],
                },
            });
        })
        .start();
    let (up, down) = (s.idps[0].issuer.clone(), s.idps[1].issuer.clone());
    wait_until("a JWKS success and a JWKS failure", READY_TIMEOUT, POLL, || {
        let exp = Exposition::parse(&s.admin("/metrics").text());
        let fetched = &exp
            .series
            .get("portcullis_jwks_refresh_total")
            .cloned()
            .unwrap_or_default();
        let has = |k: &str, v: &str| fetched.get(k).is_some_and(|vs| vs.contains(v));
        if has("issuer", &up) && has("issuer", &down) && has("result", "success") && has("result", "failure") {
            Ok(())
        } else {
            Err(format!("jwks_refresh_total so far: {fetched:?}"))
        }
    });

    let alice = s.token_for("alice", &["admins"]);
    let bob = s.token_for("bob", &["dev"]);
    let forged = format!(
        "{}.{}",
        alice.rsplit_once('.').expect("jwt").0,
        bob.rsplit_once('.').expect("jwt").1
    );
    assert_allowed(&s.get_bearer("/hello", &alice)); // cache miss
    assert_allowed(&s.get_bearer("/hello", &alice)); // cache hit
    assert_denied(&s.get("/hello", &[]), 401, "missing_credential");
    assert_denied(&s.get_bearer("/hello", &forged), 401, "invalid_signature"); // miss
    assert_denied(&s.get_bearer("/hello", &forged), 401, "invalid_signature"); // negative hit
    let stranded = s.idps[1].mint("RS256", user_claims("carol", &["dev"]));
    assert_denied(&s.get_bearer("/hello", &stranded), 401, "keys_unavailable");
    let many: Vec<String> = (0..20).map(|i| format!("group-{i:03}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_allowed(&s.get_bearer("/hello", &s.token_for("dora", &many))); // groups dropped
    assert_denied(
        &s.get("/files?path=/x", &[("x-tenuo-warrant", "garbage")]),
        400,
        "invalid_warrant",
    );
    assert_allowed(&s.get("/deploy/x", &[("authorization", &format!("ApiKey {key}"))]));
    let unknown = "pk_nobody_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo";
    assert_denied(
        &s.get("/deploy/x", &[("authorization", &format!("ApiKey {unknown}"))]),
        401,
        "unknown_api_key",
    );
    // The batch processor exports every 5 s: wait for the first failure.
    wait_until("a failed span export", READY_TIMEOUT, POLL, || {
        let text = s.admin("/metrics").text();
        if text.contains(r#"portcullis_trace_exports_total{result="failure"}"#) {
            Ok(())
        } else {
            Err("no failed export counted yet".to_string())
        }
    });
    // A broken config file, then SIGHUP: the reload is refused (and counted).
    std::fs::write(&s.config_path, "tenuo: [broken").expect("write config");
    s.portcullis.signal("HUP");
    wait_until("a refused Tenuo reload", READY_TIMEOUT, POLL, || {
        let text = s.admin("/metrics").text();
        if text.contains(r#"portcullis_tenuo_reloads_total{result="failure"}"#) {
            Ok(())
        } else {
            Err("no failure counted yet".to_string())
        }
    });

    let scrape = s.admin("/metrics");
    assert_eq!(scrape.status, 200);
    let exp = Exposition::parse(&scrape.text());
    assert!(
        exp.families.keys().any(|f| f.starts_with("portcullis_")),
        "no portcullis family in /metrics:\n{}",
        scrape.text()
    );

    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON");
    let mut queries = dashboard_queries(&dashboard);
    let dashboard_count = queries.len();
    queries.extend(rule_queries(&yaml(RULES)));
    queries.extend(rule_test_series(&yaml(RULE_TESTS)));
    assert!(dashboard_count >= 10, "only {dashboard_count} dashboard queries found");
    assert!(queries.len() > dashboard_count + 10, "rules or rule tests not found");

    let prose: Vec<(String, String)> = observability_files()
        .iter()
        .map(|p| (relative(p), std::fs::read_to_string(p).expect("read")))
        .collect();
    let found = problems(&exp, &queries, &prose);
    assert!(
        found.is_empty(),
        "{} problem(s):\n  {}\n\n/metrics was:\n{}",
        found.len(),
        found.join("\n  "),
        scrape.text()
    );

    // The dashboard shows every family portcullis exports.
    let shown: BTreeSet<String> = queries[..dashboard_count]
        .iter()
        .flat_map(|q| selectors(&q.expr))
        .filter_map(|sel| exp.family_of(&sel.name))
        .collect();
    let missing: Vec<&String> = exp
        .families
        .keys()
        .filter(|f| f.starts_with("portcullis_") && !shown.contains(*f))
        .collect();
    assert!(missing.is_empty(), "families not on the dashboard: {missing:?}");
}

#[test]
fn selectors_are_read_from_promql() {
    let q = r#"sum by (reason) (rate(portcullis_authz_deny_total{reason=~"a|b", job=~"$job"}[$__rate_interval]))
        / ignoring(x) histogram_quantile(0.99, portcullis_check_duration_seconds_bucket)
        + label_values(up{x="portcullis_not_a_metric"}, job) + 5m + 1e-3"#;
    assert_eq!(
        selectors(q),
        vec![
            Selector {
                name: "portcullis_authz_deny_total".into(),
                matchers: vec![
                    ("reason".into(), "=~".into(), "a|b".into()),
                    ("job".into(), "=~".into(), "$job".into()),
                ],
            },
            Selector {
                name: "portcullis_check_duration_seconds_bucket".into(),
                matchers: vec![],
            },
        ]
    );
    assert_eq!(
        words("see portcullis_cache_entries, xportcullis_y and portcullis_jwks_keys{issuer}"),
        BTreeSet::from([
            "portcullis_cache_entries".to_string(),
            "portcullis_jwks_keys".to_string()
        ])
    );
}

/// The check can fail: wrong names, labels and values are each reported.
#[test]
fn unknown_names_labels_and_values_are_reported() {
    let exp = Exposition::parse(
        "# HELP portcullis_authz_deny Checks that denied the request, by reason.\n\
         # TYPE portcullis_authz_deny counter\n\
         portcullis_authz_deny_total{reason=\"missing_credential\"} 1\n\
         # TYPE portcullis_jwks_keys gauge\n\
         portcullis_jwks_keys{issuer=\"http://127.0.0.1:1/a\\\"b\"} 2\n\
         # EOF\n",
    );
    assert_eq!(
        exp.series["portcullis_jwks_keys"]["issuer"],
        BTreeSet::from(["http://127.0.0.1:1/a\"b".to_string()])
    );
    let q = |expr: &str| Query {
        origin: "q".into(),
        expr: expr.into(),
    };
    let good = [
        q(r#"sum(rate(portcullis_authz_deny_total{reason="missing_credential", job="x"}[5m]))"#),
        q(r#"portcullis_jwks_keys{issuer="https://any.example", instance=~".+"} == 0"#),
    ];
    let prose = [(
        "p".to_string(),
        "portcullis_authz_deny and portcullis_jwks_keys".to_string(),
    )];
    assert_eq!(problems(&exp, &good, &prose), Vec::<String>::new());

    let bad = [
        q("rate(portcullis_authz_denied_total[5m])"),
        q("rate(portcullis_authz_deny[5m])"),
        q(r#"portcullis_authz_deny_total{reasons="missing_credential"}"#),
        q(r#"portcullis_authz_deny_total{reason="missing_credentials"}"#),
        q(r#"portcullis_authz_deny_total{reason=~"missing_credential|token_expird"}"#),
    ];
    let bad_prose = [("p".to_string(), "see portcullis_jwks_key".to_string())];
    let found = problems(&exp, &bad, &bad_prose);
    assert_eq!(found.len(), 6, "{found:#?}");
    for (f, needle) in found.iter().zip([
        "portcullis_authz_denied_total is not a series",
        "portcullis_authz_deny is not a series in /metrics (that is the counter family",
        "has no label \"reasons\"",
        "reason=\"missing_credentials\"} never appeared",
        "reason=\"token_expird\"} never appeared",
        "portcullis_jwks_key is neither",
    ]) {
        assert!(f.contains(needle), "{f:?} should contain {needle:?}");
    }
}
