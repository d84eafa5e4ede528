//! `credential`: `verify::credential::extract` and `check_syntax` on
//! arbitrary `Authorization` headers.
//!
//! Input: byte 0 bit 0 raw headers (bytes) or Envoy's joined map, bits 1-2
//! `max_token_bytes` (8, 64, 1024, 8192), bit 3 no header at all, bit 4 API
//! keys configured; the rest is header values separated by `\n`.
//!
//! Invariants: no header → `MissingCredential`; two headers (or a `,` in
//! Envoy's joined value, or bytes that are not UTF-8) → `MultipleCredentials`;
//! a token is returned only for `Bearer` (any case) and is the exact tail of
//! the value, non-empty, unpadded by blanks and within the size limit;
//! `check_syntax` accepts exactly RFC 6750's b64token; a well-formed bearer
//! header is always accepted; refusals are one of the four credential
//! reasons. With API keys, a key is returned only for `ApiKey` (any case),
//! as the exact tail, and `check_syntax` accepts exactly `pk_<id>_<secret>`;
//! without them `ApiKey` is no credential.

use portcullis::deny::Deny;
use portcullis::request::RequestView;
use portcullis::verify::credential::{extract, ApiKeyPlaces, Credential};

use crate::ensure;

const MAX: [usize; 4] = [8, 64, 1024, 8192];

fn blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(t: &str) -> bool {
    let body_len = t.find('=').unwrap_or(t.len());
    let (body, pad) = t.split_at(body_len);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        && pad.bytes().all(|b| b == b'=')
}

/// `pk_<id>_<secret>`: id 1-32 of `a-z0-9-`, secret 32+ base64url, at most 256 bytes.
pub fn is_api_key(k: &str) -> bool {
    let Some((id, secret)) = k.strip_prefix("pk_").and_then(|r| r.split_once('_')) else {
        return false;
    };
    k.len() <= 256
        && (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && secret.len() >= 32
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `Bearer <b64token>` with blanks around: the one shape that must pass.
fn well_formed(v: &str) -> Option<&str> {
    let v = v.trim_matches(blank);
    let scheme = v.get(..6)?;
    let rest = &v[6..];
    (scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(blank))
        .then(|| rest.trim_start_matches(blank))
        .filter(|t| is_b64token(t))
}

pub fn check(data: &[u8]) -> Result<(), String> {
    let Some(&mode) = data.first() else {
        return Ok(());
    };
    let max = MAX[usize::from(mode >> 1 & 3)];
    let api = mode & 16 != 0;
    let values: Vec<&[u8]> = if mode & 8 != 0 {
        Vec::new()
    } else {
        data[1..].split(|&b| b == b'\n').collect()
    };
    for v in &values {
        // Session values go through the same syntax gate.
        check_session_syntax(&String::from_utf8_lossy(v))?;
    }
    if mode & 1 == 0 {
        let text: Vec<String> = values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        let headers: Vec<(&str, &str)> = text.iter().map(|v| ("authorization", v.as_str())).collect();
        let req = crate::request::merged("/", &headers);
        let joined = (!text.is_empty()).then(|| text.join(","));
        let single = joined.as_deref().filter(|j| !j.contains(','));
        check_view(&req, max, api, values.is_empty(), single)
    } else {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("authorization", *v)).collect();
        let req = crate::request::raw("/", &headers);
        let single = match values.as_slice() {
            [one] => std::str::from_utf8(one).ok(),
            _ => None,
        };
        check_view(&req, max, api, values.is_empty(), single)
    }
}

/// `single`: the one usable value, if the request has exactly one.
pub fn check_view(
    req: &envoy_types::ext_authz::v3::pb::CheckRequest,
    max: usize,
    api: bool,
    absent: bool,
    single: Option<&str>,
) -> Result<(), String> {
    let view = match RequestView::new(req) {
        Ok(view) => view,
        // Past the request's header-count limit nothing reads the headers.
        Err(_) if crate::request::count(req) > crate::request::FEW_HEADERS => return Ok(()),
        Err(d) => return Err(format!("probe request refused: {d:?}")),
    };
    let got = extract(&view, max, api.then(ApiKeyPlaces::default));
    if absent {
        return ensure(got == Err(Deny::MissingCredential), || {
            format!("no header, yet {got:?}")
        });
    }
    let Some(v) = single else {
        return ensure(got == Err(Deny::MultipleCredentials), || {
            format!("several or unusable headers, yet {got:?}")
        });
    };
    check_value(v, max, api, got)
}

pub fn check_value(v: &str, max: usize, api: bool, got: Result<Credential<'_>, Deny>) -> Result<(), String> {
    match got {
        Ok(Credential::Bearer(t)) => {
            let trimmed = v.trim_matches(blank);
            ensure(!t.is_empty() && t.len() <= max, || {
                format!("{v:?}: token {t:?} empty or over {max}")
            })?;
            ensure(!t.starts_with(blank) && trimmed.ends_with(t), || {
                format!("{v:?}: token {t:?} is not the value's tail")
            })?;
            let head = &trimmed[..trimmed.len() - t.len()];
            ensure(
                head.ends_with(blank) && head.trim_end_matches(blank).eq_ignore_ascii_case("bearer"),
                || format!("{v:?}: token {t:?} taken after {head:?}, not after the Bearer scheme"),
            )?;
            let cred = Credential::Bearer(t);
            ensure(cred.as_bytes() == t.as_bytes(), || format!("{v:?}: as_bytes differs"))?;
            let syntax = cred.check_syntax();
            ensure(syntax.is_ok() == is_b64token(t), || {
                format!(
                    "{v:?}: check_syntax({t:?}) = {syntax:?}, RFC 6750 says {}",
                    is_b64token(t)
                )
            })?;
            ensure(syntax.is_ok() || syntax == Err(Deny::MalformedToken), || {
                format!("{t:?}: {syntax:?}")
            })
        }
        Ok(Credential::ApiKey(k)) => {
            ensure(api, || format!("{v:?}: an API key {k:?} without api_keys"))?;
            let trimmed = v.trim_matches(blank);
            ensure(!k.is_empty() && k.len() <= max && trimmed.ends_with(k), || {
                format!("{v:?}: key {k:?} empty, over {max}, or not the value's tail")
            })?;
            let head = &trimmed[..trimmed.len() - k.len()];
            ensure(
                head.ends_with(blank) && head.trim_end_matches(blank).eq_ignore_ascii_case("apikey"),
                || format!("{v:?}: key {k:?} taken after {head:?}, not after the ApiKey scheme"),
            )?;
            let syntax = Credential::ApiKey(k).check_syntax();
            ensure(syntax.is_ok() == is_api_key(k), || {
                format!(
                    "{v:?}: check_syntax({k:?}) = {syntax:?}, the key format says {}",
                    is_api_key(k)
                )
            })?;
            ensure(syntax.is_ok() || syntax == Err(Deny::InvalidApiKey), || {
                format!("{k:?}: {syntax:?}")
            })
        }
        Ok(other) => Err(format!("{v:?}: an Authorization header gave {other:?}")),
        Err(d) => {
            ensure(
                matches!(d, Deny::MissingCredential | Deny::MalformedToken | Deny::TokenTooLarge)
                    || api && d == Deny::InvalidApiKey,
                || format!("{v:?}: refused as {d:?}"),
            )?;
            match well_formed(v) {
                Some(t) if t.len() <= max => Err(format!("{v:?}: well-formed bearer {t:?} refused as {d:?}")),
                Some(_) => ensure(d == Deny::TokenTooLarge, || format!("{v:?}: oversized, yet {d:?}")),
                None => Ok(()),
            }
        }
    }
}

fn check_session_syntax(v: &str) -> Result<(), String> {
    let ok = Credential::Session(v).check_syntax();
    let model = !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ensure(ok.is_ok() == model, || {
        format!("session {v:?}: {ok:?}, base64url says {model}")
    })?;
    ensure(ok.is_ok() || ok == Err(Deny::SessionInvalid), || {
        format!("session {v:?}: {ok:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_grammar_model() {
        for t in ["a", "a.b.c", "A-_~+/9", "abc==", "a="] {
            assert!(is_b64token(t), "{t}");
        }
        for t in ["", "=", "a=b", "a b", "a\"b", "é", "a,b"] {
            assert!(!is_b64token(t), "{t}");
        }
        assert_eq!(well_formed(" bEaReR \t x.y= "), Some("x.y="));
        assert_eq!(well_formed("Bearerx.y"), None);
        assert_eq!(well_formed("Basic x"), None);
    }

    #[test]
    fn the_real_extractor_passes_on_typical_headers() {
        for d in [
            &b"\x00Bearer a.b.c"[..],
            b"\x06bearer   eyJ.eyJ.sig",
            b"\x00Bearer a b",
            b"\x00Basic dXNlcjpwYXNz",
            b"\x01Bearer a\nBearer b",
            b"\x00Bearer a\nBearer b",
            b"\x08",
            b"\x01Bearer \xff",
            b"\x00Bearer 123456789",
            b"\x00",
            b"\x10ApiKey pk_ci_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            b"\x16apikey  pk_ci_short",
            b"\x10ApiKey",
            b"\x00ApiKey pk_ci_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(check(d), Ok(()), "{d:?}");
        }
    }

    #[test]
    fn a_wrong_extraction_is_caught() {
        let v = "Bearer abc";
        assert!(
            check_value(v, 100, false, Ok(Credential::Bearer("bc"))).is_err(),
            "not after the scheme"
        );
        assert!(
            check_value("Token abc", 100, false, Ok(Credential::Bearer("abc"))).is_err(),
            "other scheme"
        );
        assert!(
            check_value(v, 2, false, Ok(Credential::Bearer("abc"))).is_err(),
            "over the limit"
        );
        assert!(
            check_value(v, 100, false, Err(Deny::MalformedToken)).is_err(),
            "well-formed refused"
        );
        assert!(
            check_value(v, 100, false, Err(Deny::InvalidSignature)).is_err(),
            "not a credential reason"
        );
        assert!(check_value(v, 100, false, Ok(Credential::Session("abc"))).is_err());
        assert_eq!(check_value(v, 2, false, Err(Deny::TokenTooLarge)), Ok(()));
        let key = "pk_ci_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let header = format!("ApiKey {key}");
        assert_eq!(check_value(&header, 100, true, Ok(Credential::ApiKey(key))), Ok(()));
        assert!(
            check_value(&header, 100, false, Ok(Credential::ApiKey(key))).is_err(),
            "not configured"
        );
        assert!(
            check_value(&header, 100, true, Ok(Credential::ApiKey(&key[1..]))).is_err(),
            "not the tail"
        );
        assert!(check_value(&format!("Bearer {key}"), 100, true, Ok(Credential::ApiKey(key))).is_err());
        assert!(check_value(&header, 100, false, Err(Deny::InvalidApiKey)).is_err());
    }
}
