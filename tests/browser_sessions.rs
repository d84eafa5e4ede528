//! Browser sessions end to end, with real peers: Envoy in front, the real
//! portcullis binary, and oauth2-mock-server as the OIDC issuer (its own
//! /authorize, /token, /userinfo and /endsession; tests/idp/idp.mjs makes
//! its token endpoint strict about codes, PKCE, refresh tokens and the
//! client secret). The browser is `common::browser::Browser`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::browser::*;
use common::*;
use portcullis::session::cookie::Sealer;
use serde_json::{json, Value};
use tempfile::TempDir;
use url::Url;

/// A stack with browser sessions: login `idp` on everything but `/api`.
fn session_stack(edit: impl FnOnce(&mut Value, &Path) + 'static) -> (Stack, TempDir) {
    let files = SessionFiles::new();
    let (sessions, login) = (files.sessions(), files.login("idp"));
    let d = files.dir.path().to_path_buf();
    let s = Stack::builder()
        .config(move |c| {
            c["sessions"] = sessions;
            c["oidc"]["providers"][0]["login"] = login;
            c["rules"] = json!([
                {"path_prefix": "/api"},
                {"path_prefix": "/admin", "allowed_groups": ["admins"], "login": "idp"},
                {"path_prefix": "/", "login": "idp"},
            ]);
            edit(c, &d);
        })
        .start();
    s.idp().code_flow(alice());
    (s, files.dir)
}

fn alice() -> Value {
    json!({"client_secret": CLIENT_SECRET, "claims": {"sub": "alice", "email": "alice@example.com", "groups": ["users", "devs"]}})
}

fn session_cookie(b: &Browser) -> String {
    b.cookie(COOKIE).expect("session cookie").to_string()
}

fn set_cookie_for<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

// ---------------------------------------------------------------------------
// The flow.

#[test]
fn browser_login_sets_a_session_and_the_upstream_sees_the_identity() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/app/page?x=1&y=%2F");
    let idp = s.idp();
    assert_eq!(
        authorize.as_str().split('?').next(),
        Some(format!("{}/authorize", idp.issuer).as_str())
    );
    assert_eq!(query_param(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(query_param(&authorize, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(format!("{PUBLIC_URL}/oauth2/callback").as_str())
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&authorize, "code_challenge").map(|c| c.len()), Some(43));
    assert_eq!(
        query_param(&authorize, "scope").as_deref(),
        Some("openid email profile offline_access")
    );
    let state = query_param(&authorize, "state").expect("state");
    let nonce = query_param(&authorize, "nonce").expect("nonce");
    assert!(state.len() >= 43 && nonce.len() >= 43 && state != nonce);
    // The login state travels in its own short-lived sealed cookie.
    let login_cookie = b
        .jar
        .iter()
        .find(|(n, _)| n.starts_with(&format!("{COOKIE}-login-")))
        .expect("login-state cookie")
        .clone();
    assert!(!login_cookie.1.contains(&state), "state is sealed, not in clear");

    let callback = b.authorize(&s, &authorize);
    let r = b.get(&s, &callback);
    assert_eq!(r.status, 302, "{}", r.summary());
    assert_eq!(
        r.header("location"),
        Some(format!("{PUBLIC_URL}/app/page?x=1&y=%2F").as_str())
    );
    let sc = set_cookie_for(&r, COOKIE).expect("session Set-Cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(sc.contains(attr), "{attr} missing in {sc}");
    }
    assert!(b.cookie(&login_cookie.0).is_none(), "login-state cookie cleared");
    assert_eq!(s.echo_hits(), 0, "nothing reached the upstream during login");

    let echo = assert_allowed(&b.get(&s, "/app/page?x=1"));
    assert_eq!(echo.header_all("x-user-id"), vec!["alice"]);
    assert_eq!(echo.header_all("x-auth-request-email"), vec!["alice@example.com"]);
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs"]);

    // The token request: code + PKCE verifier, the client secret by HTTP Basic.
    let log = idp.code_flow_log();
    let token = &log["token"][0];
    assert_eq!(token["grant_type"], "authorization_code");
    assert_eq!(token["has_verifier"], true);
    assert_eq!(token["client_auth"], "basic");
    assert_eq!(token["ok"], true);
}

#[test]
fn session_rules_apply_like_bearer_rules() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    b.login(&s, "/admin");
    let r = b.get(&s, "/admin");
    assert_denied(&r, 403, "group_not_allowed");
    assert_eq!(
        r.header("location"),
        None,
        "a valid session that is not admitted is not sent to log in again"
    );
    s.idp()
        .code_flow(json!({"client_secret": CLIENT_SECRET, "claims": {"sub": "root", "groups": ["admins"]}}));
    let mut admin = Browser::new();
    admin.login(&s, "/admin");
    assert_eq!(
        assert_allowed(&admin.get(&s, "/admin")).header_all("x-user-id"),
        vec!["root"]
    );
}

#[test]
fn session_cookie_never_reaches_the_upstream_other_cookies_do_and_spoofs_are_stripped() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    b.login(&s, "/");
    let session = session_cookie(&b);
    let r = s.send(
        &Req::get("/x")
            .header("Accept", "text/html")
            .header("Cookie", &format!("a=1; {COOKIE}={session}; b=\"two words\""))
            .header("x-user-id", "root")
            .header("X_Auth_Request_Groups", "admins"),
    );
    let echo = assert_allowed(&r);
    assert_eq!(echo.header_all("cookie"), vec!["a=1; b=\"two words\""]);
    assert_eq!(echo.header_all("x-user-id"), vec!["alice"]);
    assert!(echo.header_all("x_auth_request_groups").is_empty());
    // Only the session cookie: no cookie header at all upstream.
    let r = s.send(&Req::get("/x").header("Cookie", &format!("{COOKIE}={session}")));
    assert!(assert_allowed(&r).header_all("cookie").is_empty());
    // Two cookie headers (RFC 6265 forbids it, some non-browsers do it):
    // Envoy hands them to ext_authz joined with ',', which cannot be told
    // apart from a ',' inside a tossed cookie's value, so the session is not
    // read from after the ',' (see cookies_smuggled_inside_…), but it is
    // still stripped for the upstream.
    let two_headers = |r: Req| {
        r.header("Cookie", "a=1")
            .header("Cookie", &format!("{COOKIE}={session}; c=3"))
    };
    assert_denied(&s.send(&two_headers(Req::get("/x"))), 401, "missing_credential");
    let r = s.send(&two_headers(Req::get("/x").bearer(&s.token_for("bob", &["users"]))));
    let cookies = assert_allowed(&r).header_all("cookie").join("; ");
    assert!(
        !cookies.contains(COOKIE) && cookies.contains("a=1") && cookies.contains("c=3"),
        "{cookies}"
    );
    // Login-state cookies are ours too.
    let r = s.send(&Req::get("/x").header("Cookie", &format!("{COOKIE}={session}; {COOKIE}-login-abc=zzz; keep=1")));
    assert_eq!(assert_allowed(&r).header_all("cookie"), vec!["keep=1"]);
}

#[test]
fn non_browser_requests_get_401_never_a_redirect() {
    let (s, _dir) = session_stack(|_, _| {});
    let cases = [
        Req::get("/app"),
        Req::get("/app").header("Accept", "application/json"),
        Req::get("/app")
            .header("Accept", "text/html")
            .header("X-Requested-With", "XMLHttpRequest"),
        Req::get("/app")
            .header("Accept", "text/html")
            .header("Sec-Fetch-Mode", "cors"),
        Req::post_json("/app", &json!({})).header("Accept", "text/html"),
        Req::new("DELETE", "/app").header("Accept", "text/html"),
    ];
    for req in cases {
        let r = s.send(&req);
        assert_denied(&r, 401, "missing_credential");
        assert_eq!(r.header("location"), None, "{req:?}");
    }
    // A route without `login:` never redirects, browser or not.
    assert_denied(&Browser::new().get(&s, "/api/x"), 401, "missing_credential");
    // A browser navigation on a login route does.
    let r = s.send(&Browser::new().nav("/app").header("Sec-Fetch-Mode", "navigate"));
    assert_eq!(r.status, 302, "{}", r.summary());
    // HEAD: no body to parse, read the status line only.
    let raw = Req::new("HEAD", "/app").header("Accept", "text/html").to_bytes("app");
    let mut conn = std::net::TcpStream::connect(s.envoy()).unwrap();
    std::io::Write::write_all(&mut conn, &raw).unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut conn, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 302", "HEAD navigation");
}

#[test]
fn bearer_tokens_keep_working_on_login_routes() {
    let (s, _dir) = session_stack(|_, _| {});
    let token = s.token_for("bob", &["users"]);
    let r = s.send(&Browser::new().nav("/app").bearer(&token));
    assert_eq!(assert_allowed(&r).header_all("x-user-id"), vec!["bob"]);
    // A bad bearer token from a browser is a 401, not a login loop.
    let r = s.send(&Browser::new().nav("/app").bearer("not.a.jwt"));
    assert_eq!(r.status, 401, "{}", r.summary());
}

// ---------------------------------------------------------------------------
// Where the browser is sent: never steered by the request.

#[test]
fn a_forged_host_does_not_steer_the_redirect_uri_or_the_return() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    let req = b.nav("/app").header("X-Forwarded-Host", "evil.example");
    let r = s.send_raw(&req.to_bytes("evil.example")).expect("send");
    b.absorb(&r);
    assert_eq!(r.status, 302, "{}", r.summary());
    let authorize = Url::parse(r.header("location").expect("location")).expect("url");
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(format!("{PUBLIC_URL}/oauth2/callback").as_str())
    );
    let callback = b.authorize(&s, &authorize);
    let r = s.send_raw(&b.nav(&callback).to_bytes("evil.example")).expect("send");
    assert_eq!(r.status, 302, "{}", r.summary());
    assert_eq!(r.header("location"), Some(format!("{PUBLIC_URL}/app").as_str()));
}

#[test]
fn open_redirect_attempts_return_to_a_same_origin_path() {
    let (s, _dir) = session_stack(|_, _| {});
    for target in [
        "//evil.com/x",
        "///evil.com",
        "/\\evil.com",
        "/%5Cevil.com",
        "/%2F%2Fevil.com",
        "/%2f%2fevil.com",
        "/%09/evil.com",
        "/%5C%5Cevil.com",
        "/@evil.com",
        "/%E2%88%95%E2%88%95evil.com",
        "/app?next=https://evil.com",
    ] {
        let mut b = Browser::new();
        let r = b.get(&s, target);
        if r.status != 302 {
            // Envoy refuses some of these outright; that is fine too.
            assert!(r.status == 400 || r.status == 404, "{target}: {}", r.summary());
            continue;
        }
        let authorize = Url::parse(r.header("location").expect("location")).expect("url");
        let callback = b.authorize(&s, &authorize);
        let r = b.get(&s, &callback);
        assert_eq!(r.status, 302, "{target}: {}", r.summary());
        let location = r.header("location").expect("location");
        let path = app_path(location);
        assert!(
            !path.starts_with("//") && !path.contains('\\') && !path.to_ascii_lowercase().starts_with("/%2f"),
            "{target} returned to {location}"
        );
        assert!(
            Url::parse(location).unwrap().host_str() == Some("app.example.test"),
            "{location}"
        );
    }
    // The callback and logout take no return location from the request.
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/home");
    let callback = b.authorize(&s, &authorize);
    let r = b.get(
        &s,
        &format!("{callback}&redirect_uri=https://evil.com&rd=//evil.com&return_to=https://evil.com"),
    );
    assert_eq!(r.header("location"), Some(format!("{PUBLIC_URL}/home").as_str()));
    let r = b.get(
        &s,
        "/oauth2/logout?rd=https://evil.com&post_logout_redirect_uri=https://evil.com",
    );
    let location = Url::parse(r.header("location").expect("location")).expect("url");
    assert_eq!(
        query_param(&location, "post_logout_redirect_uri").as_deref(),
        Some(POST_LOGOUT)
    );
    assert!(!r.header("location").unwrap().contains("evil.com"));
}

// ---------------------------------------------------------------------------
// The callback under attack.

#[test]
fn callback_state_attacks_are_refused() {
    let (s, _dir) = session_stack(|_, _| {});
    // No login in progress at all.
    let r = Browser::new().get(&s, "/oauth2/callback?code=abc&state=xyz");
    assert_denied(&r, 401, "login_state_missing");
    let r = Browser::new().get(&s, "/oauth2/callback?code=abc");
    assert_denied(&r, 401, "login_state_missing");

    // A state that is not the one in our cookie.
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    let callback = b.authorize(&s, &authorize);
    let state = query_param(&authorize, "state").unwrap();
    let forged = callback.replace(&state, "attacker-chosen-state");
    assert_denied(&b.get(&s, &forged), 401, "login_state_missing");

    // The login cookie moved under another state's name (or tampered).
    let mut victim = Browser::new();
    let authorize_v = victim.start_login(&s, "/");
    let callback_v = victim.authorize(&s, &authorize_v);
    let (name_v, _) = victim.login_state();
    let (_, value_a) = b.login_state();
    let mut mixed = Browser::new();
    mixed.set(&name_v, &value_a);
    assert_denied(&mixed.get(&s, &callback_v), 401, "login_state_invalid");
    let mut tampered = Browser::new();
    let v = victim.cookie(&name_v).unwrap().to_string();
    let flipped = format!("{}{}", &v[..v.len() - 2], if v.ends_with('A') { "BB" } else { "AA" });
    tampered.set(&name_v, &flipped);
    let r = tampered.get(&s, &callback_v);
    assert_denied(&r, 401, "login_state_invalid");
    assert!(set_cookie_for(&r, &name_v).is_some_and(|c| c.contains("Max-Age=0")));

    // Replay: the same callback with the same login cookie, after success.
    let mut ok = Browser::new();
    let authorize = ok.start_login(&s, "/");
    let callback = ok.authorize(&s, &authorize);
    let saved = ok.clone();
    assert_eq!(ok.get(&s, &callback).status, 302);
    let mut replay = saved.clone();
    assert_denied(&replay.get(&s, &callback), 401, "login_state_replayed");
    assert_eq!(s.echo_hits(), 0);
}

/// Cookie tossing: a sibling subdomain (or a network attacker on any
/// plain-http host of the site) cannot set a `__Host-` cookie, but it can
/// set `x=1,__Host-portcullis…=<value>` under an ordinary name. Only `;`
/// separates cookies; a `,` inside a value must not smuggle one of ours in,
/// or the attacker plants their own session (session fixation) or their
/// own login state next to their own code (login CSRF).
#[test]
fn cookies_smuggled_inside_another_cookies_value_are_not_ours() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut attacker = Browser::new();
    attacker.login(&s, "/");
    let attacker_session = session_cookie(&attacker);
    let mut victim = Browser::new();
    victim.set("tossed", &format!("1,{COOKIE}={attacker_session}"));
    let r = victim.get(&s, "/app");
    assert_eq!(r.status, 302, "not logged in as the attacker: {}", r.summary());
    let r = s.send(&Req::get("/app").header("Cookie", &format!("tossed=1,{COOKIE}={attacker_session}")));
    assert_denied(&r, 401, "missing_credential");

    // Login CSRF: the attacker's own login-state cookie and callback.
    let mut attacker = Browser::new();
    let authorize = attacker.start_login(&s, "/");
    let callback = attacker.authorize(&s, &authorize);
    let (name, value) = attacker.login_state();
    let mut victim = Browser::new();
    victim.set("tossed", &format!("1,{name}={value}"));
    let r = victim.get(&s, &callback);
    assert_denied(&r, 401, "login_state_missing");
    assert!(victim.cookie(COOKIE).is_none());
    assert_eq!(s.echo_hits(), 0);
}

/// Cookie tossing past the `__Host-` prefix: a sibling subdomain can set a
/// cookie named `\u{2000}__Host-portcullis` (U+2000 is not a `__Host-`
/// name to the browser). Read with Unicode trimming it would be our session
/// (fixation); names are compared as bytes, so it is not, and it passes to
/// the upstream untouched like any cookie that is not ours.
#[test]
fn a_session_cookie_name_padded_with_unicode_spaces_is_not_ours() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut attacker = Browser::new();
    attacker.login(&s, "/");
    let attacker_session = session_cookie(&attacker);
    for pad in ["\u{2000}", "\u{00a0}", "\u{feff}"] {
        for tossed in [format!("{pad}{COOKIE}"), format!("{COOKIE}{pad}")] {
            // Raw UTF-8 bytes in the Cookie header.
            let cookie = format!("{tossed}={attacker_session}");
            let r = s.send(&Req::get("/app").header_bytes(b"Cookie", cookie.as_bytes()));
            assert_denied(&r, 401, "missing_credential");
            let r = s.send(
                &Req::get("/app")
                    .header("Accept", "text/html")
                    .header_bytes(b"Cookie", cookie.as_bytes()),
            );
            assert_eq!(
                r.status,
                302,
                "sent to log in, not logged in as the attacker: {}",
                r.summary()
            );
        }
    }
    assert_eq!(s.echo_hits(), 0);
    // Beside the victim's own session, the look-alike neither wins nor is
    // taken for ours by the stripper: the victim is the user, and the
    // upstream gets the look-alike as sent and never the real session.
    let mut victim = Browser::new();
    s.idp()
        .code_flow(json!({"client_secret": CLIENT_SECRET, "claims": {"sub": "victim", "groups": ["users"]}}));
    victim.login(&s, "/");
    let tossed = format!("\u{2000}{COOKIE}={attacker_session}");
    let cookie = format!("{tossed}; {COOKIE}={}; a=1", session_cookie(&victim));
    let echo = assert_allowed(&s.send(&Req::get("/app").header_bytes(b"Cookie", cookie.as_bytes())));
    assert_eq!(echo.header_all("x-user-id"), vec!["victim"]);
    assert_eq!(echo.header_all("cookie"), vec![format!("{tossed}; a=1").as_str()]);
}

#[test]
fn a_wrong_nonce_or_audience_in_the_id_token_is_refused() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut flow = alice();
    flow["tamper_nonce"] = json!(true);
    s.idp().code_flow(flow);
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    let r = b.get(&s, &b.authorize(&s, &authorize));
    assert_denied(&r, 401, "nonce_mismatch");
    assert!(b.cookie(COOKIE).is_none());

    let mut flow = alice();
    flow["claims"]["aud"] = json!("another-client");
    s.idp().code_flow(flow);
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    assert_denied(&b.get(&s, &b.authorize(&s, &authorize)), 401, "wrong_audience");

    // Our client in `aud`, but authorized for another party (`azp`).
    let mut flow = alice();
    flow["claims"]["azp"] = json!("another-client");
    s.idp().code_flow(flow);
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    assert_denied(&b.get(&s, &b.authorize(&s, &authorize)), 401, "wrong_audience");
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn a_stolen_code_without_its_pkce_verifier_is_useless() {
    let (s, _dir) = session_stack(|_, _| {});
    // The attacker obtains a code for their own login (own verifier) and
    // plants it in the victim's callback: the victim's verifier does not
    // match the code's challenge, the IdP refuses, the login fails.
    let mut attacker = Browser::new();
    let authorize = attacker.start_login(&s, "/");
    let stolen = attacker.authorize(&s, &authorize);
    let code = query_param(&Url::parse(&format!("{PUBLIC_URL}{stolen}")).unwrap(), "code").unwrap();
    let mut victim = Browser::new();
    let authorize = victim.start_login(&s, "/");
    let state = query_param(&authorize, "state").unwrap();
    let r = victim.get(&s, &format!("/oauth2/callback?code={code}&state={state}"));
    assert_denied(&r, 401, "login_failed");
    assert!(victim.cookie(COOKIE).is_none());
    // portcullis always sends the verifier; the IdP refuses a code without one.
    let log = s.idp().code_flow_log();
    assert!(log["token"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["has_verifier"] == true));
    // The wrong client secret: the IdP says invalid_client, the login fails.
    let mut flow = alice();
    flow["client_secret"] = json!("another-secret");
    s.idp().code_flow(flow);
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    assert_denied(&b.get(&s, &b.authorize(&s, &authorize)), 401, "login_failed");
    // An error from the IdP (user refused consent).
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    let state = query_param(&authorize, "state").unwrap();
    let r = b.get(&s, &format!("/oauth2/callback?error=access_denied&state={state}"));
    assert_denied(&r, 401, "login_failed");
}

// ---------------------------------------------------------------------------
// The session cookie under attack.

#[test]
fn forged_tampered_and_foreign_key_cookies_are_refused() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    b.login(&s, "/");
    let good = session_cookie(&b);
    let forged_payload = json!({"p": "idp", "iss": s.idp().issuer, "sub": "root", "user": "root", "groups": "admins",
        "iat": now(), "exp": now() + 3000, "end": now() + 3000});
    let payload = serde_json::to_vec(&forged_payload).unwrap();
    let aad = format!("session:{COOKIE}");
    let other_key = Sealer::new(&[new_key()]).seal(&aad, &payload);
    let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x20;
    let tampered = URL_SAFE_NO_PAD.encode(&raw);
    for bad in [
        other_key.as_str(),
        tampered.as_str(),
        "garbage",
        &good[..good.len() - 10],
    ] {
        // API call: 401, the broken cookie cleared.
        let r = s.send(&Req::get("/app").header("Cookie", &format!("{COOKIE}={bad}")));
        assert_denied(&r, 401, "session_invalid");
        assert!(set_cookie_for(&r, COOKIE).is_some_and(|c| c.contains("Max-Age=0")));
        // Browser: sent to log in again, the broken cookie cleared.
        let mut evil = Browser::new();
        evil.set(COOKIE, bad);
        let r = s.send(&evil.nav("/app"));
        assert_eq!(r.status, 302, "{}", r.summary());
        assert!(set_cookie_for(&r, COOKIE).is_some_and(|c| c.contains("Max-Age=0")));
    }
    // A login-state cookie is never a session, even under the session's name.
    let (_, login_value) = {
        let mut l = Browser::new();
        l.start_login(&s, "/");
        l.login_state()
    };
    let r = s.send(&Req::get("/app").header("Cookie", &format!("{COOKIE}={login_value}")));
    assert_denied(&r, 401, "session_invalid");
    assert_eq!(s.echo_hits(), 0);
    assert_allowed(&s.send(&Req::get("/app").header("Cookie", &format!("{COOKIE}={good}"))));
}

#[test]
fn rotated_keys_still_open_old_sessions_and_new_ones_use_the_first_key() {
    let dir_keys = TempDir::new().unwrap();
    let (old, new) = (new_key(), new_key());
    let old_file = write_key(dir_keys.path(), "old", &old);
    let new_file = write_key(dir_keys.path(), "new", &new);
    let (s, _dir) = session_stack(move |c, _| c["sessions"] = sessions_section(&[&new_file, &old_file]));
    // A session sealed by the old key (issued before the rotation).
    let aad = format!("session:{COOKIE}");
    let t = now() as u64;
    let payload = json!({"p": "idp", "iss": s.idp().issuer, "sub": "carol", "user": "carol", "iat": t, "exp": t + 3000, "end": t + 3000});
    let old_cookie = Sealer::new(&[old]).seal(&aad, &serde_json::to_vec(&payload).unwrap());
    let r = s.send(&Req::get("/app").header("Cookie", &format!("{COOKIE}={old_cookie}")));
    assert_eq!(assert_allowed(&r).header_all("x-user-id"), vec!["carol"]);
    // A new login is sealed with the first key only.
    let mut b = Browser::new();
    b.login(&s, "/");
    let fresh = session_cookie(&b);
    assert!(Sealer::new(&[new]).open(&aad, &fresh).is_ok());
    assert!(Sealer::new(&[old]).open(&aad, &fresh).is_err());
}

// ---------------------------------------------------------------------------
// Refresh, expiry, logout.

#[test]
fn near_expiry_sessions_are_refreshed_once_and_a_failed_refresh_means_login() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut flow = alice();
    flow["ttl"] = json!(30); // within refresh.before_expiry_seconds (60): due at once
    s.idp().code_flow(flow.clone());
    let mut b = Browser::new();
    b.login(&s, "/");
    let first = session_cookie(&b);
    // The allowed response carries the renewed cookie, beside the upstream's own.
    let r = s.send(&b.nav("/app").header("x-echo-set-cookie", "app=1; Path=/"));
    assert_eq!(assert_allowed(&r).header_all("x-user-id"), vec!["alice"]);
    let renewed = set_cookie_for(&r, COOKIE).expect("renewed session cookie").to_string();
    assert!(
        set_cookie_for(&r, "app").is_some(),
        "upstream Set-Cookie kept: {:?}",
        r.header_all("set-cookie")
    );
    b.absorb(&r);
    let second = session_cookie(&b);
    assert_ne!(first, second);
    assert!(renewed.contains("HttpOnly") && renewed.contains("Secure"));
    // The old cookie again (a parallel request of the same page): the same
    // renewal is shared, the rotated refresh token is not spent twice.
    let r = s.send(&Req::get("/app").header("Cookie", &format!("{COOKIE}={first}")));
    assert_allowed(&r);
    let grants = |log: &Value| {
        log["token"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["grant_type"] == "refresh_token")
            .count()
    };
    assert_eq!(grants(&s.idp().code_flow_log()), 1);
    // The IdP now refuses refreshes: browsers log in again, APIs get 401.
    flow["refresh_fails"] = json!(true);
    s.idp().code_flow(flow);
    let r = s.send(&Req::get("/app").header("Cookie", &format!("{COOKIE}={second}")));
    assert_denied(&r, 401, "refresh_failed");
    assert!(set_cookie_for(&r, COOKIE).is_some_and(|c| c.contains("Max-Age=0")));
    let mut again = Browser::new();
    again.set(COOKIE, &second);
    let r = s.send(&again.nav("/app"));
    assert_eq!(r.status, 302, "{}", r.summary());
    assert!(r.header("location").unwrap().contains("/authorize?"));
}

/// Envoy cancels a Check that outlives its ext_authz timeout (0.75 s). A
/// refresh whose token endpoint answers after that must still land: the IdP
/// has rotated the refresh token, so asking again with the old one would be
/// refused (and is a reuse a real IdP punishes). The next request with the
/// same cookie gets the renewed session from the refresh that was cut off.
#[test]
fn a_refresh_cut_off_by_the_ext_authz_timeout_is_kept_for_the_next_request() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut flow = alice();
    flow["ttl"] = json!(30); // refresh due at once
    s.idp().code_flow(flow.clone());
    let mut b = Browser::new();
    b.login(&s, "/");
    let cookie = format!("{COOKIE}={}", session_cookie(&b));
    flow["token_delay_ms"] = json!(1500);
    s.idp().code_flow(flow.clone());
    let r = s.send(&Req::get("/app").header("Cookie", &cookie));
    assert_eq!(r.status, 503, "Envoy gave up on the Check: {}", r.summary());
    assert_eq!(s.echo_hits(), 0);
    wait_for_delayed_token_answer(&s);
    flow["token_delay_ms"] = json!(0);
    s.idp().code_flow(flow);
    let r = s.send(&Req::get("/app").header("Cookie", &cookie));
    assert_eq!(assert_allowed(&r).header_all("x-user-id"), vec!["alice"]);
    assert!(
        set_cookie_for(&r, COOKIE).is_some(),
        "renewed: {:?}",
        r.header_all("set-cookie")
    );
    let log = s.idp().code_flow_log();
    let refreshes: Vec<&Value> = log["token"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["grant_type"] == "refresh_token")
        .collect();
    assert_eq!(refreshes.len(), 1, "the refresh token was used once: {refreshes:?}");
    assert_eq!(refreshes[0]["ok"], true);
}

/// Until the IdP has sent the token endpoint's late answer (after
/// `token_delay_ms`): portcullis then has it, or is reading it, and a Check
/// that needs it waits for that exchange instead of starting another.
fn wait_for_delayed_token_answer(s: &Stack) {
    wait_until(
        "the token endpoint's delayed answer",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || match s.idp().code_flow_log()["delayed_answers"].as_u64() {
            Some(n) if n >= 1 => Ok(()),
            other => Err(format!("delayed answers: {other:?}")),
        },
    );
}

/// The callback's code exchange outlives a Check that Envoy cut off: the
/// code is spent at the IdP either way, so the same callback again (the
/// browser retrying, with its login cookie still there) takes over the
/// finished exchange once, instead of failing on a spent state and code.
#[test]
fn a_callback_cut_off_by_the_ext_authz_timeout_completes_on_its_retry() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut flow = alice();
    flow["token_delay_ms"] = json!(1500);
    s.idp().code_flow(flow.clone());
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/app");
    let callback = b.authorize(&s, &authorize);
    let r = b.get(&s, &callback);
    assert_eq!(r.status, 503, "Envoy gave up on the Check: {}", r.summary());
    wait_for_delayed_token_answer(&s);
    flow["token_delay_ms"] = json!(0);
    s.idp().code_flow(flow);
    let mut replay = b.clone();
    let r = b.get(&s, &callback);
    assert_eq!(r.status, 302, "{}", r.summary());
    assert_eq!(r.header("location"), Some(format!("{PUBLIC_URL}/app").as_str()));
    assert!(b.cookie(COOKIE).is_some());
    let log = s.idp().code_flow_log();
    let exchanges: Vec<&Value> = log["token"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["grant_type"] == "authorization_code")
        .collect();
    assert_eq!(exchanges.len(), 1, "the code was exchanged once: {exchanges:?}");
    assert_eq!(
        assert_allowed(&b.get(&s, "/app")).header_all("x-user-id"),
        vec!["alice"]
    );
    // Taken over once: the same callback again, login cookie and all, is a replay.
    let r = replay.get(&s, &callback);
    assert_denied(&r, 401, "login_state_replayed");
}

/// A response that renews the session cookie is never stored by a shared
/// cache, even when the upstream marks it cacheable.
#[test]
fn a_response_that_renews_the_session_is_no_store() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut flow = alice();
    flow["ttl"] = json!(30);
    s.idp().code_flow(flow);
    let mut b = Browser::new();
    let login = b.login(&s, "/");
    assert_eq!(login.header_all("cache-control"), vec!["no-store"]);
    let r = s.send(&b.nav("/app").header("x-echo-cache-control", "public, max-age=600"));
    assert_allowed(&r);
    assert!(set_cookie_for(&r, COOKIE).is_some());
    assert_eq!(r.header_all("cache-control"), vec!["no-store"]);
    // Without a renewal the upstream's own caching is left alone.
    b.absorb(&r);
    let mut quiet = alice();
    quiet["ttl"] = json!(3600);
    s.idp().code_flow(quiet);
    let mut fresh = Browser::new();
    fresh.login(&s, "/");
    let r = s.send(&fresh.nav("/app").header("x-echo-cache-control", "public, max-age=600"));
    assert_allowed(&r);
    assert!(set_cookie_for(&r, COOKIE).is_none());
    assert_eq!(r.header_all("cache-control"), vec!["public, max-age=600"]);
}

/// Every unauthenticated navigation starts a login with its own state
/// cookie; they are capped so the `cookie` header cannot grow without bound.
#[test]
fn pending_login_cookies_are_capped_and_the_newest_login_completes() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    let prefix = format!("{COOKIE}-login-");
    let pending = |b: &Browser| b.jar.iter().filter(|(n, _)| n.starts_with(&prefix)).count();
    for i in 0..10 {
        b.start_login(&s, &format!("/page{i}"));
        assert!(pending(&b) <= 4, "{} login cookies after {} logins", pending(&b), i + 1);
    }
    assert!(pending(&b) >= 1);
    let r = b.login(&s, "/last");
    assert!(
        r.header("location").is_some_and(|l| l.ends_with("/last")),
        "{}",
        r.summary()
    );
    assert_allowed(&b.get(&s, "/last"));
}

#[test]
fn logout_clears_the_cookie_and_ends_the_idp_session() {
    let (s, _dir) = session_stack(|_, _| {});
    let mut b = Browser::new();
    b.login(&s, "/");
    let r = b.get(&s, "/oauth2/logout");
    assert_eq!(r.status, 302, "{}", r.summary());
    assert!(set_cookie_for(&r, COOKIE).is_some_and(|c| c.contains("Max-Age=0")));
    assert!(b.cookie(COOKIE).is_none());
    let end = Url::parse(r.header("location").unwrap()).unwrap();
    assert_eq!(
        end.as_str().split('?').next(),
        Some(format!("{}/endsession", s.idp().issuer).as_str())
    );
    assert_eq!(
        query_param(&end, "post_logout_redirect_uri").as_deref(),
        Some(POST_LOGOUT)
    );
    assert_eq!(query_param(&end, "client_id").as_deref(), Some(CLIENT_ID));
    let hint = query_param(&end, "id_token_hint").expect("id_token_hint");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(hint.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("alice"), Some(CLIENT_ID))
    );
    // The IdP ends its session and sends the browser to post_logout_redirect.
    let target = format!("{}?{}", end.path(), end.query().unwrap());
    let idp = http::send(s.idp().addr(), &Req::get(&target)).unwrap();
    assert_eq!(idp.status, 302);
    assert_eq!(idp.header("location"), Some(POST_LOGOUT));
    assert_eq!(
        s.idp().code_flow_log()["end_session"][0]["id_token_hint"].as_str(),
        Some(hint.as_str())
    );
    // Logged out: the next navigation logs in again.
    assert_eq!(b.get(&s, "/").status, 302);
}

// ---------------------------------------------------------------------------
// Providers.

#[test]
fn a_plain_oauth2_provider_gets_the_identity_from_userinfo() {
    let (s, _dir) = session_stack(|c, d| {
        let issuer = c["oidc"]["providers"][0]["issuer"].as_str().unwrap().to_string();
        let secret = d.join("client-secret");
        let mut login = login_block("github", &secret);
        login["scopes"] = json!(["read:user", "user:email"]);
        login["token_auth"] = json!("client_secret_post");
        login["authorization_endpoint"] = json!(format!("{issuer}/authorize"));
        login["token_endpoint"] = json!(format!("{issuer}/token"));
        login["redirect_path"] = json!("/oauth2/github/callback");
        login["logout_path"] = json!("/oauth2/github/logout");
        c["sessions"]["oauth2_providers"] = json!([{
            "userinfo_url": format!("{issuer}/userinfo"),
            "user_claim": "login",
            "email_claim": "email",
            "login": login,
        }]);
        c["rules"] = json!([{"path_prefix": "/", "login": "github"}]);
    });
    let mut flow = alice();
    flow["userinfo"] = json!({"login": "octocat", "id": 583231, "email": null, "name": "The Octocat"});
    s.idp().code_flow(flow);
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/repo");
    assert_eq!(query_param(&authorize, "nonce"), None, "no OIDC nonce for plain OAuth2");
    assert_eq!(
        query_param(&authorize, "scope").as_deref(),
        Some("read:user user:email")
    );
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(format!("{PUBLIC_URL}/oauth2/github/callback").as_str())
    );
    let callback = b.authorize(&s, &authorize);
    assert_eq!(b.get(&s, &callback).status, 302);
    let echo = assert_allowed(&b.get(&s, "/repo"));
    assert_eq!(echo.header_all("x-user-id"), vec!["octocat"]);
    assert!(echo.header_all("x-auth-request-email").is_empty());
    let log = s.idp().code_flow_log();
    assert_eq!(log["token"][0]["client_auth"], "post");
    assert_eq!(log["userinfo"][0]["ok"], true);
}

/// `email_verified: false` in the real IdP's ID token: the email is not
/// injected; with `user_claim: email` the login is refused.
#[test]
fn an_unverified_email_is_not_injected_and_cannot_name_the_user() {
    let (s, _dir) = session_stack(|_, _| {});
    let unverified = json!({"client_secret": CLIENT_SECRET, "claims": {
        "sub": "alice", "email": "ceo@example.com", "email_verified": false, "groups": ["users"]}});
    s.idp().code_flow(unverified.clone());
    let mut b = Browser::new();
    b.login(&s, "/");
    let echo = assert_allowed(&b.get(&s, "/app"));
    assert_eq!(echo.header_all("x-user-id"), vec!["alice"]);
    assert!(echo.header_all("x-auth-request-email").is_empty(), "{:?}", echo.headers);
    // The same for a bearer token minted by the IdP.
    let token = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "email": "ceo@example.com", "email_verified": false}),
    );
    let echo = assert_allowed(&s.send(&Req::get("/api/x").bearer(&token)));
    assert!(echo.header_all("x-auth-request-email").is_empty());

    let (s, _dir) = session_stack(|c, _| c["oidc"]["providers"][0]["user_claim"] = json!("email"));
    s.idp().code_flow(unverified);
    let mut b = Browser::new();
    let authorize = b.start_login(&s, "/");
    let r = b.get(&s, &b.authorize(&s, &authorize));
    assert_denied(&r, 401, "email_unverified");
    assert!(b.cookie(COOKIE).is_none());
    let token = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "email": "ceo@example.com", "email_verified": false}),
    );
    assert_denied(&s.send(&Req::get("/api/x").bearer(&token)), 401, "email_unverified");
    let verified = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "email": "alice@example.com", "email_verified": true}),
    );
    let echo = assert_allowed(&s.send(&Req::get("/api/x").bearer(&verified)));
    assert_eq!(echo.header_all("x-user-id"), vec!["alice@example.com"]);
    assert_eq!(s.echo_hits(), 1, "only the verified token reached the upstream");
}

/// A userinfo document cannot hand its user a `client:` group (those are
/// portcullis' names for client-credentials tokens), and a user name with a
/// `,` or surrounding spaces is refused.
#[test]
fn plain_oauth2_userinfo_cannot_claim_client_groups_or_odd_user_names() {
    let (s, _dir) = session_stack(|c, d| {
        let issuer = c["oidc"]["providers"][0]["issuer"].as_str().unwrap().to_string();
        let mut login = login_block("github", &d.join("client-secret"));
        login["scopes"] = json!(["read:user"]);
        login["authorization_endpoint"] = json!(format!("{issuer}/authorize"));
        login["token_endpoint"] = json!(format!("{issuer}/token"));
        login["redirect_path"] = json!("/oauth2/github/callback");
        login["logout_path"] = json!("/oauth2/github/logout");
        c["sessions"]["oauth2_providers"] = json!([{
            "userinfo_url": format!("{issuer}/userinfo"),
            "user_claim": "login",
            "email_claim": "email",
            "groups_claim": "teams",
            "login": login,
        }]);
        c["rules"] = json!([
            {"path_prefix": "/deploy", "allowed_groups": ["client:ci"], "login": "github"},
            {"path_prefix": "/", "login": "github"},
        ]);
    });
    let mut flow = alice();
    flow["userinfo"] = json!({"login": "octocat", "id": 1, "teams": ["client:ci", "devs"]});
    s.idp().code_flow(flow.clone());
    let mut b = Browser::new();
    b.login(&s, "/");
    let echo = assert_allowed(&b.get(&s, "/repo"));
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["devs"]);
    assert_denied(&b.get(&s, "/deploy"), 403, "group_not_allowed");
    for login in ["octocat,admin", " octocat"] {
        flow["userinfo"] = json!({"login": login, "id": 1});
        s.idp().code_flow(flow.clone());
        let mut b = Browser::new();
        let authorize = b.start_login(&s, "/");
        let r = b.get(&s, &b.authorize(&s, &authorize));
        assert_denied(&r, 401, "invalid_claims");
    }
}

/// Providers `one` (logout `/oauth2/logout`) and `two` (logout
/// `/oauth2/two/logout`), both on the default callback path.
fn two_provider_stack() -> (Stack, TempDir) {
    let files = SessionFiles::new();
    let (sessions, one, mut two) = (files.sessions(), files.login("one"), files.login("two"));
    let s = Stack::builder()
        .idps(2)
        .config(move |c| {
            c["sessions"] = sessions;
            c["oidc"]["providers"][0]["login"] = one;
            two["logout_path"] = json!("/oauth2/two/logout");
            c["oidc"]["providers"][1]["login"] = two;
            c["rules"] = json!([
                {"path_prefix": "/one", "login": "one"},
                {"path_prefix": "/two", "login": "two"},
            ]);
        })
        .start();
    s.idps[0].code_flow(json!({"client_secret": CLIENT_SECRET, "claims": {"sub": "user-of-one"}}));
    s.idps[1].code_flow(json!({"client_secret": CLIENT_SECRET, "claims": {"sub": "user-of-two"}}));
    (s, files.dir)
}

#[test]
fn one_callback_path_serves_two_providers() {
    let (s, _dir) = two_provider_stack();
    for (path, idp, user) in [("/one", 0, "user-of-one"), ("/two", 1, "user-of-two")] {
        let mut b = Browser::new();
        let authorize = b.start_login(&s, path);
        assert_eq!(authorize.port(), Some(s.idps[idp].port), "{path} logs in at idp{idp}");
        let callback = b.authorize(&s, &authorize);
        assert!(callback.starts_with("/oauth2/callback?"));
        assert_eq!(b.get(&s, &callback).status, 302);
        assert_eq!(assert_allowed(&b.get(&s, path)).header_all("x-user-id"), vec![user]);
    }
}

/// An ID token is a credential of the provider that issued it: logging out
/// at another provider's logout path never hands it to that provider.
#[test]
fn logout_sends_the_id_token_hint_only_to_the_provider_that_issued_it() {
    let (s, _dir) = two_provider_stack();
    let mut b = Browser::new();
    b.login(&s, "/two");
    let mut elsewhere = b.clone();
    let r = elsewhere.get(&s, "/oauth2/logout");
    assert_eq!(r.status, 302, "{}", r.summary());
    let end = Url::parse(r.header("location").unwrap()).unwrap();
    assert_eq!(end.port(), Some(s.idps[0].port), "provider one's end_session");
    assert_eq!(
        query_param(&end, "id_token_hint"),
        None,
        "two's ID token went to one: {end}"
    );
    assert!(
        elsewhere.cookie(COOKIE).is_none(),
        "the session is cleared all the same"
    );
    let r = b.get(&s, "/oauth2/two/logout");
    let end = Url::parse(r.header("location").unwrap()).unwrap();
    assert_eq!(end.port(), Some(s.idps[1].port));
    assert!(query_param(&end, "id_token_hint").is_some());
}
