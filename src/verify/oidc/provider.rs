//! One OIDC issuer: its config and its current signing keys, kept fresh by
//! a background task. The request path only reads the key set (lock-free);
//! the single exception is an unknown `kid`, which may trigger one refetch
//! per `jwks_min_refetch`, shared by every request that waits for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::Mutex;
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
    /// When the last unknown-kid refetch started.
    refetch_gate: Mutex<Option<Instant>>,
    min_refetch: Duration,
    /// Shared by all providers; bumped when a key disappears or changes.
    generation: Arc<AtomicU64>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
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
            refetch_gate: Mutex::new(None),
            min_refetch: oidc.jwks_min_refetch,
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
        match self.fetch_keys().await {
            Ok(next) => {
                if self.keys.load().lost_keys_in(&next) {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                self.metrics.jwks_keys(issuer, next.len());
                self.keys.store(Arc::new(next));
                self.loaded.store(true, Ordering::Release);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
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

    /// Called when a token names a kid we do not know: refetch, unless a
    /// refetch started less than `min_refetch` ago. Concurrent callers queue
    /// on the gate and then reuse the fetch that just happened.
    pub async fn refetch_for_unknown_kid(&self) {
        let mut last = self.refetch_gate.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
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
    use super::*;

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
