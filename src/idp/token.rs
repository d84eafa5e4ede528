//! The token endpoint: how the client authenticates and what it answers.

use serde::Deserialize;

use super::quirks;
use crate::config::sessions::TokenAuth;
use crate::redact::redacted;

/// A token endpoint answer (RFC 6749 §5.1; `id_token` from OIDC). `Debug`
/// says which tokens came, never their bytes.
#[derive(Clone, Deserialize)]
pub struct Tokens {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default, deserialize_with = "quirks::expires_in")]
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &redacted(self.access_token.as_deref()))
            .field("id_token", &redacted(self.id_token.as_deref()))
            .field("refresh_token", &redacted(self.refresh_token.as_deref()))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Who asks the token endpoint. `Debug` never prints the secret.
#[derive(Clone, Copy)]
pub struct ClientAuth<'a> {
    pub client_id: &'a str,
    /// None for a public client: PKCE is its proof.
    pub secret: Option<&'a str>,
    pub method: TokenAuth,
}

impl std::fmt::Debug for ClientAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("secret", &redacted(self.secret))
            .field("method", &self.method)
            .finish()
    }
}

impl ClientAuth<'_> {
    /// `req` with `grant` as its form body and the client's credentials
    /// where `method` puts them.
    pub(super) fn apply(&self, mut req: reqwest::RequestBuilder, grant: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(grant);
        match (self.secret, self.method) {
            (Some(secret), TokenAuth::ClientSecretBasic) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(self.client_id), Some(enc(secret)));
            }
            (Some(secret), TokenAuth::ClientSecretPost) => {
                form.append_pair("client_id", self.client_id);
                form.append_pair("client_secret", secret);
            }
            (None, _) => {
                form.append_pair("client_id", self.client_id);
            }
        }
        req.header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    use super::super::test_server::{serve, Reply};
    use super::super::IdpClient;
    use super::*;

    #[test]
    fn debug_never_prints_tokens_or_the_client_secret() {
        let t = Tokens {
            access_token: Some("ACCESS-SECRET".into()),
            id_token: None,
            refresh_token: Some("REFRESH-SECRET".into()),
            expires_in: Some(60),
        };
        let shown = format!("{t:?}");
        assert_eq!(
            shown,
            "Tokens { access_token: <redacted>, id_token: None, refresh_token: <redacted>, expires_in: Some(60) }"
        );
        let c = ClientAuth {
            client_id: "web",
            secret: Some("CLIENT-SECRET"),
            method: TokenAuth::ClientSecretPost,
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("web") && !shown.contains("SECRET"), "{shown}");
    }

    /// What the token endpoint received: the `authorization` header and
    /// the form.
    async fn received(secret: Option<&str>, method: TokenAuth) -> (String, String) {
        let s = serve(|seen| {
            let auth = seen.header("authorization");
            let ct = seen.header("content-type");
            Reply::json(&serde_json::json!({"access_token": format!("{auth}|{ct}|{}", seen.body)}).to_string())
        })
        .await;
        let client = ClientAuth {
            client_id: "web app",
            secret,
            method,
        };
        let idp = IdpClient::new(Duration::from_secs(5)).unwrap();
        let t = idp
            .token(
                &s.url("/token"),
                &[("grant_type", "refresh_token"), ("refresh_token", "r/t")],
                client,
            )
            .await
            .unwrap();
        let echo = t.access_token.unwrap();
        let [auth, content_type, form] = echo.splitn(3, '|').collect::<Vec<_>>()[..] else {
            panic!("{echo}")
        };
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        (auth.to_string(), form.to_string())
    }

    #[tokio::test]
    async fn the_client_authenticates_where_its_method_says() {
        let (auth, form) = received(Some("s:e cret"), TokenAuth::ClientSecretBasic).await;
        let basic = STANDARD.encode("web+app:s%3Ae+cret");
        assert_eq!(auth, format!("Basic {basic}"));
        assert_eq!(form, "grant_type=refresh_token&refresh_token=r%2Ft");

        let (auth, form) = received(Some("s:e cret"), TokenAuth::ClientSecretPost).await;
        assert_eq!(auth, "");
        assert_eq!(
            form,
            "grant_type=refresh_token&refresh_token=r%2Ft&client_id=web+app&client_secret=s%3Ae+cret"
        );

        let (auth, form) = received(None, TokenAuth::ClientSecretBasic).await;
        assert_eq!(auth, "");
        assert_eq!(form, "grant_type=refresh_token&refresh_token=r%2Ft&client_id=web+app");
    }
}
