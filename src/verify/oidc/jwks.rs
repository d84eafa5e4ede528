//! A parsed JWKS: public signing keys by `kid`, each with the algorithms it
//! may verify. The algorithm always comes from the key (its `alg`, or else
//! its type and curve), never from the token alone; symmetric (`oct`) keys
//! are dropped, so HMAC can never be checked against a public key.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub decoding: DecodingKey,
    /// The JWK as published, to notice a changed key under the same kid.
    fingerprint: String,
}

#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JWKS has no usable signing key ({skipped} skipped)")]
    NoUsableKey { skipped: usize },
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS, skipping keys it cannot use (encryption keys, `oct`,
    /// unknown types) instead of failing the whole set.
    pub fn parse(json: &[u8]) -> Result<(Self, usize), JwksError> {
        let doc: Document = serde_json::from_slice(json)?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for value in doc.keys {
            match Key::from_value(value) {
                Some(key) => {
                    if let Some(kid) = &key.kid {
                        if set.by_kid.contains_key(kid) {
                            skipped += 1;
                            continue;
                        }
                        set.by_kid.insert(kid.clone(), set.keys.len());
                    }
                    set.keys.push(key);
                }
                None => skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        Ok((set, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token header. Without a `kid`, only an unambiguous
    /// match (exactly one key allowing the algorithm) is used.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self.by_kid.get(kid).map(|&i| &self.keys[i]),
            None => {
                let mut fit = self.keys.iter().filter(|k| k.algorithms.contains(&alg));
                match (fit.next(), fit.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }

    /// True if any key of `self` is gone or changed in `next`: tokens cached
    /// under the old set must then be verified again.
    pub fn lost_keys_in(&self, next: &KeySet) -> bool {
        self.keys.iter().any(|k| match &k.kid {
            Some(kid) => next
                .by_kid
                .get(kid)
                .is_none_or(|&i| next.keys[i].fingerprint != k.fingerprint),
            None => !next.keys.iter().any(|n| n.fingerprint == k.fingerprint),
        })
    }
}

// === impl Key ===

impl Key {
    fn from_value(value: serde_json::Value) -> Option<Self> {
        let fingerprint = value.to_string();
        let declared = value.get("alg").and_then(|a| a.as_str()).map(str::to_owned);
        if value.get("use").and_then(|u| u.as_str()).is_some_and(|u| u != "sig") {
            return None;
        }
        let jwk: Jwk = serde_json::from_value(value).ok()?;
        let by_type = algorithms_for(&jwk.algorithm);
        let algorithms = match declared {
            Some(name) => {
                let alg: Algorithm = name.parse().ok()?;
                if !by_type.contains(&alg) {
                    return None;
                }
                vec![alg]
            }
            None => by_type,
        };
        if algorithms.is_empty() {
            return None;
        }
        let decoding = DecodingKey::from_jwk(&jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id,
            algorithms,
            decoding,
            fingerprint,
        })
    }
}

fn algorithms_for(params: &AlgorithmParameters) -> Vec<Algorithm> {
    use Algorithm::*;
    match params {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![EdDSA],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","kid":"r1","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;
    const EC: &str = r#"{"kty":"EC","kid":"e1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    const OCT: &str = r#"{"kty":"oct","kid":"h1","k":"c2VjcmV0"}"#;

    fn set(keys: &[&str]) -> KeySet {
        KeySet::parse(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes())
            .map(|(s, _)| s)
            .unwrap()
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_used() {
        let enc = RSA.replace(r#""kid":"r1""#, r#""kid":"r2","use":"enc""#);
        let (s, skipped) = KeySet::parse(format!(r#"{{"keys":[{RSA},{OCT},{enc}]}}"#).as_bytes()).unwrap();
        assert_eq!((s.len(), skipped), (1, 2));
        assert!(s.find(Some("h1"), Algorithm::HS256).is_none());
        assert!(matches!(
            KeySet::parse(format!(r#"{{"keys":[{OCT}]}}"#).as_bytes()),
            Err(JwksError::NoUsableKey { .. })
        ));
    }

    #[test]
    fn algorithms_come_from_the_key() {
        let s = set(&[RSA, EC]);
        assert!(s
            .find(Some("r1"), Algorithm::RS256)
            .unwrap()
            .algorithms
            .contains(&Algorithm::PS256));
        assert_eq!(
            s.find(Some("e1"), Algorithm::ES256).unwrap().algorithms,
            vec![Algorithm::ES256]
        );
        let pinned = set(&[&RSA.replace(r#""kid":"r1""#, r#""kid":"r1","alg":"RS256""#)]);
        assert_eq!(
            pinned.find(Some("r1"), Algorithm::RS256).unwrap().algorithms,
            vec![Algorithm::RS256]
        );
        // An `alg` that contradicts the key type makes the key unusable.
        assert!(KeySet::parse(
            format!(
                r#"{{"keys":[{}]}}"#,
                RSA.replace(r#""kid":"r1""#, r#""kid":"r1","alg":"ES256""#)
            )
            .as_bytes()
        )
        .is_err());
    }

    #[test]
    fn missing_kid_needs_an_unambiguous_key() {
        let no_kid = EC.replace(r#""kid":"e1","#, "");
        let s = set(&[RSA, &no_kid]);
        assert!(s.find(None, Algorithm::ES256).is_some());
        assert!(s.find(None, Algorithm::RS256).is_some());
        assert!(s.find(None, Algorithm::EdDSA).is_none());
    }

    #[test]
    fn lost_or_changed_keys_are_noticed_and_added_keys_are_not() {
        let a = set(&[RSA]);
        assert!(!a.lost_keys_in(&set(&[RSA, EC])));
        assert!(set(&[RSA, EC]).lost_keys_in(&a));
        let changed = set(&[&EC.replace(r#""kid":"e1""#, r#""kid":"r1""#)]);
        assert!(a.lost_keys_in(&changed));
    }
}
