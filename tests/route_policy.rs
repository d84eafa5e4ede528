//! Per-route policy through real Envoy: envoy/envoy.yaml with routes whose
//! `ExtAuthzPerRoute.check_settings.context_extensions` name a portcullis
//! policy (`portcullis_policy`). The named policy decides on its routes, the
//! path rules elsewhere; an unknown name closes its route; nothing a client
//! sends (header, query, path) chooses or changes the policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use common::*;
use serde_json::{json, Value};

/// Routes added before envoy/envoy.yaml's catch-all `prefix: /` route, each
/// naming a policy the way an operator would.
fn with_policy_routes(rendered: &str) -> String {
    let catch_all = "                        - match: { prefix: / }\n";
    assert_eq!(
        rendered.matches(catch_all).count(),
        1,
        "envoy/envoy.yaml must have one catch-all route"
    );
    let route = |prefix: &str, policy: &str| {
        format!(
            r#"                        - match: {{ prefix: {prefix} }}
                          route: {{ cluster: upstream }}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              check_settings:
                                context_extensions:
                                  portcullis_policy: {policy}
"#
        )
    };
    let routes = [
        route("/console", "admins-only"),
        // A typo, as it would happen in a real route.
        route("/reports", "admins-olny"),
    ]
    .concat();
    rendered.replacen(catch_all, &format!("{routes}{catch_all}"), 1)
}

/// Path rules open every path to any user; `admins-only` is a named policy.
fn stack() -> Stack {
    let mut s = Stack::builder()
        .rules(json!([{"path_prefix": "/"}]))
        .config(|c| c["policies"] = json!({"admins-only": {"allowed_groups": ["admins"]}}))
        .without_envoy()
        .start();
    s.start_envoy_edited(with_policy_routes);
    s
}

#[test]
fn the_route_s_policy_decides_on_its_routes_and_the_path_rules_elsewhere() {
    let s = stack();
    let user = s.token_for("alice", &["users"]);
    let admin = s.token_for("root", &["admins"]);
    // The path rules: anyone with a token.
    let echo = assert_allowed(&s.get_bearer("/app/x", &user));
    assert_eq!(echo.header("x-user-id"), Some("alice"));
    // /console: the route names admins-only.
    assert_denied(&s.get_bearer("/console/x", &user), 403, "group_not_allowed");
    let echo = assert_allowed(&s.get_bearer("/console/x", &admin));
    assert_eq!(echo.header("x-user-id"), Some("root"));
    assert_eq!(echo.header("x-auth-request-groups"), Some("admins"));
    assert_denied(&s.get("/console/x", &[]), 401, "missing_credential");
    // /reports names a policy that does not exist: closed, even to admins,
    // rather than open by the `/` rule.
    assert_denied(&s.get_bearer("/reports/q1", &admin), 403, "unknown_policy");
    assert_denied(&s.get_bearer("/reports", &user), 403, "unknown_policy");
    assert_eq!(s.echo_hits(), 2, "only the two allowed requests reached the upstream");
    // The denial is logged with the route's name, and counted.
    let metrics = s.admin("/metrics").text();
    assert!(
        metrics.contains(r#"portcullis_authz_deny_total{reason="unknown_policy"} 2"#),
        "{metrics}"
    );
    let out = s.portcullis.stdout();
    let line = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["reason"] == "unknown_policy")
        .expect("unknown_policy log line");
    assert_eq!(line["event"], "authorization_denied");
    assert_eq!(line["policy"], "admins-olny");
    assert_eq!(line["path"], "/reports/q1");
}

#[test]
fn a_client_cannot_choose_or_change_the_policy() {
    let s = stack();
    let user = s.token_for("alice", &["users"]);
    let spellings = ["portcullis_policy", "portcullis-policy", "x-portcullis-policy"];
    // Not to escape the route's policy: a header, a query parameter.
    for name in spellings {
        let r = s.send(&Req::get("/console/x").bearer(&user).header(name, "open"));
        assert_denied(&r, 403, "group_not_allowed");
    }
    for query in [
        "?portcullis_policy=",
        "?portcullis_policy=open",
        "?context_extensions=x",
    ] {
        let r = s.get_bearer(&format!("/console/x{query}"), &user);
        assert_denied(&r, 403, "group_not_allowed");
    }
    // Not to put a policy on a route that names none (it would be an
    // unknown name, or another policy).
    for name in spellings {
        let r = s.send(&Req::get("/app/x").bearer(&user).header(name, "admins-olny"));
        assert_allowed(&r);
    }
    assert_allowed(&s.get_bearer("/app/x?portcullis_policy=admins-olny", &user));
    // Not by path: `/app/../console` is normalized by Envoy before routing,
    // so it is the /console route with its policy.
    assert_denied(&s.get_bearer("/app/../console/x", &user), 403, "group_not_allowed");
    assert_denied(&s.get_bearer("/app/%2e%2e/console/x", &user), 403, "group_not_allowed");
}
