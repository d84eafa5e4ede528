//! An identity belongs to its provider (security hardening, part 2), through
//! real Envoy with two real issuers: rules accept the providers they name,
//! the session cookie is a credential only where a rule asks for sessions,
//! cookie-authenticated state changes need a same-origin signal, the
//! upstream learns the issuer, and an `Authorization` header portcullis did
//! not verify never reaches it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use common::browser::*;
use common::*;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Two issuers, each with a login: `corp` (idp0) and `partner` (idp1).
fn two_logins(rules: Value) -> (Stack, TempDir) {
    let files = SessionFiles::new();
    let (sessions, corp, partner) = (files.sessions(), files.login("corp"), files.login("partner"));
    let s = Stack::builder()
        .idps(2)
        .config(move |c| {
            c["sessions"] = sessions;
            c["oidc"]["providers"][0]["login"] = corp;
            c["oidc"]["providers"][1]["login"] = partner;
            c["rules"] = rules;
        })
        .start();
    for idp in &s.idps {
        idp.code_flow(json!({"client_secret": CLIENT_SECRET, "claims": {"sub": "alice", "email": "alice@example.com", "groups": ["admins"]}}));
    }
    (s, files.dir)
}

fn rules() -> Value {
    json!([
        {"path_prefix": "/internal", "login": "corp", "allowed_users": ["alice"]},
        {"path_prefix": "/community", "login": "partner"},
        {"path_prefix": "/api", "providers": ["corp"]},
        {"path_prefix": "/legacy", "login": "corp", "forward_unverified_authorization": true},
    ])
}

fn api(path: &str, b: &Browser) -> Req {
    let mut r = Req::get(path).header("Accept", "application/json");
    if let Some(c) = b.cookie_header() {
        r = r.header("Cookie", &c);
    }
    r
}

#[test]
fn a_user_name_from_another_provider_is_someone_else() {
    let (s, _dir) = two_logins(rules());
    let corp_alice = s.idps[0].mint("RS256", user_claims("alice", &[]));
    let partner_alice = s.idps[1].mint("RS256", user_claims("alice", &[]));
    // The partner's `alice` is not corp's `alice`.
    assert_denied(
        &s.get_bearer("/internal/x", &partner_alice),
        403,
        "provider_not_allowed",
    );
    let echo = assert_allowed(
        &s.send(
            &Req::get("/internal/x")
                .bearer(&corp_alice)
                .header("X-Auth-Request-Issuer", "https://evil.example")
                .header("x_auth_request_issuer", "https://evil.example"),
        ),
    );
    assert_eq!(echo.header("x-user-id"), Some("alice"));
    // The upstream learns who vouches for the user, and only from portcullis.
    assert_eq!(echo.header_all("x-auth-request-issuer"), [s.idps[0].issuer.as_str()]);
    assert_eq!(echo.header("x_auth_request_issuer"), None);
    // `/api` names corp only.
    assert_denied(&s.get_bearer("/api/v1", &partner_alice), 403, "provider_not_allowed");
    assert_allowed(&s.get_bearer("/api/v1", &corp_alice));
}

#[test]
fn a_session_made_at_one_login_does_not_open_another() {
    let (s, _dir) = two_logins(rules());
    let mut b = Browser::new();
    b.login(&s, "/community/home");
    let echo = assert_allowed(&s.send(&b.nav("/community/home")));
    assert_eq!(echo.header("x-auth-request-issuer"), Some(s.idps[1].issuer.as_str()));
    // A browser is sent to the login of /internal, not let in.
    let r = s.send(&b.nav("/internal/x"));
    assert_eq!(r.status, 302, "{}", r.summary());
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!("{}/authorize", s.idps[0].issuer)),
        "{location}"
    );
    // An API call with the same cookie is refused, not redirected.
    assert_denied(&s.send(&api("/internal/x", &b)), 403, "provider_not_allowed");
    assert_eq!(s.echo_hits(), 1, "only the /community request reached the upstream");
}

#[test]
fn the_session_cookie_is_not_a_credential_on_a_bearer_only_api() {
    let (s, _dir) = two_logins(rules());
    let mut b = Browser::new();
    b.login(&s, "/internal/x");
    assert_allowed(&s.send(&api("/internal/x", &b)));
    // The corp session is valid, but /api does not read cookies.
    assert_denied(&s.send(&api("/api/v1", &b)), 401, "missing_credential");
    let before = s.echo_hits();
    let r = s.send(&Req::new("POST", "/api/v1").header("Cookie", &b.cookie_header().unwrap_or_default()));
    assert_denied(&r, 401, "missing_credential");
    assert_eq!(s.echo_hits(), before);
}

#[test]
fn cookie_authenticated_state_changes_need_our_origin() {
    let (s, _dir) = two_logins(rules());
    let mut b = Browser::new();
    b.login(&s, "/internal/x");
    let cookie = b.cookie_header().expect("cookies");
    let post = |headers: &[(&str, &str)]| {
        s.send(
            &Req::new("POST", "/internal/form")
                .header("Cookie", &cookie)
                .headers(headers),
        )
    };
    for headers in [
        &[][..],
        &[("Sec-Fetch-Site", "cross-site")][..],
        &[("Sec-Fetch-Site", "same-site")][..],
        &[("Sec-Fetch-Site", "cross-site"), ("Origin", PUBLIC_URL)][..],
        &[("Origin", "https://evil.example")][..],
        &[("Origin", "null")][..],
        &[("Origin", "https://app.example.test.evil.example")][..],
        &[("Origin", PUBLIC_URL), ("Origin", PUBLIC_URL)][..],
    ] {
        assert_denied(&post(headers), 403, "cross_origin_request");
    }
    for method in ["PUT", "PATCH", "DELETE"] {
        let r = s.send(&Req::new(method, "/internal/x").header("Cookie", &cookie));
        assert_denied(&r, 403, "cross_origin_request");
    }
    assert_eq!(s.echo_hits(), 0, "no cross-origin state change reached the upstream");
    for headers in [
        &[("Sec-Fetch-Site", "same-origin")][..],
        &[("Sec-Fetch-Site", "none")][..],
        &[("Origin", PUBLIC_URL)][..],
    ] {
        assert_allowed(&post(headers));
    }
    // Reads need nothing; a bearer token is not sent by browsers on their own.
    assert_allowed(&s.send(&api("/internal/x", &b)));
    let token = s.idps[0].mint("RS256", user_claims("alice", &[]));
    assert_allowed(&s.send(&Req::new("POST", "/internal/form").bearer(&token)));
}

#[test]
fn an_authorization_header_portcullis_did_not_verify_never_reaches_the_upstream() {
    let (s, _dir) = two_logins(rules());
    let mut b = Browser::new();
    b.login(&s, "/internal/x");
    let basic = "Basic dXNlcjpwYXNz";
    // Cookie-authenticated, with a Basic header beside it: removed.
    let echo = assert_allowed(&s.send(&api("/internal/x", &b).header("Authorization", basic)));
    assert_eq!(echo.header("authorization"), None);
    assert_eq!(echo.header("x-user-id"), Some("alice"));
    // A rule may keep it.
    let echo = assert_allowed(&s.send(&api("/legacy/x", &b).header("Authorization", basic)));
    assert_eq!(echo.header("authorization"), Some(basic));
    // A verified bearer token is forwarded as it was.
    let token = s.idps[0].mint("RS256", user_claims("alice", &[]));
    let echo = assert_allowed(&s.get_bearer("/api/x", &token));
    assert_eq!(echo.header("authorization"), Some(format!("Bearer {token}").as_str()));
}
