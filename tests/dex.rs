//! Dex as the OIDC provider, end to end: the real `dex` binary (v2.45.1,
//! built from the Go module proxy by tests/dex/install.sh into
//! .tools/bin/dex) on 127.0.0.1 with an issuer that has a path
//! (`http://127.0.0.1:PORT/dex`), memory storage, its password DB (static
//! users with groups) and confidential clients; portcullis and Envoy in
//! front of the echo upstream as in every other suite.
//!
//! - bearer: password-grant user tokens with groups against group rules,
//!   readable user names, a key Dex rotated after start-up;
//! - client credentials: Dex v2.45.1 has no such grant (it came to Dex's
//!   master afterwards, and no such version is installable here): Dex
//!   refusing it is pinned, and a token shaped as Dex's master issues it
//!   (its `sub` is not the client id, see `claims.rs::is_client_subject`)
//!   is minted by the test IdP;
//! - browser: code + PKCE through Envoy against Dex's own login form (plain
//!   HTTP, no JavaScript needed), refresh with Dex's rotating refresh
//!   tokens, logout (Dex v2.45.1 has no `end_session_endpoint`).
//!
//! Dex is found through `DEX_BIN`, else `.tools/bin/dex`. When it is
//! missing every test here fails under `CI=true` and is skipped with a
//! loud warning otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::browser::*;
use common::*;
use serde_json::{json, Value};
use tempfile::TempDir;
use url::Url;

/// bcrypt of "password" (cost 10), as in Dex's own example configs.
const PASSWORD_HASH: &str = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W";
const PASSWORD: &str = "password";
const CI_CLIENT: &str = "ci-pipeline";
const CI_SECRET: &str = "ci-secret";

// ---------------------------------------------------------------------------
// Dex.

fn dex_bin() -> Option<PathBuf> {
    let p = match std::env::var_os("DEX_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".tools/bin/dex"),
    };
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "Dex not found at {} — run ./tests/dex/install.sh (./tests/run.sh does) or set DEX_BIN",
        p.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: {msg} !!!!!!!!!!\n");
    None
}

struct DexOptions {
    /// `expiry.idTokens` (also the access tokens' lifetime).
    id_tokens: &'static str,
    /// `expiry.signingKeys`; Dex checks every 30 s whether to rotate.
    signing_keys: &'static str,
}

impl Default for DexOptions {
    fn default() -> Self {
        DexOptions {
            id_tokens: "10m",
            signing_keys: "6h",
        }
    }
}

struct Dex {
    guard: ChildGuard,
    issuer: String,
    addr: SocketAddr,
    _logs: Arc<Logs>,
}

impl Dex {
    fn start(opts: DexOptions) -> Option<Dex> {
        let bin = dex_bin()?;
        let logs = Logs::new();
        for attempt in 1..=3 {
            let port = free_port();
            let issuer = format!("http://127.0.0.1:{port}/dex");
            let config = dex_config(&issuer, port, &opts);
            let path = logs.path().join(format!("dex-{attempt}.yaml"));
            // JSON is YAML: Dex reads it as its config file.
            std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("write dex config");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve").arg(&path);
            let mut guard = ChildGuard::spawn(&format!("dex-{attempt}"), cmd, &logs);
            let addr = loopback(port);
            let up = guard.wait_up("dex discovery", READY_TIMEOUT, || {
                http::get_ok(addr, "/dex/.well-known/openid-configuration")
            });
            if up {
                return Some(Dex {
                    guard,
                    issuer,
                    addr,
                    _logs: logs,
                });
            }
            let text = guard.logs_tail(40);
            if attempt == 3 || !text.contains("address already in use") {
                panic!("dex exited during start-up:\n{text}");
            }
        }
        unreachable!()
    }

    fn get(&self, target: &str) -> Resp {
        http::send(self.addr, &Req::get(target)).unwrap_or_else(|e| panic!("dex GET {target}: {e}"))
    }

    fn discovery(&self) -> Value {
        self.get("/dex/.well-known/openid-configuration").json()
    }

    /// The kids Dex publishes.
    fn kids(&self) -> Vec<String> {
        self.get("/dex/keys").json()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_string())
            .collect()
    }

    /// POST /dex/token with a form; the client authenticates by HTTP Basic.
    fn token(&self, client: (&str, &str), form: &[(&str, &str)]) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1));
        let req = Req::new("POST", "/dex/token")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", &format!("Basic {basic}"))
            .body(body.as_bytes());
        http::send(self.addr, &req).expect("dex /token")
    }

    /// A token response that must succeed.
    fn tokens(&self, client: (&str, &str), form: &[(&str, &str)]) -> Value {
        let r = self.token(client, form);
        assert_eq!(r.status, 200, "dex /token {form:?}: {}", r.text());
        r.json()
    }

    /// Resource-owner password grant for a static user, as client `portcullis-web`.
    fn password(&self, email: &str) -> Value {
        self.tokens(
            (CLIENT_ID, CLIENT_SECRET),
            &[
                ("grant_type", "password"),
                ("username", email),
                ("password", PASSWORD),
                ("scope", "openid email profile groups"),
            ],
        )
    }

    fn logs_tail(&self, n: usize) -> String {
        self.guard.logs_tail(n)
    }
}

fn dex_config(issuer: &str, port: u16, o: &DexOptions) -> Value {
    let user = |name: &str, id: &str, groups: &[&str]| {
        json!({
            "email": format!("{name}@example.com"),
            "hash": PASSWORD_HASH,
            "username": name,
            "preferredUsername": name,
            "userID": id,
            "groups": groups,
        })
    };
    json!({
        "issuer": issuer,
        "storage": {"type": "memory"},
        "web": {"http": format!("127.0.0.1:{port}")},
        "logger": {"level": "debug", "format": "json"},
        "oauth2": {
            "skipApprovalScreen": true,
            "passwordConnector": "local",
            "grantTypes": ["authorization_code", "refresh_token", "password"],
        },
        "expiry": {
            "idTokens": o.id_tokens,
            "signingKeys": o.signing_keys,
            "refreshTokens": {"reuseInterval": "3s"},
        },
        "enablePasswordDB": true,
        "staticPasswords": [
            user("alice", "uid-alice", &["users", "devs"]),
            user("root", "uid-root", &["admins"]),
        ],
        "staticClients": [
            {
                "id": CLIENT_ID,
                "name": "portcullis",
                "secret": CLIENT_SECRET,
                "redirectURIs": [format!("{PUBLIC_URL}/oauth2/callback")],
            },
            {"id": CI_CLIENT, "name": "CI Pipeline", "secret": CI_SECRET},
        ],
    })
}

/// The payload of a JWT (not verified: for looking at what Dex sends).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload")).expect("JSON payload")
}

fn header(jwt: &str) -> Value {
    let h = jwt.split('.').next().expect("JWT header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("base64url header")).expect("JSON header")
}

/// Dex's `sub`: base64url (no padding) of the protobuf `{1: user_id, 2: connector_id}`.
fn dex_subject(user_id: &str, connector: &str) -> String {
    let mut b = vec![0x0a, user_id.len() as u8];
    b.extend_from_slice(user_id.as_bytes());
    if !connector.is_empty() {
        b.extend_from_slice(&[0x12, connector.len() as u8]);
        b.extend_from_slice(connector.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(b)
}

// ---------------------------------------------------------------------------
// Stacks.

/// portcullis + Envoy with Dex as its only provider: audience
/// `portcullis-web` (the client whose tokens the password grant issues).
fn bearer_stack(dex: &Dex, edit: impl FnOnce(&mut Value) + 'static) -> Stack {
    Stack::builder()
        .external_issuer(&dex.issuer)
        .config(move |c| {
            let p = &mut c["oidc"]["providers"][0];
            p["name"] = json!("dex");
            p["audiences"] = json!([CLIENT_ID]);
            c["rules"] = json!([
                {"path_prefix": "/admin", "allowed_groups": ["admins"]},
                {"path_prefix": "/"},
            ]);
            edit(c);
        })
        .start()
}

/// Browser sessions with login `dex` on everything.
fn session_stack(dex: &Dex, edit: impl FnOnce(&mut Value) + 'static) -> (Stack, TempDir) {
    let files = SessionFiles::new();
    let (sessions, mut login) = (files.sessions(), files.login("dex"));
    let s = Stack::builder()
        .external_issuer(&dex.issuer)
        .config(move |c| {
            c["sessions"] = sessions;
            let p = &mut c["oidc"]["providers"][0];
            // portcullis refuses a login client that is also a bearer audience.
            p["audiences"] = json!(["portcullis-api"]);
            p["user_claim"] = json!("email");
            login["scopes"] = json!(["openid", "email", "profile", "groups", "offline_access"]);
            p["login"] = login;
            c["rules"] = json!([
                {"path_prefix": "/admin", "allowed_groups": ["admins"], "login": "dex"},
                {"path_prefix": "/", "login": "dex"},
            ]);
            edit(c);
        })
        .start();
    (s, files.dir)
}

// ---------------------------------------------------------------------------
// Driving Dex's HTML login like a browser (no JavaScript is needed: the
// login page is a plain form POST).

/// A browser's view of Dex: its own cookie jar (Dex's auth-request and
/// CSRF cookies, if any).
#[derive(Default)]
struct DexBrowser {
    jar: BTreeMap<String, String>,
}

impl DexBrowser {
    fn send(&mut self, dex: &Dex, req: Req) -> Resp {
        let req = if self.jar.is_empty() {
            req
        } else {
            let c = self
                .jar
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req.header("Cookie", &c)
        };
        let r = http::send(dex.addr, &req).expect("dex request");
        for sc in r.header_all("set-cookie") {
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (n, v) = pair.split_once('=').expect("cookie pair");
            if attrs.contains("Max-Age=0") || attrs.to_ascii_lowercase().contains("max-age=-1") || v.is_empty() {
                self.jar.remove(n.trim());
            } else {
                self.jar.insert(n.trim().to_string(), v.trim().to_string());
            }
        }
        r
    }

    /// Follows `url` at Dex (redirects within Dex, the password form filled
    /// with `email` / "password") until Dex sends the browser to the app;
    /// returns that location's path on the app. `email: None` means no form
    /// may be shown (single sign-on through Dex's session).
    fn follow(&mut self, dex: &Dex, url: &str, email: Option<&str>) -> String {
        let mut target = dex_target(dex, url);
        let mut method_post: Option<String> = None;
        for _ in 0..12 {
            let req = match method_post.take() {
                Some(body) => Req::new("POST", &target)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.as_bytes()),
                None => Req::get(&target).header("Accept", "text/html"),
            };
            let r = self.send(dex, req);
            match r.status {
                302 | 303 => {
                    let loc = r.header("location").expect("location").to_string();
                    if loc.starts_with(PUBLIC_URL) {
                        return app_path(&loc);
                    }
                    target = dex_target(dex, &loc);
                }
                200 => {
                    let html = r.text();
                    let email = email.unwrap_or_else(|| panic!("Dex showed a page where none was expected:\n{html}"));
                    assert!(html.contains("name=\"password\""), "not Dex's password form:\n{html}");
                    target = dex_target(dex, &html_unescape(&form_action(&html)));
                    method_post = Some(
                        url::form_urlencoded::Serializer::new(String::new())
                            .append_pair("login", email)
                            .append_pair("password", PASSWORD)
                            .finish(),
                    );
                }
                _ => panic!("Dex answered {} at {target}: {}", r.status, r.text()),
            }
        }
        panic!("too many hops at Dex")
    }
}

/// The request target at Dex for an absolute or relative URL.
fn dex_target(dex: &Dex, url: &str) -> String {
    if url.starts_with('/') {
        return url.to_string();
    }
    let u = Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
    assert_eq!(u.port(), Some(dex.addr.port()), "{url} is not at Dex");
    format!("{}{}", u.path(), u.query().map(|q| format!("?{q}")).unwrap_or_default())
}

fn form_action(html: &str) -> String {
    let start = html.find("<form").expect("a form");
    let rest = &html[start..];
    let a = rest.find("action=\"").expect("form action") + "action=\"".len();
    rest[a..a + rest[a..].find('"').unwrap()].to_string()
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#43;", "+")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The whole login: portcullis → Dex (form) → callback; the session cookie
/// is then in `b`'s jar.
fn login(s: &Stack, dex: &Dex, b: &mut Browser, d: &mut DexBrowser, path: &str, email: &str) -> Url {
    let authorize = b.start_login(s, path);
    let callback = d.follow(dex, authorize.as_str(), Some(email));
    let r = b.get(s, &callback);
    assert_eq!(
        r.status,
        302,
        "callback; {}\n{}",
        r.summary(),
        s.portcullis.logs_tail(20)
    );
    assert_eq!(r.header("location"), Some(format!("{PUBLIC_URL}{path}").as_str()));
    assert!(b.cookie(COOKIE).is_some(), "no session cookie after the callback");
    authorize
}

// ---------------------------------------------------------------------------
// Bearer tokens.

#[test]
fn dex_discovery_with_an_issuer_path_is_what_portcullis_reads() {
    let Some(dex) = Dex::start(DexOptions::default()) else {
        return;
    };
    let d = dex.discovery();
    assert_eq!(
        d["issuer"],
        json!(dex.issuer),
        "the issuer keeps its path, no trailing slash"
    );
    assert_eq!(d["jwks_uri"], json!(format!("{}/keys", dex.issuer)));
    assert_eq!(d["authorization_endpoint"], json!(format!("{}/auth", dex.issuer)));
    assert_eq!(d["token_endpoint"], json!(format!("{}/token", dex.issuer)));
    assert!(
        d.get("end_session_endpoint").is_none(),
        "Dex v2.45.1 has no RP-initiated logout: {d}"
    );
    let grants: Vec<&str> = d["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        grants.contains(&"password") && grants.contains(&"refresh_token"),
        "{grants:?}"
    );
    assert!(!grants.contains(&"client_credentials"), "{grants:?}");
    assert!(d["code_challenge_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("S256")));
    // portcullis discovers the JWKS through it and becomes ready.
    let s = bearer_stack(&dex, |_| {});
    assert_eq!(s.admin("/readyz").status, 200);
}

#[test]
fn dex_v2_45_refuses_the_client_credentials_grant() {
    let Some(dex) = Dex::start(DexOptions::default()) else {
        return;
    };
    let r = dex.token(
        (CI_CLIENT, CI_SECRET),
        &[("grant_type", "client_credentials"), ("scope", "openid groups")],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], json!("unsupported_grant_type"));
}

/// The client-credentials token of Dex's master (`server/grants/
/// clientcredentials.go`: claims `{UserID: client.ID}`, connector "",
/// `clientCredentialsClaims.groups` with the `groups` scope, the client's
/// name with `profile`; `aud` the client id, no `azp`), minted by the test
/// IdP since no installable Dex issues one.
#[test]
fn a_dex_shaped_client_credentials_token_is_a_machine_identity() {
    let s = Stack::builder()
        .provider0(|p| {
            p["client_credentials"] = json!({"enabled": true, "allowed_clients": [CI_CLIENT, "other-ci"]});
        })
        .rules(json!([
            {"path_prefix": "/deploy", "allowed_groups": [format!("client:{CI_CLIENT}")]},
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/"},
        ]))
        .start();
    let dex_cc = |client: &str, sub: &str| {
        s.mint(
            "RS256",
            json!({
                "sub": sub, "aud": client, "name": "CI Pipeline",
                "groups": ["deployers"], "email_verified": false,
            }),
        )
    };
    let token = dex_cc(CI_CLIENT, &dex_subject(CI_CLIENT, ""));
    let echo = assert_allowed(&s.get_bearer("/deploy/app", &token));
    assert_eq!(echo.header_all("x-user-id"), vec![CI_CLIENT]);
    assert_eq!(
        echo.header_all("x-auth-request-groups"),
        vec![format!("deployers,client:{CI_CLIENT}")]
    );
    assert!(echo.header_all("x-auth-request-email").is_empty());
    assert_denied(&s.get_bearer("/admin", &token), 403, "group_not_allowed");
    // A Dex *user* of that client (connector `local`) is no machine, and a
    // subject naming another allowed client does not pass for this one.
    for sub in [dex_subject(CI_CLIENT, "local"), dex_subject("other-ci", "")] {
        assert_denied(&s.get_bearer("/", &dex_cc(CI_CLIENT, &sub)), 401, "client_not_allowed");
    }
    // A client portcullis does not allow.
    let t = dex_cc("not-allowed", &dex_subject("not-allowed", ""));
    assert_denied(&s.get_bearer("/", &t), 401, "client_not_allowed");
}

#[test]
fn password_grant_users_carry_groups_and_group_rules_decide() {
    let Some(dex) = Dex::start(DexOptions::default()) else {
        return;
    };
    let s = bearer_stack(&dex, |_| {});
    let alice = dex.password("alice@example.com");
    let c = claims(alice["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], json!(CLIENT_ID));
    assert_eq!(c["sub"], json!(dex_subject("uid-alice", "local")));
    assert_eq!(c["groups"], json!(["users", "devs"]));
    assert_eq!(c["email"], json!("alice@example.com"));
    assert_eq!(
        c["email_verified"],
        json!(true),
        "static passwords are verified by default"
    );
    assert_eq!(c["preferred_username"], json!("alice"));
    let access = alice["access_token"].as_str().unwrap();

    let echo = assert_allowed(&s.get_bearer("/app", access));
    assert_eq!(
        echo.header_all("x-user-id"),
        vec![dex_subject("uid-alice", "local")],
        "user_claim: sub is Dex's opaque subject"
    );
    assert_eq!(echo.header_all("x-auth-request-email"), vec!["alice@example.com"]);
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs"]);
    assert_denied(&s.get_bearer("/admin/x", access), 403, "group_not_allowed");
    // The ID token is accepted the same way (aud = client id).
    assert_allowed(&s.get_bearer("/app", alice["id_token"].as_str().unwrap()));

    let root = dex.password("root@example.com");
    let echo = assert_allowed(&s.get_bearer("/admin/x", root["access_token"].as_str().unwrap()));
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["admins"]);

    // Without the groups scope Dex sends no groups claim.
    let t = dex.tokens(
        (CLIENT_ID, CLIENT_SECRET),
        &[
            ("grant_type", "password"),
            ("username", "root@example.com"),
            ("password", PASSWORD),
            ("scope", "openid email"),
        ],
    );
    assert!(claims(t["access_token"].as_str().unwrap()).get("groups").is_none());
    assert_denied(
        &s.get_bearer("/admin/x", t["access_token"].as_str().unwrap()),
        403,
        "group_not_allowed",
    );
}

#[test]
fn readable_user_names_come_from_email_or_preferred_username() {
    let Some(dex) = Dex::start(DexOptions::default()) else {
        return;
    };
    let s = bearer_stack(&dex, |c| {
        c["oidc"]["providers"][0]["user_claim"] = json!("preferred_username");
        c["rules"] = json!([{"path_prefix": "/", "allowed_users": ["alice"]}]);
    });
    let alice = dex.password("alice@example.com");
    let echo = assert_allowed(&s.get_bearer("/", alice["access_token"].as_str().unwrap()));
    assert_eq!(echo.header_all("x-user-id"), vec!["alice"]);
    let root = dex.password("root@example.com");
    assert_denied(
        &s.get_bearer("/", root["access_token"].as_str().unwrap()),
        403,
        "user_not_allowed",
    );
}

#[test]
fn a_key_dex_rotates_after_start_is_fetched_and_the_old_one_keeps_working() {
    let started = Instant::now();
    let Some(dex) = Dex::start(DexOptions {
        signing_keys: "1s",
        ..DexOptions::default()
    }) else {
        return;
    };
    let s = bearer_stack(&dex, |_| {});
    let old = dex.password("alice@example.com")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = header(&old)["kid"].as_str().unwrap().to_string();
    assert_eq!(dex.kids(), vec![old_kid.clone()]);
    assert_allowed(&s.get_bearer("/app", &old));

    // Dex rotates on a 30 s ticker once the 1 s period is over.
    wait_until(
        "Dex to rotate its signing key",
        Duration::from_secs(45),
        Duration::from_millis(500),
        || {
            let kids = dex.kids();
            if kids.len() >= 2 {
                Ok(())
            } else {
                Err(format!("kids {kids:?}"))
            }
        },
    );
    let new = dex.password("alice@example.com")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_kid = header(&new)["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid, "signed by the new key");
    assert!(dex.kids().contains(&old_kid), "Dex keeps the old key for verification");

    // An unknown kid makes portcullis refetch the JWKS.
    let echo = assert_allowed(&s.get_bearer("/app", &new));
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs"]);
    // The old token is still valid until it expires.
    assert_allowed(&s.get_bearer("/app", &old));
    eprintln!("rotation test took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Browser sessions.

#[test]
fn browser_login_through_dex_then_refresh_and_logout() {
    // ID tokens live 40 s; portcullis refreshes 30 s before expiry, so the
    // session is renewed from 10 s after login on.
    let Some(dex) = Dex::start(DexOptions {
        id_tokens: "40s",
        ..DexOptions::default()
    }) else {
        return;
    };
    let (s, _dir) = session_stack(&dex, |c| {
        c["sessions"]["refresh"]["before_expiry_seconds"] = json!(30);
    });
    let mut b = Browser::new();
    let mut d = DexBrowser::default();
    let logged_in = Instant::now();
    let authorize = login(&s, &dex, &mut b, &mut d, "/app/page", "alice@example.com");
    assert_eq!(
        authorize.as_str().split('?').next(),
        Some(format!("{}/auth", dex.issuer).as_str())
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_param(&authorize, "scope").as_deref(),
        Some("openid email profile groups offline_access")
    );

    let r = b.get(&s, "/app/page");
    let echo = assert_allowed(&r);
    assert_eq!(echo.header_all("x-user-id"), vec!["alice@example.com"]);
    assert_eq!(echo.header_all("x-auth-request-email"), vec!["alice@example.com"]);
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs"]);
    assert!(
        r.header_all("set-cookie").iter().all(|c| !c.starts_with(COOKIE)),
        "no refresh yet: {}",
        r.summary()
    );
    assert_denied(&b.get(&s, "/admin"), 403, "group_not_allowed");

    // Refresh with Dex's refresh token (rotated by Dex on every use).
    let wait = Duration::from_secs(11).saturating_sub(logged_in.elapsed());
    std::thread::sleep(wait);
    let before = b.cookie(COOKIE).unwrap().to_string();
    let r = b.get(&s, "/app/page");
    let echo = assert_allowed(&r);
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs"]);
    let after = b.cookie(COOKIE).unwrap().to_string();
    assert_ne!(before, after, "the session was renewed; {}", r.summary());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The renewed session renews again later with the rotated refresh token.
    assert_allowed(&b.get(&s, "/app/other"));

    // Logout: Dex without sessions advertises no end_session_endpoint, so
    // portcullis clears its cookie and goes straight to post_logout_redirect.
    let r = b.get(&s, "/oauth2/logout");
    assert_eq!(r.status, 302, "{}", r.summary());
    assert_eq!(r.header("location"), Some(POST_LOGOUT));
    assert!(b.cookie(COOKIE).is_none(), "session cookie cleared");
    assert_eq!(b.get(&s, "/app/page").status, 302, "logged out: back to Dex");
    let _ = dex.logs_tail(1);
}
