//! `jwt_header`: `OidcVerifier::verify` / `verify_id_token` on hostile
//! tokens — the header parse, the unverified `iss` peek that picks the
//! provider, the `kid`/`alg` key lookup and the unknown-kid refetch, up to
//! the signature check.
//!
//! The verifier is real and ready: an issuer on 127.0.0.1 (in this process)
//! serves a JWKS with the RS256, ES256 and EdDSA bench keys.
//!
//! Input: byte 0 picks the shape: 0 the rest as the token; 1 header JSON
//! (rest) with a valid payload of our issuer and a real signature; 2 header,
//! payload and signature (split at `\0`), each base64url-encoded.
//!
//! Invariants: nothing is ever accepted; over `max_token_bytes` is
//! `TokenTooLarge` before any parsing; refusals carry a token reason; the
//! JWKS is fetched at most once more than at start-up however many unknown
//! kids arrive (`jwks_min_refetch_seconds` is an hour); no call waits on
//! anything else (bounded work).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::config::RawConfig;
use portcullis::deny::Deny;
use portcullis::idp::IdpClient;
use portcullis::telemetry::Metrics;
use portcullis::verify::oidc::OidcVerifier;
use serde_json::{json, Value};

use crate::ensure;

pub const MAX_TOKEN_BYTES: usize = 4096;
const ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

pub struct Issuer {
    pub rt: tokio::runtime::Runtime,
    pub url: String,
    pub verifier: OidcVerifier,
    pub fetches: Arc<AtomicUsize>,
    /// A valid token per algorithm (never fed to the verifier as is).
    pub minted: Vec<String>,
}

pub static ISSUER: LazyLock<Issuer> = LazyLock::new(start);

fn key(alg: Algorithm) -> EncodingKey {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/keys");
    let read = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap_or_else(|e| panic!("{dir}/{f}: {e}"));
    let k = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&read("rs256.pem")),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read("es256.pem")),
        _ => EncodingKey::from_ed_pem(&read("eddsa.pem")),
    };
    k.unwrap_or_else(|e| panic!("bench key {alg:?}: {e}"))
}

fn kid(alg: Algorithm) -> String {
    format!("fuzz-{alg:?}").to_lowercase()
}

fn start() -> Issuer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let fetches = Arc::new(AtomicUsize::new(0));
    let keys: Vec<(Algorithm, EncodingKey)> = ALGS.iter().map(|&a| (a, key(a))).collect();
    let jwks: Vec<Value> = keys
        .iter()
        .map(|(alg, k)| {
            let mut jwk = Jwk::from_encoding_key(k, *alg).unwrap_or_else(|e| panic!("jwk: {e}"));
            jwk.common.key_id = Some(kid(*alg));
            serde_json::to_value(jwk).unwrap_or_default()
        })
        .collect();
    let counter = fetches.clone();
    let url = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"))
        );
        let app = Router::new().route(
            "/keys",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = json!({ "keys": jwks });
                async move { Json(body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    let yaml = format!(
        "oidc:\n  max_token_bytes: {MAX_TOKEN_BYTES}\n  jwks_min_refetch_seconds: 3600\n  providers:\n    \
         - issuer: {url}\n      jwks_uri: {url}/keys\n      audiences: [portcullis]\n"
    );
    let config = RawConfig::from_yaml(&yaml)
        .and_then(|r| r.validate())
        .unwrap_or_else(|e| panic!("probe config: {e}"));
    let idp = IdpClient::new(config.oidc.fetch_timeout).unwrap_or_else(|e| panic!("{e}"));
    let verifier = OidcVerifier::new(&config.oidc, Arc::new(idp), Arc::new(Metrics::new()));
    rt.block_on(verifier.load_all())
        .unwrap_or_else(|e| panic!("JWKS load: {e}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({"iss": url, "sub": "alice", "aud": "portcullis", "iat": now, "exp": now + 3600, "nonce": "n"});
    let minted = keys
        .iter()
        .map(|(alg, k)| {
            let mut h = Header::new(*alg);
            h.kid = Some(kid(*alg));
            jsonwebtoken::encode(&h, &claims, k).unwrap_or_else(|e| panic!("mint: {e}"))
        })
        .collect();
    Issuer {
        rt,
        url,
        verifier,
        fetches,
        minted,
    }
}

/// The token an input stands for.
pub fn token(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    let issuer = &*ISSUER;
    match mode % 3 {
        0 => std::str::from_utf8(rest).ok().map(str::to_string),
        1 => {
            let valid = &issuer.minted[usize::from(mode / 3) % issuer.minted.len()];
            let mut parts = valid.split('.');
            let (_, payload, sig) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{}.{payload}.{sig}", URL_SAFE_NO_PAD.encode(rest)))
        }
        _ => {
            let enc: Vec<String> = rest.splitn(3, |&b| b == 0).map(|p| URL_SAFE_NO_PAD.encode(p)).collect();
            Some(enc.join("."))
        }
    }
}

pub fn check(data: &[u8]) -> Result<(), String> {
    let Some(token) = token(data) else {
        return Ok(());
    };
    let issuer = &*ISSUER;
    if issuer.minted.contains(&token) {
        // The fuzzer rebuilt a token the issuer signed: accepting it is right.
        return Ok(());
    }
    let got = issuer.rt.block_on(issuer.verifier.verify(&token, SystemTime::now()));
    check_verdict(&token, got.map(|_| ()))?;
    let id = issuer.rt.block_on(issuer.verifier.verify_id_token(
        &token,
        &issuer.url,
        "portcullis",
        Some("n"),
        SystemTime::now(),
    ));
    check_verdict(&token, id.map(|_| ()))?;
    let fetches = issuer.fetches.load(Ordering::SeqCst);
    ensure(fetches <= 2, || {
        format!("{fetches} JWKS fetches: unknown kids are not rate-limited ({token:?})")
    })
}

pub fn check_verdict(token: &str, got: Result<(), Deny>) -> Result<(), String> {
    let d = match got {
        Ok(()) => return Err(format!("accepted a token the issuer never signed: {token:?}")),
        Err(d) => d,
    };
    if token.len() > MAX_TOKEN_BYTES {
        return ensure(d == Deny::TokenTooLarge, || format!("{} bytes, yet {d:?}", token.len()));
    }
    ensure(
        matches!(
            d,
            Deny::MalformedToken
                | Deny::UnknownIssuer
                | Deny::InvalidClaims
                | Deny::DisallowedAlgorithm
                | Deny::UnknownKey
                | Deny::InvalidSignature
        ),
        || format!("{token:?}: refused as {d:?}, not a reason a forged token can reach"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_real_its_tokens_pass_and_forgeries_fail() {
        let issuer = &*ISSUER;
        for t in &issuer.minted {
            assert!(
                issuer.rt.block_on(issuer.verifier.verify(t, SystemTime::now())).is_ok(),
                "minted token must verify"
            );
            assert!(check_verdict(t, Ok(())).is_err(), "an acceptance is always reported");
        }
        let es = &issuer.minted[1];
        let (head, sig) = es.rsplit_once('.').unwrap_or_default();
        let flipped = format!(
            "{head}.{}",
            if sig.starts_with('A') {
                sig.replacen('A', "B", 1)
            } else {
                format!("A{}", &sig[1..])
            }
        );
        assert_eq!(
            issuer
                .rt
                .block_on(issuer.verifier.verify(&flipped, SystemTime::now()))
                .map(|_| ()),
            Err(Deny::InvalidSignature)
        );
        for d in [
            &b"\x00not.a.jwt"[..],
            b"\x01{\"alg\":\"none\"}",
            b"\x01{\"alg\":\"HS256\",\"kid\":\"fuzz-rs256\"}",
            b"\x04{\"alg\":\"ES256\",\"kid\":\"other\"}",
        ] {
            assert_eq!(check(d), Ok(()), "{d:?}");
        }
        assert!(
            check_verdict(&"a".repeat(MAX_TOKEN_BYTES + 1), Err(Deny::MalformedToken)).is_err(),
            "an oversized token must be refused as token_too_large"
        );
    }
}
