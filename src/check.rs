//! The request path, top to bottom:
//!
//! 1. view the request (method, normalized path, headers)
//! 2. extract the credential
//! 3. identify: decision cache, else the verifier
//! 4. decide: the route rule on the identity
//! 5. respond: strip + inject on allow, 401/403 on deny; log and count.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};

use crate::cache::{Cached, DecisionCache};
use crate::config::Config;
use crate::deny::Deny;
use crate::identity::Identity;
use crate::request::RequestView;
use crate::response;
use crate::telemetry::{CacheResult, Metrics};
use crate::verify::credential::{self, Credential};
use crate::verify::oidc::OidcVerifier;

pub struct Checker {
    config: Config,
    oidc: OidcVerifier,
    cache: DecisionCache,
    metrics: Arc<Metrics>,
}

/// A denial with what is known about who was denied, for the log line.
struct Denied {
    deny: Deny,
    identity: Option<Arc<Identity>>,
}

impl From<Deny> for Denied {
    fn from(deny: Deny) -> Self {
        Self { deny, identity: None }
    }
}

// === impl Checker ===

impl Checker {
    pub fn new(config: Config, oidc: OidcVerifier, metrics: Arc<Metrics>) -> Self {
        let cache = DecisionCache::new(&config.cache);
        Self {
            config,
            oidc,
            cache,
            metrics,
        }
    }

    pub async fn check(&self, req: &CheckRequest) -> CheckResponse {
        let started = Instant::now();
        let view = match RequestView::new(req) {
            Ok(view) => view,
            Err(deny) => return self.deny(deny.into(), None, req, started),
        };
        match self.decide(&view).await {
            Ok(identity) => {
                self.metrics.allowed(identity.source, started.elapsed().as_secs_f64());
                tracing::debug!(event = "authorization_allowed", user = %identity.user, path = %view.path);
                response::allowed(self.config.headers.edits(&identity, view.header_names()))
            }
            Err(denied) => self.deny(denied, Some(&view), req, started),
        }
    }

    fn deny(
        &self,
        denied: Denied,
        view: Option<&RequestView<'_>>,
        req: &CheckRequest,
        started: Instant,
    ) -> CheckResponse {
        self.metrics
            .denied(denied.deny.reason(), started.elapsed().as_secs_f64());
        log_denial(&denied, view, req);
        response::denied(&denied.deny, &self.config.realm, self.config.debug)
    }

    async fn decide(&self, view: &RequestView<'_>) -> Result<Arc<Identity>, Denied> {
        let credential = credential::extract(view, self.oidc.max_token_bytes())?;
        let identity = self.identify(credential).await?;
        match self.config.policy.authorize(&view.path, &identity) {
            Ok(()) => Ok(identity),
            Err(deny) => Err(Denied {
                deny,
                identity: Some(identity),
            }),
        }
    }

    async fn identify(&self, credential: Credential<'_>) -> Result<Arc<Identity>, Deny> {
        let key = self.cache.key(self.oidc.generation(), credential.as_bytes());
        match self.cache.get(&key, SystemTime::now()) {
            Some(Cached::Allowed(identity)) => {
                self.metrics.cache_lookup(CacheResult::Hit);
                return Ok(identity);
            }
            Some(Cached::Denied(deny)) => {
                self.metrics.cache_lookup(CacheResult::NegativeHit);
                return Err(deny);
            }
            None => self.metrics.cache_lookup(CacheResult::Miss),
        }
        let result = self.verify(credential).await;
        self.cache.insert(key, &result);
        result
    }

    /// The verifier for the credential's kind (cache miss only).
    async fn verify(&self, credential: Credential<'_>) -> Result<Arc<Identity>, Deny> {
        credential.check_syntax()?;
        match credential {
            Credential::Bearer(token) => self.oidc.verify(token).await.map(Arc::new),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.oidc.is_ready()
    }

    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    pub fn cache(&self) -> &DecisionCache {
        &self.cache
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// One JSON line per denial: reason, who (if known), where. Never the token.
fn log_denial(denied: &Denied, view: Option<&RequestView<'_>>, req: &CheckRequest) {
    let id = denied.identity.as_deref();
    let request_id = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .map_or("", |h| h.id.as_str());
    tracing::info!(
        event = "authorization_denied",
        reason = denied.deny.reason(),
        status = denied.deny.status().code(),
        issuer = id.map(|i| &*i.issuer),
        subject = id.map(|i| &*i.subject),
        method = view.map(|v| v.method),
        path = view.map(|v| v.path.as_str()),
        request_id,
    );
}
