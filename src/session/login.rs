//! Starting a login: who gets a redirect (browsers only), where they may
//! return to (same-origin paths only), and the authorization request with
//! `state`, `nonce` and PKCE S256, whose secrets travel in a short-lived
//! sealed cookie named after the state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::LoginConfig;
use crate::request::RequestView;

/// A browser navigation: GET or HEAD that accepts HTML and is not an XHR
/// or `fetch()` call. Everything else gets 401, never a redirect.
pub fn is_browser(view: &RequestView<'_>) -> bool {
    if view.method != "GET" && view.method != "HEAD" {
        return false;
    }
    if view
        .header("x-requested-with")
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
    {
        return false;
    }
    if let Some(mode) = view.header("sec-fetch-mode") {
        if !mode.eq_ignore_ascii_case("navigate") {
            return false;
        }
    }
    view.header_values("accept").any(|v| {
        v.split(',')
            .any(|t| t.trim().to_ascii_lowercase().starts_with("text/html"))
    })
}

/// The request target if it is a plain same-origin path: one leading `/`,
/// never `//host` or `/\host` (browsers read both as another origin), no
/// backslash, control byte or space anywhere, also once percent-decoded,
/// and nothing but ASCII as sent (browsers percent-encode the rest, and the
/// path goes back out in a `Location` header). Anything else returns to `/`.
pub fn safe_return_path(raw: &str) -> &str {
    let ok = raw.starts_with('/')
        && !raw.starts_with("//")
        && raw.len() <= 2048
        && !raw.bytes().any(|b| b == b'\\' || b <= b' ' || b >= 0x7f)
        && {
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
            !decoded.starts_with(b"//")
                && !decoded.starts_with(b"/\\")
                && !decoded.iter().any(|&b| b == b'\\' || b < b' ' || b == 0x7f)
        };
    if ok {
        raw
    } else {
        "/"
    }
}

/// 256 random bits, base64url: state, nonce, PKCE verifier (43 characters,
/// within RFC 7636's 43–128).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The login-state cookie of one state: `<cookie_name>-login-<digest>`, so
/// logins in several tabs do not overwrite each other and the callback
/// finds its cookie from the `state` parameter alone.
pub fn state_cookie_name(cookie_name: &str, state: &str) -> String {
    let digest = URL_SAFE_NO_PAD.encode(&Sha256::digest(state.as_bytes())[..9]);
    format!("{cookie_name}-login-{digest}")
}

pub fn login_cookie_prefix(cookie_name: &str) -> String {
    format!("{cookie_name}-login-")
}

/// The authorization request URL (RFC 6749 §4.1.1, OIDC Core §3.1.2.1).
pub fn authorize_url(endpoint: &Url, login: &LoginConfig, state: &str, nonce: Option<&str>, verifier: &str) -> Url {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &login.client_id)
            .append_pair("redirect_uri", login.redirect_uri.as_str())
            .append_pair("state", state)
            .append_pair("code_challenge", &pkce_challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        if !login.scopes.is_empty() {
            q.append_pair("scope", &login.scopes.join(" "));
        }
        if let Some(nonce) = nonce {
            q.append_pair("nonce", nonce);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_returned_to() {
        for ok in [
            "/",
            "/app",
            "/app/x?y=1&z=%2F",
            "/a%20b",
            "/?next=//evil.com",
            "/caf%C3%A9",
            "/@evil.com",
        ] {
            assert_eq!(safe_return_path(ok), ok);
        }
        for bad in [
            "//evil.com",
            "//evil.com/x",
            "/\\evil.com",
            "/\\/evil.com",
            "https://evil.com",
            "http:/evil.com",
            "evil.com",
            "/%2F%2Fevil.com",
            "/%2fevil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "/a\\b",
            "/a b",
            "/a\r\nSet-Cookie: x=1",
            "/%0d%0aSet-Cookie:x=1",
            "",
            "javascript:alert(1)",
            "/caf\u{e9}",
            "/\u{2215}\u{2215}evil.com",
            "/\u{ff0f}evil.com",
            "/%09/evil.com",
        ] {
            assert_eq!(safe_return_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn pkce_s256_is_base64url_of_sha256() {
        // Reference value computed with Python's hashlib + base64.urlsafe_b64encode.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mJ92IZ9Ga7Y3OWNO7LzYEtjQh3eoQE"),
            "GFjfv72tGfong9CApxh8HyhXJoqLVLTw8fc9QufZ1bY"
        );
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
    }

    #[test]
    fn state_cookie_names_are_per_state() {
        let a = state_cookie_name("__Host-p", "s1");
        assert!(a.starts_with("__Host-p-login-"));
        assert_ne!(a, state_cookie_name("__Host-p", "s2"));
        assert_eq!(a, state_cookie_name("__Host-p", "s1"));
    }
}
