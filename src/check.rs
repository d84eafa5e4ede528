//! The request path, top to bottom:
//!
//! 1. view the request (method, normalized path, headers)
//!    (browser sessions: the callback and logout paths are answered here)
//! 2. the route rule (the policy the proxy's route names, else the path's
//!    rule), the workload principal it admits, and which credentials it requires
//! 3. each required (or, for `any`, presented) credential: OIDC identity
//!    (`Authorization`, else the session cookie; decision cache, else the
//!    verifier) and/or Tenuo warrant
//! 4. decide: the rule's users/groups on the identity
//! 5. respond: strip + inject on allow, 4xx on deny (a login redirect for
//!    browsers on `login:` routes); log and count.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};

use crate::cache::{Cached, DecisionCache};
use crate::clock::{self, Clock};
use crate::config::{Config, Require};
use crate::deny::Deny;
use crate::identity::{Identity, Source};
use crate::policy::Rule;
use crate::request::{RequestView, Single};
use crate::response::{self, WarrantDenialBody};
use crate::session::{login, Reply, Sessions};
use crate::telemetry::{self, CacheResult, Metrics};
use crate::verify::apikey::{ApiKeys, KeySet};
use crate::verify::credential::{self, ApiKeyPlaces, Credential};
use crate::verify::oidc::OidcVerifier;
use crate::verify::warrant::{Grant, WarrantDenial, WarrantVerifier};

/// The request path. What it shares with the rest of the server (the OIDC
/// keys, the Tenuo trust set, the identity cache, metrics) it holds by `Arc`,
/// handed in by [`crate::app::App`]; nothing else reaches those through it.
pub struct Checker {
    config: Config,
    oidc: Arc<OidcVerifier>,
    warrant: Option<Arc<WarrantVerifier>>,
    sessions: Option<Sessions>,
    api_keys: Option<Arc<ApiKeys>>,
    cache: Arc<DecisionCache>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

/// What one Check decided and how, for its trace span (`traces.rs`). Filled
/// on every Check: a few stores, no allocation; the verifier timings read
/// the clock only when `timed` (tracing is on).
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    /// Read the clock around each verifier (set by the caller).
    pub timed: bool,
    /// The trace this Check's span is in (set by the caller when tracing):
    /// a denial's log line names it, so a log line leads to its trace.
    pub trace_id: Option<String>,
    /// `allow`, `deny` or `redirect` (a login, or a session endpoint's answer).
    pub decision: &'static str,
    /// The HTTP status Envoy answers with: 200 on allow.
    pub status: u16,
    /// The deny reason.
    pub reason: Option<&'static str>,
    /// What admitted the request (`telemetry::source_label`).
    pub source: Option<&'static str>,
    /// The rule (path rule or named policy) that decided.
    pub rule: Option<&'a Rule>,
    /// The policy name the proxy's route sent, as sent.
    pub policy: Option<&'a str>,
    /// The identity cache's answer, when it was asked.
    pub cache: Option<CacheResult>,
    /// Verifying a credential the cache did not know (signature, key fetch).
    pub verify: Option<Duration>,
    /// Opening (and perhaps refreshing) a session cookie.
    pub session: Option<Duration>,
    /// Verifying the Tenuo warrant and its proof of possession.
    pub warrant: Option<Duration>,
}

impl Outcome<'_> {
    fn start(&self) -> Option<Instant> {
        self.timed.then(Instant::now)
    }
}

/// What an allowed request proved, and a renewed session cookie for the client.
struct Allowed {
    identity: Option<Arc<Identity>>,
    grant: Option<Arc<Grant>>,
    set_cookie: Option<String>,
    /// The request's `Authorization` header was not what portcullis
    /// verified (a warrant-only route, a cookie-authenticated request, a
    /// non-Bearer scheme): it does not reach the upstream.
    remove_authorization: bool,
}

/// A request being refused: its [`Deny`] reason, with what is known about
/// who was refused (for the log line) and the cookies to set or clear.
struct Refusal {
    deny: Deny,
    identity: Option<Arc<Identity>>,
    warrant: Option<Arc<WarrantDenial>>,
    /// For the client: a cleared or renewed session cookie.
    set_cookies: Vec<String>,
}

impl From<Deny> for Refusal {
    fn from(deny: Deny) -> Self {
        Self {
            deny,
            identity: None,
            warrant: None,
            set_cookies: Vec::new(),
        }
    }
}

impl From<Arc<WarrantDenial>> for Refusal {
    fn from(denial: Arc<WarrantDenial>) -> Self {
        Self {
            deny: denial.deny.clone(),
            warrant: Some(denial),
            ..Deny::MissingWarrant.into()
        }
    }
}

// === impl Checker ===

impl Checker {
    pub fn new(
        config: Config,
        oidc: Arc<OidcVerifier>,
        warrant: Option<Arc<WarrantVerifier>>,
        cache: Arc<DecisionCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            oidc,
            warrant,
            sessions: None,
            api_keys: None,
            cache,
            metrics,
            clock: Clock::system(),
        }
    }

    /// Decides by `clock` instead of the system clock (tests move time
    /// with a manual clock instead of sleeping).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Enables browser sessions (login, callback, logout, session cookies).
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Enables API keys (`Authorization: ApiKey`, the configured header).
    pub fn with_api_keys(mut self, api_keys: Arc<ApiKeys>) -> Self {
        self.api_keys = Some(api_keys);
        self
    }

    pub async fn check(&self, req: &CheckRequest) -> CheckResponse {
        self.check_recorded(req, &mut Outcome::default()).await
    }

    /// [`check`](Self::check), telling `out` what was decided and how.
    pub async fn check_recorded<'a>(&'a self, req: &'a CheckRequest, out: &mut Outcome<'a>) -> CheckResponse {
        let started = Instant::now();
        // The one reading of the wall clock for this decision: every expiry
        // below (tokens, cache entries, sessions, warrants) is judged by it.
        let now = self.clock.now();
        let view = match RequestView::new(req) {
            Ok(view) => view,
            Err(deny) => return self.deny(deny.into(), None, req, started, out),
        };
        out.policy = view.policy;
        if let Some(sessions) = &self.sessions {
            if let Some(endpoint) = sessions.endpoint(&view) {
                // Boxed, like every rarely taken await below: inline, its
                // future would make every Check's future (moved into place
                // before it is polled, boxed per request by tonic) larger.
                let reply = Box::pin(sessions.handle(endpoint, &view, &self.oidc, now)).await;
                return self.reply(reply, &view, req, started, out);
            }
        }
        match self.decide(&view, started, now, out).await {
            Ok(allowed) => {
                let (identity, grant) = (allowed.identity.as_deref(), allowed.grant.as_deref());
                out.decision = "allow";
                out.status = 200;
                out.source = Some(telemetry::source_label(identity.map(|i| i.source), grant.is_some()));
                self.metrics.allowed(
                    identity.map(|i| i.source),
                    grant.is_some(),
                    started.elapsed().as_secs_f64(),
                );
                tracing::debug!(
                    event = "authorization_allowed",
                    user = identity.map(|i| &*i.user),
                    warrant_id = grant.map(|g| &*g.warrant_id),
                    path = %view.path,
                    policy = view.policy.map(bounded)
                );
                let mut credentials = match (&self.warrant, grant) {
                    (Some(w), Some(_)) => w.credential_headers(),
                    _ => Vec::new(),
                };
                if allowed.remove_authorization {
                    credentials.push("authorization".into());
                }
                // An API key never reaches the upstream, whatever the route
                // verified: not even where unverified `Authorization` is forwarded.
                if let Some(keys) = &self.api_keys {
                    credentials.extend(keys.header().map(String::from));
                    if !allowed.remove_authorization && credential::is_api_key(view.authorization()) {
                        credentials.push("authorization".into());
                    }
                }
                let credentials: Vec<&str> = credentials.iter().map(String::as_str).collect();
                let mut edits = self
                    .config
                    .headers
                    .edits(identity, grant, &credentials, view.header_names());
                self.config.headers.inject_principal(&mut edits, view.principal);
                if let Some(sessions) = &self.sessions {
                    edits.apply_cookie_edit(sessions.upstream_cookie_edit(&view));
                    edits.set_cookies.extend(allowed.set_cookie);
                }
                response::allowed(edits)
            }
            Err(denied) => {
                // Only browser sessions redirect: without them a denial
                // allocates no boxed future.
                let redirect = match &self.sessions {
                    Some(_) => Box::pin(self.login_redirect(&denied, &view, now)).await,
                    None => None,
                };
                match redirect {
                    Some(reply) => {
                        // Why this browser is sent to log in (its span says so).
                        out.reason = Some(denied.deny.reason());
                        self.reply(reply, &view, req, started, out)
                    }
                    None => self.deny(denied, Some(&view), req, started, out),
                }
            }
        }
    }

    /// A browser without a usable session on a `login:` route is sent to
    /// log in; API calls, XHR and non-GET requests keep their 401.
    async fn login_redirect(&self, denied: &Refusal, view: &RequestView<'_>, now: SystemTime) -> Option<Reply> {
        let sessions = self.sessions.as_ref()?;
        let session_of_another_login = denied.deny == Deny::ProviderNotAllowed
            && denied.identity.as_ref().is_some_and(|i| i.source == Source::Session);
        if !matches!(
            denied.deny,
            Deny::MissingCredential | Deny::SessionInvalid | Deny::SessionExpired | Deny::RefreshFailed
        ) && !session_of_another_login
        {
            return None;
        }
        let login = self.config.policy.rule_for_request(view).ok()?.login()?;
        if !login::is_browser(view) {
            return None;
        }
        Some(match sessions.start_login(login, view, now).await {
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
    fn reply(
        &self,
        reply: Reply,
        view: &RequestView<'_>,
        req: &CheckRequest,
        started: Instant,
        out: &mut Outcome<'_>,
    ) -> CheckResponse {
        match reply {
            Reply::Redirect { location, set_cookies } => {
                out.decision = "redirect";
                out.status = 302;
                self.metrics.redirected(started.elapsed().as_secs_f64());
                tracing::debug!(event = "session_redirect", path = %view.path);
                response::redirect(&location, set_cookies)
            }
            Reply::Refuse { deny, set_cookies } => {
                let denied = Refusal {
                    set_cookies,
                    ..deny.into()
                };
                self.deny(denied, Some(view), req, started, out)
            }
        }
    }

    fn deny(
        &self,
        denied: Refusal,
        view: Option<&RequestView<'_>>,
        req: &CheckRequest,
        started: Instant,
        out: &mut Outcome<'_>,
    ) -> CheckResponse {
        out.decision = "deny";
        out.status = denied.deny.status().code();
        out.reason = Some(denied.deny.reason());
        self.metrics
            .denied(denied.deny.reason(), started.elapsed().as_secs_f64());
        let request_id = request_id(req, view);
        log_denial(&denied, view, request_id, out.trace_id.as_deref());
        let warrant = denied.warrant.as_deref().map(|denial| WarrantDenialBody {
            denial,
            request_id,
            debug: self.warrant.as_ref().is_some_and(|w| w.debug()),
        });
        let response = response::denied(&denied.deny, &self.config.realm, self.config.debug, warrant);
        if denied.set_cookies.is_empty() {
            response
        } else {
            response::with_set_cookies(response, denied.set_cookies)
        }
    }

    async fn decide<'a>(
        &'a self,
        view: &RequestView<'_>,
        started: Instant,
        now: SystemTime,
        out: &mut Outcome<'a>,
    ) -> Result<Allowed, Refusal> {
        let rule = self.config.policy.rule_for_request(view)?;
        out.rule = Some(rule);
        // The connection's principal first: no token is verified for a
        // workload the rule does not admit anyway.
        rule.admits_principal(view.principal)?;
        let (credential, wants_warrant) = match rule.require() {
            Require::Oidc => (
                Some(self.oidc_credential(view, rule)?.ok_or(Deny::MissingCredential)?),
                false,
            ),
            Require::Tenuo => (None, true),
            // `allowed_principals` (checked above, never empty here) is the
            // whole requirement.
            Require::Workload => (None, false),
            Require::All => (
                Some(self.oidc_credential(view, rule)?.ok_or(Deny::MissingCredential)?),
                true,
            ),
            // Every credential presented must be valid; at least one must be presented.
            Require::Any => {
                let credential = self.oidc_credential(view, rule)?;
                let warrant = self.warrant.as_ref().is_some_and(|w| w.is_presented(view));
                if credential.is_none() && !warrant {
                    return Err(Deny::MissingCredential.into());
                }
                (credential, warrant)
            }
        };
        let bearer_verified = matches!(credential, Some(Credential::Bearer(_)));
        let (identity, set_cookie) = match credential {
            Some(Credential::Session(value)) => {
                let timer = out.start();
                let opened = self.session(value, now).await;
                out.session = timer.map(|t| t.elapsed());
                let (identity, set_cookie) = opened?;
                self.check_origin(&identity, view).map_err(|deny| Refusal {
                    identity: Some(identity.clone()),
                    set_cookies: set_cookie.iter().cloned().collect(),
                    ..deny.into()
                })?;
                (Some(identity), set_cookie)
            }
            Some(other) => (Some(self.identify(other, now, out).await?), None),
            None => (None, None),
        };
        let grant = if wants_warrant {
            let timer = out.start();
            let verified = self.verify_warrant(view, started, now);
            out.warrant = timer.map(|t| t.elapsed());
            Some(verified.map_err(|d| Refusal {
                identity: identity.clone(),
                set_cookies: set_cookie.iter().cloned().collect(),
                ..d.into()
            })?)
        } else {
            None
        };
        match rule.admits(identity.as_deref()) {
            Ok(()) => Ok(Allowed {
                identity,
                grant,
                set_cookie,
                remove_authorization: !bearer_verified
                    && view.authorization() != Single::Absent
                    && !rule.forwards_unverified_authorization(),
            }),
            Err(deny) => Err(Refusal {
                deny,
                identity,
                warrant: None,
                set_cookies: set_cookie.into_iter().collect(),
            }),
        }
    }

    /// The OIDC credential presented: `Authorization: Bearer`, else the
    /// session cookie where the rule accepts sessions; `None` when there is
    /// neither. On other rules the cookie is not a credential at all, so a
    /// browser's cookie cannot drive a bearer-only API.
    fn oidc_credential<'a>(&self, view: &RequestView<'a>, rule: &Rule) -> Result<Option<Credential<'a>>, Deny> {
        let api_keys = self.api_keys.as_ref().map(|k| ApiKeyPlaces { header: k.header() });
        match credential::extract(view, self.oidc.max_token_bytes(), api_keys) {
            Ok(c) => Ok(Some(c)),
            Err(Deny::MissingCredential) if !rule.accepts_sessions() => Ok(None),
            Err(Deny::MissingCredential) => Ok(self
                .sessions
                .as_ref()
                .and_then(|s| s.cookie(view))
                .map(Credential::Session)),
            Err(deny) => Err(deny),
        }
    }

    /// A cookie is sent with cross-site requests too, so a state-changing
    /// request it authenticates must show it comes from our own pages:
    /// `Sec-Fetch-Site: same-origin` (or `none`: typed by the user), or,
    /// from browsers that do not send Fetch metadata, an `Origin` equal to
    /// the login's `public_url`.
    fn check_origin(&self, identity: &Identity, view: &RequestView<'_>) -> Result<(), Deny> {
        if is_safe_method(view.method) {
            return Ok(());
        }
        match &self.sessions {
            Some(s) if s.same_origin(&identity.provider, view) => Ok(()),
            _ => Err(Deny::CrossOriginRequest),
        }
    }

    /// A session cookie's identity; a cookie that no longer works is cleared.
    async fn session(&self, value: &str, now: SystemTime) -> Result<(Arc<Identity>, Option<String>), Refusal> {
        let Some(sessions) = &self.sessions else {
            return Err(Deny::MissingCredential.into());
        };
        match sessions.authenticate(value, &self.oidc, now).await {
            Ok(a) => Ok((a.identity, a.set_cookie)),
            Err(deny) => Err(Refusal {
                set_cookies: vec![sessions.clear_session()],
                ..deny.into()
            }),
        }
    }

    /// `started`: when the Check began (one clock read fewer on the hot path).
    fn verify_warrant(
        &self,
        view: &RequestView<'_>,
        started: Instant,
        now: SystemTime,
    ) -> Result<Arc<Grant>, Arc<WarrantDenial>> {
        let Some(verifier) = &self.warrant else {
            // Config validation refuses `require: tenuo` without a tenuo section.
            return Err(Arc::new(WarrantDenial::missing()));
        };
        let now = clock::unix_i64(now);
        let result = verifier.verify(view, now);
        let tool = match &result {
            Ok(g) => Some(&g.tool),
            Err(d) => d.tool.as_ref(),
        };
        self.metrics.warrant_checked(
            result.is_ok(),
            tool,
            started.elapsed().as_secs_f64(),
            result.as_ref().ok().map(|g| g.expires_at - now),
        );
        result
    }

    async fn identify(
        &self,
        credential: Credential<'_>,
        now: SystemTime,
        out: &mut Outcome<'_>,
    ) -> Result<Arc<Identity>, Deny> {
        // An API key is verified against one key set, loaded once: its
        // generation is in the cache key, so a reload drops what it decided.
        let key_set = match credential {
            Credential::ApiKey(_) => Some(self.api_keys.as_ref().ok_or(Deny::MissingCredential)?.current()),
            _ => None,
        };
        let key = match &key_set {
            Some(set) => self.cache.api_key(set.generation(), credential.as_bytes()),
            None => self.cache.key(self.oidc.generation(), credential.as_bytes()),
        };
        let cached = self.cache.get(&key, now);
        let looked_up = match &cached {
            Some(Cached::Allowed(_)) => CacheResult::Hit,
            Some(Cached::Denied(_)) => CacheResult::NegativeHit,
            None => CacheResult::Miss,
        };
        self.metrics.cache_lookup(looked_up);
        out.cache = Some(looked_up);
        let result = match cached {
            Some(Cached::Allowed(identity)) => Ok(identity),
            Some(Cached::Denied(deny)) => Err(deny),
            None => {
                // A miss verifies a signature (and may fetch keys): one allocation
                // more is nothing there, and keeps the hit's future small.
                let timer = out.start();
                let result = Box::pin(self.verify(credential, key_set.as_deref(), now)).await;
                out.verify = timer.map(|t| t.elapsed());
                self.cache.insert(key, &result, now);
                result
            }
        };
        if let (Some(set), Credential::ApiKey(presented)) = (&key_set, credential) {
            let outcome = result.as_ref().map_or_else(Deny::reason, |_| "allowed");
            self.metrics.api_key_checked(set.known_id(presented), outcome);
        }
        result
    }

    /// The verifier for the credential's kind (cache miss only).
    async fn verify(
        &self,
        credential: Credential<'_>,
        key_set: Option<&KeySet>,
        now: SystemTime,
    ) -> Result<Arc<Identity>, Deny> {
        credential.check_syntax()?;
        match credential {
            Credential::Bearer(token) => self.oidc.verify(token, now).await.map(Arc::new),
            // Sessions are opened by `Sessions::authenticate`, never cached here.
            Credential::Session(_) => Err(Deny::SessionInvalid),
            Credential::ApiKey(presented) => key_set
                .ok_or(Deny::MissingCredential)?
                .verify(presented, now)
                .map(Arc::new),
        }
    }

    /// Where `rule` stands among the path rules (`None`: a named policy's,
    /// or the built-in rule of a config without rules).
    pub fn rule_index(&self, rule: &Rule) -> Option<usize> {
        self.config.policy.rules().iter().position(|r| std::ptr::eq(r, rule))
    }

    /// For benchmarks and tests that load keys or verify a token directly.
    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    /// For memory reports (`examples/cache_rss.rs`): the session caches.
    pub fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref()
    }
}

/// RFC 9110 §9.2.1 safe methods. Any other method may change state at the
/// upstream, so a cookie-authenticated one needs the origin check.
fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Envoy's `x-request-id` (what its access log and the upstream see), else its stream id.
fn request_id<'a>(req: &'a CheckRequest, view: Option<&RequestView<'a>>) -> &'a str {
    if let Some(crate::request::Single::One(id)) = view.map(|v| v.single("x-request-id")) {
        return id;
    }
    req.attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .map_or("", |h| h.id.as_str())
}

/// One JSON line per denial: reason, who (if known), where; for warrants the
/// fields of Tenuo's guide (`tool`, `constraint`, `expected`, `actual`).
/// Never the token or the warrant.
fn log_denial(denied: &Refusal, view: Option<&RequestView<'_>>, request_id: &str, trace_id: Option<&str>) {
    let id = denied.identity.as_deref();
    let w = denied.warrant.as_deref();
    let actual = w.and_then(|w| w.actual.as_ref()).map(|a| match a {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    tracing::warn!(
        event = "authorization_denied",
        reason = denied.deny.reason(),
        status = denied.deny.status().code(),
        issuer = id.map(|i| &*i.issuer),
        subject = id.map(|i| &*i.subject),
        principal = view.and_then(|v| v.principal),
        tool = w.and_then(|w| w.tool.as_deref()),
        constraint = w.and_then(|w| w.constraint.as_deref()),
        expected = w.and_then(|w| w.expected.as_deref()),
        actual = actual.as_deref(),
        warrant_id = w.and_then(|w| w.warrant_id.as_deref()),
        detail = w.map(|w| w.detail.as_str()).filter(|d| !d.is_empty()),
        method = view.map(|v| v.method),
        path = view.map(|v| v.path),
        policy = view.and_then(|v| v.policy).map(bounded),
        request_id,
        trace_id,
    );
}

/// At most this many bytes of a policy name go into a log line: the name
/// comes from the proxy's config, but a denial's line stays small whatever
/// it holds.
const LOGGED_NAME_MAX: usize = 64;

pub(crate) fn bounded(name: &str) -> &str {
    let mut end = name.len().min(LOGGED_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}
