//! Browser sessions: OIDC (or plain OAuth2) login through ext_authz with the
//! authorization code flow and PKCE, sealed stateless cookies, refresh and
//! logout.
//!
//! ```text
//! GET /app (browser, no session, rule login: dex)
//!   → 302 authorization_endpoint?response_type=code&state&nonce&code_challenge(S256)
//!     + Set-Cookie <cookie_name>-login-<digest(state)> = seal(state, nonce, verifier, return path)
//! GET /oauth2/callback?code&state           (callback.rs)
//!   → state checked against its cookie (single use), code exchanged with the verifier,
//!     ID token verified (signature, iss, aud = client_id, nonce) or userinfo fetched
//!   → 302 public_url + return path, Set-Cookie <cookie_name> = seal(session)
//! GET /app with the cookie                  (this file)
//!   → opened (cached by cookie hash) → identity → the same headers and rules as bearer tokens;
//!     near expiry: refreshed at the token endpoint, new cookie on the allowed response (refresh.rs)
//! GET /oauth2/logout                        (logout.rs)
//!   → cookie cleared, 302 end_session_endpoint?id_token_hint&post_logout_redirect_uri
//! ```
//!
//! Redirect URIs and return locations are built from the configured
//! `public_url`, never from the request's `Host`/`:authority`.

mod callback;
pub mod cookie;
pub mod login;
mod logout;
mod origin;
pub mod provider;
mod refresh;
pub mod state;

use std::hash::Hasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::clock::{unix, Clock};
use crate::config::sessions::KEY_BYTES;
use crate::config::{LoginKind, SessionsConfig};
use crate::deny::Deny;
use crate::headers::{self, CookieEdit};
use crate::identity::Identity;
use crate::idp::IdpClient;
use crate::request::RequestView;
use crate::telemetry::Metrics;
use crate::verify::oidc::OidcVerifier;
use cookie::{Sealer, MAX_COOKIE_BYTES};
use provider::LoginProvider;
use state::{LoginState, SessionData};

/// How long a refresh result is shared by requests that still carry the
/// cookie it replaced (parallel requests of one page).
const REFRESH_SHARE: Duration = Duration::from_secs(60);
/// Logins in progress a browser may hold (one per tab); beyond this a new
/// login clears the others, so repeated unauthenticated navigations cannot
/// grow the `cookie` header towards Envoy's header limit.
const MAX_PENDING_LOGINS: usize = 4;
/// Opened sessions are re-checked against the clock on every request; the
/// cache only saves the decryption.
const OPENED_TTL: Duration = Duration::from_secs(300);

pub struct Sessions {
    cookie_name: String,
    login_prefix: String,
    max_age: Duration,
    login_timeout: Duration,
    refresh_before: Option<Duration>,
    sealer: Sealer,
    /// In `Arc`s so an IdP call can run in its own task (see refresh.rs).
    providers: Vec<Arc<LoginProvider>>,
    opened: Cache<u128, Arc<Opened>>,
    used_states: Cache<u128, ()>,
    /// Code exchanges whose callback was cut off, by state (callback.rs).
    orphaned: Cache<u128, callback::Exchange>,
    refreshing: Cache<u128, Arc<refresh::Refreshing>>,
    hash_keys: (u64, u64),
    /// Read again after a token endpoint answers: the tokens it issued are
    /// judged at their arrival, not at the start of a Check that waited for
    /// them (an `nbf = iat` ID token would otherwise be "not yet valid").
    clock: Clock,
    /// Counts the groups an OAuth2 provider's budget drops (callback.rs).
    metrics: Arc<Metrics>,
}

/// What the request path needs of an opened session cookie, cached by the
/// cookie's keyed hash. Never the refresh or ID token: those stay sealed in
/// the cookie and are opened again only for a refresh or a logout, so a
/// heap dump of a busy replica holds no one's provider tokens.
struct Opened {
    identity: Arc<Identity>,
    exp: u64,
    end: u64,
    /// The cookie holds a refresh token.
    refreshable: bool,
}

impl Opened {
    /// Its key, its `Arc` block and its identity, with the issuer and login
    /// names: unlike a bearer identity's, a session's are its own copies.
    fn heap_bytes(&self) -> usize {
        const ARC_COUNTS: usize = 2 * std::mem::size_of::<usize>();
        let own = |s: &str| ARC_COUNTS + s.len();
        16 + ARC_COUNTS
            + std::mem::size_of::<Opened>()
            + crate::cache::identity_bytes(&self.identity)
            + own(&self.identity.issuer)
            + own(&self.identity.provider)
    }
}

#[derive(Clone)]
struct Renewed {
    identity: Arc<Identity>,
    set_cookie: String,
}

/// A session that admits the request, and the renewed cookie to set on the
/// allowed response when it was refreshed.
pub struct Authenticated {
    pub identity: Arc<Identity>,
    pub set_cookie: Option<String>,
}

/// The answer to a login, callback or logout request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Redirect {
        location: String,
        set_cookies: Vec<String>,
    },
    /// The request is refused for `deny`; the cookies are set or cleared all the same.
    Refuse {
        deny: Deny,
        set_cookies: Vec<String>,
    },
}

/// Paths portcullis answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Callback,
    Logout,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}: the secret is not loaded (config::read loads secrets)")]
    SecretNotLoaded(String),
    #[error("sessions.keys: a key must be {KEY_BYTES} bytes")]
    BadKey,
}

// === impl Sessions ===

impl Sessions {
    /// `idp` makes the calls to the login providers (shared with bearer
    /// verification, so an issuer is discovered once).
    pub fn new(cfg: &SessionsConfig, idp: &Arc<IdpClient>, metrics: Arc<Metrics>) -> Result<Self, SessionError> {
        let keys = cfg
            .keys
            .iter()
            .map(|k| {
                let v = k
                    .value()
                    .ok_or_else(|| SessionError::SecretNotLoaded(k.field.clone()))?;
                <[u8; KEY_BYTES]>::try_from(v).map_err(|_| SessionError::BadKey)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SessionError::SecretNotLoaded("sessions.keys".into()));
        }
        let providers = cfg
            .logins
            .iter()
            .map(|l| {
                if let Some(s) = &l.client_secret {
                    s.value()
                        .ok_or_else(|| SessionError::SecretNotLoaded(s.field.clone()))?;
                }
                Ok(Arc::new(LoginProvider::new(l.clone(), idp.clone())))
            })
            .collect::<Result<Vec<_>, SessionError>>()?;
        Ok(Self {
            clock: Clock::system(),
            cookie_name: cfg.cookie_name.clone(),
            login_prefix: login::login_cookie_prefix(&cfg.cookie_name),
            max_age: cfg.max_age,
            login_timeout: cfg.login_timeout,
            refresh_before: cfg.refresh_before,
            sealer: Sealer::new(&keys),
            providers,
            // Byte budgets (weights: see crate::cache): 6 MiB of opened
            // sessions, 1 MiB each of used login states, cut-off code
            // exchanges and shared refreshes.
            opened: Cache::builder()
                .weigher(|_: &u128, o: &Arc<Opened>| crate::cache::weight(o.heap_bytes()))
                .max_capacity(6 << 20)
                .time_to_live(OPENED_TTL)
                .build(),
            used_states: Cache::builder()
                .weigher(|_: &u128, _: &()| crate::cache::weight(16))
                .max_capacity(1 << 20)
                .time_to_live(cfg.login_timeout)
                .build(),
            // A cut-off code exchange holds the tokens of one login until
            // the browser retries: weigh it as a full session cookie.
            orphaned: Cache::builder()
                .weigher(|_: &u128, _: &callback::Exchange| crate::cache::weight(16 + MAX_COOKIE_BYTES + 512))
                .max_capacity(1 << 20)
                .time_to_live(cfg.login_timeout)
                .build(),
            // The cell is filled after insertion: weigh it as the largest
            // result it can hold, a renewed cookie of MAX_COOKIE_BYTES.
            refreshing: Cache::builder()
                .weigher(|_: &u128, _: &Arc<refresh::Refreshing>| crate::cache::weight(16 + MAX_COOKIE_BYTES + 512))
                .max_capacity(1 << 20)
                .time_to_live(REFRESH_SHARE)
                .build(),
            hash_keys: (rand::random(), rand::random()),
            metrics,
        })
    }

    /// Judges tokens from the IdP by `clock` (tests: a manual one).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The callback or logout path this request targets, if any. These are
    /// answered before any credential is looked at.
    pub fn endpoint(&self, view: &RequestView<'_>) -> Option<Endpoint> {
        let path = view.path;
        if self.providers.iter().any(|p| p.config.redirect_path == path) {
            Some(Endpoint::Callback)
        } else if self.providers.iter().any(|p| p.config.logout_path == path) {
            Some(Endpoint::Logout)
        } else {
            None
        }
    }

    pub async fn handle(
        &self,
        endpoint: Endpoint,
        view: &RequestView<'_>,
        oidc: &OidcVerifier,
        now: SystemTime,
    ) -> Reply {
        match endpoint {
            Endpoint::Callback => self.callback(view, oidc, now).await,
            Endpoint::Logout => self.logout(view).await,
        }
    }

    /// The session cookie's value, if the request has one.
    pub fn cookie<'a>(&self, view: &RequestView<'a>) -> Option<&'a str> {
        cookie::find(view.header_values("cookie"), &self.cookie_name).filter(|v| !v.is_empty())
    }

    /// Our cookies (session and login state) never reach the upstream.
    pub fn upstream_cookie_edit(&self, view: &RequestView<'_>) -> CookieEdit {
        // A `cookie` header that is not UTF-8 cannot be parsed, so ours
        // might hide in it: it does not reach the upstream at all.
        if view.has_unreadable("cookie") {
            return CookieEdit::Remove;
        }
        headers::strip_cookies(view.header_values("cookie"), |name| {
            name == self.cookie_name || name.starts_with(&self.login_prefix)
        })
    }

    /// `Set-Cookie` that deletes the session cookie.
    pub fn clear_session(&self) -> String {
        cookie::clear(&self.cookie_name)
    }

    /// The identity of a session cookie; refreshed at the provider when its
    /// tokens are near expiry and a refresh token is kept.
    pub async fn authenticate(&self, value: &str, oidc: &OidcVerifier, now: SystemTime) -> Result<Authenticated, Deny> {
        let key = self.hash(b"session", value.as_bytes());
        let opened = match self.opened.get(&key) {
            Some(o) => o,
            None => {
                let data = self.open_session(value)?;
                let o = Arc::new(Opened {
                    identity: Arc::new(self.identity_of(&data, oidc)?),
                    exp: data.exp,
                    end: data.end,
                    refreshable: data.rt.is_some(),
                });
                self.opened.insert(key, o.clone());
                o
            }
        };
        let at = now;
        let now = unix(now);
        let d = &opened;
        if now >= d.end {
            return Err(Deny::SessionExpired);
        }
        let refresh_due = self
            .refresh_before
            .is_some_and(|before| now.saturating_add(before.as_secs()) >= d.exp);
        if refresh_due && d.refreshable {
            // Boxed: a refresh is rare, and its HTTP exchange inline would
            // grow the future of every session-authenticated Check.
            return Box::pin(self.refresh(key, value, &opened, at, oidc)).await;
        }
        if now >= d.exp {
            return Err(Deny::SessionExpired);
        }
        Ok(Authenticated {
            identity: opened.identity.clone(),
            set_cookie: None,
        })
    }

    /// Starts a login with `login` (a rule's `login:`): a redirect to the
    /// authorization endpoint, the login state in its own sealed cookie.
    pub async fn start_login(&self, login: &str, view: &RequestView<'_>, now: SystemTime) -> Reply {
        let Some(provider) = self.provider(login) else {
            return Reply::deny(Deny::LoginFailed);
        };
        let endpoints = match provider.endpoints().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(event = "login_unavailable", login, error = %e);
                return Reply::deny(Deny::LoginFailed);
            }
        };
        let is_oidc = matches!(provider.config.kind, crate::config::LoginKind::Oidc { .. });
        let state = LoginState {
            p: login.to_string(),
            state: login::random_token(),
            nonce: if is_oidc { login::random_token() } else { String::new() },
            v: login::random_token(),
            ret: login::safe_return_path(view.raw_path).to_string(),
            exp: unix(now + self.login_timeout),
        };
        let name = login::state_cookie_name(&self.cookie_name, &state.state);
        let Ok(json) = serde_json::to_vec(&state) else {
            return Reply::deny(Deny::LoginFailed);
        };
        let sealed = self.sealer.seal(&login_aad(&name), &json);
        let url = login::authorize_url(
            &endpoints.authorization,
            &provider.config,
            &state.state,
            is_oidc.then_some(state.nonce.as_str()),
            &state.v,
        );
        let mut set_cookies = vec![cookie::set(&name, &sealed, Some(self.login_timeout.as_secs()))];
        let pending = cookie::names_with_prefix(view.header_values("cookie"), &self.login_prefix);
        if pending.len() >= MAX_PENDING_LOGINS {
            set_cookies.extend(pending.into_iter().map(cookie::clear));
        }
        Reply::Redirect {
            location: url.to_string(),
            set_cookies,
        }
    }

    fn provider(&self, login: &str) -> Option<&Arc<LoginProvider>> {
        self.providers.iter().find(|p| p.config.name == login)
    }

    fn open_session(&self, value: &str) -> Result<SessionData, Deny> {
        let json = self
            .sealer
            .open(&self.session_aad(), value)
            .map_err(|_| Deny::SessionInvalid)?;
        let data: SessionData = serde_json::from_slice(&json).map_err(|_| Deny::SessionInvalid)?;
        // A session of a login that is no longer configured is void.
        if self.provider(&data.p).is_none() {
            return Err(Deny::SessionInvalid);
        }
        Ok(data)
    }

    /// A session's identity, its groups passed again through the `groups:`
    /// filter its login's provider has now: a filter tightened since the
    /// login applies to cookies sealed before it (a group no longer kept is
    /// gone; over a `deny` budget, the session is refused). Unchanged, the
    /// filter keeps what it kept at login. An OIDC login that now names
    /// another issuer voids the sessions its old issuer made.
    fn identity_of(&self, data: &SessionData, oidc: &OidcVerifier) -> Result<Identity, Deny> {
        let provider = self.provider(&data.p).ok_or(Deny::SessionInvalid)?;
        let filter = match &provider.config.kind {
            // A login moved to another issuer voids the sessions of the old one.
            LoginKind::Oidc { issuer } if **issuer != *data.iss => return Err(Deny::SessionInvalid),
            LoginKind::Oidc { issuer } => oidc.group_filter(issuer).ok_or(Deny::SessionInvalid)?,
            LoginKind::OAuth2 { groups, .. } => groups,
        };
        let identity = data.identity();
        let sealed = identity.groups().map(String::from).collect();
        let selected = filter.select(sealed, None)?;
        Ok(identity.with_groups(&selected.groups))
    }

    /// Seals a session into a `Set-Cookie` value that fits a browser's
    /// per-cookie limit: without the logout hint (ID token) if needed, then
    /// without the refresh token; a session that still does not fit is
    /// refused.
    fn seal_session(&self, data: &mut SessionData, now: u64) -> Result<String, Deny> {
        let max_age = data.end.saturating_sub(now);
        loop {
            let json = serde_json::to_vec(&*data).map_err(|_| Deny::SessionTooLarge)?;
            let value = self.sealer.seal(&self.session_aad(), &json);
            let set = cookie::set(&self.cookie_name, &value, Some(max_age));
            if set.len() <= MAX_COOKIE_BYTES {
                return Ok(set);
            }
            if data.idt.take().is_some() {
                tracing::debug!(event = "session_cookie_trimmed", dropped = "id_token");
            } else if data.rt.take().is_some() {
                tracing::info!(event = "session_cookie_trimmed", dropped = "refresh_token", user = %data.user);
            } else {
                tracing::warn!(event = "session_too_large", user = %data.user, bytes = set.len());
                return Err(Deny::SessionTooLarge);
            }
        }
    }

    fn session_aad(&self) -> String {
        format!("session:{}", self.cookie_name)
    }

    fn hash(&self, domain: &[u8], bytes: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        h.write(domain);
        h.write_u8(0);
        h.write(bytes);
        h.finish128().as_u128()
    }

    /// Entries and weighted bytes of each session cache (opened, used
    /// states, orphaned exchanges, refreshes), after settling moka's pending
    /// work; for memory reports.
    pub fn cache_usage(&self) -> [(&'static str, u64, u64); 4] {
        self.opened.run_pending_tasks();
        self.used_states.run_pending_tasks();
        self.orphaned.run_pending_tasks();
        self.refreshing.run_pending_tasks();
        [
            ("opened", self.opened.entry_count(), self.opened.weighted_size()),
            (
                "used states",
                self.used_states.entry_count(),
                self.used_states.weighted_size(),
            ),
            ("orphaned", self.orphaned.entry_count(), self.orphaned.weighted_size()),
            (
                "refreshing",
                self.refreshing.entry_count(),
                self.refreshing.weighted_size(),
            ),
        ]
    }

    fn max_age_end(&self, now: u64) -> u64 {
        now.saturating_add(self.max_age.as_secs())
    }
}

fn login_aad(cookie_name: &str) -> String {
    format!("login:{cookie_name}")
}

impl Reply {
    fn deny(deny: Deny) -> Self {
        Reply::Refuse {
            deny,
            set_cookies: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sessions::Secret;
    use crate::config::RawConfig;

    fn sessions() -> Sessions {
        let mut cfg = RawConfig::from_yaml(crate::config::tests::SESSIONS)
            .unwrap()
            .validate()
            .unwrap();
        let mut s = cfg.sessions.take().unwrap();
        s.keys = vec![Secret::with_value("k", &[3; 32])];
        Sessions::new(
            &s,
            &Arc::new(IdpClient::new(cfg.oidc.fetch_timeout).unwrap()),
            Arc::new(Metrics::new()),
        )
        .unwrap()
    }

    fn data(groups: usize, rt: usize, idt: usize) -> SessionData {
        let t = unix(crate::clock::system_now());
        SessionData {
            p: "dex".into(),
            iss: "https://dex.example.com/dex".into(),
            sub: "alice".into(),
            user: "alice".into(),
            email: None,
            groups: "g".repeat(groups),
            iat: t,
            exp: t + 600,
            end: t + 3600,
            rt: Some("r".repeat(rt)),
            idt: Some("i".repeat(idt)),
        }
    }

    #[test]
    fn cookies_stay_under_4kb_by_dropping_the_id_token_then_the_refresh_token() {
        let s = sessions();
        let mut small = data(10, 100, 800);
        let c = s.seal_session(&mut small, unix(crate::clock::system_now())).unwrap();
        assert!(c.len() <= MAX_COOKIE_BYTES && small.idt.is_some() && small.rt.is_some());
        let mut big_idt = data(10, 100, 2800);
        s.seal_session(&mut big_idt, unix(crate::clock::system_now())).unwrap();
        assert!(big_idt.idt.is_none() && big_idt.rt.is_some());
        let mut big_rt = data(10, 2800, 2800);
        s.seal_session(&mut big_rt, unix(crate::clock::system_now())).unwrap();
        assert!(big_rt.idt.is_none() && big_rt.rt.is_none());
        let mut huge = data(3000, 10, 10);
        assert_eq!(
            s.seal_session(&mut huge, unix(crate::clock::system_now())),
            Err(Deny::SessionTooLarge)
        );
    }

    #[test]
    fn a_state_is_spent_by_exactly_one_of_many_parallel_callbacks() {
        let s = sessions();
        for round in 0..20 {
            let state = format!("state-{round}");
            let barrier = std::sync::Barrier::new(8);
            let winners = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            s.spend_state(&state)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| h.join().ok())
                    .filter(|won| *won)
                    .count()
            });
            assert_eq!(winners, 1, "round {round}");
        }
        assert!(!s.spend_state("state-0"), "spent for good");
    }

    /// A session's issuer and login names are its own copies, so they weigh.
    #[test]
    fn an_opened_session_weighs_its_issuer_and_login_names() {
        let opened = |d: &SessionData| Opened {
            identity: Arc::new(d.identity()),
            exp: d.exp,
            end: d.end,
            refreshable: false,
        };
        let short = data(0, 0, 0);
        let mut long = short.clone();
        long.iss.push_str(&"/x".repeat(50));
        long.p.push_str("-second");
        assert_eq!(opened(&long).heap_bytes(), opened(&short).heap_bytes() + 107);
    }

    #[test]
    fn sealed_sessions_open_to_the_same_identity() {
        let s = sessions();
        let mut d = data(0, 10, 10);
        d.groups = "devs,ops".into();
        let set = s.seal_session(&mut d, unix(crate::clock::system_now())).unwrap();
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        let opened = s.open_session(value).unwrap();
        assert_eq!(opened, d);
        let id = opened.identity();
        assert_eq!((&*id.user, id.source), ("alice", crate::identity::Source::Session));
        assert_eq!(id.groups().collect::<Vec<_>>(), vec!["devs", "ops"]);
        assert_eq!(s.open_session("x"), Err(Deny::SessionInvalid));
    }
}
