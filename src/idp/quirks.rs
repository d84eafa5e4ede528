//! What identity providers send that the specifications do not say they
//! may, in one place. Each quirk names who has it, what portcullis does
//! with it, and has a test against a real HTTP server answering the way
//! that provider does.
//!
//! - **An error in a successful answer** (GitHub): a bad or spent code is
//!   answered `200 OK` with `{"error": "bad_verification_code", ...}`
//!   instead of RFC 6749 §5.2's 400. It is a refused exchange, never a
//!   success with no tokens ([`token_answer`]).
//! - **`expires_in` as a string** (Azure AD v1 endpoints): `"3599"` where
//!   RFC 6749 §5.1 has a number. A number or a string of digits is
//!   accepted; anything else (`"soon"`, `-1`, `1.5`) makes the answer
//!   invalid ([`expires_in`]).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use url::Url;

use super::{IdpError, Tokens};

/// The token endpoint's answer in `body` (already known to have a success
/// status).
pub fn token_answer(url: &Url, body: &[u8]) -> Result<Tokens, IdpError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| IdpError::invalid(url, e))?;
    // GitHub: an error object with 200. Whatever else it holds, it is not
    // a grant.
    if answer.get("error").is_some_and(|e| !e.is_null()) {
        return Err(IdpError::Refused {
            url: url.to_string(),
            error: error_code(body).unwrap_or_default(),
        });
    }
    Tokens::deserialize(answer).map_err(|e| IdpError::invalid(url, e))
}

/// The `error` code of an RFC 6749 §5.2 error object, printable ASCII and
/// at most 64 characters: it goes into logs. Never the
/// `error_description`, which may echo input.
pub fn error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let e: ErrorBody = serde_json::from_slice(body).ok()?;
    Some(e.error.chars().filter(char::is_ascii_graphic).take(64).collect())
}

/// `expires_in` in seconds: a non-negative integer, or (Azure AD v1) a
/// string of at most 20 digits holding one; absent or null is `None`.
pub fn expires_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let refuse = |v: &Value| D::Error::custom(format!("expires_in must be a number of seconds, not {v}"));
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| refuse(&Value::Number(n))),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map(Some).map_err(|_| refuse(&Value::String(s)))
        }
        Some(other) => Err(refuse(&other)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_server::{serve, Reply};
    use super::super::{ClientAuth, IdpClient};
    use super::*;
    use crate::config::sessions::TokenAuth;

    const GITHUB: ClientAuth<'static> = ClientAuth {
        client_id: "Iv1.client",
        secret: Some("secret"),
        method: TokenAuth::ClientSecretPost,
    };

    async fn exchange(answer: &'static str) -> Result<Tokens, IdpError> {
        let s = serve(move |_| Reply::json(answer)).await;
        let idp = IdpClient::new(Duration::from_secs(5)).unwrap();
        idp.token(
            &s.url("/login/oauth/access_token"),
            &[("grant_type", "authorization_code"), ("code", "c")],
            GITHUB,
        )
        .await
    }

    #[tokio::test]
    async fn github_refuses_a_bad_code_with_200_and_an_error_object() {
        let err = exchange(
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com/"}"#,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, IdpError::Refused { error, .. } if error == "bad_verification_code"),
            "{err}"
        );
        assert!(
            !err.is_unavailable(),
            "a refusal is an answer: asking again gets the same"
        );
        // Tokens next to an error do not make it a grant.
        let err = exchange(r#"{"error":"x","access_token":"gho_1"}"#).await.unwrap_err();
        assert!(matches!(err, IdpError::Refused { .. }), "{err}");
        // The success GitHub sends otherwise.
        let t = exchange(r#"{"access_token":"gho_1","token_type":"bearer","scope":"","error":null}"#)
            .await
            .unwrap();
        assert_eq!(t.access_token.as_deref(), Some("gho_1"));
        assert_eq!(t.expires_in, None);
    }

    #[tokio::test]
    async fn azure_v1_sends_expires_in_as_a_string() {
        let t = exchange(r#"{"access_token":"a","token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599"}"#)
            .await
            .unwrap();
        assert_eq!(t.expires_in, Some(3599));
        let t = exchange(r#"{"access_token":"a","expires_in":3599}"#).await.unwrap();
        assert_eq!(t.expires_in, Some(3599));
        let t = exchange(r#"{"access_token":"a","expires_in":null}"#).await.unwrap();
        assert_eq!(t.expires_in, None);
    }

    #[tokio::test]
    async fn an_expires_in_that_is_not_a_number_of_seconds_makes_the_answer_invalid() {
        for answer in [
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":""}"#,
            r#"{"access_token":"a","expires_in":"+5"}"#,
            r#"{"access_token":"a","expires_in":" 5"}"#,
            r#"{"access_token":"a","expires_in":"99999999999999999999"}"#,
            r#"{"access_token":"a","expires_in":-1}"#,
            r#"{"access_token":"a","expires_in":1.5}"#,
            r#"{"access_token":"a","expires_in":true}"#,
        ] {
            let err = exchange(answer).await.unwrap_err();
            assert!(
                matches!(&err, IdpError::Invalid { reason, .. } if reason.starts_with("expires_in must be a number of seconds")),
                "{answer}: {err}"
            );
        }
    }

    #[test]
    fn the_error_code_is_printable_and_short_and_never_the_description() {
        let long = format!(
            r#"{{"error":"a b\u0007{}","error_description":"secret"}}"#,
            "x".repeat(100)
        );
        let code = error_code(long.as_bytes()).unwrap();
        assert_eq!(code, format!("ab{}", "x".repeat(62)));
        assert_eq!(error_code(b"<html>"), None);
        assert_eq!(error_code(br#"{"error":7}"#), None);
    }
}
