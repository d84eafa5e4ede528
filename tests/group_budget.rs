//! Large group lists through real Envoy: what the upstream receives when a
//! token carries 500 long group names (as Entra ID or Google Workspace send
//! them), without a budget, with the default budget, and with a filter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use common::browser;
use common::*;
use serde_json::{json, Value};

/// 500 groups of 39 bytes (`sg-` and a GUID-like tail), then `team-a` and
/// `team-b`: about 20 KB joined.
fn entra_like_groups() -> Vec<String> {
    let mut g: Vec<String> = (0..500)
        .map(|i| format!("sg-{i:08x}-5a1e-4c3b-9d2f-{i:012x}"))
        .collect();
    g.extend(["team-a", "team-b"].map(String::from));
    g
}

/// A stack whose provider has `groups` (none: the defaults), accepting
/// tokens large enough to carry the groups.
fn stack(groups: Option<Value>) -> Stack {
    Stack::builder()
        .config(|c| c["oidc"]["max_token_bytes"] = json!(65536))
        .provider0(move |p| {
            if let Some(g) = groups {
                p["groups"] = g;
            }
        })
        .start()
}

fn token(s: &Stack) -> String {
    s.mint(
        "RS256",
        json!({"sub": "erin", "aud": "portcullis", "groups": entra_like_groups()}),
    )
}

#[test]
fn without_a_budget_the_upstream_gets_a_header_most_servers_refuse() {
    let s = stack(Some(json!({"max_bytes": 61440})));
    let echo = assert_allowed(&s.get_bearer("/x", &token(&s)));
    let groups = echo.header_all("x-auth-request-groups");
    assert_eq!(groups.len(), 1);
    // Over nginx's 8 KB header line and Node's 16 KB head: a 400 or 431 there.
    assert_eq!(groups[0].len(), entra_like_groups().join(",").len());
    assert!(groups[0].len() > 16 * 1024, "{} bytes", groups[0].len());
}

#[test]
fn the_default_budget_refuses_before_the_upstream() {
    let s = stack(None);
    let hits = s.echo_hits();
    assert_denied(&s.get_bearer("/x", &token(&s)), 403, "groups_over_budget");
    assert_eq!(s.echo_hits(), hits, "the upstream never saw the request");
}

#[test]
fn a_filter_sends_the_upstream_only_the_kept_groups() {
    let s = stack(Some(json!({"keep": ["team-*"]})));
    let echo = assert_allowed(&s.get_bearer("/x", &token(&s)));
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["team-a,team-b"]);
    // `drop`: the IdP's first groups that fit 1024 bytes (25 names of 39
    // bytes and 24 commas: 999 bytes; a 26th would make 1039), the other
    // 477 counted.
    let s = stack(Some(json!({"max_bytes": 1024, "over_budget": "drop"})));
    let echo = assert_allowed(&s.get_bearer("/x", &token(&s)));
    let kept = entra_like_groups()[..25].join(",");
    assert_eq!(kept.len(), 999);
    assert_eq!(echo.header_all("x-auth-request-groups"), vec![kept.as_str()]);
    let metrics = s.admin("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portcullis_groups_dropped_total{provider=") && l.ends_with(" 477")),
        "{metrics}"
    );
}

/// 300 groups `group-000`… and two team groups: 3,013 bytes joined, more
/// than a session cookie holds.
fn many_teams() -> Vec<String> {
    let mut g: Vec<String> = (0..300).map(|i| format!("group-{i:03}")).collect();
    g.extend(["team-a", "team-b"].map(String::from));
    g
}

/// Browser logins whose IdP sends 300 groups, through real Envoy: an OIDC
/// login (the groups in the real issuer's ID token) and a plain OAuth2 login
/// (GitHub-style, the groups in userinfo). Each provider keeps `team-*`:
/// the session cookie stays small and the upstream gets only those.
#[test]
fn logins_seal_only_the_kept_groups_in_the_session_cookie() {
    let files = browser::SessionFiles::new();
    let (sessions, mut login, secret) = (files.sessions(), files.login("idp"), files.client_secret.clone());
    let s = Stack::builder()
        .config(move |c| {
            let issuer = c["oidc"]["providers"][0]["issuer"].as_str().unwrap().to_string();
            c["sessions"] = sessions;
            login["scopes"] = json!(["openid", "email"]);
            c["oidc"]["providers"][0]["login"] = login;
            c["oidc"]["providers"][0]["groups"] = json!({"keep": ["team-*"]});
            let mut gh = browser::login_block("github", &secret);
            gh["scopes"] = json!(["read:user"]);
            gh["authorization_endpoint"] = json!(format!("{issuer}/authorize"));
            gh["token_endpoint"] = json!(format!("{issuer}/token"));
            gh["redirect_path"] = json!("/oauth2/github/callback");
            gh["logout_path"] = json!("/oauth2/github/logout");
            c["sessions"]["oauth2_providers"] = json!([{
                "userinfo_url": format!("{issuer}/userinfo"),
                "groups_claim": "teams",
                "groups": {"keep": ["team-*"]},
                "login": gh,
            }]);
            c["rules"] = json!([
                {"path_prefix": "/gh", "login": "github"},
                {"path_prefix": "/", "login": "idp"},
            ]);
        })
        .start();
    s.idp().code_flow(json!({
        "client_secret": browser::CLIENT_SECRET,
        "claims": {"sub": "alice", "email": "alice@example.com", "groups": many_teams()},
        "userinfo": {"login": "octocat", "id": 1, "teams": many_teams()},
    }));
    for path in ["/app", "/gh"] {
        let mut b = browser::Browser::new();
        b.login(&s, path);
        let cookie = b.cookie(browser::COOKIE).unwrap();
        assert!(cookie.len() < 2000, "{path}: a {}-byte cookie", cookie.len());
        let echo = assert_allowed(&b.get(&s, path));
        assert_eq!(
            echo.header_all("x-auth-request-groups"),
            vec!["team-a,team-b"],
            "{path}"
        );
    }
}
