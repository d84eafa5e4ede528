//! Which credential a request presents. Exactly one is accepted: two
//! `Authorization` headers, or a bearer token beside an API key, are
//! refused rather than guessed between.

use crate::deny::Deny;
use crate::request::{RequestView, Single};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An RFC 6750 bearer token (expected to be a JWT).
    Bearer(&'a str),
    /// A sealed browser-session cookie (see `session::cookie`); used only
    /// when the request has no `Authorization` header.
    Session(&'a str),
    /// An API key (`verify::apikey`): `Authorization: ApiKey <key>`, or
    /// the configured header. Found only when `api_keys:` is configured.
    ApiKey(&'a str),
}

/// Where API keys are looked for; `None` to [`extract`] without `api_keys:`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKeyPlaces<'h> {
    /// The configured header (lower case) besides `Authorization: ApiKey`.
    pub header: Option<&'h str>,
}

impl<'a> Credential<'a> {
    /// The bytes a cached decision is keyed on.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Credential::Bearer(t) | Credential::Session(t) | Credential::ApiKey(t) => t.as_bytes(),
        }
    }

    /// Full syntax check, done before verification only: a token that fails
    /// it is never cached as valid, so a cache hit needs no second look.
    pub fn check_syntax(&self) -> Result<(), Deny> {
        match self {
            Credential::Bearer(token) => {
                let body = token.trim_end_matches('=');
                if !body.is_empty() && body.bytes().all(|b| B64TOKEN[usize::from(b)]) {
                    Ok(())
                } else {
                    Err(Deny::MalformedToken)
                }
            }
            Credential::Session(value) => {
                if !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    Ok(())
                } else {
                    Err(Deny::SessionInvalid)
                }
            }
            Credential::ApiKey(key) => crate::verify::apikey::split(key).map(drop),
        }
    }
}

pub fn extract<'a>(
    view: &RequestView<'a>,
    max_token_bytes: usize,
    api_keys: Option<ApiKeyPlaces<'_>>,
) -> Result<Credential<'a>, Deny> {
    let header = match api_keys.and_then(|k| k.header).map(|h| view.single(h)) {
        None | Some(Single::Absent) => None,
        Some(Single::Unusable) => return Err(Deny::MultipleCredentials),
        Some(Single::One(value)) => Some(value.trim_matches(is_blank)),
    };
    let authorization = match view.authorization() {
        Single::Absent => Err(Deny::MissingCredential),
        Single::Unusable => return Err(Deny::MultipleCredentials),
        Single::One(value) => scheme(value, max_token_bytes, api_keys.is_some()),
    };
    match (authorization, header) {
        (Err(Deny::MissingCredential), None) => Err(Deny::MissingCredential),
        // Basic, Digest, … beside the key header: not a second credential.
        (Err(Deny::MissingCredential), Some(key)) => api_key(key, max_token_bytes),
        (authorization, None) => authorization,
        (_, Some(_)) => Err(Deny::MultipleCredentials),
    }
}

/// Whether an `Authorization` value uses the `ApiKey` scheme (any case),
/// whatever follows: such a header is never forwarded upstream.
pub fn is_api_key(authorization: Single<'_>) -> bool {
    match authorization {
        Single::One(value) => {
            let value = value.trim_start_matches(is_blank);
            let scheme = value.split(is_blank).next().unwrap_or(value);
            scheme.eq_ignore_ascii_case("apikey")
        }
        // Several values: refused before any allow.
        Single::Absent | Single::Unusable => false,
    }
}

/// `Bearer` (any case), one or more spaces, then a b64token (RFC 6750 §2.1);
/// with API keys, `ApiKey` (any case) and a key.
fn scheme(value: &str, max_token_bytes: usize, api_keys: bool) -> Result<Credential<'_>, Deny> {
    let value = value.trim_matches(is_blank);
    let (scheme, rest) = value.split_once(is_blank).unwrap_or((value, ""));
    let token = rest.trim_start_matches(is_blank);
    if api_keys && scheme.eq_ignore_ascii_case("apikey") {
        return api_key(token, max_token_bytes);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Basic, Digest, …: not a credential portcullis understands.
        return Err(Deny::MissingCredential);
    }
    if token.len() > max_token_bytes {
        return Err(Deny::TokenTooLarge);
    }
    if token.is_empty() {
        return Err(Deny::MalformedToken);
    }
    Ok(Credential::Bearer(token))
}

fn api_key(key: &str, max_token_bytes: usize) -> Result<Credential<'_>, Deny> {
    if key.len() > max_token_bytes {
        return Err(Deny::TokenTooLarge);
    }
    if key.is_empty() {
        return Err(Deny::InvalidApiKey);
    }
    Ok(Credential::ApiKey(key))
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The b64token alphabet as a table: this loop runs over every byte of
/// every new token.
static B64TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str, max: usize) -> Result<Credential<'_>, Deny> {
        scheme(value, max, false)
    }

    fn parse(value: &str, max: usize) -> Result<Credential<'_>, Deny> {
        bearer(value, max).and_then(|c| c.check_syntax().map(|()| c))
    }

    const KEY: &str = "pk_ci_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn the_api_key_scheme_is_read_only_with_api_keys_configured() {
        let header = format!("apiKEY  {KEY}");
        assert_eq!(scheme(&header, 100, true), Ok(Credential::ApiKey(KEY)));
        assert_eq!(scheme(&header, 100, false), Err(Deny::MissingCredential));
        assert_eq!(scheme("ApiKey", 100, true), Err(Deny::InvalidApiKey));
        assert_eq!(scheme(&header, 20, true), Err(Deny::TokenTooLarge));
        let garbled = Credential::ApiKey("pk_ci_short");
        assert_eq!(garbled.check_syntax(), Err(Deny::InvalidApiKey));
        assert_eq!(Credential::ApiKey(KEY).check_syntax(), Ok(()));
        assert!(is_api_key(Single::One(" apikey x")));
        assert!(is_api_key(Single::One("ApiKey")));
        assert!(!is_api_key(Single::One("Bearer x")));
        assert!(!is_api_key(Single::One("ApiKeys x")));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_charset_enforced() {
        assert_eq!(parse("Bearer a.b.c", 100), Ok(Credential::Bearer("a.b.c")));
        assert_eq!(parse("bEaReR   a.b.c", 100), Ok(Credential::Bearer("a.b.c")));
        assert_eq!(parse("Bearer", 100), Err(Deny::MalformedToken));
        assert_eq!(parse("Bearer ", 100), Err(Deny::MalformedToken));
        assert_eq!(parse("Bearer a b", 100), Err(Deny::MalformedToken));
        assert_eq!(parse("Bearer a\"b", 100), Err(Deny::MalformedToken));
        assert_eq!(parse("Basic dXNlcjpwYXNz", 100), Err(Deny::MissingCredential));
        assert_eq!(parse("Bearerx a.b.c", 100), Err(Deny::MissingCredential));
        assert_eq!(
            bearer(&format!("Bearer {}", "a".repeat(101)), 100),
            Err(Deny::TokenTooLarge)
        );
    }
}
