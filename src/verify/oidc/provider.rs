//! One OIDC issuer: its config and its current signing keys, kept fresh by
//! a background task. The request path only reads the key set (lock-free);
//! the single exception is an unknown `kid`, which may trigger one refetch
//! per `jwks_min_refetch`, shared by every request that waits for it, and
//! waited for at most `check_fetch_budget`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::{watch, Mutex};
use url::Url;

use super::jwks::{JwksError, KeySet};
use crate::config::{is_local_host, OidcConfig, ProviderConfig};
use crate::telemetry::Metrics;

/// Upper bound on a discovery or JWKS document; anything larger is hostile.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Redirects followed by a discovery or JWKS fetch.
const MAX_REDIRECTS: usize = 3;

/// The redirect policy of the discovery and JWKS client: at most
/// [`MAX_REDIRECTS`], and only to where the config itself could point
/// (see [`may_follow`]).
pub fn redirect_policy() -> reqwest::redirect::Policy {
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
/// their own keys), and plain http is followed only between local hosts,
/// the same rule as for configured issuers.
fn may_follow(previous: &[Url], next: &Url) -> bool {
    match next.scheme() {
        "https" => true,
        "http" => is_local_host(next) && previous.iter().all(|u| u.scheme() == "http"),
        _ => false,
    }
}

pub struct Provider {
    pub config: ProviderConfig,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    jwks_uri: Mutex<Option<Url>>,
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
    http: reqwest::Client,
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

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("discovery document of {url} is invalid: {reason}")]
    Discovery { url: String, reason: String },
    #[error("JWKS from {url}: {source}")]
    Jwks { url: String, source: JwksError },
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

// === impl Provider ===

impl Provider {
    pub fn new(
        config: ProviderConfig,
        oidc: &OidcConfig,
        generation: Arc<AtomicU64>,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            jwks_uri: Mutex::new(config.jwks_uri.clone()),
            config,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            refetch: std::sync::Mutex::new(RefetchState::default()),
            refetched: watch::Sender::new(0),
            min_refetch: oidc.jwks_min_refetch,
            check_budget: oidc.check_fetch_budget,
            refreshing: Mutex::new(()),
            generation,
            http,
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

    /// Fetches the JWKS (discovering its URL first if needed) and swaps it
    /// in. On failure the previous keys stay in use.
    pub async fn refresh(&self) -> Result<(), FetchError> {
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

    async fn fetch_keys(&self) -> Result<KeySet, FetchError> {
        let url = self.jwks_url().await?;
        let body = self.get(&url).await?;
        let (set, skipped) = KeySet::parse(&body).map_err(|source| FetchError::Jwks {
            url: url.to_string(),
            source,
        })?;
        if skipped > 0 {
            tracing::debug!(issuer = %self.config.issuer, skipped, "ignored unusable JWKS entries");
        }
        Ok(set)
    }

    async fn jwks_url(&self) -> Result<Url, FetchError> {
        let mut cached = self.jwks_uri.lock().await;
        if let Some(url) = cached.as_ref() {
            return Ok(url.clone());
        }
        let url = self.discover().await?;
        *cached = Some(url.clone());
        Ok(url)
    }

    async fn discover(&self) -> Result<Url, FetchError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let doc_url = format!("{issuer}/.well-known/openid-configuration");
        let invalid = |reason: String| FetchError::Discovery {
            url: doc_url.clone(),
            reason,
        };
        let url = Url::parse(&doc_url).map_err(|e| invalid(e.to_string()))?;
        let body = self.get(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        // OIDC Discovery 1.0 §4.3: the document must name exactly our issuer.
        if *doc.issuer != *self.config.issuer {
            return Err(invalid(format!(
                "issuer is {:?}, expected {:?}",
                doc.issuer, self.config.issuer
            )));
        }
        let jwks = Url::parse(&doc.jwks_uri).map_err(|e| invalid(format!("jwks_uri: {e}")))?;
        if jwks.scheme() != "https" && !(jwks.scheme() == "http" && is_local_host(&jwks)) {
            return Err(invalid(format!("jwks_uri {jwks} must be https")));
        }
        Ok(jwks)
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let http_err = |source| FetchError::Http {
            url: url.to_string(),
            source,
        };
        let mut resp = self.http.get(url.clone()).send().await.map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge { url: url.to_string() });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {

    use jsonwebtoken::Algorithm;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::cache::{Cached, DecisionCache};
    use crate::config::CacheConfig;
    use crate::identity::Identity;

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
            issuer: "http://127.0.0.1:1".into(),
            audiences: vec!["portcullis".into()],
            jwks_uri,
            user_claim: "sub".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            require_groups: false,
            algorithms: Vec::new(),
            client_credentials: None,
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(oidc.fetch_timeout)
            .build()
            .unwrap();
        Arc::new(Provider::new(
            config,
            &oidc,
            Arc::new(AtomicU64::new(0)),
            http,
            Arc::new(Metrics::new()),
        ))
    }

    /// A JWKS endpoint on loopback answering every request with `body`
    /// after `delay`.
    async fn jwks_server(delay: Duration, body: String) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                });
            }
        });
        url
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

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

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

    /// A loopback server that answers every request with a redirect to `to`.
    fn redirector(to: &'static str) -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(16) {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf);
                let resp =
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(resp.as_bytes());
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_client_refuses_a_redirect_to_plain_http_on_a_public_host() {
        let client = reqwest::Client::builder().redirect(redirect_policy()).build().unwrap();
        // Not followed: the policy refuses before any connection to the target.
        let addr = redirector("http://idp.example.invalid/jwks");
        let err = client.get(format!("http://{addr}/jwks")).send().await.unwrap_err();
        assert!(err.is_redirect(), "{err}");
        // Loopback to loopback is followed (until the limit).
        let addr = redirector("http://127.0.0.1:1/jwks");
        let err = client.get(format!("http://{addr}/jwks")).send().await.unwrap_err();
        assert!(
            !err.is_redirect() && err.is_connect(),
            "followed to the closed port: {err}"
        );
    }
}
