//! API keys in process: the real `Checker` built from YAML, a key file the
//! test rewrites, and a manual clock. Allow with the key's identity, the
//! exact reasons of a wrong, malformed or expired key, opt-in per rule,
//! one credential only, revocation by reload dropping cached decisions,
//! and metrics by key id, never by key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod support;
#[path = "support/warrant.rs"]
mod warrant;

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use portcullis::app::App;
use portcullis::clock::{unix, Clock};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::{assert_denied, Answer, Issuer};
use tempfile::TempDir;

const KEY: &str = "pk_ci-bot_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo";
const OTHER: &str = "pk_reader_cXV4cXV4cXV4cXV4cXV4cXV4cXV4cXV4cXV4cXV4";

struct World {
    clock: Clock,
    issuer: Issuer,
    app: App,
    file: PathBuf,
    _dir: TempDir,
}

fn entry(id: &str, key: &str, user: &str, extra: &str) -> String {
    format!(
        "  {id}: {{sha256: {}, user: {user}, groups: [deployers]{extra}}}\n",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

impl World {
    async fn new(keys: &str) -> Self {
        let clock = Clock::manual(std::time::SystemTime::now());
        let issuer = Issuer::start_at(clock.clone()).await;
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("api-keys.yaml");
        std::fs::write(&file, format!("keys:\n{keys}")).unwrap();
        let yaml = format!(
            r#"listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
oidc:
  providers:
    - issuer: {issuer}
      audiences: [portcullis]
      user_claim: email
api_keys:
  file: {file}
  header: x-api-key
  reload_interval_seconds: 5
rules:
  - path_prefix: /deploy
    providers: [api-keys]
    allowed_groups: [deployers]
  - path_prefix: /forward
    providers: [api-keys]
    forward_unverified_authorization: true
  - path_prefix: /
cache:
  max_ttl_seconds: 600
  negative_ttl_seconds: 10
"#,
            issuer = issuer.url,
            file = file.display(),
        );
        let app = issuer.app_for(&yaml).await;
        Self {
            clock,
            issuer,
            app,
            file,
            _dir: dir,
        }
    }

    async fn check(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        Answer::of(
            &self
                .app
                .checker
                .check(&warrant::request("GET", path, headers, ""))
                .await,
        )
    }

    fn rewrite(&self, keys: &str) {
        std::fs::write(&self.file, format!("keys:\n{keys}")).unwrap();
    }

    fn reload(&self) -> Option<usize> {
        self.app.api_keys.as_ref().unwrap().reload().unwrap()
    }

    fn metrics(&self) -> String {
        self.app.metrics.render(0)
    }
}

#[tokio::test]
async fn a_key_in_either_place_proves_its_identity_and_never_reaches_the_upstream() {
    let w = World::new(&entry("ci-bot", KEY, "ci", "")).await;
    let authorization = format!("apikey {KEY}");
    for headers in [[("authorization", authorization.as_str())], [("x-api-key", KEY)]] {
        let a = w.check("/deploy/app", &headers).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.header("x-user-id"), Some("ci"), "the spoofed value is replaced");
        assert_eq!(a.header("x-auth-request-groups"), Some("deployers"));
        assert_eq!(a.header("x-auth-request-issuer"), Some("portcullis:api-keys"));
        // The configured header always; `Authorization` whenever it was sent.
        for name in ["x-api-key", headers[0].0] {
            assert!(
                a.removed.iter().any(|r| r == name),
                "{name} reaches the upstream: {a:?}"
            );
        }
        assert!(
            !format!("{a:?}").contains(&KEY[10..]),
            "the secret is in the answer: {a:?}"
        );
    }
}

/// Envoy passes `x_api_key` (headers_with_underscores_action: ALLOW) and
/// upstreams that fold `_` into `-` (WSGI, PHP, CGI) would read it as the
/// key header: it is removed as well, though it is not read as a credential.
#[tokio::test]
async fn the_key_header_in_another_spelling_never_reaches_the_upstream() {
    let w = World::new(&entry("ci-bot", KEY, "ci", "")).await;
    let bearer_less = format!("apikey {KEY}");
    let a = w
        .check("/deploy/app", &[("authorization", &bearer_less), ("x_api_key", KEY)])
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.removed.iter().any(|r| r == "x_api_key"), "{a:?}");
}

#[tokio::test]
async fn a_wrong_malformed_or_doubled_key_is_refused_with_its_exact_reason() {
    let w = World::new(&entry("ci-bot", KEY, "ci", "")).await;
    // The configured id with another secret: the same answer as an id nobody configured.
    let wrong = KEY.replace("Zm9v", "Zm9w");
    for key in [wrong.as_str(), OTHER] {
        let a = w.check("/deploy", &[("x-api-key", key)]).await;
        assert_denied(&a, 401, "unknown_api_key");
    }
    for key in [
        "pk_ci-bot_short",
        "ci-bot",
        "pk_CI_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo",
    ] {
        let a = w.check("/deploy", &[("authorization", &format!("ApiKey {key}"))]).await;
        assert_denied(&a, 401, "invalid_api_key");
    }
    let a = w.check("/deploy", &[("authorization", "ApiKey")]).await;
    assert_denied(&a, 401, "invalid_api_key");
    // A key beside a bearer token: two credentials, whichever is valid.
    let bearer = format!("Bearer {}", w.issuer.mint(Algorithm::RS256, "alice", json!({})));
    let a = w
        .check("/deploy", &[("authorization", &bearer), ("x-api-key", KEY)])
        .await;
    assert_denied(&a, 401, "multiple_credentials");
}

#[tokio::test]
async fn only_a_rule_that_names_api_keys_accepts_them() {
    let w = World::new(&entry("ci-bot", KEY, "ci", "")).await;
    let a = w.check("/other", &[("x-api-key", KEY)]).await;
    assert_denied(&a, 403, "provider_not_allowed");
    // And a bearer token is not accepted where only API keys are.
    let bearer = format!(
        "Bearer {}",
        w.issuer
            .mint(Algorithm::RS256, "alice", json!({"groups": ["deployers"]}))
    );
    let a = w.check("/deploy", &[("authorization", &bearer)]).await;
    assert_denied(&a, 403, "provider_not_allowed");
    let a = w.check("/other", &[("authorization", &bearer)]).await;
    assert_eq!(a.status, 200, "{a:?}");
}

#[tokio::test]
async fn a_key_stops_working_at_its_expiry_even_when_its_decision_is_cached() {
    let clock_now = std::time::SystemTime::now();
    let expires = unix(clock_now) + 100;
    let w = World::new(&entry("ci-bot", KEY, "ci", &format!(", expires_at: {expires}"))).await;
    let a = w.check("/deploy", &[("x-api-key", KEY)]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(w.clock.advance(Duration::from_secs(101)));
    let a = w.check("/deploy", &[("x-api-key", KEY)]).await;
    assert_denied(&a, 401, "api_key_expired");
}

#[tokio::test]
async fn removing_a_key_and_reloading_drops_its_cached_decision() {
    let both = entry("ci-bot", KEY, "ci", "") + &entry("reader", OTHER, "reader", "");
    let w = World::new(&both).await;
    assert_eq!(w.check("/deploy", &[("x-api-key", KEY)]).await.status, 200);
    w.rewrite(&entry("reader", OTHER, "reader", ""));
    // Until the reload the loaded set (and its cached decisions) still answer.
    assert_eq!(w.check("/deploy", &[("x-api-key", KEY)]).await.status, 200);
    assert_eq!(w.reload(), Some(1));
    let a = w.check("/deploy", &[("x-api-key", KEY)]).await;
    assert_denied(&a, 401, "unknown_api_key");
    assert_eq!(w.check("/deploy", &[("x-api-key", OTHER)]).await.status, 200);
    // A file that no longer parses keeps the keys in use.
    std::fs::write(&w.file, "keys: [broken").unwrap();
    assert!(w.app.api_keys.as_ref().unwrap().reload().is_err());
    assert_eq!(w.check("/deploy", &[("x-api-key", OTHER)]).await.status, 200);
}

#[tokio::test]
async fn metrics_count_by_configured_key_id_and_never_show_a_key() {
    let w = World::new(&entry("ci-bot", KEY, "ci", "")).await;
    w.check("/deploy", &[("x-api-key", KEY)]).await;
    w.check("/deploy", &[("x-api-key", KEY)]).await;
    w.check("/deploy", &[("x-api-key", &KEY.replace("Zm9v", "Zm9w"))]).await;
    w.check("/deploy", &[("x-api-key", OTHER)]).await;
    let m = w.metrics();
    for line in [
        r#"portcullis_api_key_checks_total{key_id="ci-bot",result="allowed"} 2"#,
        r#"portcullis_api_key_checks_total{key_id="ci-bot",result="unknown_api_key"} 1"#,
        r#"portcullis_api_key_checks_total{key_id="unknown",result="unknown_api_key"} 1"#,
        r#"portcullis_authz_allow_total{source="api_key"} 2"#,
    ] {
        assert!(m.contains(line), "no {line} in\n{m}");
    }
    assert!(!m.contains("reader"), "an unconfigured id is a label:\n{m}");
    assert!(
        !m.contains(&KEY[10..]) && !m.contains(&OTHER[10..]),
        "a secret is in the metrics"
    );
}

#[tokio::test]
async fn a_key_is_removed_even_where_unverified_authorization_is_forwarded() {
    let w = World::new(&entry("ci-bot", KEY, "ci", "")).await;
    let a = w
        .check("/forward", &[("authorization", &format!("ApiKey {KEY}"))])
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.removed.iter().any(|r| r == "authorization"), "{a:?}");
    // A scheme portcullis does not verify is still forwarded there, as configured.
    let bearer = format!("Bearer {}", w.issuer.mint(Algorithm::RS256, "alice", json!({})));
    let a = w
        .check("/forward", &[("x-api-key", KEY), ("authorization", "Basic dXNlcg==")])
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(!a.removed.iter().any(|r| r == "authorization"), "{a:?}");
    assert_denied(
        &w.check("/forward", &[("authorization", &bearer)]).await,
        403,
        "provider_not_allowed",
    );
}
