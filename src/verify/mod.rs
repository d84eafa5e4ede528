//! Verifiers, one module per credential kind. Each turns a credential into
//! what it proves — an [`Identity`](crate::identity::Identity) (OIDC) or a
//! [`Grant`](warrant::Grant) (Tenuo warrant) — or a [`Deny`](crate::deny::Deny).

pub mod apikey;
pub mod credential;
pub mod oidc;
pub mod warrant;
