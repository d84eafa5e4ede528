//! Shared by the criterion benches and `examples/rss.rs`: an in-process
//! issuer on 127.0.0.1 that serves discovery and a JWKS for RS256, ES256 and
//! EdDSA keys, and mints tokens with them.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::app::App;
use portcullis::check::Checker;
use portcullis::config::RawConfig;
use serde_json::{json, Value};

pub const ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

pub struct Issuer {
    pub url: String,
    keys: Vec<(Algorithm, EncodingKey)>,
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

impl Issuer {
    /// Binds 127.0.0.1:0 and serves discovery + JWKS on the current runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let keys: Vec<_> = ALGS.iter().map(|&a| (a, key(a))).collect();
        let jwks: Vec<Value> = keys
            .iter()
            .map(|(alg, k)| {
                let mut jwk = Jwk::from_encoding_key(k, *alg).expect("jwk");
                jwk.common.key_id = Some(kid(*alg));
                serde_json::to_value(jwk).expect("json")
            })
            .collect();
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route("/keys", get(move || async move { Json(json!({ "keys": jwks })) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, keys }
    }

    pub fn mint(&self, alg: Algorithm, sub: &str, extra: Value) -> String {
        let (_, k) = self.keys.iter().find(|(a, _)| *a == alg).expect("alg");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let mut claims = json!({
            "iss": self.url, "sub": sub, "aud": "portcullis", "iat": now, "exp": now + 3600,
            "email": format!("{sub}@example.com"), "groups": ["dev", "ops"],
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let mut header = Header::new(alg);
        header.kid = Some(kid(alg));
        jsonwebtoken::encode(&header, &claims, k).expect("sign")
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
        let config = RawConfig::from_yaml(&yaml).expect("yaml").validate().expect("valid");
        let app = App::new(config).expect("app");
        app.oidc.load_all().await.expect("keys");
        app
    }
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
