//! One login provider: its endpoints (configured, or else from discovery,
//! resolved once) and the calls of a login made to them — the code
//! exchange, refresh and, for plain OAuth2, userinfo. How those calls are
//! made is `crate::idp`'s business.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use url::Url;

use crate::config::{LoginConfig, LoginKind};
pub use crate::idp::Tokens;
use crate::idp::{ClientAuth, Discovery, IdpClient, IdpError};

pub struct LoginProvider {
    pub config: LoginConfig,
    client_secret: Option<String>,
    endpoints: OnceCell<Endpoints>,
    idp: Arc<IdpClient>,
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: Url,
    pub token: Url,
    pub end_session: Option<Url>,
}

impl LoginProvider {
    pub fn new(config: LoginConfig, idp: Arc<IdpClient>) -> Self {
        let client_secret = config
            .client_secret
            .as_ref()
            .and_then(|s| s.value())
            .map(|v| String::from_utf8_lossy(v).into_owned());
        Self {
            config,
            client_secret,
            endpoints: OnceCell::new(),
            idp,
        }
    }

    /// Configured endpoints, completed by discovery for OIDC providers.
    /// Resolved once; a failure is tried again by the next caller.
    pub async fn endpoints(&self) -> Result<&Endpoints, IdpError> {
        self.endpoints.get_or_try_init(|| self.load_endpoints()).await
    }

    async fn load_endpoints(&self) -> Result<Endpoints, IdpError> {
        let c = &self.config;
        if let (Some(authorization), Some(token)) = (&c.authorization_endpoint, &c.token_endpoint) {
            return Ok(Endpoints {
                authorization: authorization.clone(),
                token: token.clone(),
                end_session: c.end_session_endpoint.clone(),
            });
        }
        let LoginKind::Oidc { issuer } = &c.kind else {
            return Err(IdpError::NoDiscovery);
        };
        let doc = self.idp.discovery(issuer).await?;
        let endpoints = Self::discovered(c, &doc);
        if endpoints.is_err() {
            // Not kept: the next login asks the IdP again.
            self.idp.forget_discovery(issuer);
        }
        endpoints
    }

    /// Configured endpoints first, then the document's.
    fn discovered(c: &LoginConfig, doc: &Discovery) -> Result<Endpoints, IdpError> {
        Ok(Endpoints {
            authorization: match &c.authorization_endpoint {
                Some(u) => u.clone(),
                None => doc.authorization_endpoint()?,
            },
            token: match &c.token_endpoint {
                Some(u) => u.clone(),
                None => doc.token_endpoint()?,
            },
            end_session: match &c.end_session_endpoint {
                Some(u) => Some(u.clone()),
                None => doc.end_session_endpoint()?,
            },
        })
    }

    /// Authorization code → tokens, with the PKCE verifier and the same
    /// redirect URI as the authorization request.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<Tokens, IdpError> {
        let redirect_uri = self.config.redirect_uri.to_string();
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, IdpError> {
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await
    }

    async fn token_request(&self, grant: &[(&str, &str)]) -> Result<Tokens, IdpError> {
        let url = &self.endpoints().await?.token;
        let client = ClientAuth {
            client_id: &self.config.client_id,
            secret: self.client_secret.as_deref(),
            method: self.config.token_auth,
        };
        self.idp.token(url, grant, client).await
    }

    /// The userinfo JSON object of a plain OAuth2 provider.
    pub async fn userinfo(&self, url: &Url, access_token: &str) -> Result<Map<String, Value>, IdpError> {
        self.idp.userinfo(url, access_token).await
    }
}
