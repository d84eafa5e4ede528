//! Verifiers, one module per credential kind. Each turns a credential into
//! an [`Identity`](crate::identity::Identity) or a [`Deny`](crate::deny::Deny).

pub mod credential;
pub mod oidc;
