//! The request path, top to bottom:
//!
//! 1. view the request (method, normalized path, headers)
//!    (browser sessions: the callback and logout paths are answered here)
//! 2. extract the credential (`Authorization`, else the session cookie)
//! 3. identify: decision cache, else the verifier (sessions: `session::Sessions`)
//! 4. decide: the route rule on the identity
//! 5. respond: strip + inject on allow, 401/403 on deny (a login redirect
//!    for browsers on `login:` routes); log and count.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};

use crate::cache::{Cached, DecisionCache};
use crate::config::Config;
use crate::deny::Deny;
use crate::identity::Identity;
use crate::request::RequestView;
use crate::response;
use crate::session::{login, Reply, Sessions};
use crate::telemetry::{CacheResult, Metrics};
use crate::verify::credential::{self, Credential};
use crate::verify::oidc::OidcVerifier;

pub struct Checker {
    config: Config,
    oidc: OidcVerifier,
    cache: DecisionCache,
    metrics: Arc<Metrics>,
    sessions: Option<Sessions>,
}

/// A denial with what is known about who was denied, for the log line.
struct Denied {
    deny: Deny,
    identity: Option<Arc<Identity>>,
    /// For the client: a cleared or renewed session cookie.
    set_cookies: Vec<String>,
}

impl From<Deny> for Denied {
    fn from(deny: Deny) -> Self {
        Self {
            deny,
            identity: None,
            set_cookies: Vec::new(),
        }
    }
}

/// An admitted request: who, and a renewed session cookie for the client.
struct Allowed {
    identity: Arc<Identity>,
    set_cookie: Option<String>,
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
            sessions: None,
        }
    }

    /// Enables browser sessions (login, callback, logout, session cookies).
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub async fn check(&self, req: &CheckRequest) -> CheckResponse {
        let started = Instant::now();
        let view = match RequestView::new(req) {
            Ok(view) => view,
            Err(deny) => return self.deny(deny.into(), None, req, started),
        };
        if let Some(sessions) = &self.sessions {
            if let Some(endpoint) = sessions.endpoint(&view) {
                let reply = sessions.handle(endpoint, &view, &self.oidc).await;
                return self.reply(reply, &view, req, started);
            }
        }
        match self.decide(&view).await {
            Ok(Allowed { identity, set_cookie }) => {
                self.metrics.allowed(identity.source, started.elapsed().as_secs_f64());
                tracing::debug!(event = "authorization_allowed", user = %identity.user, path = %view.path);
                let mut edits = self.config.headers.edits(&identity, view.header_names());
                if let Some(sessions) = &self.sessions {
                    edits.apply_cookie_edit(sessions.upstream_cookie_edit(&view));
                    edits.set_cookies.extend(set_cookie);
                }
                response::allowed(edits)
            }
            Err(denied) => match self.login_redirect(&denied, &view).await {
                Some(reply) => self.reply(reply, &view, req, started),
                None => self.deny(denied, Some(&view), req, started),
            },
        }
    }

    /// A browser without a usable session on a `login:` route is sent to
    /// log in; API calls, XHR and non-GET requests keep their 401.
    async fn login_redirect(&self, denied: &Denied, view: &RequestView<'_>) -> Option<Reply> {
        let sessions = self.sessions.as_ref()?;
        if !matches!(
            denied.deny,
            Deny::MissingCredential | Deny::SessionInvalid | Deny::SessionExpired | Deny::RefreshFailed
        ) {
            return None;
        }
        let login = self.config.policy.rule_for(&view.path)?.login()?;
        if !login::is_browser(view) {
            return None;
        }
        Some(match sessions.start_login(login, view).await {
            Reply::Redirect {
                location,
                mut set_cookies,
            } => {
                set_cookies.extend(denied.set_cookies.iter().cloned());
                Reply::Redirect { location, set_cookies }
            }
            other => other,
        })
    }

    /// A session reply (login, callback, logout) as a response.
    fn reply(&self, reply: Reply, view: &RequestView<'_>, req: &CheckRequest, started: Instant) -> CheckResponse {
        match reply {
            Reply::Redirect { location, set_cookies } => {
                self.metrics.redirected(started.elapsed().as_secs_f64());
                tracing::debug!(event = "session_redirect", path = %view.path);
                response::redirect(&location, set_cookies)
            }
            Reply::Deny { deny, set_cookies } => {
                let denied = Denied {
                    deny,
                    identity: None,
                    set_cookies,
                };
                self.deny(denied, Some(view), req, started)
            }
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
        let response = response::denied(&denied.deny, &self.config.realm, self.config.debug);
        if denied.set_cookies.is_empty() {
            response
        } else {
            response::with_set_cookies(response, denied.set_cookies)
        }
    }

    async fn decide(&self, view: &RequestView<'_>) -> Result<Allowed, Denied> {
        let credential = match credential::extract(view, self.oidc.max_token_bytes()) {
            Err(Deny::MissingCredential) => match self.sessions.as_ref().and_then(|s| s.cookie(view)) {
                Some(value) => Credential::Session(value),
                None => return Err(Deny::MissingCredential.into()),
            },
            other => other?,
        };
        let (identity, set_cookie) = match credential {
            Credential::Session(value) => self.session(value).await?,
            other => (self.identify(other).await?, None),
        };
        match self.config.policy.authorize(&view.path, &identity) {
            Ok(()) => Ok(Allowed { identity, set_cookie }),
            Err(deny) => Err(Denied {
                deny,
                identity: Some(identity),
                set_cookies: set_cookie.into_iter().collect(),
            }),
        }
    }

    /// A session cookie's identity; a cookie that no longer works is cleared.
    async fn session(&self, value: &str) -> Result<(Arc<Identity>, Option<String>), Denied> {
        let Some(sessions) = &self.sessions else {
            return Err(Deny::MissingCredential.into());
        };
        match sessions.authenticate(value, &self.oidc).await {
            Ok(a) => Ok((a.identity, a.set_cookie)),
            Err(deny) => Err(Denied {
                deny,
                identity: None,
                set_cookies: vec![sessions.clear_session()],
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
            // Sessions are opened by `Sessions::authenticate`, never cached here.
            Credential::Session(_) => Err(Deny::SessionInvalid),
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
