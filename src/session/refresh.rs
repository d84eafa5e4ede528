//! Refresh: a session near its tokens' expiry is renewed at the token
//! endpoint with its refresh token, once per cookie however many requests
//! carry it at the same time (the result is shared for a minute, so a
//! rotated refresh token is never spent twice). A refused refresh ends the
//! session: the browser logs in again; it is never a 500. An unreachable or
//! failing provider (network, 5xx, 429, its keys unavailable) does not end
//! a session whose tokens are still valid: it keeps working until they expire.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::OnceCell;

use super::provider::{LoginProvider, Tokens};
use super::state::SessionData;
use super::{Authenticated, Opened, Renewed, Sessions};
use crate::clock::unix;
use crate::config::LoginKind;
use crate::deny::Deny;
use crate::verify::oidc::OidcVerifier;

/// Lifetime assumed when the provider says nothing (`expires_in` absent and
/// no new ID token).
const DEFAULT_LIFETIME_SECONDS: u64 = 300;

/// Why a refresh did not renew the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The provider refused (e.g. `invalid_grant`) or answered nonsense: the session ends.
    Refused(Deny),
    /// The provider could not be asked: try again later, meanwhile the
    /// session lasts as long as its tokens.
    Unavailable,
}

/// One refresh of one cookie, shared by every request that carries it.
///
/// Envoy cancels a Check that outlives its ext_authz timeout, and tonic
/// then drops the Check's future. A refresh that ran inside that future
/// would be dropped mid-call: the provider has already rotated the refresh
/// token, the answer is lost, and the next request would spend the old one
/// again (`invalid_grant`, and with reuse detection the whole grant is
/// revoked). So the token endpoint is called from a spawned task that
/// stores its answer here whoever is still waiting; the next request for
/// the same cookie finds it (or waits for it) instead of asking again.
#[derive(Default)]
pub(super) struct Refreshing {
    answer: Arc<OnceCell<Result<Tokens, Failure>>>,
    renewed: OnceCell<Result<Renewed, Failure>>,
}

impl Sessions {
    /// `value` is the cookie (opened again here: the cached [`Opened`]
    /// keeps no tokens).
    pub(super) async fn refresh(
        &self,
        key: u128,
        value: &str,
        opened: &Opened,
        at: SystemTime,
        oidc: &OidcVerifier,
    ) -> Result<Authenticated, Deny> {
        let entry = self.refreshing.get_with(key, || Arc::new(Refreshing::default()));
        let outcome = entry
            .renewed
            .get_or_init(|| async {
                let data = self.open_session(value).map_err(Failure::Refused)?;
                self.renew(&entry, &data, oidc).await
            })
            .await
            .clone();
        if outcome.is_ok() && entry.answer.initialized() {
            // Later requests with this cookie need only the renewed session:
            // keep that, and let the token endpoint's answer (the new
            // refresh and ID tokens) go once no request holds it.
            let done = Refreshing {
                answer: Arc::default(),
                renewed: OnceCell::new_with(Some(outcome.clone())),
            };
            self.refreshing.insert(key, Arc::new(done));
        }
        match outcome {
            Ok(renewed) => Ok(Authenticated {
                identity: renewed.identity,
                set_cookie: Some(renewed.set_cookie),
            }),
            Err(Failure::Unavailable) if unix(at) < opened.exp => Ok(Authenticated {
                identity: opened.identity.clone(),
                set_cookie: None,
            }),
            Err(Failure::Unavailable) => Err(Deny::RefreshFailed),
            Err(Failure::Refused(deny)) => Err(deny),
        }
    }

    async fn renew(&self, entry: &Refreshing, d: &SessionData, oidc: &OidcVerifier) -> Result<Renewed, Failure> {
        let refused = || Failure::Refused(Deny::RefreshFailed);
        let provider = self.provider(&d.p).ok_or(Failure::Refused(Deny::SessionInvalid))?;
        let c = &provider.config;
        let rt = d.rt.clone().ok_or_else(refused)?;
        let task = tokio::spawn(ask_token_endpoint(
            entry.answer.clone(),
            provider.clone(),
            rt,
            d.user.clone(),
        ));
        // The task only ends early if the runtime is shutting down.
        let tokens = task.await.unwrap_or(Err(Failure::Unavailable))?;
        if tokens.access_token.is_none() && tokens.id_token.is_none() {
            return Err(refused());
        }
        // The tokens are judged as of their arrival (see `Sessions::clock`).
        let at = self.clock.now();
        let now = unix(at);
        let token_exp = now.saturating_add(tokens.expires_in.unwrap_or(DEFAULT_LIFETIME_SECONDS));
        let mut next = d.clone();
        match (&c.kind, tokens.id_token.as_deref()) {
            (LoginKind::Oidc { issuer }, Some(id_token)) => {
                // OIDC Core §12.2: same iss and sub, our aud; no nonce.
                let id = oidc
                    .verify_id_token(id_token, issuer, &c.client_id, None, at)
                    .await
                    .map_err(|deny| {
                        tracing::info!(event = "refresh_failed", login = %c.name, reason = deny.reason());
                        match deny {
                            Deny::KeysUnavailable | Deny::UnknownKey => Failure::Unavailable,
                            _ => refused(),
                        }
                    })?;
                if *id.subject != *d.sub {
                    return Err(refused());
                }
                let exp = unix(id.expires_at).min(tokens.expires_in.map_or(u64::MAX, |_| token_exp));
                next = SessionData::from_identity(&c.name, &id, d.iat, exp, d.end);
                next.idt = Some(id_token.to_string());
            }
            _ => next.exp = token_exp.min(d.end),
        }
        // Providers that rotate refresh tokens send a new one.
        next.rt = tokens.refresh_token.or_else(|| d.rt.clone());
        // Without a new ID token the groups are the ones sealed at login:
        // they pass the provider's filter as configured now, as on open
        // (a new ID token's were filtered already; again, to no effect).
        let identity = self.identity_of(&next, oidc).map_err(Failure::Refused)?;
        next.groups = identity.groups_header().to_string();
        let set_cookie = self.seal_session(&mut next, now).map_err(Failure::Refused)?;
        tracing::debug!(event = "session_refreshed", login = %c.name, user = %next.user);
        Ok(Renewed {
            identity: Arc::new(identity),
            set_cookie,
        })
    }
}

/// The token endpoint's answer for `rt`, asked at most once per entry: a
/// second caller waits for the first one's answer, even when the request
/// that started it is gone.
async fn ask_token_endpoint(
    answer: Arc<OnceCell<Result<Tokens, Failure>>>,
    provider: Arc<LoginProvider>,
    rt: String,
    user: String,
) -> Result<Tokens, Failure> {
    answer
        .get_or_init(|| async {
            provider.refresh(&rt).await.map_err(|e| {
                tracing::info!(event = "refresh_failed", login = %provider.config.name, user = %user, error = %e);
                if e.is_unavailable() {
                    Failure::Unavailable
                } else {
                    Failure::Refused(Deny::RefreshFailed)
                }
            })
        })
        .await
        .clone()
}
