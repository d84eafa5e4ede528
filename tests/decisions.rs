//! The decision matrix in process: the real `Checker` (built from YAML like
//! the server's), a real in-process OIDC issuer (tests/support), warrants
//! minted with the `tenuo` crate, and a manual clock, so expiry, refresh and
//! cache lifetimes are tested by moving time instead of sleeping. No Envoy:
//! the wire contract and the end-to-end paths stay in the Envoy tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod support;
#[path = "support/warrant.rs"]
mod warrant;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use jsonwebtoken::Algorithm;
use portcullis::check::Checker;
use portcullis::clock::{unix, unix_i64, Clock};
use portcullis::request::POLICY_EXTENSION;
use portcullis::telemetry::Metrics;
use serde_json::{json, Value};
use support::{assert_denied, Answer, Issuer, RefreshAnswer, CLIENT_ID};
use tempfile::TempDir;
use tenuo::SigningKey;

const COOKIE: &str = "__Host-portcullis";
const PUBLIC_URL: &str = "https://app.example.com";

/// One checker and everything it trusts, on a clock the test moves.
struct World {
    clock: Clock,
    issuer: Issuer,
    checker: Arc<Checker>,
    metrics: Arc<Metrics>,
    tenuo_root: SigningKey,
    agent: SigningKey,
    _dir: TempDir,
}

impl World {
    /// `rules`: the YAML list under `rules:`; the rest is a fixed config with
    /// one OIDC provider (bearer tokens and a login `idp`), browser sessions,
    /// and Tenuo with the fixture gateway (`/files` → `read_file`).
    async fn new(rules: &str) -> Self {
        Self::with_refresh(rules, true).await
    }

    async fn with_refresh(rules: &str, refresh: bool) -> Self {
        Self::with_provider(rules, refresh, "").await
    }

    /// `provider`: more keys of the OIDC provider, each line indented by 6.
    async fn with_provider(rules: &str, refresh: bool, provider: &str) -> Self {
        let clock = Clock::manual(std::time::SystemTime::now());
        let issuer = Issuer::start_at(clock.clone()).await;
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("session-key"), [7u8; 32]).unwrap();
        let tenuo_root = warrant::key();
        let yaml = config(&issuer, &dir, &tenuo_root, rules, refresh, provider);
        let app = issuer.app_for(&yaml).await;
        Self {
            clock,
            issuer,
            checker: app.checker,
            metrics: app.metrics,
            tenuo_root,
            agent: warrant::key(),
            _dir: dir,
        }
    }

    /// Another replica (or this one, restarted) with the same issuer,
    /// session key and Tenuo root, and the provider keys of `provider`.
    async fn reconfigured(&self, rules: &str, provider: &str) -> Arc<Checker> {
        let yaml = config(&self.issuer, &self._dir, &self.tenuo_root, rules, true, provider);
        self.issuer.app_for(&yaml).await.checker
    }

    fn advance(&self, seconds: u64) {
        assert!(self.clock.advance(Duration::from_secs(seconds)));
    }

    fn now(&self) -> i64 {
        unix_i64(self.clock.now())
    }

    async fn check(&self, req: CheckRequest) -> Answer {
        Answer::of(&self.checker.check(&req).await)
    }

    fn bearer(&self, sub: &str) -> String {
        format!("Bearer {}", self.issuer.mint(Algorithm::RS256, sub, json!({})))
    }

    /// `X-Tenuo-Warrant` and `X-Tenuo-PoP` for `read_file` of `path`, the
    /// PoP signed now (by the test's clock), the warrant valid `ttl` seconds.
    fn warrant_headers(&self, path: &str, ttl: u64) -> [(String, String); 2] {
        let w = warrant::mint(
            &self.tenuo_root,
            &self.agent,
            vec![("read_file", warrant::read_file_caps())],
            ttl,
        );
        let args = warrant::args(&[("path", path.into())]);
        let pop = warrant::pop(&w, &self.agent, "read_file", &args, Some(self.now()));
        [
            ("x-tenuo-warrant".into(), warrant::header(&[&w])),
            ("x-tenuo-pop".into(), pop),
        ]
    }

    /// A whole browser login: the redirect, the user's approval at the
    /// issuer, the callback. Returns the session cookie (`name=value`).
    async fn login(&self, sub: &str, path: &str) -> String {
        let back = self.callback(sub, path).await;
        assert_eq!(back.status, 302, "{back:?}");
        assert_eq!(back.location.as_deref(), Some(format!("{PUBLIC_URL}{path}").as_str()));
        cookie_pair(&back.set_cookies, COOKIE).expect("session cookie")
    }

    /// A login up to the callback's answer.
    async fn callback(&self, sub: &str, path: &str) -> Answer {
        let start = self.check(browser(path, &[])).await;
        assert_eq!(start.status, 302, "{start:?}");
        let location = start.location.clone().unwrap();
        let nonce = query(&location, "nonce");
        let state = query(&location, "state");
        let code = self.issuer.authorize(sub, &nonce);
        let login_cookie = cookie_pair(&start.set_cookies, "__Host-portcullis-login").unwrap();
        self.check(browser(
            &format!("/oauth2/callback?code={code}&state={state}"),
            &[("cookie", &login_cookie)],
        ))
        .await
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    warrant::request(method, path, headers, "")
}

/// A top-level navigation, as a browser sends it.
fn browser(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut all = vec![
        ("accept", "text/html,application/xhtml+xml"),
        ("sec-fetch-mode", "navigate"),
    ];
    all.extend_from_slice(headers);
    request("GET", path, &all)
}

fn query(url: &str, name: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// `name=value` of the first `Set-Cookie` (not a clearing one) whose name
/// is `name`, or starts with it when `name` ends in `-login`.
fn cookie_pair(set_cookies: &[String], name: &str) -> Option<String> {
    let prefix = if name.ends_with("-login") {
        format!("{name}-")
    } else {
        format!("{name}=")
    };
    set_cookies
        .iter()
        .find(|c| c.starts_with(&prefix) && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
}

fn clears(set_cookies: &[String], name: &str) -> bool {
    set_cookies
        .iter()
        .any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"))
}

// ---------------------------------------------------------------------------
// require: oidc | tenuo | any | all, against every combination presented.

#[derive(Clone, Copy, Debug)]
enum Bearer {
    None,
    Valid,
    Expired,
}

#[derive(Clone, Copy, Debug)]
enum Warrant {
    None,
    Valid,
    /// Signed by a key the checker does not trust.
    Untrusted,
}

/// Credentials presented → (status, reason).
type Cell = ((Bearer, Warrant), (i32, Option<&'static str>));

/// Every cell of the matrix: the answer is the rule's, and the exact reason
/// is the first failing credential's.
#[tokio::test]
async fn require_matrix() {
    use Bearer as B;
    use Warrant as W;
    let ok = (200, None);
    let no_cred = (401, Some("missing_credential"));
    let no_warrant = (401, Some("missing_warrant"));
    let expired = (401, Some("token_expired"));
    let untrusted = (403, Some("untrusted_root"));
    let table: [(&str, [Cell; 9]); 4] = [
        (
            "oidc",
            [
                ((B::None, W::None), no_cred),
                ((B::None, W::Valid), no_cred),
                ((B::None, W::Untrusted), no_cred),
                ((B::Valid, W::None), ok),
                // Not required, so not looked at.
                ((B::Valid, W::Valid), ok),
                ((B::Valid, W::Untrusted), ok),
                ((B::Expired, W::None), expired),
                ((B::Expired, W::Valid), expired),
                ((B::Expired, W::Untrusted), expired),
            ],
        ),
        (
            "tenuo",
            [
                ((B::None, W::None), no_warrant),
                ((B::None, W::Valid), ok),
                ((B::None, W::Untrusted), untrusted),
                ((B::Valid, W::None), no_warrant),
                ((B::Valid, W::Valid), ok),
                ((B::Valid, W::Untrusted), untrusted),
                ((B::Expired, W::None), no_warrant),
                ((B::Expired, W::Valid), ok),
                ((B::Expired, W::Untrusted), untrusted),
            ],
        ),
        (
            "any",
            [
                ((B::None, W::None), no_cred),
                ((B::None, W::Valid), ok),
                ((B::None, W::Untrusted), untrusted),
                ((B::Valid, W::None), ok),
                ((B::Valid, W::Valid), ok),
                // Every credential presented must be valid.
                ((B::Valid, W::Untrusted), untrusted),
                ((B::Expired, W::None), expired),
                ((B::Expired, W::Valid), expired),
                ((B::Expired, W::Untrusted), expired),
            ],
        ),
        (
            "all",
            [
                ((B::None, W::None), no_cred),
                ((B::None, W::Valid), no_cred),
                ((B::None, W::Untrusted), no_cred),
                ((B::Valid, W::None), no_warrant),
                ((B::Valid, W::Valid), ok),
                ((B::Valid, W::Untrusted), untrusted),
                ((B::Expired, W::None), expired),
                ((B::Expired, W::Valid), expired),
                ((B::Expired, W::Untrusted), expired),
            ],
        ),
    ];
    for (require, cells) in table {
        let w = World::new(&format!("  - {{path_prefix: /, require: {require}}}")).await;
        let expired_token = w
            .issuer
            .mint(Algorithm::RS256, "eve", json!({"exp": unix(w.clock.now()) - 1}));
        let stranger = warrant::key();
        for ((bearer, presented), (status, reason)) in cells {
            let mut headers: Vec<(String, String)> = Vec::new();
            match bearer {
                B::None => {}
                B::Valid => headers.push(("authorization".into(), w.bearer("alice"))),
                B::Expired => headers.push(("authorization".into(), format!("Bearer {expired_token}"))),
            }
            match presented {
                W::None => {}
                W::Valid => headers.extend(w.warrant_headers("/data/a.txt", 600)),
                W::Untrusted => {
                    let bad = warrant::mint(&stranger, &w.agent, vec![("read_file", warrant::read_file_caps())], 600);
                    let args = warrant::args(&[("path", "/data/a.txt".into())]);
                    headers.push(("x-tenuo-warrant".into(), warrant::header(&[&bad])));
                    headers.push((
                        "x-tenuo-pop".into(),
                        warrant::pop(&bad, &w.agent, "read_file", &args, Some(w.now())),
                    ));
                }
            }
            let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let a = w.check(request("GET", "/files?path=/data/a.txt", &refs)).await;
            assert_eq!(
                (a.status, a.reason.as_deref()),
                (status, reason),
                "require: {require}, bearer {bearer:?}, warrant {presented:?}: {a:?}"
            );
            if status == 200 {
                let user = matches!(bearer, B::Valid) && require != "tenuo";
                assert_eq!(a.user(), user.then_some("alice@example.com"), "{require} {bearer:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tokens and the decision cache against the clock.

#[tokio::test]
async fn a_cached_token_stops_at_its_exp_to_the_second() {
    let w = World::new("  - {path_prefix: /, require: oidc}").await;
    let token = w
        .issuer
        .mint(Algorithm::ES256, "bob", json!({"exp": unix(w.clock.now()) + 30}));
    let req = || request("GET", "/x", &[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(w.check(req()).await.status, 200);
    w.advance(29);
    assert_eq!(w.check(req()).await.status, 200, "still valid: served from the cache");
    w.advance(1);
    // exp == now: the cache no longer serves it, and the verifier (skew 0)
    // accepts it for this second only (expired once `exp < now`).
    assert_eq!(w.check(req()).await.status, 200);
    w.advance(1);
    assert_denied(&w.check(req()).await, 401, "token_expired");
}

#[tokio::test]
async fn a_token_not_yet_valid_becomes_valid_when_its_nbf_arrives() {
    let w = World::new("  - {path_prefix: /, require: oidc}").await;
    let token = w
        .issuer
        .mint(Algorithm::EdDSA, "carol", json!({"nbf": unix(w.clock.now()) + 20}));
    let req = || request("GET", "/x", &[("authorization", &format!("Bearer {token}"))]);
    assert_denied(&w.check(req()).await, 401, "token_not_yet_valid");
    w.advance(20);
    assert_eq!(w.check(req()).await.status, 200, "not-yet-valid is never cached");
}

#[tokio::test]
async fn a_cached_denial_lasts_negative_ttl() {
    let w = World::new("  - {path_prefix: /, require: oidc}").await;
    let token = w.issuer.mint(Algorithm::RS256, "dan", json!({"aud": "someone-else"}));
    let req = || request("GET", "/x", &[("authorization", &format!("Bearer {token}"))]);
    assert_denied(&w.check(req()).await, 401, "wrong_audience");
    w.advance(9);
    assert_denied(&w.check(req()).await, 401, "wrong_audience");
    assert_eq!(
        lookups(&w),
        (1, 1),
        "(misses, negative hits): the repeat came from the cache"
    );
    w.advance(1);
    assert_denied(&w.check(req()).await, 401, "wrong_audience");
    assert_eq!(lookups(&w), (2, 1), "after negative_ttl the token is verified again");
}

/// (misses, negative hits) of the decision cache so far.
fn lookups(w: &World) -> (u64, u64) {
    let text = w.metrics.render(0);
    let count = |result: &str| {
        let prefix = format!("portcullis_cache_lookups_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    (count("miss"), count("negative_hit"))
}

// ---------------------------------------------------------------------------
// Warrants against the clock.

#[tokio::test]
async fn a_warrant_expires_on_the_clock_even_after_it_was_cached() {
    let w = World::new("  - {path_prefix: /, require: tenuo}").await;
    let warrant = warrant::mint(
        &w.tenuo_root,
        &w.agent,
        vec![("read_file", warrant::read_file_caps())],
        5,
    );
    let args = warrant::args(&[("path", "/data/a.txt".into())]);
    let header = warrant::header(&[&warrant]);
    let send = |at: i64| {
        let pop = warrant::pop(&warrant, &w.agent, "read_file", &args, Some(at));
        request(
            "GET",
            "/files?path=/data/a.txt",
            &[("x-tenuo-warrant", &header), ("x-tenuo-pop", &pop)],
        )
    };
    assert_eq!(w.check(send(w.now())).await.status, 200);
    assert_eq!(w.check(send(w.now())).await.status, 200, "the repeat is a cache hit");
    w.advance(6);
    assert_denied(&w.check(send(w.now())).await, 403, "warrant_expired");
}

// ---------------------------------------------------------------------------
// Browser sessions: when a login starts, session lifetime, refresh, cookies.

const LOGIN_RULES: &str = "  - {path_prefix: /api, require: oidc}\n  - {path_prefix: /, login: idp}";

#[tokio::test]
async fn only_a_browser_navigation_without_a_session_is_sent_to_log_in() {
    let w = World::new(LOGIN_RULES).await;
    let start = w.check(browser("/page?x=1", &[])).await;
    assert_eq!(start.status, 302, "{start:?}");
    let location = start.location.unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", w.issuer.url)),
        "{location}"
    );
    assert_eq!(query(&location, "client_id"), CLIENT_ID);
    assert_eq!(query(&location, "code_challenge_method"), "S256");
    assert!(cookie_pair(&start.set_cookies, "__Host-portcullis-login").is_some());
    // Everything that is not a top-level GET navigation keeps its 401.
    let not_browsers = [
        request("GET", "/page", &[]),
        request("POST", "/page", &[("accept", "text/html")]),
        request("GET", "/page", &[("accept", "text/html"), ("sec-fetch-mode", "cors")]),
        request(
            "GET",
            "/page",
            &[("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")],
        ),
    ];
    for req in not_browsers {
        assert_denied(&w.check(req).await, 401, "missing_credential");
    }
    // A route without `login:` never redirects, browser or not.
    assert_denied(&w.check(browser("/api/x", &[])).await, 401, "missing_credential");
}

#[tokio::test]
async fn a_login_lands_and_its_session_admits_the_user() {
    let w = World::new(LOGIN_RULES).await;
    let session = w.login("alice", "/home").await;
    let a = w.check(browser("/home", &[("cookie", &session)])).await;
    assert_eq!((a.status, a.user()), (200, Some("alice@example.com")), "{a:?}");
    // The cookie is not a credential on a bearer-only route.
    assert_denied(
        &w.check(browser("/api/x", &[("cookie", &session)])).await,
        401,
        "missing_credential",
    );
}

/// An ID token with `nbf = iat` (Entra ID issues them) from a token endpoint
/// that took seconds to answer is judged at its arrival, not at the start
/// of the callback's Check (clock skew 0 here).
#[tokio::test]
async fn tokens_from_a_slow_token_endpoint_are_judged_when_they_arrive() {
    let w = World::new(LOGIN_RULES).await;
    w.issuer.set_token_endpoint_slow_by(3);
    let session = w.login("alice", "/").await;
    let a = w.check(browser("/", &[("cookie", &session)])).await;
    assert_eq!((a.status, a.user()), (200, Some("alice@example.com")), "{a:?}");
    // The same on refresh.
    w.issuer.set_token_ttl(120);
    let session = w.login("bob", "/").await;
    w.advance(61);
    let a = w.check(browser("/", &[("cookie", &session)])).await;
    assert_eq!((a.status, w.issuer.refreshes()), (200, 1), "{a:?}");
    assert!(
        cookie_pair(&a.set_cookies, COOKIE).is_some(),
        "renewed: {:?}",
        a.set_cookies
    );
}

#[tokio::test]
async fn a_login_state_older_than_login_timeout_is_refused_and_cleared() {
    let w = World::new(LOGIN_RULES).await;
    let start = w.check(browser("/", &[])).await;
    let location = start.location.clone().unwrap();
    let code = w.issuer.authorize("alice", &query(&location, "nonce"));
    let login_cookie = cookie_pair(&start.set_cookies, "__Host-portcullis-login").unwrap();
    let name = login_cookie.split('=').next().unwrap().to_string();
    w.advance(300);
    let back = w
        .check(browser(
            &format!("/oauth2/callback?code={code}&state={}", query(&location, "state")),
            &[("cookie", &login_cookie)],
        ))
        .await;
    assert_denied(&back, 401, "login_state_invalid");
    assert!(clears(&back.set_cookies, &name), "{:?}", back.set_cookies);
}

#[tokio::test]
async fn a_session_near_expiry_is_refreshed_once_and_renewed_in_its_cookie() {
    let w = World::new(LOGIN_RULES).await;
    w.issuer.set_token_ttl(120);
    let session = w.login("alice", "/").await;
    w.advance(59);
    let a = w.check(browser("/", &[("cookie", &session)])).await;
    assert_eq!(
        (a.status, a.set_cookies.len(), w.issuer.refreshes()),
        (200, 0, 0),
        "{a:?}"
    );
    w.advance(1); // 60 s before the tokens' expiry: refresh due
    let a = w.check(browser("/", &[("cookie", &session)])).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(w.issuer.refreshes(), 1);
    let renewed = cookie_pair(&a.set_cookies, COOKIE).expect("renewed cookie");
    // The same old cookie again: the refresh is not repeated.
    assert_eq!(w.check(browser("/", &[("cookie", &session)])).await.status, 200);
    assert_eq!(w.issuer.refreshes(), 1);
    // Past the first tokens' expiry, the renewed cookie still works.
    w.advance(100);
    let a = w.check(browser("/", &[("cookie", &renewed)])).await;
    assert_eq!((a.status, a.user()), (200, Some("alice@example.com")), "{a:?}");
}

#[tokio::test]
async fn an_idp_outage_keeps_a_still_valid_session_until_its_tokens_expire() {
    let w = World::new(LOGIN_RULES).await;
    w.issuer.set_token_ttl(120);
    let session = w.login("alice", "/").await;
    w.issuer.set_refresh(RefreshAnswer::Unavailable);
    w.advance(61);
    let a = w.check(browser("/x", &[("cookie", &session)])).await;
    assert_eq!((a.status, a.set_cookies.len()), (200, 0), "{a:?}");
    w.advance(60); // tokens expired, the IdP still down
    let a = w.check(request("GET", "/x", &[("cookie", &session)])).await;
    assert_denied(&a, 401, "refresh_failed");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
}

#[tokio::test]
async fn a_revoked_refresh_token_means_a_new_login() {
    let w = World::new(LOGIN_RULES).await;
    w.issuer.set_token_ttl(120);
    let session = w.login("alice", "/").await;
    w.issuer.set_refresh(RefreshAnswer::Revoked);
    w.advance(61);
    let a = w.check(request("GET", "/x", &[("cookie", &session)])).await;
    assert_denied(&a, 401, "refresh_failed");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
    // A browser is sent to log in again, its dead cookie cleared on the way.
    let a = w.check(browser("/x", &[("cookie", &session)])).await;
    assert_eq!(a.status, 302, "{a:?}");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
}

#[tokio::test]
async fn a_session_ends_at_max_age_whatever_its_refreshes() {
    let w = World::new(LOGIN_RULES).await;
    let session = w.login("alice", "/").await; // tokens 1 h, max_age 2 h
    let mut cookie = session;
    for _ in 0..2 {
        w.advance(3600 - 60);
        let a = w.check(browser("/", &[("cookie", &cookie)])).await;
        assert_eq!(a.status, 200, "{a:?}");
        cookie = cookie_pair(&a.set_cookies, COOKIE).expect("renewed");
    }
    w.advance(120); // 7200 s after login
    let a = w.check(request("GET", "/", &[("cookie", &cookie)])).await;
    assert_denied(&a, 401, "session_expired");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
}

#[tokio::test]
async fn without_refresh_a_session_ends_with_its_tokens_and_a_browser_logs_in_again() {
    let w = World::with_refresh(LOGIN_RULES, false).await;
    w.issuer.set_token_ttl(120);
    let session = w.login("alice", "/").await;
    w.advance(119);
    assert_eq!(w.check(browser("/", &[("cookie", &session)])).await.status, 200);
    w.advance(1);
    let a = w.check(request("GET", "/", &[("cookie", &session)])).await;
    assert_denied(&a, 401, "session_expired");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
    // What the Check's span is told: a redirect, and why.
    let req = browser("/", &[("cookie", &session)]);
    let mut out = portcullis::check::Outcome::default();
    let redirect = w.checker.check_recorded(&req, &mut out).await;
    assert_eq!(Answer::of(&redirect).status, 302);
    assert_eq!(
        (out.decision, out.status, out.reason),
        ("redirect", 302, Some("session_expired"))
    );
    assert_eq!(w.issuer.refreshes(), 0);
}

#[tokio::test]
async fn a_forged_session_cookie_is_refused_and_cleared() {
    let w = World::new(LOGIN_RULES).await;
    let a = w
        .check(request(
            "GET",
            "/",
            &[("cookie", &format!("{COOKIE}=not-a-sealed-value"))],
        ))
        .await;
    assert_denied(&a, 401, "session_invalid");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
}

// ---------------------------------------------------------------------------
// Named policies: the proxy's route chooses (`context_extensions`), not the path.

const ROUTE_POLICIES: &str = "  - {path_prefix: /admin, allowed_groups: [admins]}
  - {path_prefix: /, require: oidc}
policies:
  admins-only: {allowed_groups: [admins]}
  ops-only: {allowed_groups: [ops]}
  web: {login: idp}
  tools: {require: tenuo}";

/// `req` as Envoy sends it from a route whose `ExtAuthzPerRoute` sets
/// `check_settings.context_extensions: {portcullis_policy: <policy>}`.
fn on_route(mut req: CheckRequest, policy: &str) -> CheckRequest {
    req.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert(POLICY_EXTENSION.into(), policy.into());
    req
}

fn get(path: &str, authorization: &str) -> CheckRequest {
    request("GET", path, &[("authorization", authorization)])
}

#[tokio::test]
async fn the_policy_a_route_names_decides_instead_of_the_path_rules() {
    let w = World::new(ROUTE_POLICIES).await;
    let dev = w.bearer("alice"); // groups dev, ops
    let admin = format!(
        "Bearer {}",
        w.issuer.mint(Algorithm::RS256, "root", json!({"groups": ["admins"]}))
    );
    // Open by path, closed by the route's policy.
    assert_eq!(w.check(get("/x", &dev)).await.status, 200);
    assert_denied(
        &w.check(on_route(get("/x", &dev), "admins-only")).await,
        403,
        "group_not_allowed",
    );
    let a = w.check(on_route(get("/x", &admin), "admins-only")).await;
    assert_eq!((a.status, a.user()), (200, Some("root@example.com")), "{a:?}");
    // Closed by path, opened by the route's policy to whom it admits.
    assert_denied(&w.check(get("/admin/x", &dev)).await, 403, "group_not_allowed");
    assert_eq!(w.check(on_route(get("/admin/x", &dev), "ops-only")).await.status, 200);
    assert_denied(
        &w.check(on_route(get("/admin/x", &admin), "ops-only")).await,
        403,
        "group_not_allowed",
    );
    // The policy's `require` too: a warrant, where the path rule wants a token.
    let files = "/files?path=/data/a.txt";
    let warrant = w.warrant_headers("/data/a.txt", 600);
    let refs: Vec<(&str, &str)> = warrant.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_denied(&w.check(request("GET", files, &refs)).await, 401, "missing_credential");
    assert_eq!(
        w.check(on_route(request("GET", files, &refs), "tools")).await.status,
        200
    );
    assert_denied(
        &w.check(on_route(get(files, &dev), "tools")).await,
        401,
        "missing_warrant",
    );
    // The path is judged whatever the policy: an ambiguous one is refused.
    assert_denied(
        &w.check(on_route(get("/x/..;/admin", &admin), "admins-only")).await,
        400,
        "invalid_path",
    );
}

#[tokio::test]
async fn a_policy_name_that_is_not_configured_is_refused_not_left_to_the_path_rules() {
    let w = World::new(ROUTE_POLICIES).await;
    let dev = w.bearer("alice");
    // `/x` is open by path: none of these may fall back to it.
    let names = ["admins-olny", "", "Admins-Only", " admins-only", "admins-only\n"];
    for name in names {
        assert_denied(&w.check(on_route(get("/x", &dev), name)).await, 403, "unknown_policy");
    }
    // Before any credential: the route is broken whoever asks, and a
    // browser is not sent to log in.
    assert_denied(
        &w.check(on_route(request("GET", "/x", &[]), "nope")).await,
        403,
        "unknown_policy",
    );
    assert_denied(
        &w.check(on_route(browser("/x", &[]), "nope")).await,
        403,
        "unknown_policy",
    );
    // Counted under its own reason (the metric operators alert on).
    let text = w.metrics.render(0);
    let line = "portcullis_authz_deny_total{reason=\"unknown_policy\"} ";
    let count = text.lines().find_map(|l| l.strip_prefix(line)).map(str::trim);
    assert_eq!(count, Some((names.len() + 2).to_string().as_str()), "{text}");
    // Another context extension is not a policy name.
    let mut req = get("/x", &dev);
    req.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert("tenant".into(), "admins-only".into());
    assert_eq!(w.check(req).await.status, 200);
}

#[tokio::test]
async fn a_named_policy_with_a_login_sends_browsers_to_it() {
    let w = World::new(ROUTE_POLICIES).await;
    // The path rules have no login: a browser gets its 401 there.
    assert_denied(&w.check(browser("/page", &[])).await, 401, "missing_credential");
    let start = w.check(on_route(browser("/page", &[]), "web")).await;
    assert_eq!(start.status, 302, "{start:?}");
    let location = start.location.unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", w.issuer.url)),
        "{location}"
    );
    // An API call on the same route keeps its 401.
    assert_denied(
        &w.check(on_route(request("GET", "/page", &[]), "web")).await,
        401,
        "missing_credential",
    );
}

// Large group lists: a provider's `groups:` filter and byte budget.

const GROUP_RULES: &str = "  - {path_prefix: /admin, allowed_groups: [admins]}\n  - {path_prefix: /ops, allowed_groups: [ops]}\n  - {path_prefix: /, require: oidc}";

/// 500 groups as an Entra ID token may carry them: `g000`…`g495`, then
/// `ops`, `admins`, `team-b`, `team-a` (2,511 bytes joined).
fn many_groups() -> Vec<String> {
    let mut g: Vec<String> = (0..496).map(|i| format!("g{i:03}")).collect();
    g.extend(["ops", "admins", "team-b", "team-a"].map(String::from));
    g
}

fn with_groups(w: &World, path: &str) -> CheckRequest {
    let token = w
        .issuer
        .mint(Algorithm::RS256, "erin", json!({ "groups": many_groups() }));
    request("GET", path, &[("authorization", &format!("Bearer {token}"))])
}

#[tokio::test]
async fn hundreds_of_groups_over_the_default_budget_are_refused_and_the_refusal_cached() {
    let w = World::with_provider(GROUP_RULES, true, "").await;
    assert_denied(&w.check(with_groups(&w, "/x")).await, 403, "groups_over_budget");
    assert_denied(&w.check(with_groups(&w, "/x")).await, 403, "groups_over_budget");
    assert_eq!(lookups(&w), (1, 1), "the same token, the same groups: a stable denial");
    // The same user with the IdP's usual two groups passes.
    assert_eq!(
        w.check(request("GET", "/x", &[("authorization", &w.bearer("erin"))]))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_keep_filter_injects_and_authorizes_only_the_kept_groups_in_the_idps_order() {
    let w = World::with_provider(GROUP_RULES, true, "      groups: {keep: [admins, \"team-*\"]}\n").await;
    let a = w.check(with_groups(&w, "/admin/x")).await;
    assert_eq!((a.status, a.groups()), (200, Some("admins,team-b,team-a")), "{a:?}");
    // The token carries `ops`, but the filter does not keep it: rules never see it.
    assert_denied(&w.check(with_groups(&w, "/ops")).await, 403, "group_not_allowed");
}

#[tokio::test]
async fn over_budget_drop_keeps_the_idps_first_groups_that_fit_and_counts_the_rest() {
    let w = World::with_provider(
        GROUP_RULES,
        true,
        "      groups: {max_bytes: 1000, over_budget: drop}\n",
    )
    .await;
    let a = w.check(with_groups(&w, "/x")).await;
    // 200 names of 4 bytes and 199 commas: 999 bytes; a 201st would make 1004.
    let kept = many_groups()[..200].join(",");
    assert_eq!((a.status, a.groups()), (200, Some(kept.as_str())), "{a:?}");
    let dropped = |w: &World| {
        w.metrics
            .render(0)
            .lines()
            .find_map(|l| l.strip_prefix("portcullis_groups_dropped_total{provider=\"idp\"} "))
            .map(|n| n.trim().to_string())
    };
    assert_eq!(dropped(&w).as_deref(), Some("300"));
    // Dropped groups are gone for the rules too; a cached identity is not counted again.
    assert_denied(&w.check(with_groups(&w, "/admin")).await, 403, "group_not_allowed");
    assert_eq!(dropped(&w).as_deref(), Some("300"));
}

/// 300 groups `group-000`… and two team groups in the ID token: 3,013
/// bytes joined, too many for a session cookie.
fn login_groups() -> Value {
    let mut g: Vec<String> = (0..300).map(|i| format!("group-{i:03}")).collect();
    g.extend(["team-a", "team-b"].map(String::from));
    json!(g)
}

#[tokio::test]
async fn a_login_with_hundreds_of_groups_seals_only_the_kept_groups_in_a_small_cookie() {
    let w = World::with_provider(LOGIN_RULES, true, "      groups: {keep: [\"team-*\"]}\n").await;
    w.issuer.set_id_token_groups(login_groups());
    let session = w.login("frank", "/home").await;
    assert!(session.len() < 1500, "{} bytes", session.len());
    let a = w.check(browser("/home", &[("cookie", &session)])).await;
    assert_eq!((a.status, a.groups()), (200, Some("team-a,team-b")), "{a:?}");
}

/// The groups a cookie sealed at login pass again through the provider's
/// filter as it is configured now: tightening it (a restart, a new replica)
/// takes effect on existing sessions, not only on the next login.
#[tokio::test]
async fn a_tightened_group_filter_applies_to_sessions_sealed_before_it() {
    let keep = "      groups: {keep: [\"team-*\", \"group-00*\"]}\n";
    let w = World::with_provider(LOGIN_RULES, true, keep).await;
    w.issuer.set_id_token_groups(login_groups());
    let session = w.login("frank", "/home").await;
    let req = || browser("/home", &[("cookie", &session)]);
    let sealed: Vec<String> = (0..10)
        .map(|i| format!("group-00{i}"))
        .chain(["team-a".into(), "team-b".into()])
        .collect();
    // Unchanged, the filter keeps what it kept.
    let same = w.reconfigured(LOGIN_RULES, keep).await;
    let a = Answer::of(&same.check(&req()).await);
    assert_eq!((a.status, a.groups()), (200, Some(sealed.join(",").as_str())), "{a:?}");
    let tighter = w.reconfigured(LOGIN_RULES, "      groups: {keep: [team-b]}\n").await;
    let a = Answer::of(&tighter.check(&req()).await);
    assert_eq!((a.status, a.groups()), (200, Some("team-b")), "{a:?}");
    // Over a `deny` budget now (the 12 groups take 103 bytes): refused, and the cookie cleared.
    let small = w
        .reconfigured(
            LOGIN_RULES,
            "      groups: {keep: [\"team-*\", \"group-00*\"], max_bytes: 64}\n",
        )
        .await;
    let a = Answer::of(&small.check(&req()).await);
    assert_denied(&a, 403, "groups_over_budget");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
}

#[tokio::test]
async fn a_session_of_a_login_moved_to_another_issuer_is_void() {
    let w = World::new(LOGIN_RULES).await;
    let session = w.login("alice", "/home").await;
    let other = Issuer::start_at(w.clock.clone()).await;
    let yaml = config(&other, &w._dir, &w.tenuo_root, LOGIN_RULES, true, "");
    let moved = other.app_for(&yaml).await.checker;
    // An API call (a browser would be sent to log in again).
    let a = Answer::of(&moved.check(&request("GET", "/home", &[("cookie", &session)])).await);
    assert_denied(&a, 401, "session_invalid");
    assert!(clears(&a.set_cookies, COOKIE), "{:?}", a.set_cookies);
}

#[tokio::test]
async fn a_login_over_the_budget_is_refused_at_the_callback() {
    let w = World::with_provider(LOGIN_RULES, true, "").await;
    w.issuer.set_id_token_groups(login_groups());
    assert_denied(&w.callback("frank", "/home").await, 403, "groups_over_budget");
    // Without a real budget the same login cannot fit its cookie at all.
    let w = World::with_provider(LOGIN_RULES, true, "      groups: {max_bytes: 61440}\n").await;
    w.issuer.set_id_token_groups(login_groups());
    assert_denied(&w.callback("frank", "/home").await, 401, "session_too_large");
}

// ---------------------------------------------------------------------------
// Workload identity: the mTLS peer Envoy verified (`attributes.source.principal`).

const DEPLOYER: &str = "spiffe://cluster.local/ns/ci/sa/deployer";

const WORKLOAD_RULES: &str = r#"  - path_prefix: /hooks
    require: workload
    allowed_principals: ["spiffe://cluster.local/ns/ci/sa/deployer", "spiffe://cluster.local/ns/build/*"]
  - path_prefix: /deploy
    require: oidc
    allowed_principals: ["spiffe://cluster.local/ns/ci/sa/deployer"]
  - path_prefix: /
    require: oidc
"#;

/// The request as Envoy sends it from a connection whose peer certificate
/// names `principal` (`""`: no client certificate).
fn from_peer(mut req: CheckRequest, principal: &str) -> CheckRequest {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
    req.attributes.as_mut().unwrap().source = Some(Peer {
        principal: principal.into(),
        ..Default::default()
    });
    req
}

#[tokio::test]
async fn require_workload_admits_listed_principals_without_a_user_credential() {
    let w = World::new(WORKLOAD_RULES).await;
    let hooks = || request("POST", "/hooks/release", &[]);
    for principal in [DEPLOYER, "spiffe://cluster.local/ns/build/sa/runner"] {
        let a = w.check(from_peer(hooks(), principal)).await.allowed();
        assert_eq!(a.header("x-portcullis-principal"), Some(principal));
        assert_eq!(a.user(), None, "no user was proven");
        assert!(a.removes("x-user-id"), "{a:?}");
    }
    for other in [
        "spiffe://cluster.local/ns/ci/sa/deployer-2",
        "spiffe://cluster.local/ns/ci/sa/other",
        "spiffe://cluster.local/ns/builder/sa/x",
        "spiffe://evil.example/ns/ci/sa/deployer",
    ] {
        let a = w.check(from_peer(hooks(), other)).await;
        assert_denied(&a, 403, "principal_not_allowed");
    }
    let metrics = w.metrics.render(0);
    assert!(
        metrics.contains("portcullis_authz_allow_total{source=\"workload\"} 2"),
        "{metrics}"
    );
    // No client certificate: a user token does not stand in for it.
    assert_denied(&w.check(hooks()).await, 401, "missing_principal");
    let bearer = w.bearer("alice");
    let with_token = request("POST", "/hooks/release", &[("authorization", &bearer)]);
    assert_denied(
        &w.check(from_peer(with_token.clone(), "")).await,
        401,
        "missing_principal",
    );
    // With the principal, the token is not read, and not forwarded unverified.
    let a = w.check(from_peer(with_token, DEPLOYER)).await.allowed();
    assert_eq!(a.user(), None);
    assert!(a.removes("authorization"), "{a:?}");
}

#[tokio::test]
async fn allowed_principals_combine_with_the_credential_require_asks_for() {
    let w = World::new(WORKLOAD_RULES).await;
    let bearer = w.bearer("alice");
    let deploy = |auth: Option<&str>| match auth {
        Some(a) => request("GET", "/deploy/x", &[("authorization", a)]),
        None => request("GET", "/deploy/x", &[]),
    };
    // Both: the user and the workload reach the upstream.
    let a = w.check(from_peer(deploy(Some(&bearer)), DEPLOYER)).await.allowed();
    assert_eq!(a.header("x-portcullis-principal"), Some(DEPLOYER));
    assert!(a.user().is_some_and(|u| !u.is_empty()), "{a:?}");
    // Either one alone is not enough; the principal is judged first.
    assert_denied(
        &w.check(from_peer(deploy(None), DEPLOYER)).await,
        401,
        "missing_credential",
    );
    assert_denied(&w.check(deploy(Some(&bearer))).await, 401, "missing_principal");
    assert_denied(
        &w.check(from_peer(
            deploy(Some(&bearer)),
            "spiffe://cluster.local/ns/ci/sa/other",
        ))
        .await,
        403,
        "principal_not_allowed",
    );
    assert_denied(
        &w.check(from_peer(deploy(Some("Bearer not-a-jwt")), DEPLOYER)).await,
        401,
        "malformed_token",
    );
    // A rule without allowed_principals does not ask, but a verified
    // principal is still passed on with the user.
    let a = w.check(from_peer(get("/other", &bearer), DEPLOYER)).await.allowed();
    assert_eq!(a.header("x-portcullis-principal"), Some(DEPLOYER));
}

#[tokio::test]
async fn a_client_sent_principal_header_never_reaches_the_upstream() {
    let w = World::new(WORKLOAD_RULES).await;
    let bearer = w.bearer("alice");
    let spoofed = |path: &str| {
        request(
            "GET",
            path,
            &[
                ("authorization", &bearer),
                ("x-portcullis-principal", DEPLOYER),
                ("x_portcullis_principal", DEPLOYER),
                ("x-forwarded-client-cert", &format!("URI={DEPLOYER}")),
            ],
        )
    };
    // No peer certificate: the header is removed in every spelling, and the
    // XFCC header does not make a principal.
    let a = w.check(spoofed("/other")).await.allowed();
    assert_eq!(a.header("x-portcullis-principal"), None);
    for name in ["x-portcullis-principal", "x_portcullis_principal"] {
        assert!(a.removes(name), "{name}: {a:?}");
    }
    assert_denied(&w.check(spoofed("/deploy")).await, 401, "missing_principal");
    // Another peer: its own principal overwrites the client's value.
    let other = "spiffe://cluster.local/ns/web/sa/frontend";
    let a = w.check(from_peer(spoofed("/other"), other)).await.allowed();
    assert_eq!(a.header("x-portcullis-principal"), Some(other));
    assert!(!a.removes("x-portcullis-principal"), "{a:?}");
    assert!(a.removes("x_portcullis_principal"), "{a:?}");
}

/// The World's config: one OIDC provider (bearer tokens and a login `idp`,
/// more keys in `provider`), browser sessions, Tenuo with the fixture gateway.
fn config(
    issuer: &Issuer,
    dir: &TempDir,
    tenuo_root: &SigningKey,
    rules: &str,
    refresh: bool,
    provider: &str,
) -> String {
    let gateway: String = warrant::GATEWAY.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        r#"listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
oidc:
  clock_skew_seconds: 0
  providers:
    - issuer: {issuer}
      audiences: [portcullis]
      user_claim: email
{provider}      login:
        name: idp
        client_id: {CLIENT_ID}
        redirect_path: /oauth2/callback
        logout_path: /oauth2/logout
        post_logout_redirect: {PUBLIC_URL}/
sessions:
  cookie_name: {COOKIE}
  keys: [{{file: {key}}}]
  max_age_seconds: 7200
  login_timeout_seconds: 300
  refresh: {{enabled: {refresh}, before_expiry_seconds: 60}}
  public_url: {PUBLIC_URL}
tenuo:
  trusted_issuers: ["{root}"]
  gateway:
{gateway}
rules:
{rules}
cache:
  max_ttl_seconds: 600
  negative_ttl_seconds: 10
"#,
        issuer = issuer.url,
        key = dir.path().join("session-key").display(),
        root = warrant::hex_key(tenuo_root),
    )
}

/// A refresh without a new ID token (plain OAuth2; OIDC Core §12.2 makes it
/// optional) renews the session with the groups sealed at login: they pass
/// the provider's filter as configured now, on the refreshing request and in
/// the renewed cookie.
#[tokio::test]
async fn a_refresh_without_an_id_token_applies_the_groups_filter_of_now() {
    let rules = "  - {path_prefix: /team-a, login: idp, allowed_groups: [team-a]}\n  - {path_prefix: /, login: idp}";
    let w = World::with_provider(rules, true, "      groups: {keep: [\"team-*\"]}\n").await;
    w.issuer.set_id_token_groups(json!(["team-a", "team-b"]));
    w.issuer.set_token_ttl(120);
    let session = w.login("frank", "/").await;
    let tighter = w.reconfigured(rules, "      groups: {keep: [team-b]}\n").await;
    w.issuer.set_refresh(RefreshAnswer::RenewWithoutIdToken);
    w.advance(60); // refresh due
    let a = Answer::of(&tighter.check(&browser("/", &[("cookie", &session)])).await);
    assert_eq!(
        (a.status, a.groups(), w.issuer.refreshes()),
        (200, Some("team-b"), 1),
        "{a:?}"
    );
    let renewed = cookie_pair(&a.set_cookies, COOKIE).expect("renewed cookie");
    w.advance(100); // past the first tokens' expiry: only the renewed cookie counts
    let a = Answer::of(&tighter.check(&browser("/team-a/x", &[("cookie", &renewed)])).await);
    assert_denied(&a, 403, "group_not_allowed");
    let a = Answer::of(&tighter.check(&browser("/", &[("cookie", &renewed)])).await);
    assert_eq!((a.status, a.groups()), (200, Some("team-b")), "{a:?}");
}
