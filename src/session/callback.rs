//! The redirect back from the provider: `state` checked against its sealed
//! cookie (single use), the code exchanged with the PKCE verifier, the ID
//! token verified (or userinfo fetched), the session cookie set, and a
//! redirect to the same-origin path the login started from.

use std::sync::Arc;
use std::time::SystemTime;

use moka::sync::Cache;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::cookie;
use super::login::{safe_return_path, state_cookie_name};
use super::provider::{LoginProvider, Tokens};
use super::state::{LoginState, SessionData};
use super::{login_aad, Reply, Sessions};
use crate::clock::unix;
use crate::config::LoginKind;
use crate::deny::Deny;
use crate::groups::GroupFilter;
use crate::identity::{Identity, Source};
use crate::request::RequestView;
use crate::verify::oidc::claims::{
    drop_client_groups, email_verified, groups, identity_value, is_header_safe, names_email, Mapped,
};
use crate::verify::oidc::{constant_time_eq, OidcVerifier};

/// The callback's query parameters (first occurrence of each).
#[derive(Default)]
struct Params {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl Sessions {
    pub(super) async fn callback(&self, view: &RequestView<'_>, oidc: &OidcVerifier, now: SystemTime) -> Reply {
        let p = params(view.raw_path);
        let Some(state) = p.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
            return Reply::deny(Deny::LoginStateMissing);
        };
        let name = state_cookie_name(&self.cookie_name, &state);
        let Some(sealed) = cookie::find(view.header_values("cookie"), &name) else {
            return Reply::deny(Deny::LoginStateMissing);
        };
        // From here on the login cookie is spent, whatever the outcome.
        let clear = cookie::clear(&name);
        let fail = |deny: Deny| Reply::Refuse {
            deny,
            set_cookies: vec![clear.clone()],
        };
        let login: LoginState = match self
            .sealer
            .open(&login_aad(&name), sealed)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
        {
            Some(l) => l,
            None => return fail(Deny::LoginStateInvalid),
        };
        if !constant_time_eq(login.state.as_bytes(), state.as_bytes()) || unix(now) >= login.exp {
            return fail(Deny::LoginStateInvalid);
        }
        let Some(provider) = self
            .provider(&login.p)
            .filter(|pr| pr.config.redirect_path == view.path)
        else {
            return fail(Deny::LoginStateInvalid);
        };
        // Single use, spent before the exchange so parallel replays lose too.
        // The one exception: the same callback again after Envoy cut off the
        // Check that spent it, whose code exchange then finished unseen
        // (see `Orphan`); exactly one retry takes that answer over.
        let spent = self.hash(b"state", state.as_bytes());
        let resumed = if self.spend_state(&state) {
            None
        } else if let Some(exchange) = self.orphaned.remove(&spent) {
            tracing::info!(event = "login_resumed", login = %login.p);
            Some(exchange)
        } else {
            return fail(Deny::LoginStateReplayed);
        };
        if let Some(error) = p.error {
            let error: String = error.chars().filter(char::is_ascii_graphic).take(64).collect();
            tracing::info!(event = "login_error", login = %login.p, error);
            return fail(Deny::LoginFailed);
        }
        let Some(code) = p.code.filter(|c| !c.is_empty()) else {
            return fail(Deny::LoginFailed);
        };
        let exchange = resumed.unwrap_or_default();
        let mut orphan = Orphan {
            orphaned: &self.orphaned,
            key: spent,
            exchange: Some(exchange.clone()),
        };
        let outcome = self.complete(provider, &login, &code, exchange, oidc).await;
        orphan.exchange = None;
        match outcome {
            Ok(session_cookie) => Reply::Redirect {
                location: format!("{}{}", provider.config.public_origin, safe_return_path(&login.ret)),
                set_cookies: vec![session_cookie, clear],
            },
            Err(deny) => fail(deny),
        }
    }

    /// Marks a state used; `true` for exactly one caller per state (within
    /// `login_timeout`, on this replica). A check followed by an insert
    /// would let two parallel callbacks both pass, and so would moka's
    /// `or_insert`; `or_insert_with` coalesces concurrent calls on one key
    /// and reports `is_fresh` to only one of them.
    pub(super) fn spend_state(&self, state: &str) -> bool {
        let used = self.hash(b"state", state.as_bytes());
        self.used_states.entry(used).or_insert_with(|| ()).is_fresh()
    }

    /// Code → tokens → identity → sealed session (`Set-Cookie` value).
    async fn complete(
        &self,
        provider: &Arc<LoginProvider>,
        login: &LoginState,
        code: &str,
        exchange: Exchange,
        oidc: &OidcVerifier,
    ) -> Result<String, Deny> {
        let c = &provider.config;
        // In its own task: a code is single use, so an exchange cut off
        // halfway would leave the login unfinishable (see `Orphan`).
        let task = tokio::spawn(exchange_code(
            exchange,
            provider.clone(),
            code.to_string(),
            login.v.clone(),
        ));
        // The task only ends early if the runtime is shutting down.
        let tokens = task.await.unwrap_or(Err(Deny::LoginFailed))?;
        // The tokens are judged as of their arrival (see `Sessions::clock`).
        let at = self.clock.now();
        let now = unix(at);
        let end = self.max_age_end(now);
        let token_exp = tokens.expires_in.map(|s| now.saturating_add(s));
        let (identity, exp) = match &c.kind {
            LoginKind::Oidc { issuer } => {
                let id_token = tokens.id_token.as_deref().ok_or(Deny::LoginFailed)?;
                let id = oidc
                    .verify_id_token(id_token, issuer, &c.client_id, Some(&login.nonce), at)
                    .await?;
                let exp = unix(id.expires_at).min(token_exp.unwrap_or(u64::MAX));
                (id, exp)
            }
            LoginKind::OAuth2 {
                userinfo_url,
                user_claim,
                email_claim,
                groups_claim,
                groups,
            } => {
                let access = tokens.access_token.as_deref().ok_or(Deny::LoginFailed)?;
                let claims = provider.userinfo(userinfo_url, access).await.map_err(|e| {
                    tracing::warn!(event = "userinfo_failed", login = %c.name, error = %e);
                    Deny::LoginFailed
                })?;
                let mapped = userinfo_identity(
                    &c.name,
                    &claims,
                    user_claim,
                    email_claim,
                    groups_claim.as_deref(),
                    groups,
                    at,
                )?;
                if mapped.groups_dropped > 0 {
                    self.metrics.groups_dropped(&c.name, mapped.groups_dropped);
                    tracing::info!(event = "groups_dropped", provider = %c.name, user = %mapped.identity.user, dropped = mapped.groups_dropped);
                }
                (mapped.identity, token_exp.unwrap_or(end))
            }
        };
        let mut data = SessionData::from_identity(&c.name, &identity, now, exp, end);
        if self.refresh_before.is_some() {
            data.rt = tokens.refresh_token;
        }
        data.idt = tokens.id_token;
        tracing::info!(event = "login", login = %c.name, user = %data.user);
        self.seal_session(&mut data, now)
    }
}

/// The token endpoint's answer to one callback's code, shared by that
/// callback and (if it was cut off) its one retry.
pub(super) type Exchange = Arc<OnceCell<Result<Tokens, Deny>>>;

/// Hands a callback's exchange over to a retry if the Check is dropped
/// before it answered: Envoy resets the stream after its ext_authz timeout
/// and tonic drops the Check's future, while the spawned exchange finishes
/// and spends the code. Without this the browser could only start over.
struct Orphan<'a> {
    orphaned: &'a Cache<u128, Exchange>,
    key: u128,
    /// `None` once the callback has answered.
    exchange: Option<Exchange>,
}

impl Drop for Orphan<'_> {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            self.orphaned.insert(self.key, exchange);
        }
    }
}

/// The code exchanged at most once per [`Exchange`]; a resumed callback
/// finds the answer (or waits for it) instead of spending the code again.
async fn exchange_code(
    exchange: Exchange,
    provider: Arc<LoginProvider>,
    code: String,
    verifier: String,
) -> Result<Tokens, Deny> {
    exchange
        .get_or_init(|| async {
            provider.exchange_code(&code, &verifier).await.map_err(|e| {
                tracing::warn!(event = "code_exchange_failed", login = %provider.config.name, error = %e);
                Deny::LoginFailed
            })
        })
        .await
        .clone()
}

/// The identity in a plain OAuth2 provider's userinfo document (GitHub:
/// `login`, numeric `id`, `email` possibly null).
pub(super) fn userinfo_identity(
    login: &str,
    claims: &Map<String, Value>,
    user_claim: &str,
    email_claim: &str,
    groups_claim: Option<&str>,
    filter: &GroupFilter,
    now: SystemTime,
) -> Result<Mapped, Deny> {
    let text = |v: Option<&Value>| -> Result<Option<String>, Deny> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_header_safe(s) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Deny::InvalidClaims),
        }
    };
    // The same rules as an OIDC user token (claims.rs): an unverified email
    // is not injected and cannot name the user, user and email values are
    // refused with surrounding spaces or a `,`, no `client:` groups.
    let verified = email_verified(claims)?;
    if !verified && names_email(user_claim, email_claim) {
        return Err(Deny::EmailUnverified);
    }
    let user = text(claims.get(user_claim))?.ok_or(Deny::MissingUserClaim)?;
    identity_value(&user)?;
    let sub = text(claims.get("sub"))?
        .or(text(claims.get("id"))?)
        .unwrap_or_else(|| user.clone());
    let email = match claims.get(email_claim) {
        Some(Value::String(s)) => Some(identity_value(s)?.to_string()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Deny::InvalidClaims),
    }
    .filter(|_| verified);
    let mut groups = match groups_claim {
        Some(g) => groups(claims.get(g))?.unwrap_or_default(),
        None => Vec::new(),
    };
    drop_client_groups(&mut groups);
    // Filtered before it is sealed into the cookie, as an ID token's are.
    let selected = filter.select(groups, None)?;
    // Valid as long as the session; `exp` of the session bounds it.
    let far = now + std::time::Duration::from_secs(400 * 86_400);
    Ok(Mapped {
        identity: Identity::new(Source::Session, Arc::from(login), &sub, &user, far)
            .with_email(email.as_deref())
            .with_groups(&selected.groups),
        groups_dropped: selected.dropped,
    })
}

fn params(raw_path: &str) -> Params {
    let query = raw_path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let query = query.split('#').next().unwrap_or_default();
    let mut p = Params::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*k {
            "code" => &mut p.code,
            "state" => &mut p.state,
            "error" => &mut p.error,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `userinfo_identity` with the email claim `email`, no group filter, now.
    fn userinfo(
        login: &str,
        claims: &Map<String, Value>,
        user_claim: &str,
        groups_claim: Option<&str>,
    ) -> Result<Mapped, Deny> {
        let filter = GroupFilter::default();
        userinfo_identity(
            login,
            claims,
            user_claim,
            "email",
            groups_claim,
            &filter,
            crate::clock::system_now(),
        )
    }

    #[test]
    fn github_userinfo_maps_login_numeric_id_and_null_email() {
        let claims = json!({"login": "octocat", "id": 583231, "email": null, "name": "The Octocat"});
        let id = userinfo("github", claims.as_object().unwrap(), "login", None)
            .unwrap()
            .identity;
        assert_eq!(
            (&*id.user, &*id.subject, id.email.as_deref()),
            ("octocat", "583231", None)
        );
        assert_eq!(&*id.issuer, "github");
        let bad = json!({"login": "a\r\nx-user-id: root"});
        assert_eq!(
            userinfo("github", bad.as_object().unwrap(), "login", None).err(),
            Some(Deny::InvalidClaims)
        );
        let none = json!({"id": 1});
        assert_eq!(
            userinfo("github", none.as_object().unwrap(), "login", None).err(),
            Some(Deny::MissingUserClaim)
        );
    }

    #[test]
    fn userinfo_follows_the_oidc_claim_rules() {
        let map = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let c = map(json!({"login": "octo", "email": "o@x.io", "groups": ["client:ci", "dev"]}));
        let id = userinfo("gh", &c, "login", Some("groups")).unwrap().identity;
        assert_eq!(
            id.groups().collect::<Vec<_>>(),
            vec!["dev"],
            "client: groups are ours to give"
        );
        // The provider's filter runs before the groups reach the cookie.
        let c = map(json!({"login": "octo", "groups": ["dev", "ops", "team-a"]}));
        let filter = GroupFilter {
            prefixes: vec!["team-".into()],
            exact: vec!["ops".into()],
            ..GroupFilter::default()
        };
        let now = crate::clock::system_now();
        let id = userinfo_identity("gh", &c, "login", "email", Some("groups"), &filter, now).unwrap();
        assert_eq!(id.identity.groups_header(), "ops,team-a");
        let tight = GroupFilter { max_bytes: 5, ..filter };
        assert_eq!(
            userinfo_identity("gh", &c, "login", "email", Some("groups"), &tight, now).err(),
            Some(Deny::GroupsOverBudget)
        );
        let c = map(json!({"login": "octo", "email": "o@x.io", "email_verified": false}));
        let id = userinfo("gh", &c, "login", None).unwrap().identity;
        assert_eq!((&*id.user, id.email.as_deref()), ("octo", None));
        assert_eq!(userinfo("gh", &c, "email", None).err(), Some(Deny::EmailUnverified));
        for bad in [
            json!({"login": "octo ", "email": "o@x.io"}),
            json!({"login": "octo,admin"}),
            json!({"login": "octo", "email": " o@x.io"}),
            json!({"login": "octo", "email": "o@x.io,p@x.io"}),
        ] {
            assert_eq!(
                userinfo("gh", &map(bad.clone()), "login", None).err(),
                Some(Deny::InvalidClaims),
                "{bad}"
            );
        }
    }

    #[test]
    fn callback_params_take_the_first_occurrence() {
        let p = params("/cb?code=a%2Bb&state=s1&state=s2&x=1");
        assert_eq!(
            (p.code.as_deref(), p.state.as_deref(), p.error),
            (Some("a+b"), Some("s1"), None)
        );
    }
}
