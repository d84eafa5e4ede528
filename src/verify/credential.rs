//! Which credential a request presents. Exactly one is accepted: two
//! `Authorization` headers are refused rather than guessed between.

use crate::deny::Deny;
use crate::request::{RequestView, Single};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An RFC 6750 bearer token (expected to be a JWT).
    Bearer(&'a str),
    /// A sealed browser-session cookie (see `session::cookie`); used only
    /// when the request has no `Authorization` header.
    Session(&'a str),
}

impl<'a> Credential<'a> {
    /// The bytes a cached decision is keyed on.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Credential::Bearer(t) | Credential::Session(t) => t.as_bytes(),
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
        }
    }
}

pub fn extract<'a>(view: &RequestView<'a>, max_token_bytes: usize) -> Result<Credential<'a>, Deny> {
    match view.authorization() {
        Single::Absent => Err(Deny::MissingCredential),
        Single::Unusable => Err(Deny::MultipleCredentials),
        Single::One(value) => bearer(value, max_token_bytes),
    }
}

/// `Bearer` (any case), one or more spaces, then a b64token (RFC 6750 §2.1).
fn bearer(value: &str, max_token_bytes: usize) -> Result<Credential<'_>, Deny> {
    let value = value.trim_matches(is_blank);
    let (scheme, rest) = value.split_once(is_blank).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Basic, Digest, …: not a credential portcullis understands.
        return Err(Deny::MissingCredential);
    }
    let token = rest.trim_start_matches(is_blank);
    if token.len() > max_token_bytes {
        return Err(Deny::TokenTooLarge);
    }
    if token.is_empty() {
        return Err(Deny::MalformedToken);
    }
    Ok(Credential::Bearer(token))
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

    fn parse(value: &str, max: usize) -> Result<Credential<'_>, Deny> {
        bearer(value, max).and_then(|c| c.check_syntax().map(|()| c))
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
