//! Logout: the session cookie is cleared and the browser sent to the
//! provider's `end_session_endpoint` (RP-initiated logout, with
//! `id_token_hint` when the session kept it and the configured
//! `post_logout_redirect_uri`), or straight to `post_logout_redirect`.
//! No return location is ever taken from the request.
//!
//! Cookies are stateless: a copied session cookie stays valid until its
//! expiry even after logout. Keep `max_age_seconds` and token lifetimes short.

use super::{Reply, Sessions};
use crate::request::RequestView;

impl Sessions {
    pub(super) async fn logout(&self, view: &RequestView<'_>) -> Reply {
        let session = self.cookie(view).and_then(|v| self.open_session(v).ok());
        // The session's own provider if it logs out here, else the first
        // login with this logout path.
        let provider = session
            .as_ref()
            .and_then(|s| self.provider(&s.p))
            .filter(|p| p.config.logout_path == view.path)
            .or_else(|| self.providers.iter().find(|p| p.config.logout_path == view.path));
        let set_cookies = vec![self.clear_session()];
        let Some(provider) = provider else {
            return Reply::Redirect {
                location: "/".into(),
                set_cookies,
            };
        };
        let c = &provider.config;
        let after = c
            .post_logout_redirect
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_else(|| format!("{}/", c.public_origin));
        let end_session = match provider.endpoints().await {
            Ok(e) => e.end_session.clone(),
            Err(e) => {
                tracing::warn!(event = "logout_without_provider", login = %c.name, error = %e);
                None
            }
        };
        let location = match end_session {
            Some(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    // Only to the provider that issued it: an ID token is
                    // that provider's credential, never another's business.
                    let hint = session
                        .as_ref()
                        .filter(|s| s.p == c.name)
                        .and_then(|s| s.idt.as_deref());
                    if let Some(hint) = hint {
                        q.append_pair("id_token_hint", hint);
                    }
                    q.append_pair("client_id", &c.client_id);
                    if let Some(u) = &c.post_logout_redirect {
                        q.append_pair("post_logout_redirect_uri", u.as_str());
                    }
                }
                url.to_string()
            }
            None => after,
        };
        if let Some(s) = &session {
            tracing::info!(event = "logout", login = %c.name, user = %s.user);
        }
        Reply::Redirect { location, set_cookies }
    }
}
