//! Red team: hostile input against the full Envoy + portcullis deployment,
//! and against portcullis' gRPC API directly (as a mesh sidecar would call
//! it, without Envoy's path normalisation in front).
//!
//! Attack classes covered:
//! - **Resource exhaustion**: oversized `Authorization` headers (just over
//!   `max_token_bytes`, 50 KB, beyond Envoy's header limit); a flood of
//!   tokens with forged `kid`s that must not turn portcullis into a JWKS
//!   hammer against the IdP.
//! - **Parser abuse**: binary, control and non-UTF-8 bytes in headers;
//!   junk around a valid token.
//! - **Signature forgery**: `alg: none`, HMAC keyed with the public key,
//!   tampered payloads, attacker keys presented via `kid`, embedded `jwk`
//!   and `jku` headers.
//! - **Path confusion**: dot segments, doubled slashes, percent-encoded
//!   letters, dots and slashes, absolute-form targets — a non-admin never
//!   reaches an `/admin` resource, through Envoy or directly over gRPC; an
//!   open rule prefix does not open sibling paths (`/admin/public` vs
//!   `/admin/publicity`).
//! - **Header injection through claims**: CR/LF in claims, commas inside
//!   group names smuggling extra groups into the joined groups header.
//! - **Credential placement**: tokens in the query string are ignored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn admin_stack() -> Stack {
    Stack::builder()
        .rules(json!([
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/", "allowed_users": []},
        ]))
        .start()
}

fn assert_4xx(r: &Resp, what: &str) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: expected a 4xx, got {}",
        r.summary()
    );
}

// ---------------------------------------------------------------------------
// Resource exhaustion.

#[test]
fn token_just_over_max_token_bytes_is_401_token_too_large() {
    let mut s = Stack::start();
    let at_limit = "a".repeat(8192);
    assert_denied(&s.get_bearer("/", &at_limit), 401, "malformed_token");
    let over = "a".repeat(8193);
    assert_denied(&s.get_bearer("/", &over), 401, "token_too_large");
    // A real token padded past the limit is still too large.
    let token = s.token_for("alice", &["users"]);
    let padded = format!("{token}{}", "A".repeat(8193 - token.len()));
    assert_denied(&s.get_bearer("/", &padded), 401, "token_too_large");
    s.assert_alive();
}

#[test]
fn fifty_kilobyte_authorization_header_is_denied_and_server_survives() {
    let mut s = Stack::start();
    let huge = "x".repeat(50 * 1024);
    let r = s.get_bearer("/", &huge);
    assert_4xx(&r, "50 KB bearer");
    if r.status == 401 {
        assert_denied(&r, 401, "token_too_large");
    }
    // Huge but token-shaped.
    let shaped = format!("{}.{}.{}", "e".repeat(20_000), "f".repeat(20_000), "g".repeat(10_000));
    assert_4xx(&s.get_bearer("/", &shaped), "50 KB token-shaped bearer");
    assert_eq!(s.echo_hits(), 0);
    s.assert_alive();
}

#[test]
fn header_beyond_envoy_limit_is_rejected_and_server_survives() {
    let mut s = Stack::start();
    let huge = "y".repeat(100 * 1024);
    match s.send_raw(&Req::get("/").bearer(&huge).to_bytes("x")) {
        Ok(r) => assert_4xx(&r, "100 KB header"),
        // Envoy may also just reset the connection; that is a denial too.
        Err(e) => eprintln!("connection closed on a 100 KB header: {e}"),
    }
    assert_eq!(s.echo_hits(), 0);
    s.assert_alive();
}

#[test]
fn forged_kid_flood_does_not_hammer_the_jwks_endpoint() {
    let mut s = Stack::start();
    let tokens = s.idp().attack_with(json!({"kind": "unknown-kid", "count": 200}));
    assert_eq!(tokens.len(), 200);
    s.idp().reset_stats();
    let started = Instant::now();
    for (i, token) in tokens.iter().enumerate() {
        let r = s.get_bearer("/", token);
        assert_eq!(r.status, 401, "forged kid #{i}: {}", r.summary());
    }
    let elapsed = started.elapsed();
    let stats = s.idp().stats();
    let jwks = stats["jwks_requests"].as_u64().unwrap();
    let discovery = stats["discovery_requests"].as_u64().unwrap();
    // jwks_min_refetch_seconds = 5: at most one refetch per 5 s of flood.
    let allowed = 1 + elapsed.as_secs() / 5;
    assert!(
        jwks <= allowed && discovery <= allowed,
        "200 forged kids in {elapsed:?} caused {jwks} JWKS and {discovery} discovery fetches (allowed {allowed})"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "flood took {elapsed:?}: portcullis is not staying responsive"
    );
    assert_eq!(s.echo_hits(), 0);
    s.assert_alive();
}

// ---------------------------------------------------------------------------
// Parser abuse.

#[test]
fn binary_and_control_bytes_in_authorization_are_denied() {
    let mut s = Stack::start();
    let values: Vec<Vec<u8>> = vec![
        b"Bearer \x01\x02\x03".to_vec(),
        b"Bearer \x7f\x7f".to_vec(),
        b"Bearer \xff\xfe\xfd".to_vec(),
        b"Bearer \xc3\x28.\xa0\xa1.\xe2\x28\xa1".to_vec(),
        "Bearer ééé.ààà.üüü".as_bytes().to_vec(),
        b"\xff\xff\xff".to_vec(),
        b"Bearer\ttabbed".to_vec(),
    ];
    for v in values {
        let req = Req::get("/").header_bytes(b"Authorization", &v);
        match s.send_raw(&req.to_bytes("x")) {
            Ok(r) => assert_4xx(&r, &format!("Authorization {v:?}")),
            Err(e) => panic!("Authorization {v:?}: no response ({e})"),
        }
    }
    assert_eq!(s.echo_hits(), 0);
    s.assert_alive();
}

/// Arbitrary bytes in an unrelated header must not break authorization of
/// an otherwise valid request (no fail-closed 5xx for legitimate users).
#[test]
fn non_utf8_bytes_in_an_unrelated_header_do_not_break_a_valid_request() {
    let mut s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let req = Req::get("/")
        .bearer(&token)
        .header_bytes(b"X-Legacy-Name", b"Jos\xe9 M\xfcller");
    let r = s
        .send_raw(&req.to_bytes("x"))
        .expect("response to a request with a latin-1 header");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.upstream().header_all("x-user-id"), vec!["alice"]);
    s.assert_alive();
}

#[test]
fn junk_around_a_valid_token_is_rejected() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    for value in [
        format!("Bearer {token} extra"),
        format!("Bearer {token},"),
        format!("Bearer {token}.x"),
        format!("Bearer x{token}"),
        format!("Bearer\"{token}\""),
        format!("Bearer {token}, Bearer {token}"),
        format!("Basic {token}"),
        format!("Token {token}"),
        format!("Bearer{token}"),
    ] {
        let r = s.get("/", &[("Authorization", &value)]);
        assert_eq!(r.status, 401, "{value:.40}…: {}", r.summary());
    }
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn token_in_query_string_is_not_a_credential() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    let r = s.get(&format!("/data?access_token={token}"), &[]);
    assert_denied(&r, 401, "missing_credential");
    assert_eq!(s.echo_hits(), 0);
}

// ---------------------------------------------------------------------------
// Signature forgery.

#[test]
fn forged_signatures_never_authenticate() {
    let mut s = Stack::start();
    // Each attack is refused at the first check it fails: the algorithm
    // (none does not even parse; HMAC or a key of another type is not
    // allowed), then the key (only the issuer's JWKS, by kid), then the signature.
    let cases = [
        ("alg-none", "malformed_token"),
        ("hs256-with-public-key", "disallowed_algorithm"),
        ("payload-tamper", "invalid_signature"),
        ("forged-real-kid", "invalid_signature"),
        ("bad-signature", "invalid_signature"),
        ("unknown-kid", "unknown_key"),
        ("embedded-jwk", "unknown_key"),
        ("jku", "unknown_key"),
        ("alg-key-mismatch", "disallowed_algorithm"),
    ];
    for (kind, reason) in cases {
        for token in s.attack(kind) {
            let r = s.get_bearer("/admin", &token);
            assert_eq!(r.status, 401, "attack {kind}: {}", r.summary());
            assert_denied(&r, 401, reason);
        }
    }
    assert_eq!(s.echo_hits(), 0, "no forged token may reach the upstream");
    assert_eq!(
        s.idp().stats()["attacker_jwks_requests"],
        json!(0),
        "portcullis must never fetch a key set named by the token (jku)"
    );
    s.assert_alive();
}

// ---------------------------------------------------------------------------
// Path confusion through Envoy.

const PATH_TRICKS: &[&str] = &[
    "/admin",
    "/admin/",
    "/admin/../admin",
    "//admin",
    "///admin//users",
    "/public/../admin",
    "/public/./../admin/users",
    "/./admin",
    "/%61dmin",
    "/ad%6Din/users",
    "/%2e%2e/admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/admin%2fx",
    "/admin%2Fx",
    "/public/..%2fadmin",
    "/public/..%5cadmin",
    "/admin%5cx",
    "/admin;x=1",
    "/admin/..%3Bx/users",
    "/admin/..%3b/users",
    "/public/..;/admin",
    "/ADMIN/users",
    "/Admin",
    "/public/%c0%ae%c0%ae/admin",
    "/%EF%BC%8Fadmin",
    "/admin.json",
    "/Admin.json",
    "/admin?x=/public",
    "/admin#/public",
    "/admin%00",
    "/admin%23/public",
    "http://127.0.0.1/admin",
];

#[test]
fn path_tricks_never_let_a_non_admin_reach_admin_resources() {
    let mut s = admin_stack();
    let user = s.token_for("bob", &["users"]);
    for path in PATH_TRICKS {
        let r = s.send(&Req::get(path).bearer(&user));
        if r.status == 200 {
            let seen = r.upstream().path;
            let p = seen.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
            assert!(
                !p.contains("admin"),
                "{path}: a non-admin reached the upstream at {seen:?}"
            );
        } else {
            assert_4xx(&r, path);
        }
    }
    assert_eq!(
        s.echo_hits(),
        0,
        "nothing in PATH_TRICKS is a non-admin path: {:?}",
        s.echo.seen().iter().map(|e| e.path.clone()).collect::<Vec<_>>()
    );
    // What Envoy itself does (1.40, `normalize_path`): it reads `..;` as
    // `..` and `\` as `/`, so the upstream gets `/users` — the very path
    // portcullis judged. `..%3B` it leaves alone, and portcullis refuses it.
    for (sent, forwarded) in [("/admin/..;/users", "/users"), ("/admin\\..\\users", "/users")] {
        let echo = assert_allowed(&s.send(&Req::get(sent).bearer(&user)));
        assert_eq!(echo.path, forwarded, "{sent}");
    }
    assert_denied(
        &s.send(&Req::get("/admin/..%3Bx/users").bearer(&user)),
        400,
        "invalid_path",
    );
    // Positive control: the same paths work for an admin where they are valid.
    let admin = s.token_for("ada", &["admins"]);
    for path in ["/admin/../admin", "//admin", "/%61dmin", "/public/../admin"] {
        let echo = assert_allowed(&s.send(&Req::get(path).bearer(&admin)));
        assert_eq!(echo.path, "/admin", "{path} normalised by Envoy");
    }
    s.assert_alive();
}

/// A rule prefix is a path, not a string prefix: opening `/admin/public`
/// must not also open `/admin/publicity` or `/admin/public-secrets`, which
/// the `/admin` rule protects.
#[test]
fn open_rule_prefix_does_not_open_sibling_paths_of_a_protected_prefix() {
    let s = Stack::builder()
        .rules(json!([
            {"path_prefix": "/admin/public", "allowed_users": []},
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/", "allowed_users": []},
        ]))
        .start();
    let user = s.token_for("bob", &["users"]);
    // Control: the open prefix itself and paths below it are open.
    for path in ["/admin/public", "/admin/public/", "/admin/public/docs?x=1"] {
        assert_allowed(&s.get_bearer(path, &user));
    }
    let hits = s.echo_hits();
    for path in ["/admin/publicity", "/admin/public-secrets"] {
        assert_denied(&s.get_bearer(path, &user), 403, "group_not_allowed");
    }
    // `/admin/public.bak` is `/admin/public` to a reader that takes `.bak`
    // for a format suffix, and `/admin/…` to the others: refused.
    assert_denied(&s.get_bearer("/admin/public.bak", &user), 400, "invalid_path");
    assert_eq!(s.echo_hits(), hits);
}

// ---------------------------------------------------------------------------
// Path confusion straight at the gRPC API (no Envoy normalisation).

mod grpc {
    use super::*;
    use envoy_types::pb::envoy::service::auth::v3::{authorization_client::AuthorizationClient, check_response};

    pub struct Decision {
        pub grpc_code: i32,
        pub http_status: Option<i32>,
        pub reason: Option<String>,
    }

    pub fn check(s: &Stack, path: &str, headers: &[(&str, &str)]) -> Decision {
        let req = check_request(path, headers);
        let url = format!("http://{}", s.grpc_addr);
        let resp = s.block_on(async move {
            let mut client = AuthorizationClient::connect(url).await.expect("connect gRPC");
            client.check(req).await.expect("Check RPC").into_inner()
        });
        let grpc_code = resp.status.map(|st| st.code).unwrap_or(0);
        let (http_status, reason) = match resp.http_response {
            Some(check_response::HttpResponse::DeniedResponse(d)) => {
                let reason = d
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key.eq_ignore_ascii_case("x-portcullis-deny-reason"))
                    .map(|h| h.value.clone());
                (d.status.map(|st| st.code), reason)
            }
            _ => (None, None),
        };
        Decision {
            grpc_code,
            http_status,
            reason,
        }
    }
}

#[test]
fn grpc_check_without_envoy_normalisation_denies_path_tricks() {
    let s = admin_stack();
    let user = s.token_for("bob", &["users"]);
    let auth = format!("Bearer {user}");
    let headers = [("authorization", auth.as_str())];

    // Positive control: a plain public path is allowed for this user.
    let ok = grpc::check(&s, "/public/x", &headers);
    assert_eq!(ok.grpc_code, 0, "plain public path must be allowed");

    // The rule's own path is judged by the rule.
    let d = grpc::check(&s, "/admin/x", &headers);
    assert_eq!(
        (d.reason.as_deref(), d.http_status),
        (Some("group_not_allowed"), Some(403))
    );
    // Everything a reader could take for another path is refused as such,
    // whichever way it would resolve.
    for path in [
        "/public/../admin",
        "/public/./../admin/x",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/ad%6din",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public/..\\admin",
        "/admin%2fx",
        "admin",
        "",
        "*",
        "/public/%2e%2e%2fadmin",
        // `;` parameters: dropped by servlet containers, kept by nginx,
        // Express, Starlette, Go — portcullis reads them neither way.
        "/admin/..;/users",
        "/admin/..%3Bx/users",
        "/admin/..%3b/users",
        "/users;/../admin",
        "/admin;jsessionid=1",
        // Case-insensitive routers would dispatch these into /admin.
        "/ADMIN/users",
        "/aDmin",
        // Lenient decoders and Unicode folding.
        "/public/%c0%ae%c0%ae/admin",
        "/%EF%BD%81dmin",
        "/public/%E2%80%A5/admin",
    ] {
        let d = grpc::check(&s, path, &headers);
        assert_eq!(
            (d.reason.as_deref(), d.http_status),
            (Some("invalid_path"), Some(400)),
            "{path:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Header injection through claims.

#[test]
fn crlf_in_claims_cannot_inject_headers() {
    let mut s = Stack::start();
    for claims in [
        json!({"sub": "alice\r\nx-admin: true", "aud": "portcullis"}),
        json!({"sub": "alice", "aud": "portcullis", "email": "a@example.com\r\nx-admin: true"}),
        json!({"sub": "alice", "aud": "portcullis", "groups": ["users\r\nx-admin: true"]}),
        json!({"sub": "alice\nx-admin: true", "aud": "portcullis"}),
        json!({"sub": "alice\u{0}", "aud": "portcullis"}),
    ] {
        let token = s.mint("RS256", claims.clone());
        let r = s.get_bearer("/", &token);
        if r.status == 200 {
            let echo = r.upstream();
            assert!(
                echo.header_all("x-admin").is_empty(),
                "{claims}: injected a header: {:?}",
                echo.headers
            );
            for (n, v) in &echo.headers {
                assert!(
                    !v.contains(['\r', '\n', '\0']),
                    "{claims}: control character in {n}: {v:?}"
                );
            }
        } else {
            assert_denied(&r, 401, "invalid_claims");
        }
    }
    s.assert_alive();
}

#[test]
fn comma_inside_a_group_name_cannot_smuggle_an_extra_group() {
    let s = admin_stack();
    let token = s.mint(
        "RS256",
        json!({"sub": "mallory", "aud": "portcullis", "groups": ["users,admins"]}),
    );
    let admin = s.get_bearer("/admin", &token);
    let other = s.get_bearer("/reports", &token);
    if other.status == 200 {
        // Accepted: then the exact-name rule must still refuse /admin, and the
        // joined groups header must not read as "users" + "admins".
        assert_denied(&admin, 403, "group_not_allowed");
        for v in other.upstream().header_all("x-auth-request-groups") {
            assert!(
                !v.split(',').any(|g| g.trim() == "admins"),
                "groups header {v:?} lets the upstream read a group `admins` the token does not have"
            );
        }
    } else {
        // Or the ambiguous claim is refused outright.
        assert_denied(&other, 401, "invalid_claims");
        assert_denied(&admin, 401, "invalid_claims");
    }
    assert_eq!(s.echo_hits(), usize::from(other.status == 200));
}
