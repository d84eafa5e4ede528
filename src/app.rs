//! What the server's tasks share. `server::run` builds one [`App`] and hands
//! each task only the parts it uses: the gRPC service the [`Checker`], the
//! admin listener [`Readiness`], metrics and the identity cache, the Tenuo
//! reload the warrant verifier and metrics. None of them reaches through
//! another to find what it needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cache::DecisionCache;
use crate::check::Checker;
use crate::clock::Clock;
use crate::config::Config;
use crate::idp::IdpClient;
use crate::server::ServeError;
use crate::session::Sessions;
use crate::telemetry::Metrics;
use crate::verify::apikey::ApiKeys;
use crate::verify::oidc::OidcVerifier;
use crate::verify::warrant::{Trust, WarrantVerifier};

pub struct App {
    /// The request path: every gRPC Check.
    pub checker: Arc<Checker>,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    /// The identity cache the checker fills; `/metrics` reports its size.
    pub cache: Arc<DecisionCache>,
    pub oidc: Arc<OidcVerifier>,
    /// The Tenuo trust set the checker verifies with and the reload replaces;
    /// `None` without a `tenuo` section.
    pub warrant: Option<Arc<WarrantVerifier>>,
    /// The API keys the checker verifies with and their reload replaces;
    /// `None` without an `api_keys` section.
    pub api_keys: Option<Arc<ApiKeys>>,
}

impl App {
    /// Builds everything a config asks for: reads the Tenuo files it names
    /// (an unreadable one stops start-up); OIDC keys are not loaded yet.
    pub fn new(config: Config) -> Result<Self, ServeError> {
        Self::with_clock(config, Clock::system())
    }

    /// The same, deciding by `clock` (tests use a manual one).
    pub fn with_clock(config: Config, clock: Clock) -> Result<Self, ServeError> {
        let metrics = Arc::new(Metrics::new());
        // One client for every call to an IdP: bearer keys and browser logins
        // share its discovery documents.
        let idp = Arc::new(IdpClient::new(config.oidc.fetch_timeout)?);
        let oidc = Arc::new(OidcVerifier::new(&config.oidc, idp.clone(), metrics.clone()));
        let warrant = match &config.tenuo {
            Some(t) => {
                let trust = Trust::load(t)?;
                metrics.tenuo_reloaded(true, Some(trust.issuers));
                Some(Arc::new(WarrantVerifier::new(trust)))
            }
            None => None,
        };
        let api_keys = match &config.api_keys {
            Some(k) => {
                let keys = ApiKeys::load(k)?;
                metrics.api_keys_reloaded(true);
                Some(Arc::new(keys))
            }
            None => None,
        };
        let sessions = config
            .sessions
            .as_ref()
            .map(|s| Sessions::new(s, &idp, metrics.clone()).map(|s| s.with_clock(clock.clone())))
            .transpose()?;
        let cache = Arc::new(DecisionCache::new(&config.cache));
        let checker =
            Checker::new(config, oidc.clone(), warrant.clone(), cache.clone(), metrics.clone()).with_clock(clock);
        let checker = match sessions {
            Some(s) => checker.with_sessions(s),
            None => checker,
        };
        let checker = match &api_keys {
            Some(k) => checker.with_api_keys(k.clone()),
            None => checker,
        };
        Ok(Self {
            checker: Arc::new(checker),
            readiness: Readiness::new(oidc.clone()),
            metrics,
            cache,
            oidc,
            warrant,
            api_keys,
        })
    }
}

/// Whether this replica should get traffic: every issuer's keys are loaded
/// and shutdown has not begun. `/readyz` and gRPC health both follow it.
#[derive(Clone)]
pub struct Readiness {
    oidc: Arc<OidcVerifier>,
    shutting_down: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(oidc: Arc<OidcVerifier>) -> Self {
        Self {
            oidc,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && self.oidc.is_ready()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// From now on, unready for good.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}
