//! Refresh: a session near its tokens' expiry is renewed at the token
//! endpoint with its refresh token, once per cookie however many requests
//! carry it at the same time (the result is shared for a minute, so a
//! rotated refresh token is never spent twice). A failed refresh ends the
//! session: the browser logs in again; it is never a 500.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::OnceCell;

use super::state::{unix, SessionData};
use super::{Authenticated, Renewed, Sessions};
use crate::config::LoginKind;
use crate::deny::Deny;
use crate::verify::oidc::OidcVerifier;

/// Lifetime assumed when the provider says nothing (`expires_in` absent and
/// no new ID token).
const DEFAULT_LIFETIME_SECONDS: u64 = 300;

impl Sessions {
    pub(super) async fn refresh(
        &self,
        key: u128,
        data: &SessionData,
        oidc: &OidcVerifier,
    ) -> Result<Authenticated, Deny> {
        let cell = self.refreshing.get_with(key, || Arc::new(OnceCell::new()));
        let renewed = cell.get_or_init(|| self.renew(data, oidc)).await.clone()?;
        Ok(Authenticated {
            identity: renewed.identity,
            set_cookie: Some(renewed.set_cookie),
        })
    }

    async fn renew(&self, d: &SessionData, oidc: &OidcVerifier) -> Result<Renewed, Deny> {
        let provider = self.provider(&d.p).ok_or(Deny::SessionInvalid)?;
        let c = &provider.config;
        let rt = d.rt.as_deref().ok_or(Deny::RefreshFailed)?;
        let tokens = provider.refresh(rt).await.map_err(|e| {
            tracing::info!(event = "refresh_failed", login = %c.name, user = %d.user, error = %e);
            Deny::RefreshFailed
        })?;
        if tokens.access_token.is_none() && tokens.id_token.is_none() {
            return Err(Deny::RefreshFailed);
        }
        let now = unix(SystemTime::now());
        let token_exp = now.saturating_add(tokens.expires_in.unwrap_or(DEFAULT_LIFETIME_SECONDS));
        let mut next = d.clone();
        match (&c.kind, tokens.id_token.as_deref()) {
            (LoginKind::Oidc { issuer }, Some(id_token)) => {
                // OIDC Core §12.2: same iss and sub, our aud; no nonce.
                let id = oidc
                    .verify_id_token(id_token, issuer, &c.client_id, None)
                    .await
                    .map_err(|deny| {
                        tracing::info!(event = "refresh_failed", login = %c.name, reason = deny.reason());
                        Deny::RefreshFailed
                    })?;
                if *id.subject != *d.sub {
                    return Err(Deny::RefreshFailed);
                }
                let exp = unix(id.expires_at).min(tokens.expires_in.map_or(u64::MAX, |_| token_exp));
                next = SessionData::from_identity(&c.name, &id, d.iat, exp, d.end);
                next.idt = Some(id_token.to_string());
            }
            _ => next.exp = token_exp.min(d.end),
        }
        // Providers that rotate refresh tokens send a new one.
        next.rt = tokens.refresh_token.or_else(|| d.rt.clone());
        let set_cookie = self.seal_session(&mut next)?;
        tracing::debug!(event = "session_refreshed", login = %c.name, user = %next.user);
        Ok(Renewed {
            identity: Arc::new(next.identity()),
            set_cookie,
        })
    }
}
