//! One OIDC issuer: its config and its current signing keys, kept fresh by
//! a background task. The request path only reads the key set (lock-free);
//! the single exception is an unknown `kid`, which may trigger one refetch
//! per `jwks_min_refetch`, shared by every request that waits for it, and
//! waited for at most `check_fetch_budget`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Mutex};
use url::Url;

use super::jwks::KeySet;
use crate::config::{OidcConfig, ProviderConfig};
use crate::idp::{IdpClient, IdpError};
use crate::telemetry::Metrics;

pub struct Provider {
    pub config: ProviderConfig,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    /// Keys were given (`portcullis explain --jwks-file`), not fetched: an
    /// unknown `kid` is answered from them alone, never by a call to the issuer.
    fixed: AtomicBool,
    /// Unknown-kid refetches: when the last one started, whether it runs.
    refetch: std::sync::Mutex<RefetchState>,
    /// Counts finished unknown-kid refetches; waiting Checks watch it.
    refetched: watch::Sender<u64>,
    min_refetch: Duration,
    /// How long a Check waits for an unknown-kid refetch.
    check_budget: Duration,
    /// One refresh at a time: fetch and swap are one step, so a document
    /// fetched earlier can never replace one fetched later.
    refreshing: Mutex<()>,
    /// Shared by all providers; bumped when a key disappears or changes.
    generation: Arc<AtomicU64>,
    idp: Arc<IdpClient>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct RefetchState {
    last_start: Option<Instant>,
    running: bool,
}

/// How an unknown-kid refetch ended for the Check that waited for it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refetched {
    /// A refetch finished (or one finished less than `min_refetch` ago):
    /// the current keys are as fresh as they get.
    Done,
    /// The refetch was still running when the budget ran out; it goes on in
    /// the background.
    OverBudget,
}

// === impl Provider ===

impl Provider {
    pub fn new(
        config: ProviderConfig,
        oidc: &OidcConfig,
        generation: Arc<AtomicU64>,
        idp: Arc<IdpClient>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            fixed: AtomicBool::new(false),
            refetch: std::sync::Mutex::new(RefetchState::default()),
            refetched: watch::Sender::new(0),
            min_refetch: oidc.jwks_min_refetch,
            check_budget: oidc.check_fetch_budget,
            refreshing: Mutex::new(()),
            generation,
            idp,
            metrics,
        }
    }

    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// True once a key set has been loaded; stays true through outages.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Installs a key set read from a file, for good: no refetch follows
    /// (explaining a token offline must not call its issuer).
    pub fn install_fixed(&self, keys: KeySet) {
        self.stop_fetching();
        self.install(keys, || {});
        self.loaded.store(true, Ordering::Release);
    }

    /// No unknown `kid` calls the issuer from now on.
    pub fn stop_fetching(&self) {
        self.fixed.store(true, Ordering::Release);
    }

    /// Fetches the JWKS (discovering its URL first if needed) and swaps it
    /// in. On failure the previous keys stay in use.
    pub async fn refresh(&self) -> Result<(), IdpError> {
        let issuer = &*self.config.issuer;
        let _one_at_a_time = self.refreshing.lock().await;
        match self.fetch_keys().await {
            Ok(next) => {
                self.metrics.jwks_keys(issuer, next.len());
                self.install(next, || {});
                self.loaded.store(true, Ordering::Release);
                let now = crate::clock::system_now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                self.metrics.jwks_refreshed(issuer, true, now.as_secs_f64());
                Ok(())
            }
            Err(e) => {
                self.metrics.jwks_refreshed(issuer, false, 0.0);
                tracing::warn!(event = "jwks_refresh_failed", issuer, error = %e, "keeping the previous keys");
                Err(e)
            }
        }
    }

    /// Swaps in a new key set. The key set is stored BEFORE the generation
    /// moves: a Check reads the generation first (it is part of its cache
    /// key) and the keys afterwards, so whoever sees the new generation also
    /// sees the new keys, and a decision made with a removed key can only
    /// be cached under the old generation, which no lookup uses any more.
    /// `before_bump` runs between the two steps (tests observe that state).
    fn install(&self, next: KeySet, before_bump: impl FnOnce()) {
        let lost = self.keys.load().lost_keys_in(&next);
        self.keys.store(Arc::new(next));
        before_bump();
        if lost {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Called when a token names a kid we do not know: refetch, unless a
    /// refetch started less than `min_refetch` ago, and wait for it at most
    /// `check_fetch_budget`. Concurrent callers share the running fetch. The
    /// fetch runs as a task of its own, so a hung issuer costs a Check only
    /// the budget, and keys that arrive later serve later requests.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>) -> Refetched {
        if self.fixed.load(Ordering::Acquire) {
            return Refetched::Done;
        }
        let mut finished = {
            let mut st = self.refetch.lock().unwrap_or_else(PoisonError::into_inner);
            if !st.running {
                if st.last_start.is_some_and(|t| t.elapsed() < self.min_refetch) {
                    return Refetched::Done;
                }
                st.last_start = Some(Instant::now());
                st.running = true;
                tokio::spawn(Arc::clone(self).run_refetch());
            }
            // Subscribed under the lock that `run_refetch` takes to announce
            // its end, so the end cannot slip by unseen.
            self.refetched.subscribe()
        };
        match tokio::time::timeout(self.check_budget, finished.changed()).await {
            Ok(_) => Refetched::Done,
            Err(_) => Refetched::OverBudget,
        }
    }

    async fn run_refetch(self: Arc<Self>) {
        /// Announces the end even if the fetch panics, so no Check waits
        /// for a refetch that will never finish and the next one can start.
        struct Finish<'a>(&'a Provider);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut st = self.0.refetch.lock().unwrap_or_else(PoisonError::into_inner);
                st.running = false;
                self.0.refetched.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        let _finish = Finish(&self);
        tracing::info!(event = "jwks_refetch", issuer = %self.config.issuer, "unknown kid");
        let _ = self.refresh().await;
    }

    /// Keeps keys fresh: retries quickly until the first load, then
    /// refreshes every `interval` (with jitter so replicas spread out).
    pub async fn run_refresher(self: Arc<Self>, interval: Duration) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let wait = if self.refresh().await.is_ok() {
                backoff = Duration::from_millis(250);
                interval + jitter(interval / 10)
            } else if self.is_loaded() {
                interval.min(Duration::from_secs(30))
            } else {
                backoff = (backoff * 2).min(Duration::from_secs(10));
                backoff
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, IdpError> {
        let url = self.jwks_url().await?;
        let (set, skipped) = self.idp.jwks(&url).await?;
        if skipped > 0 {
            tracing::debug!(issuer = %self.config.issuer, skipped, "ignored unusable JWKS entries");
        }
        Ok(set)
    }

    /// The configured `jwks_uri`, else the one discovery names (fetched
    /// once, shared with browser logins of the same issuer).
    async fn jwks_url(&self) -> Result<Url, IdpError> {
        match &self.config.jwks_uri {
            Some(url) => Ok(url.clone()),
            None => {
                let issuer = &self.config.issuer;
                let url = self.idp.discovery(issuer).await?.jwks_uri();
                if url.is_err() {
                    self.idp.forget_discovery(issuer);
                }
                url
            }
        }
    }
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {

    use jsonwebtoken::Algorithm;

    use super::*;
    use crate::cache::{Cached, DecisionCache};
    use crate::config::CacheConfig;
    use crate::identity::Identity;
    use crate::idp::test_server::{serve, Reply};

    const EC: &str = r#"{"kty":"EC","kid":"KID","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn jwks(kids: &[&str]) -> String {
        let keys: Vec<String> = kids.iter().map(|k| EC.replace("KID", k)).collect();
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    fn set(kids: &[&str]) -> KeySet {
        KeySet::parse(jwks(kids).as_bytes()).unwrap().0
    }

    fn has(p: &Provider, kid: &str) -> bool {
        p.keys().find(Some(kid), Algorithm::ES256).is_some()
    }

    fn provider(jwks_uri: Option<Url>, budget: Duration) -> Arc<Provider> {
        provider_of("http://127.0.0.1:1", jwks_uri, budget)
    }

    fn provider_of(issuer: &str, jwks_uri: Option<Url>, budget: Duration) -> Arc<Provider> {
        let oidc = OidcConfig {
            clock_skew: Duration::from_secs(60),
            max_token_bytes: 8192,
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(5),
            check_fetch_budget: budget,
            providers: Vec::new(),
        };
        let config = ProviderConfig {
            name: "test".into(),
            issuer: issuer.into(),
            audiences: vec!["portcullis".into()],
            jwks_uri,
            user_claim: "sub".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            require_groups: false,
            groups: Default::default(),
            algorithms: Vec::new(),
            client_credentials: None,
        };
        let idp = IdpClient::new(oidc.fetch_timeout).unwrap();
        Arc::new(Provider::new(
            config,
            &oidc,
            Arc::new(AtomicU64::new(0)),
            Arc::new(idp),
            Arc::new(Metrics::new()),
        ))
    }

    /// A JWKS endpoint on loopback answering every request with `body`
    /// after `delay`.
    async fn jwks_server(delay: Duration, body: String) -> Url {
        serve(move |_| Reply::json(&body).after(delay)).await.url("/jwks")
    }

    #[test]
    fn a_removed_key_is_gone_before_the_generation_moves() {
        let p = provider(None, Duration::from_millis(100));
        p.install(set(&["a", "b"]), || {});
        assert_eq!(
            p.generation.load(Ordering::Acquire),
            0,
            "adding keys keeps cached decisions"
        );
        p.install(set(&["a"]), || {
            // A Check starting at this instant reads the generation, then the
            // keys. Seeing the new generation with the old keys would let a
            // decision made with `b` be cached under the new generation.
            let generation = p.generation.load(Ordering::Acquire);
            assert_eq!(generation, 0, "the generation moves last");
            assert!(!has(&p, "b"), "the removed key is gone before the generation moves");
        });
        assert_eq!(
            p.generation.load(Ordering::Acquire),
            1,
            "a removed key moves the generation"
        );
    }

    /// The Check's side of the protocol with the decision cache: generation
    /// read first, verification with the keys of that moment, insert under
    /// the generation read first. A removal in between leaves the entry
    /// where no later lookup goes.
    #[test]
    fn a_decision_made_with_a_removed_key_is_never_found_again() {
        let p = provider(None, Duration::from_millis(100));
        let cache = DecisionCache::new(&CacheConfig {
            max_entries: 100,
            max_bytes: 1 << 20,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
        });
        p.install(set(&["a", "b"]), || {});
        let key = cache.key(p.generation.load(Ordering::Acquire), b"token signed by b");
        let keys_at_verification = p.keys();
        p.install(set(&["a"]), || {});
        assert!(keys_at_verification.find(Some("b"), Algorithm::ES256).is_some());
        let now = crate::clock::system_now();
        cache.insert(key, &Ok(Arc::new(Identity::test("mallory"))), now);
        let later = cache.key(p.generation.load(Ordering::Acquire), b"token signed by b");
        assert!(
            !matches!(cache.get(&later, now), Some(Cached::Allowed(_))),
            "a token verified with a removed key was served from the cache"
        );
    }

    #[tokio::test]
    async fn a_hung_issuer_costs_a_check_only_the_budget_and_the_keys_arrive_later() {
        let budget = Duration::from_millis(150);
        let url = jwks_server(Duration::from_millis(700), jwks(&["a", "new"])).await;
        let p = provider(Some(url), budget);
        p.install(set(&["a"]), || {});

        let t = Instant::now();
        assert_eq!(p.refetch_for_unknown_kid().await, Refetched::OverBudget);
        let took = t.elapsed();
        assert!(took >= budget && took < budget * 4, "waited {took:?}");
        // A second Check shares the running fetch and its budget rule.
        assert_eq!(p.refetch_for_unknown_kid().await, Refetched::OverBudget);
        assert!(!has(&p, "new"));

        // The fetch went on without the Checks that gave up on it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !has(&p, "new") {
            assert!(Instant::now() < deadline, "the background refetch never delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Within min_refetch of that fetch, no new one starts: done at once.
        let t = Instant::now();
        assert_eq!(p.refetch_for_unknown_kid().await, Refetched::Done);
        assert!(t.elapsed() < budget, "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn a_prompt_issuer_answers_within_the_check() {
        let url = jwks_server(Duration::ZERO, jwks(&["a", "new"])).await;
        let p = provider(Some(url), Duration::from_secs(3));
        p.install(set(&["a"]), || {});
        assert_eq!(p.refetch_for_unknown_kid().await, Refetched::Done);
        assert!(has(&p, "new"));
    }

    /// A discovery document that parses but cannot serve (here: no
    /// `jwks_uri`, as an IdP mid-deploy might answer) is not kept: the next
    /// refresh asks again and loads the keys once the IdP is fixed.
    #[tokio::test]
    async fn a_discovery_document_without_jwks_uri_is_asked_for_again() {
        let served = std::sync::atomic::AtomicU32::new(0);
        let s = serve(move |seen| {
            let base = format!("http://{}", seen.host);
            match seen.path.as_str() {
                "/.well-known/openid-configuration" => {
                    if served.fetch_add(1, Ordering::SeqCst) == 0 {
                        Reply::json(&format!(r#"{{"issuer":"{base}"}}"#))
                    } else {
                        Reply::json(&format!(r#"{{"issuer":"{base}","jwks_uri":"{base}/jwks"}}"#))
                    }
                }
                _ => Reply::json(&jwks(&["k1"])),
            }
        })
        .await;
        let issuer = s.url("/").as_str().trim_end_matches('/').to_string();
        let p = provider_of(&issuer, None, Duration::from_millis(100));
        let err = p.refresh().await.unwrap_err();
        assert!(err.to_string().contains("jwks_uri is missing"), "{err}");
        p.refresh().await.expect("the fixed document is fetched again");
        assert!(has(&p, "k1"));
    }
}
