//! Shared by the in-process tests (`tests/decisions.rs`), the criterion
//! benches and the examples: an in-process
//! issuer on 127.0.0.1 that serves discovery and a JWKS for RS256, ES256 and
//! EdDSA keys, and mints tokens with them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::app::App;
use portcullis::check::Checker;
use portcullis::clock::{unix, Clock};
use portcullis::config::RawConfig;
use serde_json::{json, Value};

pub const ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// The `client_id` of the issuer's login client.
pub const CLIENT_ID: &str = "portcullis-web";

/// An OIDC issuer in the test process: discovery, JWKS, and a token
/// endpoint for the code and refresh grants. Tokens are minted at its
/// clock's time, so a test that moves a manual clock moves the issuer too.
pub struct Issuer {
    pub url: String,
    keys: Arc<Vec<(Algorithm, EncodingKey)>>,
    clock: Clock,
    login: Arc<Mutex<LoginSide>>,
}

/// What the token endpoint knows: codes granted by `authorize`, live
/// refresh tokens (rotated on use), and how it answers refreshes.
#[derive(Default)]
struct LoginSide {
    codes: HashMap<String, (String, String)>,
    refresh_tokens: HashMap<String, String>,
    token_ttl: u64,
    refresh: RefreshAnswer,
    refreshes: u32,
    /// Seconds the token endpoint takes to answer, on the issuer's clock.
    slow_by: u64,
    /// The `groups` claim of ID tokens; `None`: `["dev", "ops"]`.
    id_token_groups: Option<Value>,
}

/// How the token endpoint answers a refresh grant.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub enum RefreshAnswer {
    #[default]
    Renew,
    /// Renewed, without a new ID token (OAuth2 §6; OIDC Core §12.2 makes it optional).
    RenewWithoutIdToken,
    /// `400 invalid_grant`: the refresh token was revoked.
    Revoked,
    /// `503`: the IdP is down.
    Unavailable,
}

fn key(alg: Algorithm) -> EncodingKey {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/keys");
    let read = |f: &str| std::fs::read(format!("{dir}/{f}")).expect("bench key");
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&read("rs256.pem")),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read("es256.pem")),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&read("eddsa.pem")),
        _ => unreachable!("no bench key for {alg:?}"),
    }
    .expect("parse bench key")
}

fn kid(alg: Algorithm) -> String {
    format!("bench-{alg:?}").to_lowercase()
}

fn sign(keys: &[(Algorithm, EncodingKey)], alg: Algorithm, claims: &Value) -> String {
    let (_, k) = keys.iter().find(|(a, _)| *a == alg).expect("alg");
    let mut header = Header::new(alg);
    header.kid = Some(kid(alg));
    jsonwebtoken::encode(&header, claims, k).expect("sign")
}

impl Issuer {
    /// Binds 127.0.0.1:0 and serves on the current runtime, minting at the system time.
    pub async fn start() -> Self {
        Self::start_at(Clock::system()).await
    }

    /// The same, minting at `clock`'s time.
    pub async fn start_at(clock: Clock) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let keys: Arc<Vec<_>> = Arc::new(ALGS.iter().map(|&a| (a, key(a))).collect());
        let jwks: Vec<Value> = keys
            .iter()
            .map(|(alg, k)| {
                let mut jwk = Jwk::from_encoding_key(k, *alg).expect("jwk");
                jwk.common.key_id = Some(kid(*alg));
                serde_json::to_value(jwk).expect("json")
            })
            .collect();
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/keys"),
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
        });
        let login = Arc::new(Mutex::new(LoginSide {
            token_ttl: 3600,
            ..LoginSide::default()
        }));
        let token = {
            let (login, keys, clock, url) = (login.clone(), keys.clone(), clock.clone(), url.clone());
            move |body: String| async move { token_endpoint(&login, &keys, &clock, &url, &body) }
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route("/keys", get(move || async move { Json(json!({ "keys": jwks })) }))
            .route("/token", post(token));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            keys,
            clock,
            login,
        }
    }

    /// A token for `sub`, valid an hour from the issuer's clock; `extra`
    /// adds or replaces claims (`exp`, `aud`, …).
    pub fn mint(&self, alg: Algorithm, sub: &str, extra: Value) -> String {
        let now = unix(self.clock.now());
        let mut claims = json!({
            "iss": self.url, "sub": sub, "aud": "portcullis", "iat": now, "exp": now + 3600,
            "email": format!("{sub}@example.com"), "groups": ["dev", "ops"],
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        sign(&self.keys, alg, &claims)
    }

    /// The user `sub` approves a login at the authorization endpoint:
    /// returns the code the browser brings back to the callback. `nonce`
    /// is the one in the authorization URL.
    pub fn authorize(&self, sub: &str, nonce: &str) -> String {
        let code = format!("code-{}", rand::random::<u64>());
        let mut login = self.login.lock().expect("lock");
        login.codes.insert(code.clone(), (sub.to_string(), nonce.to_string()));
        code
    }

    /// Lifetime of the tokens the token endpoint issues from now on.
    pub fn set_token_ttl(&self, seconds: u64) {
        self.login.lock().expect("lock").token_ttl = seconds;
    }

    /// The token endpoint takes `seconds` (moving the issuer's clock, so a
    /// manual clock shared with a checker moves too) before it issues tokens.
    pub fn set_token_endpoint_slow_by(&self, seconds: u64) {
        self.login.lock().expect("lock").slow_by = seconds;
    }

    pub fn set_refresh(&self, answer: RefreshAnswer) {
        self.login.lock().expect("lock").refresh = answer;
    }

    /// The `groups` claim of the ID tokens the token endpoint issues from now on.
    pub fn set_id_token_groups(&self, groups: Value) {
        self.login.lock().expect("lock").id_token_groups = Some(groups);
    }

    /// Refresh grants the token endpoint has answered, whatever the answer.
    pub fn refreshes(&self) -> u32 {
        self.login.lock().expect("lock").refreshes
    }

    pub fn decoding_key(&self, alg: Algorithm) -> jsonwebtoken::DecodingKey {
        let (_, k) = self.keys.iter().find(|(a, _)| *a == alg).expect("alg");
        let jwk = Jwk::from_encoding_key(k, alg).expect("jwk");
        jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key")
    }

    /// A checker for this issuer with its keys loaded.
    pub async fn checker(&self, max_entries: u64) -> Arc<Checker> {
        self.app(max_entries).await.checker
    }

    /// The checker with what it shares (its cache, metrics), keys loaded.
    pub async fn app(&self, max_entries: u64) -> App {
        let yaml = format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\noidc:\n  providers:\n    - issuer: {}\n      audiences: [portcullis]\n      user_claim: email\nrules:\n  - path_prefix: /admin\n    allowed_groups: [admins]\n  - path_prefix: /\ncache:\n  max_entries: {max_entries}\n",
            self.url
        );
        self.app_for(&yaml).await
    }

    /// Everything a whole config (YAML) asks for, deciding by the issuer's
    /// clock, with every provider's keys loaded.
    pub async fn app_for(&self, yaml: &str) -> App {
        let mut config = RawConfig::from_yaml(yaml).expect("yaml").validate().expect("valid");
        // `{file: …}` secrets; no environment.
        config.resolve_secrets(&HashMap::<&str, &str>::new()).expect("secrets");
        let app = App::with_clock(config, self.clock.clone()).expect("app");
        app.oidc.load_all().await.expect("keys");
        app
    }
}

/// `POST /token`: the code grant (the code's user, the nonce of its
/// authorization request) and the refresh grant (rotating the refresh token).
fn token_endpoint(
    login: &Mutex<LoginSide>,
    keys: &[(Algorithm, EncodingKey)],
    clock: &Clock,
    url: &str,
    body: &str,
) -> (StatusCode, Json<Value>) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let mut login = login.lock().expect("lock");
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (sub, nonce) = match field("grant_type").as_str() {
        "authorization_code" => match login.codes.remove(&field("code")) {
            Some((sub, nonce)) => (sub, Some(nonce)),
            None => return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))),
        },
        "refresh_token" => {
            login.refreshes += 1;
            match login.refresh {
                RefreshAnswer::Renew | RefreshAnswer::RenewWithoutIdToken => {}
                RefreshAnswer::Revoked => {
                    return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"})));
                }
                RefreshAnswer::Unavailable => {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({"error": "temporarily_unavailable"})),
                    );
                }
            }
            match login.refresh_tokens.remove(&field("refresh_token")) {
                Some(sub) => (sub, None),
                None => return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))),
            }
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
        }
    };
    clock.advance(Duration::from_secs(login.slow_by));
    let now = unix(clock.now());
    let ttl = login.token_ttl;
    let mut claims = json!({
        "iss": url, "sub": sub, "aud": CLIENT_ID, "iat": now, "nbf": now, "exp": now + ttl,
        "email": format!("{sub}@example.com"), "groups": ["dev", "ops"],
    });
    if let Some(n) = &nonce {
        claims["nonce"] = json!(n);
    }
    if let Some(g) = &login.id_token_groups {
        claims["groups"] = g.clone();
    }
    let refresh_token = format!("rt-{}", rand::random::<u64>());
    login.refresh_tokens.insert(refresh_token.clone(), sub);
    let id_token = sign(keys, Algorithm::RS256, &claims);
    if nonce.is_none() && matches!(login.refresh, RefreshAnswer::RenewWithoutIdToken) {
        return (
            StatusCode::OK,
            Json(json!({
                "access_token": format!("at-{}", rand::random::<u64>()),
                "token_type": "Bearer",
                "expires_in": ttl,
                "refresh_token": refresh_token,
            })),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "access_token": format!("at-{}", rand::random::<u64>()),
            "token_type": "Bearer",
            "expires_in": ttl,
            "id_token": id_token,
            "refresh_token": refresh_token,
        })),
    )
}

/// A CheckRequest shaped like the ones Envoy sends: a dozen headers.
pub fn check_request(token: &str) -> CheckRequest {
    let mut headers: std::collections::HashMap<String, String> = [
        (":authority", "app.example.com"),
        (":method", "GET"),
        (":path", "/api/items?page=2"),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "bench/1.0"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "0f6c1a52-8f34-4b8e-9a55-1f0c7e0a9b1d"),
        ("x-user-id", "spoofed"),
        ("x-envoy-expected-rq-timeout-ms", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    headers.insert("authorization".into(), format!("Bearer {token}"));
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/items?page=2".into(),
                    host: "app.example.com".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Polls a future that must complete without waiting (a cache hit or a
/// verification with a known key never awaits I/O), so benchmarks measure
/// the decision and not an executor.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked path waited on I/O"),
    }
}

/// What a Check answered, read the way Envoy reads it: for an allowed
/// request the header edits for the upstream and the `Set-Cookie`s for the
/// client; for a denial its status, reason, `Location` and `Set-Cookie`s.
#[derive(Debug)]
pub struct Answer {
    pub status: i32,
    pub reason: Option<String>,
    /// Headers set on the upstream request (allowed only).
    pub set: Vec<(String, String)>,
    /// Headers removed from it (allowed only).
    pub removed: Vec<String>,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
}

impl Answer {
    pub fn of(r: &CheckResponse) -> Self {
        match &r.http_response {
            Some(HttpResponse::OkResponse(ok)) => Self {
                status: 200,
                reason: None,
                set: ok
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
                removed: ok.headers_to_remove.clone(),
                location: None,
                set_cookies: ok
                    .response_headers_to_add
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .filter(|h| h.key.eq_ignore_ascii_case("set-cookie"))
                    .map(|h| h.value.clone())
                    .collect(),
            },
            Some(HttpResponse::DeniedResponse(d)) => {
                let header = |name: &str| -> Vec<String> {
                    d.headers
                        .iter()
                        .filter_map(|h| h.header.as_ref())
                        .filter(|h| h.key.eq_ignore_ascii_case(name))
                        .map(|h| h.value.clone())
                        .collect()
                };
                let body: Value = serde_json::from_str(&d.body).unwrap_or_default();
                Self {
                    status: d.status.as_ref().map_or(-1, |s| s.code),
                    reason: body["reason"].as_str().map(str::to_string),
                    set: Vec::new(),
                    removed: Vec::new(),
                    location: header("location").into_iter().next(),
                    set_cookies: header("set-cookie"),
                }
            }
            other => panic!("not an OK or a denial: {other:?}"),
        }
    }

    /// This answer, which must be an allow (its edits are then what is asserted).
    pub fn allowed(self) -> Self {
        assert_eq!(self.status, 200, "not allowed: {self:?}");
        self
    }

    /// A header set for the upstream.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn user(&self) -> Option<&str> {
        self.header("x-user-id")
    }

    pub fn groups(&self) -> Option<&str> {
        self.header("x-auth-request-groups")
    }

    pub fn removes(&self, name: &str) -> bool {
        self.removed.iter().any(|r| r == name)
    }
}

pub fn assert_denied(a: &Answer, status: i32, reason: &str) {
    assert_eq!((a.status, a.reason.as_deref()), (status, Some(reason)), "{a:?}");
}
