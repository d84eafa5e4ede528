//! One login provider's endpoints and the calls made to them: discovery
//! (OIDC, once, retried until it works), the token endpoint (code exchange,
//! refresh) and, for plain OAuth2, the userinfo URL.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use url::Url;

use crate::config::sessions::TokenAuth;
use crate::config::{is_local_host, LoginConfig, LoginKind};

/// Upper bound on any document from a provider.
const MAX_BODY_BYTES: usize = 1 << 20;

pub struct LoginProvider {
    pub config: LoginConfig,
    client_secret: Option<String>,
    endpoints: OnceCell<Endpoints>,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: Url,
    pub token: Url,
    pub end_session: Option<Url>,
}

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
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redact::redacted;
        f.debug_struct("Tokens")
            .field("access_token", &redacted(self.access_token.as_deref()))
            .field("id_token", &redacted(self.id_token.as_deref()))
            .field("refresh_token", &redacted(self.refresh_token.as_deref()))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}: {error}")]
    Status { url: String, status: u16, error: String },
    #[error("{url} sent more than {MAX_BODY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} sent an invalid document: {reason}")]
    Invalid { url: String, reason: String },
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

/// The client of every call to a login provider. It follows no redirect at
/// all: a token or userinfo endpoint that redirects is misconfigured, and
/// following would resend the code, the client secret or the access token
/// elsewhere (possibly over plain http).
fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The `error` of an RFC 6749 §5.2 error answer (never the description,
/// which may echo input).
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl LoginProvider {
    pub fn new(config: LoginConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = http_client(timeout)?;
        let client_secret = config
            .client_secret
            .as_ref()
            .and_then(|s| s.value())
            .map(|v| String::from_utf8_lossy(v).into_owned());
        Ok(Self {
            config,
            client_secret,
            endpoints: OnceCell::new(),
            http,
        })
    }

    /// Configured endpoints, completed by discovery for OIDC providers.
    pub async fn endpoints(&self) -> Result<&Endpoints, CallError> {
        self.endpoints.get_or_try_init(|| self.load_endpoints()).await
    }

    async fn load_endpoints(&self) -> Result<Endpoints, CallError> {
        let c = &self.config;
        if let (Some(authorization), Some(token)) = (&c.authorization_endpoint, &c.token_endpoint) {
            return Ok(Endpoints {
                authorization: authorization.clone(),
                token: token.clone(),
                end_session: c.end_session_endpoint.clone(),
            });
        }
        let LoginKind::Oidc { issuer } = &c.kind else {
            return Err(CallError::Invalid {
                url: String::new(),
                reason: "a plain OAuth2 provider needs its endpoints configured".into(),
            });
        };
        let doc_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let invalid = |reason: String| CallError::Invalid {
            url: doc_url.clone(),
            reason,
        };
        let url = Url::parse(&doc_url).map_err(|e| invalid(e.to_string()))?;
        let body = self.read(self.http.get(url.clone()), &url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        if *doc.issuer != **issuer {
            return Err(invalid(format!("issuer is {:?}, expected {issuer:?}", doc.issuer)));
        }
        let endpoint = |raw: &str| -> Result<Url, CallError> {
            let u = Url::parse(raw).map_err(|e| invalid(format!("{raw}: {e}")))?;
            if u.scheme() == "https" || (u.scheme() == "http" && is_local_host(&u)) {
                Ok(u)
            } else {
                Err(invalid(format!("{raw} must be https")))
            }
        };
        Ok(Endpoints {
            authorization: match &c.authorization_endpoint {
                Some(u) => u.clone(),
                None => endpoint(&doc.authorization_endpoint)?,
            },
            token: match &c.token_endpoint {
                Some(u) => u.clone(),
                None => endpoint(&doc.token_endpoint)?,
            },
            end_session: match (&c.end_session_endpoint, &doc.end_session_endpoint) {
                (Some(u), _) => Some(u.clone()),
                (None, Some(raw)) => Some(endpoint(raw)?),
                (None, None) => None,
            },
        })
    }

    /// Authorization code → tokens, with the PKCE verifier and the same
    /// redirect URI as the authorization request.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<Tokens, CallError> {
        let redirect_uri = self.config.redirect_uri.to_string();
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CallError> {
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await
    }

    async fn token_request(&self, params: &[(&str, &str)]) -> Result<Tokens, CallError> {
        let url = self.endpoints().await?.token.clone();
        let c = &self.config;
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut req = self.http.post(url.clone()).header("accept", "application/json");
        match (&self.client_secret, c.token_auth) {
            (Some(secret), TokenAuth::ClientSecretBasic) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(&c.client_id), Some(enc(secret)));
            }
            (Some(secret), TokenAuth::ClientSecretPost) => {
                form.push(("client_id", &c.client_id));
                form.push(("client_secret", secret));
            }
            // A public client: PKCE is its proof.
            (None, _) => form.push(("client_id", &c.client_id)),
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let body = self.read(req, &url).await?;
        serde_json::from_slice(&body).map_err(|e| CallError::Invalid {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// The userinfo JSON object of a plain OAuth2 provider.
    pub async fn userinfo(&self, url: &Url, access_token: &str) -> Result<Map<String, Value>, CallError> {
        let req = self
            .http
            .get(url.clone())
            .bearer_auth(access_token)
            .header("accept", "application/json");
        let body = self.read(req, url).await?;
        serde_json::from_slice(&body).map_err(|e| CallError::Invalid {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    async fn read(&self, req: reqwest::RequestBuilder, url: &Url) -> Result<Vec<u8>, CallError> {
        let http_err = |source| CallError::Http {
            url: url.to_string(),
            source,
        };
        let mut resp = req.send().await.map_err(http_err)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(CallError::TooLarge { url: url.to_string() });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let error = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect())
                .unwrap_or_default();
            return Err(CallError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                error,
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redirects_are_never_followed() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // One connection only: a followed redirect would find the port closed.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{addr}/again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(resp.as_bytes()).unwrap();
        });
        let resp = http_client(Duration::from_secs(5))
            .unwrap()
            .post(format!("http://{addr}/token"))
            .body("client_secret=s")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 307, "answered as is, not followed");
        server.join().unwrap();
    }
}
