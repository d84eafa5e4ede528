//! OIDC bearer JWTs, verified locally against each issuer's cached JWKS.
//!
//! Order of checks: size → shape and header → issuer (selects the provider)
//! → key by `kid` (one rate-limited refetch on a miss, waited for at most
//! `check_fetch_budget`) → algorithm allowed
//! by that key → signature, exact `iss` → `exp`/`nbf` with skew against the
//! Check's clock → audience and identity claims.

pub mod claims;
pub mod jwks;
pub mod provider;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::clock::unix;
use crate::config::{OidcConfig, ProviderConfig};
use crate::deny::Deny;
use crate::identity::Identity;
use crate::idp::{IdpClient, IdpError};
use crate::telemetry::Metrics;
use provider::{Provider, Refetched};

pub struct OidcVerifier {
    providers: Vec<Arc<Provider>>,
    by_issuer: HashMap<String, usize>,
    skew: Duration,
    max_token_bytes: usize,
    refresh_every: Duration,
    generation: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: Option<String>,
}

// === impl OidcVerifier ===

impl OidcVerifier {
    /// `idp` makes the discovery and JWKS calls (and is shared with
    /// browser sessions, so an issuer is discovered once).
    pub fn new(cfg: &OidcConfig, idp: Arc<IdpClient>, metrics: Arc<Metrics>) -> Self {
        let generation = Arc::new(AtomicU64::new(0));
        let providers: Vec<Arc<Provider>> = cfg
            .providers
            .iter()
            .map(|p| {
                Arc::new(Provider::new(
                    p.clone(),
                    cfg,
                    generation.clone(),
                    idp.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        let by_issuer = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.config.issuer.to_string(), i))
            .collect();
        Self {
            providers,
            by_issuer,
            skew: cfg.clock_skew,
            max_token_bytes: cfg.max_token_bytes,
            refresh_every: cfg.jwks_refresh,
            generation,
            metrics,
        }
    }

    /// Starts one key-refresh task per provider.
    pub fn spawn_refreshers(&self) {
        for p in &self.providers {
            tokio::spawn(Arc::clone(p).run_refresher(self.refresh_every));
        }
    }

    /// The `groups:` filter of the provider of `issuer` (sessions re-apply
    /// it to the groups a cookie sealed at login).
    pub fn group_filter(&self, issuer: &str) -> Option<&crate::groups::GroupFilter> {
        self.by_issuer.get(issuer).map(|&i| &self.providers[i].config.groups)
    }

    /// Every provider has keys (readiness).
    pub fn is_ready(&self) -> bool {
        self.providers.iter().all(|p| p.is_loaded())
    }

    /// Changes whenever a published key disappears or changes; part of every
    /// cache key so such a change invalidates cached decisions.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Loads every provider's keys once (used by tests and benchmarks; the
    /// server relies on the refreshers instead).
    pub async fn load_all(&self) -> Result<(), IdpError> {
        for p in &self.providers {
            p.refresh().await?;
        }
        Ok(())
    }

    /// Gives the provider of `issuer` these keys instead of its JWKS
    /// endpoint's, and makes every provider stop fetching (`portcullis
    /// explain --jwks-file`: offline, a provider without a file has no keys).
    /// False when no provider has that issuer.
    pub fn install_fixed_keys(&self, issuer: &str, keys: jwks::KeySet) -> bool {
        let Some(&i) = self.by_issuer.get(issuer) else {
            return false;
        };
        for p in &self.providers {
            p.stop_fetching();
        }
        self.providers[i].install_fixed(keys);
        true
    }

    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// A bearer token's identity, judged at `now` (the Check's clock).
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, Deny> {
        let (provider, claims) = self.verify_claims(token, now).await?;
        self.identity(&provider.config, &claims, now)
    }

    /// An ID token from a browser login (OIDC Core §3.1.3.7): the same
    /// checks as a bearer token (signature, `exp`, exact `iss`), and it must
    /// come from `issuer`, name `client_id` in `aud` (and in `azp` when
    /// there are several audiences or an `azp` at all) and, after a code exchange, carry our
    /// `nonce`. The identity is mapped with the provider's claim settings.
    pub async fn verify_id_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<Identity, Deny> {
        let (provider, claims) = self.verify_claims(token, now).await?;
        if *provider.config.issuer != *issuer {
            return Err(Deny::UnknownIssuer);
        }
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !auds.contains(&client_id) {
            return Err(Deny::WrongAudience);
        }
        // Required with several audiences; when present anyway, it must be us (§3.1.3.7 items 4–5).
        let azp = claims.get("azp");
        if (auds.len() > 1 || azp.is_some()) && azp.and_then(Value::as_str) != Some(client_id) {
            return Err(Deny::WrongAudience);
        }
        if let Some(nonce) = nonce {
            let got = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
            if !constant_time_eq(got.as_bytes(), nonce.as_bytes()) {
                return Err(Deny::NonceMismatch);
            }
        }
        // Map claims as a user token of this client (never a machine token).
        let mut cfg = provider.config.clone();
        cfg.audiences = vec![client_id.to_string()];
        cfg.client_credentials = None;
        self.identity(&cfg, &claims, now)
    }

    /// Verified claims → identity, counting the groups its budget dropped
    /// (once per verification: a cached identity does not count again).
    fn identity(&self, cfg: &ProviderConfig, claims: &Map<String, Value>, now: SystemTime) -> Result<Identity, Deny> {
        let mapped = claims::map_claims(cfg, claims)?;
        let dropped = mapped.groups_dropped;
        if dropped > 0 {
            self.metrics.groups_dropped(&cfg.name, dropped);
            tracing::info!(event = "groups_dropped", provider = %cfg.name, user = %mapped.identity.user, dropped);
        }
        Ok(capped(mapped.identity, now))
    }

    async fn verify_claims(&self, token: &str, now: SystemTime) -> Result<(&Provider, Map<String, Value>), Deny> {
        if token.len() > self.max_token_bytes {
            return Err(Deny::TokenTooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Deny::MalformedToken)?;
        let provider = self.provider_for(token)?;
        let cfg = &provider.config;
        if !cfg.algorithms.is_empty() && !cfg.algorithms.contains(&header.alg) {
            return Err(Deny::DisallowedAlgorithm);
        }
        let kid = header.kid.as_deref();
        let mut keys = provider.keys();
        if keys.find(kid, header.alg).is_none() {
            if keys.is_empty() {
                return Err(Deny::KeysUnavailable);
            }
            // A hung issuer must not hold the Check until the proxy's own
            // timeout answers with no reason: say what happened instead.
            // The refetch goes on, so the key serves later requests.
            if provider.refetch_for_unknown_kid().await == Refetched::OverBudget {
                return Err(Deny::KeysUnavailable);
            }
            keys = provider.keys();
        }
        let key = keys.find(kid, header.alg).ok_or(Deny::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            return Err(Deny::DisallowedAlgorithm);
        }
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &self.validation(header.alg, &cfg.issuer))
                .map_err(|e| deny_for(e.kind()))?
                .claims;
        check_times(&claims, unix(now), self.skew.as_secs())?;
        Ok((provider, claims))
    }

    /// The token's own `iss` picks the provider; it is verified again (with
    /// the signature) by `jsonwebtoken` afterwards.
    fn provider_for(&self, token: &str) -> Result<&Arc<Provider>, Deny> {
        let payload = token.split('.').nth(1).ok_or(Deny::MalformedToken)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Deny::MalformedToken)?;
        let peek: UnverifiedIssuer = serde_json::from_slice(&json).map_err(|_| Deny::MalformedToken)?;
        let iss = peek.iss.ok_or(Deny::InvalidClaims)?;
        self.by_issuer
            .get(&iss)
            .map(|&i| &self.providers[i])
            .ok_or(Deny::UnknownIssuer)
    }

    fn validation(&self, alg: Algorithm, issuer: &str) -> Validation {
        let mut v = Validation::new(alg);
        // `exp` and `nbf` are judged by `check_times` against the Check's
        // clock, not the library's own reading of the system time; the
        // library still requires `exp` to be present and numeric.
        v.validate_exp = false;
        v.validate_nbf = false;
        // The audience decides user vs client token, so it is checked in `claims`.
        v.validate_aud = false;
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "iss"]);
        v
    }
}

/// Compares secrets without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token's `exp` and `nbf` against `now`, with `skew` of leeway either
/// way (RFC 7519 §4.1.4–5): expired once `exp + skew < now`, not yet valid
/// while `nbf - skew > now`. A present `nbf` must be a number too.
fn check_times(claims: &Map<String, Value>, now: u64, skew: u64) -> Result<(), Deny> {
    let nbf = match claims.get("nbf") {
        None => None,
        Some(v) => Some(numeric_date(v).ok_or(Deny::InvalidClaims)?),
    };
    let exp = claims.get("exp").and_then(numeric_date).ok_or(Deny::InvalidClaims)?;
    if exp.saturating_add(skew) < now {
        return Err(Deny::TokenExpired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(Deny::TokenNotYetValid);
    }
    Ok(())
}

/// A NumericDate as whole seconds: an unsigned integer, or a finite
/// non-negative number rounded to the nearest second.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // `as` saturates; the bound keeps the rounding meaningful.
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// No identity is trusted for longer than 400 days from `now`, whatever
/// the token's `exp` says: it bounds every cache entry made from it.
fn capped(mut id: Identity, now: SystemTime) -> Identity {
    id.expires_at = id.expires_at.min(now + MAX_IDENTITY_LIFETIME);
    id
}

const MAX_IDENTITY_LIFETIME: Duration = Duration::from_secs(400 * 86_400);

fn deny_for(kind: &ErrorKind) -> Deny {
    match kind {
        ErrorKind::InvalidSignature => Deny::InvalidSignature,
        ErrorKind::ExpiredSignature => Deny::TokenExpired,
        ErrorKind::ImmatureSignature => Deny::TokenNotYetValid,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            Deny::DisallowedAlgorithm
        }
        ErrorKind::InvalidIssuer => Deny::UnknownIssuer,
        ErrorKind::InvalidAudience => Deny::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => {
            Deny::InvalidClaims
        }
        // Shape, base64, JSON, and key-format problems: the token is not usable.
        _ => Deny::MalformedToken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn times(v: Value, now: u64) -> Result<(), Deny> {
        check_times(v.as_object().unwrap(), now, 30)
    }

    #[test]
    fn exp_and_nbf_are_judged_with_skew_either_way() {
        assert_eq!(times(json!({"exp": 1000}), 1030), Ok(()));
        assert_eq!(times(json!({"exp": 1000}), 1031), Err(Deny::TokenExpired));
        assert_eq!(times(json!({"exp": 2000, "nbf": 1030}), 1000), Ok(()));
        assert_eq!(
            times(json!({"exp": 2000, "nbf": 1031}), 1000),
            Err(Deny::TokenNotYetValid)
        );
        // Fractional NumericDates round to the nearest second, as JWT libraries read them.
        assert_eq!(times(json!({"exp": 1000.4}), 1030), Ok(()));
        assert_eq!(times(json!({"exp": 1000.4}), 1031), Err(Deny::TokenExpired));
    }

    #[test]
    fn a_time_that_is_not_a_number_is_refused() {
        for bad in [
            json!({"exp": "2000"}),
            json!({"exp": -1}),
            json!({"exp": null}),
            json!({}),
            json!({"exp": 2000, "nbf": "0"}),
            json!({"exp": 2000, "nbf": -5}),
        ] {
            assert_eq!(times(bad.clone(), 1000), Err(Deny::InvalidClaims), "{bad}");
        }
    }

    #[test]
    fn no_identity_outlives_400_days() {
        let now = crate::clock::from_unix(1_000);
        let mut id = Identity::test("a");
        id.expires_at = crate::clock::from_unix(u64::from(u32::MAX));
        assert_eq!(capped(id, now).expires_at, now + MAX_IDENTITY_LIFETIME);
    }
}
