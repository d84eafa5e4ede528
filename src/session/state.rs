//! What the sealed cookies hold. Short field names: every byte is in every
//! request's `cookie` header.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::from_unix;
use crate::identity::{Identity, Source};
use crate::redact::{redacted, REDACTED};

/// The session cookie: the identity claims the headers and rules need,
/// when it ends, and what refresh and logout need. `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    /// Login name (`login.name`) of the provider.
    pub p: String,
    /// Issuer for OIDC logins, the login name for plain OAuth2.
    pub iss: String,
    pub sub: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Group names joined with `,` (names never contain one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub groups: String,
    /// Unix seconds: login time.
    pub iat: u64,
    /// Unix seconds: the tokens' expiry; refresh is due before it.
    pub exp: u64,
    /// Unix seconds: absolute end (`iat + max_age`), refresh or not.
    pub end: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
    /// ID token, kept as the `id_token_hint` of logout when it fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idt: Option<String>,
}

/// The login-state cookie, alive for one login (`login_timeout_seconds`).
/// `Debug` hides the state, nonce and PKCE verifier.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// Login name of the provider.
    pub p: String,
    pub state: String,
    pub nonce: String,
    /// PKCE code verifier.
    pub v: String,
    /// Same-origin path (with query) to return to.
    pub ret: String,
    /// Unix seconds.
    pub exp: u64,
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionData")
            .field("p", &self.p)
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("user", &self.user)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("end", &self.end)
            .field("rt", &redacted(self.rt.as_deref()))
            .field("idt", &redacted(self.idt.as_deref()))
            .finish()
    }
}

impl fmt::Debug for LoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginState")
            .field("p", &self.p)
            .field("state", &REDACTED)
            .field("nonce", &REDACTED)
            .field("v", &REDACTED)
            .field("ret", &self.ret)
            .field("exp", &self.exp)
            .finish()
    }
}

impl SessionData {
    /// The identity this session proves until `min(exp, end)`.
    pub fn identity(&self) -> Identity {
        let groups: Vec<&str> = self.groups.split(',').filter(|g| !g.is_empty()).collect();
        Identity::new(
            Source::Session,
            Arc::from(self.iss.as_str()),
            &self.sub,
            &self.user,
            from_unix(self.exp.min(self.end)),
        )
        .with_provider(Arc::from(self.p.as_str()))
        .with_email(self.email.as_deref())
        .with_groups(&groups)
    }

    pub fn from_identity(login: &str, id: &Identity, now: u64, exp: u64, end: u64) -> Self {
        Self {
            p: login.to_string(),
            iss: id.issuer.to_string(),
            sub: id.subject.to_string(),
            user: id.user.to_string(),
            email: id.email.as_deref().map(str::to_string),
            groups: id.groups_header().to_string(),
            iat: now,
            exp: exp.min(end),
            end,
            rt: None,
            idt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_tokens_or_login_secrets() {
        let d = SessionData {
            p: "dex".into(),
            iss: "https://dex.test".into(),
            sub: "s".into(),
            user: "alice".into(),
            email: None,
            groups: String::new(),
            iat: 1,
            exp: 2,
            end: 3,
            rt: Some("REFRESH-SECRET".into()),
            idt: Some("ID-SECRET".into()),
        };
        let shown = format!("{d:?}");
        assert!(shown.contains("alice") && shown.contains("rt: <redacted>"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let none = SessionData {
            rt: None,
            idt: None,
            ..d
        };
        assert!(format!("{none:?}").contains("rt: None"));
        let l = LoginState {
            p: "dex".into(),
            state: "STATE-SECRET".into(),
            nonce: "NONCE-SECRET".into(),
            v: "VERIFIER-SECRET".into(),
            ret: "/app".into(),
            exp: 9,
        };
        let shown = format!("{l:?}");
        assert!(shown.contains("/app") && !shown.contains("SECRET"), "{shown}");
    }
}
