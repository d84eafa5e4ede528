//! The verified identity a credential proves, whatever its kind.

use std::sync::Arc;
use std::time::SystemTime;

/// Which verifier produced an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An OIDC bearer JWT of a user.
    OidcUser,
    /// An OIDC client-credentials (machine) token.
    OidcClient,
    /// A browser session cookie (after an OIDC or OAuth2 login).
    Session,
    /// A machine client's API key (`api_keys:`); the subject is the key id.
    ApiKey,
}

/// Strings are boxed and the issuer shared, and groups are kept as the
/// header value itself: 100k of these sit in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub source: Source,
    pub issuer: Arc<str>,
    /// The configured provider that vouches for this identity (its `name`;
    /// for a session, its login's name). Rules accept identities by
    /// provider, so equal user names from two providers never meet.
    pub provider: Arc<str>,
    pub subject: Box<str>,
    /// The value injected as the user header (from `user_claim`).
    pub user: Box<str>,
    pub email: Option<Box<str>>,
    /// Group names joined with `,`; verifiers reject names containing `,`,
    /// so the list cannot be forged by a crafted group name.
    groups: Box<str>,
    /// The credential's own expiry; a cached identity never outlives it.
    pub expires_at: SystemTime,
}

impl Identity {
    pub fn new(source: Source, issuer: Arc<str>, subject: &str, user: &str, expires_at: SystemTime) -> Self {
        Self {
            source,
            provider: issuer.clone(),
            issuer,
            subject: subject.into(),
            user: user.into(),
            email: None,
            groups: "".into(),
            expires_at,
        }
    }

    pub fn with_provider(mut self, provider: Arc<str>) -> Self {
        self.provider = provider;
        self
    }

    pub fn with_email(mut self, email: Option<&str>) -> Self {
        self.email = email.map(Into::into);
        self
    }

    /// Names must not contain `,` (checked by the verifier).
    pub fn with_groups<S: AsRef<str>>(mut self, groups: &[S]) -> Self {
        self.groups = groups.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",").into();
        self
    }

    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.split(',').filter(|g| !g.is_empty())
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups().any(|g| g == group)
    }

    /// Groups as one header value (empty when there are none).
    pub fn groups_header(&self) -> &str {
        &self.groups
    }

    #[cfg(test)]
    pub fn test(user: &str) -> Self {
        let expires_at = crate::clock::system_now() + std::time::Duration::from_secs(3600);
        Self::new(Source::OidcUser, "https://issuer.test".into(), user, user, expires_at)
    }
}
