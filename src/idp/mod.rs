//! Every call portcullis makes to an identity provider, under one client
//! policy: discovery (fetched once per issuer and shared by bearer
//! verification and browser logins), JWKS, the token endpoint (code
//! exchange, refresh) and userinfo. The callers — `verify/oidc/provider.rs`
//! for keys, `session/provider.rs` for logins — decide *when* to call;
//! this module decides *how*. What real providers get wrong is handled in
//! [`quirks`], one place, each quirk with its test.

mod discovery;
pub mod quirks;
#[cfg(test)]
pub(crate) mod test_server;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use url::Url;

use crate::config::is_local_host;
use crate::verify::oidc::jwks::{JwksError, KeySet};
pub use discovery::Discovery;
pub use token::{ClientAuth, Tokens};

/// Upper bound on any document or answer from a provider; anything larger
/// is hostile.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Redirects followed by a document fetch (discovery, JWKS).
const MAX_REDIRECTS: usize = 3;

/// The HTTP side of every identity provider, shared by bearer
/// verification and browser sessions.
pub struct IdpClient {
    /// Discovery and JWKS: public documents. Redirects are followed, but
    /// only as [`redirect_policy`] allows.
    documents: reqwest::Client,
    /// Token endpoint and userinfo: every request carries a code, a client
    /// secret, a refresh token or an access token, so no redirect is
    /// followed — following would resend it elsewhere, possibly over plain
    /// http, and an endpoint that redirects is misconfigured anyway.
    credentials: reqwest::Client,
    /// Discovery documents by issuer, fetched on first use and kept for the
    /// life of the process (a provider's endpoints do not move; its keys,
    /// fetched from them, are refreshed by the caller). A failed fetch
    /// leaves the cell empty, so the next use tries again. Issuers come
    /// from the config, never from a request, so the map cannot grow.
    discovered: Mutex<HashMap<String, Arc<OnceCell<Arc<Discovery>>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}{}", error_suffix(error))]
    Status { url: String, status: u16, error: String },
    /// An error object in a successful answer (see [`quirks::token_answer`]).
    #[error("{url} answered with error {error:?}")]
    Refused { url: String, error: String },
    #[error("{url} sent more than {MAX_BODY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} sent an invalid document: {reason}")]
    Invalid { url: String, reason: String },
    #[error("JWKS from {url}: {source}")]
    Jwks { url: String, source: JwksError },
    #[error("a plain OAuth2 provider has no discovery: its endpoints must be configured")]
    NoDiscovery,
}

fn error_suffix(error: &str) -> String {
    if error.is_empty() {
        String::new()
    } else {
        format!(": {error}")
    }
}

impl IdpError {
    /// The provider could not be asked or could not answer (network,
    /// timeout, 5xx, 429): worth asking again later. Anything else is an
    /// answer, and asking again would get the same one.
    pub fn is_unavailable(&self) -> bool {
        match self {
            IdpError::Http { .. } => true,
            IdpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    fn invalid(url: &Url, reason: impl ToString) -> Self {
        IdpError::Invalid {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Where portcullis fetches from or sends to: https, or plain http only to
/// a host that cannot be reached from outside this machine or cluster (the
/// rule configured URLs follow too, see `config::check_fetch_url`).
pub fn may_fetch(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => is_local_host(url),
        _ => false,
    }
}

/// The redirect policy of document fetches: at most [`MAX_REDIRECTS`], and
/// only where the config itself could point (see [`may_follow`]).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if may_follow(attempt.previous(), attempt.url()) {
            attempt.follow()
        } else {
            attempt.error("refused a redirect to plain http")
        }
    })
}

/// Signing keys decide who is authenticated: a fetch that started on
/// https never continues over http (a network attacker could then serve
/// their own keys), and plain http is followed only between local hosts.
fn may_follow(previous: &[Url], next: &Url) -> bool {
    may_fetch(next) && (next.scheme() == "https" || previous.iter().all(|u| u.scheme() == "http"))
}

// === impl IdpClient ===

impl IdpClient {
    /// `timeout` bounds each call as a whole and its connect.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = |redirect| {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(redirect)
                .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Self {
            documents: client(redirect_policy())?,
            credentials: client(reqwest::redirect::Policy::none())?,
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// The discovery document of `issuer`, fetched once (concurrent callers
    /// wait for the same fetch) and then served from memory.
    pub async fn discovery(&self, issuer: &str) -> Result<Arc<Discovery>, IdpError> {
        let cell = self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(issuer.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.fetch_discovery(issuer)).await.cloned()
    }

    /// Drops `issuer`'s document, so the next caller fetches it again. Called
    /// when a field a caller needs is missing or unusable: a document that
    /// parsed but cannot serve must not be kept until restart (the IdP may
    /// be fixed, or have been caught mid-deploy).
    pub fn forget_discovery(&self, issuer: &str) {
        self.discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(issuer);
    }

    async fn fetch_discovery(&self, issuer: &str) -> Result<Arc<Discovery>, IdpError> {
        let doc_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let url = Url::parse(&doc_url).map_err(|e| IdpError::Invalid {
            url: doc_url.clone(),
            reason: e.to_string(),
        })?;
        let body = send(self.documents.get(url.clone()), &url).await?;
        Discovery::parse(&url, &body, issuer).map(Arc::new)
    }

    /// A JWKS document, and how many of its entries were unusable.
    pub async fn jwks(&self, url: &Url) -> Result<(KeySet, usize), IdpError> {
        let body = send(self.documents.get(url.clone()), url).await?;
        KeySet::parse(&body).map_err(|source| IdpError::Jwks {
            url: url.to_string(),
            source,
        })
    }

    /// A token endpoint request (RFC 6749 §4.1.3 code, §6 refresh): `grant`
    /// as a form, the client authenticated as `client` says.
    pub async fn token(&self, url: &Url, grant: &[(&str, &str)], client: ClientAuth<'_>) -> Result<Tokens, IdpError> {
        let req = client.apply(self.credentials.post(url.clone()), grant);
        let body = send(req.header("accept", "application/json"), url).await?;
        quirks::token_answer(url, &body)
    }

    /// The userinfo JSON object of a plain OAuth2 provider.
    pub async fn userinfo(&self, url: &Url, access_token: &str) -> Result<Map<String, Value>, IdpError> {
        let req = self
            .credentials
            .get(url.clone())
            .bearer_auth(access_token)
            .header("accept", "application/json");
        json(url, &send(req, url).await?)
    }
}

fn json<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, IdpError> {
    serde_json::from_slice(body).map_err(|e| IdpError::invalid(url, e))
}

/// Sends `req` and reads the answer's body, at most [`MAX_BODY_BYTES`]. A
/// non-success status is an error carrying the RFC 6749 §5.2 `error` code
/// when the body has one.
async fn send(req: reqwest::RequestBuilder, url: &Url) -> Result<Vec<u8>, IdpError> {
    let mut resp = req.send().await.map_err(|source| IdpError::Http {
        url: url.to_string(),
        source,
    })?;
    let status = resp.status();
    let body = read_capped(&mut resp, url).await;
    if !status.is_success() {
        // The body only explains the status: unreadable or too large, the
        // status is still the answer.
        let error = body.ok().and_then(|b| quirks::error_code(&b)).unwrap_or_default();
        return Err(IdpError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            error,
        });
    }
    body
}

async fn read_capped(resp: &mut reqwest::Response, url: &Url) -> Result<Vec<u8>, IdpError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| IdpError::Http {
        url: url.to_string(),
        source,
    })? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(IdpError::TooLarge { url: url.to_string() });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::test_server::{serve, Reply};
    use super::*;
    use crate::config::sessions::TokenAuth;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn client() -> IdpClient {
        IdpClient::new(Duration::from_secs(5)).unwrap()
    }

    const PUBLIC: ClientAuth<'static> = ClientAuth {
        client_id: "web",
        secret: None,
        method: TokenAuth::ClientSecretBasic,
    };

    #[test]
    fn https_never_continues_over_http() {
        let https = [url("https://idp.example.com/keys")];
        let local = url("http://127.0.0.1:8080/keys");
        let from_local = [local.clone()];
        assert!(may_follow(&https, &url("https://cdn.example.com/keys")));
        assert!(!may_follow(&https, &url("http://idp.example.com/keys")));
        assert!(!may_follow(&https, &local), "not even to a local host");
        assert!(!may_follow(&[local.clone(), https[0].clone()], &local));
        assert!(may_follow(&from_local, &url("http://localhost:9/keys")));
        assert!(!may_follow(&from_local, &url("http://idp.example.com/keys")));
        assert!(may_follow(&from_local, &url("https://idp.example.com/keys")));
        assert!(!may_follow(&[local], &url("file:///etc/passwd")));
    }

    #[tokio::test]
    async fn a_document_fetch_refuses_a_redirect_to_plain_http_on_a_public_host() {
        let idp = client();
        // Not followed: the policy refuses before any connection to the target.
        let s = serve(|_| Reply::redirect(302, "http://idp.example.invalid/jwks")).await;
        let err = idp.jwks(&s.url("/jwks")).await.map(drop).unwrap_err();
        assert!(
            matches!(&err, IdpError::Http { source, .. } if source.is_redirect()),
            "{err}"
        );
        // Loopback to loopback is followed.
        let s = serve(|_| Reply::redirect(302, "http://127.0.0.1:1/jwks")).await;
        let err = idp.jwks(&s.url("/jwks")).await.map(drop).unwrap_err();
        assert!(
            matches!(&err, IdpError::Http { source, .. } if !source.is_redirect() && source.is_connect()),
            "followed to the closed port: {err}"
        );
    }

    #[tokio::test]
    async fn calls_that_carry_credentials_never_follow_a_redirect() {
        let s = serve(|seen| Reply::redirect(307, &format!("http://{}/again", seen.host))).await;
        let err = client()
            .token(&s.url("/token"), &[("code", "c")], PUBLIC)
            .await
            .unwrap_err();
        assert!(matches!(err, IdpError::Status { status: 307, .. }), "{err}");
        let err = client().userinfo(&s.url("/user"), "at").await.unwrap_err();
        assert!(matches!(err, IdpError::Status { status: 307, .. }), "{err}");
        let paths: Vec<String> = s.seen().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/token", "/user"], "answered as is, not followed");
    }

    #[tokio::test]
    async fn discovery_is_fetched_once_per_issuer_and_a_failure_is_not_kept() {
        let fail_first = std::sync::atomic::AtomicBool::new(true);
        let s = serve(move |seen| {
            if fail_first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Reply::json("{}").status(503);
            }
            let base = format!("http://{}", seen.host);
            Reply::json(&format!(r#"{{"issuer":"{base}","jwks_uri":"{base}/jwks"}}"#))
        })
        .await;
        let issuer = s.url("/").as_str().trim_end_matches('/').to_string();
        let idp = client();
        let err = idp.discovery(&issuer).await.unwrap_err();
        assert!(matches!(err, IdpError::Status { status: 503, .. }), "{err}");
        let (a, b) = tokio::join!(idp.discovery(&issuer), idp.discovery(&issuer));
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()), "one fetch serves both");
        let d = idp.discovery(&issuer).await.unwrap();
        assert_eq!(d.jwks_uri().unwrap(), s.url("/jwks"));
        assert_eq!(s.seen().len(), 2, "the failed fetch and one more");
    }

    #[tokio::test]
    async fn discovery_must_name_exactly_its_issuer() {
        let s =
            serve(|_| Reply::json(r#"{"issuer":"https://evil.example.com","jwks_uri":"https://evil.example.com/k"}"#))
                .await;
        let issuer = s.url("/").as_str().trim_end_matches('/').to_string();
        let err = client().discovery(&issuer).await.unwrap_err();
        assert!(
            matches!(&err, IdpError::Invalid { reason, .. } if reason.starts_with("issuer is \"https://evil.example.com\"")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_cap_is_refused() {
        let s = serve(|_| Reply::json(&" ".repeat(MAX_BODY_BYTES + 1))).await;
        let err = client().jwks(&s.url("/jwks")).await.map(drop).unwrap_err();
        assert!(matches!(err, IdpError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_error_status_carries_the_error_code_and_says_whether_to_retry() {
        let s = serve(|seen| match seen.path.as_str() {
            "/refused" => Reply::json(r#"{"error":"invalid_grant","error_description":"echo <script>"}"#).status(400),
            "/busy" => Reply::json("slow down").status(429),
            _ => Reply::json("").status(502),
        })
        .await;
        let idp = client();
        let err = idp.token(&s.url("/refused"), &[], PUBLIC).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} answered HTTP 400: invalid_grant", s.url("/refused"))
        );
        assert!(!err.is_unavailable());
        for path in ["/busy", "/down"] {
            let err = idp.token(&s.url(path), &[], PUBLIC).await.unwrap_err();
            assert!(err.is_unavailable(), "{err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{} answered HTTP {}",
                    s.url(path),
                    if path == "/busy" { 429 } else { 502 }
                )
            );
        }
        let closed = url("http://127.0.0.1:1/token");
        assert!(idp.token(&closed, &[], PUBLIC).await.unwrap_err().is_unavailable());
    }

    #[tokio::test]
    async fn userinfo_sends_the_access_token_and_reads_a_json_object() {
        let s = serve(|seen| {
            let auth = seen.header("authorization");
            match auth {
                "Bearer at-1" => Reply::json(r#"{"login":"octocat","id":1}"#),
                _ => Reply::json("{}").status(401),
            }
        })
        .await;
        let claims = client().userinfo(&s.url("/user"), "at-1").await.unwrap();
        assert_eq!(claims["login"], "octocat");
        let s = serve(|_| Reply::json("[1]")).await;
        let err = client().userinfo(&s.url("/user"), "at-1").await.unwrap_err();
        assert!(matches!(err, IdpError::Invalid { .. }), "{err}");
    }

    #[test]
    fn only_https_or_local_http_may_be_fetched() {
        assert!(may_fetch(&url("https://idp.example.com/")));
        assert!(may_fetch(&url("http://127.0.0.1:5556/dex")));
        assert!(may_fetch(&url("http://dex.auth.svc.cluster.local/")));
        assert!(!may_fetch(&url("http://idp.example.com/")));
        assert!(!may_fetch(&url("ftp://127.0.0.1/")));
    }
}
