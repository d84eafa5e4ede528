//! Header hygiene: a client can never make the upstream believe in an
//! identity it does not have.
//!
//! With a valid token, every spoofable identity header the client sends
//! (any letter case, duplicated, underscore variants, the `x-auth-request-*`
//! prefix, `x-forwarded-*` identity headers, configured `strip` entries) is
//! gone at the upstream, except the single value portcullis injects itself.
//! Without a valid token the request never reaches the upstream at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use common::*;
use serde_json::json;

/// Asserts that the upstream got `name` exactly once, with `want`.
fn assert_single(echo: &Echo, name: &str, want: &str) {
    let got = echo.header_all(name);
    assert_eq!(
        got,
        vec![want],
        "upstream must see exactly one {name} with the real value; all headers: {:?}",
        echo.headers
    );
}

/// Asserts that the upstream never got `name` (exact name, any case).
fn assert_absent(echo: &Echo, name: &str) {
    let got = echo.header_all(name);
    assert!(
        got.is_empty(),
        "{name} must not reach the upstream, got {got:?}; all headers: {:?}",
        echo.headers
    );
}

/// Sends an allowed request carrying each of `names` (value `admin`):
/// none reaches the upstream. Returns what the upstream saw.
fn assert_stripped(s: &Stack, token: &str, names: &[&str]) -> Echo {
    let mut req = Req::get("/data").bearer(token);
    for name in names {
        req = req.header(name, "admin");
    }
    let echo = assert_allowed(&s.send(&req));
    for name in names {
        assert_absent(&echo, name);
    }
    echo
}

#[test]
fn spoofed_user_header_in_any_letter_case_is_replaced_by_the_real_user() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    for name in ["X-User-Id", "x-user-id", "X-USER-ID", "x-UsEr-iD"] {
        let r = s.send(&Req::get("/data").bearer(&token).header(name, "admin"));
        let echo = assert_allowed(&r);
        assert_single(&echo, name, "alice");
    }
}

#[test]
fn duplicated_user_header_reaches_upstream_once_with_the_real_value() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let r = s.send(
        &Req::get("/data")
            .header("x-user-id", "admin")
            .bearer(&token)
            .header("x-user-id", "root")
            .header("X-User-Id", "mallory"),
    );
    let echo = assert_allowed(&r);
    assert_single(&echo, "x-user-id", "alice");
}

#[test]
fn underscore_variants_of_identity_headers_never_reach_upstream() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let spoofed = [
        "x_user_id",
        "X_User_Id",
        "x_auth_request_email",
        "X_Auth_Request_Groups",
        "x_auth_request_user",
        "x_forwarded_user",
        "X_FORWARDED_EMAIL",
    ];
    let echo = assert_stripped(&s, &token, &spoofed);
    assert_single(&echo, "x-user-id", "alice");
    assert_single(&echo, "x-auth-request-email", "alice@example.com");
    assert_single(&echo, "x-auth-request-groups", "users");
}

#[test]
fn spoofed_email_and_groups_are_replaced_by_the_token_values() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users", "devs"]);
    let r = s.send(
        &Req::get("/data")
            .header("X-Auth-Request-Email", "ceo@example.com")
            .header("x-auth-request-groups", "admins")
            .header("X-AUTH-REQUEST-GROUPS", "root")
            .bearer(&token),
    );
    let echo = assert_allowed(&r);
    assert_single(&echo, "x-auth-request-email", "alice@example.com");
    assert_single(&echo, "x-auth-request-groups", "users,devs");
}

#[test]
fn spoofed_email_is_dropped_when_the_token_has_no_email() {
    let s = Stack::start();
    let token = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "groups": ["users"]}),
    );
    let r = s.send(
        &Req::get("/data")
            .header("x-auth-request-email", "ceo@example.com")
            .bearer(&token),
    );
    let echo = assert_allowed(&r);
    assert_absent(&echo, "x-auth-request-email");
    assert_single(&echo, "x-user-id", "alice");
}

#[test]
fn auth_request_prefix_headers_are_all_stripped() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let spoofed = [
        "X-Auth-Request-User",
        "x-auth-request-anything",
        "X-AUTH-REQUEST-PREFERRED-USERNAME",
        "x-auth-request-access-token",
    ];
    assert_stripped(&s, &token, &spoofed);
}

#[test]
fn forwarded_identity_headers_are_stripped() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let spoofed = [
        "X-Forwarded-User",
        "x-forwarded-email",
        "X-Forwarded-Groups",
        "x-forwarded-preferred-username",
    ];
    assert_stripped(&s, &token, &spoofed);
}

/// The built-in names other auth proxies inject (oauth2-proxy, Grafana and
/// Gitea auth-proxy mode, Authelia) and the method/URL overrides some
/// frameworks honour: each sent in mixed case and in its `_` spelling, and
/// none reaches the upstream, with no configuration.
#[test]
fn other_proxies_identity_headers_and_routing_overrides_are_stripped() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let builtin = [
        "x-forwarded-access-token",
        "x-webauth-user",
        "x-webauth-email",
        "remote-user",
        "remote-groups",
        "remote-email",
        "remote-name",
        "x-remote-user",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        // portcullis' own workload principal (no mTLS here: none to inject).
        "x-portcullis-principal",
    ];
    let mixed_case = |n: &str| -> String {
        n.split('-')
            .map(|part| {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-")
    };
    let mut sent: Vec<String> = Vec::new();
    for name in builtin {
        sent.push(mixed_case(name));
        sent.push(name.to_ascii_uppercase().replace('-', "_"));
    }
    let mut req = Req::get("/data").bearer(&token);
    for name in &sent {
        let value = if name.to_ascii_lowercase().contains("url") {
            "/admin"
        } else {
            "admin"
        };
        req = req.header(name, value);
    }
    let echo = assert_allowed(&s.send(&req));
    assert_eq!((echo.method.as_str(), echo.path.as_str()), ("GET", "/data"));
    for name in &sent {
        assert_absent(&echo, name);
    }
    assert_single(&echo, "x-user-id", "alice");
}

#[test]
fn configured_strip_entries_and_prefixes_are_removed_but_other_headers_pass() {
    let s = Stack::builder()
        .config(|c| c["headers"]["strip"] = json!(["x-internal-role", "x-tenant-*"]))
        .start();
    let token = s.token_for("alice", &["users"]);
    let r = s.send(
        &Req::get("/data")
            .bearer(&token)
            .header("X-Internal-Role", "admin")
            .header("x_internal_role", "admin")
            .header("x-tenant-id", "other-tenant")
            .header("X-Tenant-Plan", "enterprise")
            .header("x-tenantless", "kept")
            .header("X-Request-Note", "kept too"),
    );
    let echo = assert_allowed(&r);
    for name in ["x-internal-role", "x_internal_role", "x-tenant-id", "x-tenant-plan"] {
        assert_absent(&echo, name);
    }
    // Stripping is targeted: unrelated headers are forwarded untouched.
    assert_single(&echo, "x-tenantless", "kept");
    assert_single(&echo, "x-request-note", "kept too");
    assert_single(&echo, "x-user-id", "alice");
}

#[test]
fn custom_injected_header_names_are_injected_and_spoofs_of_them_stripped() {
    let s = Stack::builder()
        .config(|c| {
            c["headers"]["user"] = json!("x-remote-user");
            c["headers"]["email"] = json!("x-remote-email");
            c["headers"]["groups"] = json!("x-remote-groups");
        })
        .start();
    let token = s.token_for("alice", &["users", "devs"]);
    let r = s.send(
        &Req::get("/data")
            .bearer(&token)
            .header("X-Remote-User", "admin")
            .header("x_remote_user", "admin")
            .header("X-Remote-Groups", "admins")
            .header("X-User-Id", "admin"),
    );
    let echo = assert_allowed(&r);
    assert_single(&echo, "x-remote-user", "alice");
    assert_single(&echo, "x-remote-email", "alice@example.com");
    assert_single(&echo, "x-remote-groups", "users,devs");
    assert_absent(&echo, "x_remote_user");
    // The built-in spoofable set is stripped even when not used for injection.
    assert_absent(&echo, "x-user-id");
}

#[test]
fn spoofed_headers_without_a_token_get_401_and_never_reach_upstream() {
    let s = Stack::start();
    let r = s.send(
        &Req::get("/data")
            .header("X-User-Id", "admin")
            .header("x-auth-request-groups", "admins")
            .header("X-Forwarded-User", "admin"),
    );
    assert_denied(&r, 401, "missing_credential");
    assert_eq!(s.echo_hits(), 0, "a denied request must not reach the upstream");
}

#[test]
fn spoofed_headers_with_an_invalid_token_get_401_and_never_reach_upstream() {
    let s = Stack::start();
    let r = s.send(
        &Req::get("/data")
            .header("X-User-Id", "admin")
            .header("Authorization", "Bearer not.a.token"),
    );
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(s.echo_hits(), 0, "a denied request must not reach the upstream");
}

#[test]
fn spoofed_admin_group_does_not_pass_a_group_rule() {
    let s = Stack::builder()
        .rules(json!([
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/", "allowed_users": []},
        ]))
        .start();
    let token = s.token_for("bob", &["users"]);
    let r = s.send(
        &Req::get("/admin/users")
            .bearer(&token)
            .header("x-auth-request-groups", "admins")
            .header("X-Forwarded-Groups", "admins"),
    );
    assert_denied(&r, 403, "group_not_allowed");
    assert_eq!(s.echo_hits(), 0, "a denied request must not reach the upstream");
}

/// envoy/envoy.yaml opts `/healthz` out of ext_authz; the route itself
/// removes the well-known identity headers so nothing spoofed gets through.
#[test]
fn unauthenticated_health_route_still_drops_well_known_identity_headers() {
    let s = Stack::start();
    let r = s.send(
        &Req::get("/healthz")
            .header("X-User-Id", "admin")
            .header("x-auth-request-email", "ceo@example.com")
            .header("X-Auth-Request-Groups", "admins")
            .header("X-Forwarded-User", "admin"),
    );
    let echo = assert_allowed(&r);
    assert_eq!(echo.path, "/healthz");
    for name in [
        "x-user-id",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-forwarded-user",
    ] {
        assert_absent(&echo, name);
    }
}

/// The opt-out is for GET and HEAD only: any other method on `/healthz`
/// goes through ext_authz like every other path.
#[test]
fn health_route_opt_out_is_only_for_get_and_head() {
    let s = Stack::start();
    // (HEAD is opted out too; the raw test client cannot read a HEAD answer.)
    let r = s.send(&Req::get("/healthz"));
    assert_eq!(assert_allowed(&r).method, "GET", "GET /healthz without credentials");
    assert_eq!(s.echo_hits(), 1);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = s.send(&Req::new(method, "/healthz").header("X-User-Id", "admin"));
        assert_denied(&r, 401, "missing_credential");
    }
    assert_eq!(s.echo_hits(), 1, "no other method on /healthz reaches the upstream");
    let token = s.token_for("poster", &["users"]);
    let echo = assert_allowed(&s.send(&Req::new("POST", "/healthz").bearer(&token).header("X-User-Id", "admin")));
    assert_eq!(echo.method, "POST");
    assert_eq!(
        echo.header("x-user-id"),
        Some("poster"),
        "checked: the spoofed x-user-id is replaced"
    );
}

/// Identity headers always belong to the request's own token, also under
/// concurrency and with a decision cache in play.
#[test]
fn concurrent_requests_never_mix_identities() {
    let s = Stack::start();
    let users = ["ann", "ben", "cat", "dan"];
    let tokens: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.to_string(), s.token_for(u, &[&format!("team-{u}")])))
        .collect();
    let addr = s.envoy();
    std::thread::scope(|scope| {
        for (user, token) in &tokens {
            scope.spawn(move || {
                for i in 0..25 {
                    let r = http::send(
                        addr,
                        &Req::get(&format!("/u/{user}/{i}"))
                            .bearer(token)
                            .header("X-User-Id", "someone-else"),
                    )
                    .expect("request");
                    let echo = assert_allowed(&r);
                    assert_eq!(echo.path, format!("/u/{user}/{i}"));
                    assert_eq!(echo.header_all("x-user-id"), vec![user.as_str()]);
                    assert_eq!(
                        echo.header_all("x-auth-request-groups"),
                        vec![format!("team-{user}").as_str()]
                    );
                }
            });
        }
    });
    assert_eq!(s.echo_hits(), 100);
}
