//! The verified identity a credential proves, whatever its kind.

use std::time::SystemTime;

/// Which verifier produced an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An OIDC bearer JWT of a user.
    OidcUser,
    /// An OIDC client-credentials (machine) token.
    OidcClient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub source: Source,
    pub issuer: String,
    pub subject: String,
    /// The value injected as the user header (from `user_claim`).
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The credential's own expiry; a cached identity never outlives it.
    pub expires_at: SystemTime,
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Groups as one header value. Verifiers reject group names containing
    /// `,` so the list cannot be forged by a crafted group name.
    pub fn groups_header(&self) -> String {
        self.groups.join(",")
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires_at
    }

    #[cfg(test)]
    pub fn test(user: &str) -> Self {
        Self {
            source: Source::OidcUser,
            issuer: "https://issuer.test".into(),
            subject: user.into(),
            user: user.into(),
            email: None,
            groups: Vec::new(),
            expires_at: SystemTime::now() + std::time::Duration::from_secs(3600),
        }
    }
}
