//! Found by an attacker's review of the path judge and its neighbours: inputs
//! that portcullis and some upstream read differently. Each test failed before
//! its fix (the "FAILS-ON-MAIN" notes name the finding) and now pins the
//! refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use common::tenuo::{tenuo_section, write_gateway, Key, Minter};
use common::*;
use portcullis::policy::{Policy, Require, Rule};
use portcullis::request::judge_path;
use serde_json::json;

fn admin_policy() -> Policy {
    Policy::new(
        vec![
            Rule::new("/admin", &[], &["admins".into()], Require::Oidc),
            Rule::new("/", &[], &[], Require::Oidc),
        ],
        Require::Oidc,
    )
}

/// FAILS-ON-MAIN. Rails appends an optional `(.:format)` to every route
/// (`get "/admin"` also answers `/admin.json`, `/admin.xml`), and Spring MVC
/// before 5.3 matches `/admin.*` for `/admin` (suffix pattern matching).
/// Rule prefixes stop at `/` only, so `/admin.json` is judged by the open
/// `/` rule. It should fall under `/admin` (or be refused as ambiguous).
#[test]
fn format_suffix_is_judged_by_the_protected_rule() {
    let p = admin_policy();
    let bob = portcullis::identity::Identity::new(
        portcullis::identity::Source::OidcUser,
        "https://issuer.test".into(),
        "bob",
        "bob",
        std::time::SystemTime::now() + std::time::Duration::from_secs(60),
    );
    for path in ["/admin.json", "/admin.xml", "/admin.html"] {
        assert_eq!(judge_path(path), Ok(path), "{path} passes the judge");
        let rule = p.rule_for(path);
        assert!(
            !matches!(rule, Ok(r) if r.path_prefix() == "/"),
            "{path} is judged by the open `/` rule"
        );
        assert!(p.authorize(path, &bob).is_err(), "{path}: non-admin admitted");
    }
}

/// FAILS-ON-MAIN. The same, end to end: Envoy (normalize_path,
/// merge_slashes) forwards `/admin.json` unchanged and a user who is not
/// in `admins` reaches the upstream with it.
#[test]
fn format_suffix_reaches_the_upstream_for_a_non_admin() {
    let s = Stack::builder()
        .rules(json!([
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/", "allowed_users": []},
        ]))
        .start();
    let bob = s.token_for("bob", &["users"]);
    // Control: /admin itself is protected.
    assert_eq!(s.get_bearer("/admin", &bob).status, 403);
    let r = s.get_bearer("/admin.json", &bob);
    let reached = if r.status == 200 { Some(r.upstream().path) } else { None };
    assert_ne!(
        r.status, 200,
        "non-admin allowed, upstream saw path {reached:?} (a Rails `get '/admin'` serves it)"
    );
    assert_denied(&r, 400, "invalid_path");
}

/// FAILS-ON-MAIN. `judge_path` says it refuses code points that NFKC turns
/// into ASCII, but lists only fullwidth/small forms and dot leaders. Many
/// more fold: ª→a, 𝐚→a, ﬁ→fi (also Unicode case folding), ℀→"a/c"
/// (a slash!), ︰ (U+FE30) → ".." (a dot segment!), ︙ → "...", ᴬ → A.
/// Checked with Python's unicodedata.normalize("NFKC", …).
#[test]
fn every_nfkc_fold_to_ascii_is_refused() {
    let mut accepted = Vec::new();
    for raw in [
        "/%C2%AAdmin",             // ªdmin  -> admin
        "/%F0%9D%90%9Admin",       // 𝐚dmin  -> admin
        "/%EF%AC%81le",            // ﬁle    -> file (casefold too)
        "/%E2%84%80",              // ℀      -> a/c
        "/public/%EF%B8%B0/admin", // ︰ -> .. : /public/../admin
        "/%E1%B4%ACdmin",          // ᴬdmin  -> Admin
    ] {
        if judge_path(raw).is_ok() {
            accepted.push(raw);
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted, though NFKC folds them to ASCII: {accepted:?}"
    );
}

/// FAILS-ON-MAIN. User and email values with surrounding whitespace are
/// refused (`identity_value`), group names are not: a token with groups
/// `["users", " admins"]` is injected as `x-auth-request-groups:
/// users, admins`; every upstream that splits on `,` and trims (the norm
/// for that header) reads `admins` — and ` client:ci` escapes the
/// `client:` filter the same way. portcullis itself judges ` admins` as
/// not `admins`, so the two readers disagree. Should be 401 invalid_claims.
#[test]
fn group_names_with_edge_whitespace_are_refused() {
    let s = Stack::builder()
        .rules(json!([{"path_prefix": "/", "allowed_users": []}]))
        .start();
    // Warm-up and control: a plain token passes (the first Check may be
    // slow on a loaded machine while the JWKS is fetched).
    let warm = s.get_bearer("/app", &s.token_for("alice", &["users"]));
    assert_eq!(warm.status, 200, "{}", warm.summary());
    let mut allowed = Vec::new();
    for groups in [
        json!(["users", " admins"]),
        json!(["users", " client:ci"]),
        json!(["admins\u{2000}"]),
    ] {
        let mut claims = user_claims("mallory", &[]);
        claims["groups"] = groups.clone();
        let token = s.mint("RS256", claims);
        let r = s.get_bearer("/app", &token);
        let seen = if r.status == 200 {
            r.upstream().header("x-auth-request-groups").map(str::to_string)
        } else {
            None
        };
        if r.status != 401 {
            allowed.push(format!(
                "groups {groups} -> {} x-auth-request-groups {seen:?}",
                r.status
            ));
        }
    }
    assert!(allowed.is_empty(), "not refused:\n{}", allowed.join("\n"));
}

/// Envoy forwarding bodies, and a warrant from `issuer` required everywhere,
/// checked against the gateway config `gateway`.
fn warrant_stack(logs: &Logs, issuer: &Key, gateway: &str) -> Stack {
    let tenuo = tenuo_section(&issuer.public_hex, &write_gateway(logs, gateway));
    Stack::builder()
        .with_request_body()
        .config(move |c| {
            c["tenuo"] = tenuo;
            c["rules"] = json!([{"path_prefix": "/", "require": "tenuo"}]);
        })
        .start()
}

/// Tenuo gateway for the duplicate-key proof.
const GATEWAY: &str = r#"version: "1"
settings:
  debug_mode: true
tools:
  scale:
    description: Scale a cluster
    constraints:
      cluster: { from: path, path: cluster, required: true }
      replicas: { from: body, path: replicas, required: true }
routes:
  - { pattern: "/clusters/{cluster}/scale", method: [POST], tool: scale }
"#;

/// FAILS-ON-MAIN. A JSON body with a repeated key: serde_json keeps the
/// LAST value, so the warrant (replicas in [1, 3]) is checked against
/// `2`, while first-wins readers (Go's gjson/jsonparser, simdjson
/// on-demand, several Java streaming parsers) act on `5000`. Repeated
/// query names and headers are refused as ambiguous; repeated JSON keys
/// should be too.
#[test]
fn duplicate_json_keys_in_a_tool_body_are_refused() {
    let logs = Logs::new();
    let m = Minter::start(&logs);
    let (issuer, agent) = (m.key(), m.key());
    let s = warrant_stack(&logs, &issuer, GATEWAY);
    let w = m.mint(
        &issuer,
        &agent,
        json!({"scale": {"cluster": {"pattern": "staging-*"}, "replicas": {"range": [1, 3]}}}),
        300,
    );
    let pop = m.pop(
        &w,
        &agent,
        "scale",
        &json!({"cluster": "staging-1", "replicas": 2}),
        None,
    );
    let send = |body: &[u8]| {
        s.send(
            &Req::new("POST", "/clusters/staging-1/scale")
                .header("content-type", "application/json")
                .header("X-Tenuo-Warrant", &w.warrant)
                .header("X-Tenuo-PoP", &pop.std)
                .body(body),
        )
    };
    // Control: the honest body passes.
    let ok = send(br#"{"replicas":2}"#);
    assert_eq!(ok.status, 200, "{}", ok.summary());
    let dup = send(br#"{"replicas":5000,"replicas":2}"#);
    assert_denied(&dup, 400, "extraction_failed");
}

/// Gateway with a constrained tool and a catch-all read-only tool.
const GATEWAY_CASE: &str = r#"version: "1"
settings:
  debug_mode: true
tools:
  scale:
    description: Scale a cluster
    constraints:
      cluster: { from: path, path: cluster, required: true }
      replicas: { from: body, path: replicas, required: true }
  status:
    description: Read-only status of a cluster
    constraints:
      cluster: { from: path, path: cluster, required: true }
routes:
  - { pattern: "/clusters/{cluster}/scale", method: [POST], tool: scale }
  - { pattern: "/clusters/{cluster}/{view}", method: [GET, POST], tool: status }
"#;

/// FAILS-ON-MAIN. `rule_for` refuses a path whose letter case would move
/// it to another rule (Express and IIS route case-insensitively), but the
/// Tenuo gateway routes are matched case-sensitively with no such check:
/// `POST /clusters/staging-1/SCALE` matches the catch-all `status` route,
/// so a status-only warrant admits it, while a case-insensitive router
/// dispatches it to the `scale` handler. Should be refused (400
/// invalid_path, or no_route) like the rule-level ambiguity.
#[test]
fn tool_routes_that_differ_only_in_case_are_refused() {
    let logs = Logs::new();
    let m = Minter::start(&logs);
    let (issuer, agent) = (m.key(), m.key());
    let s = warrant_stack(&logs, &issuer, GATEWAY_CASE);
    let w = m.mint(
        &issuer,
        &agent,
        json!({"status": {"cluster": {"pattern": "staging-*"}}}),
        300,
    );
    let pop = m.pop(&w, &agent, "status", &json!({"cluster": "staging-1"}), None);
    let send = |target: &str| {
        s.send(
            &Req::new("POST", target)
                .header("content-type", "application/json")
                .header("X-Tenuo-Warrant", &w.warrant)
                .header("X-Tenuo-PoP", &pop.std)
                .body(br#"{"replicas":500}"#),
        )
    };
    // Control: the status-only warrant cannot scale.
    let scale = send("/clusters/staging-1/scale");
    assert_eq!(scale.status, 403, "{}", scale.summary());
    let upper = send("/clusters/staging-1/SCALE");
    assert_denied(&upper, 400, "extraction_failed");
}
