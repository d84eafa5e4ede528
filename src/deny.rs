//! Why a request is not allowed. One enum, and one exhaustive table
//! ([`Deny::class`]) that gives each variant its stable reason string, its
//! HTTP status, the verifier family it comes from, and whether the decision
//! cache may remember it. A new variant does not compile until it has chosen
//! all four. The response builder is the only place that turns a `Deny`
//! into a response.
//!
//! The names around it: [`Deny`] is only ever a reason. `check::Refusal` is a
//! request being refused (reason, who, cookies); `verify::warrant::WarrantDenial`
//! is a warrant's reason with Tenuo's details; `response::WarrantDenialBody` is
//! that, shaped as tenuo-authorizer's body; `session::Reply::Refuse` is a
//! login, callback or logout answered with a reason.

/// HTTP status class of a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: the request itself is malformed (e.g. an ambiguous path).
    BadRequest,
    /// 401: no credential, or one that does not prove anything.
    Unauthenticated,
    /// 403: a valid credential that this route does not admit.
    Forbidden,
    /// 404: no Tenuo gateway route maps the request to a tool (tenuo-authorizer's answer).
    NotFound,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Unauthenticated => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    #[error("no credential")]
    MissingCredential,
    #[error("the request carries more than one credential")]
    MultipleCredentials,
    #[error("the token is not a well-formed JWT")]
    MalformedToken,
    #[error("the token is larger than allowed")]
    TokenTooLarge,
    #[error("the token issuer is not configured")]
    UnknownIssuer,
    #[error("no published key matches the token")]
    UnknownKey,
    #[error("the signing keys of the issuer are not available")]
    KeysUnavailable,
    #[error("the token algorithm is not allowed for its key")]
    DisallowedAlgorithm,
    #[error("the token signature is invalid")]
    InvalidSignature,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token is not yet valid")]
    TokenNotYetValid,
    #[error("the token audience is not accepted")]
    WrongAudience,
    #[error("the token claims are malformed")]
    InvalidClaims,
    #[error("the token lacks the user claim")]
    MissingUserClaim,
    #[error("the user claim is an email the provider has not verified")]
    EmailUnverified,
    #[error("the token lacks the required groups claim")]
    MissingGroups,
    #[error("the client is not allowed")]
    ClientNotAllowed,
    #[error("the groups to inject exceed the provider's groups.max_bytes")]
    GroupsOverBudget,
    #[error("the user is not allowed on this route")]
    UserNotAllowed,
    #[error("no group of the user is allowed on this route")]
    GroupNotAllowed,
    #[error("no rule matches this path")]
    NoMatchingRule,
    #[error("the route names a policy that is not configured")]
    UnknownPolicy,
    #[error("the request path is not acceptable")]
    InvalidPath,
    #[error("the request is not an HTTP request")]
    NotHttp,
    #[error("the request has too many headers")]
    TooManyHeaders,
    #[error("the credential's provider is not accepted on this route")]
    ProviderNotAllowed,
    #[error("a state-changing request authenticated by the session cookie did not come from our origin")]
    CrossOriginRequest,
    // Workload identity: the peer certificate's principal Envoy reports.
    #[error("the route requires a workload principal and the connection has none")]
    MissingPrincipal,
    #[error("the workload principal is not allowed on this route")]
    PrincipalNotAllowed,
    // Tenuo warrants. Reasons follow Tenuo's Kubernetes guide where it names one.
    #[error("no warrant")]
    MissingWarrant,
    #[error("the warrant header cannot be decoded")]
    InvalidWarrant,
    #[error("no gateway route maps this request to a tool")]
    NoRoute,
    #[error("the tool arguments cannot be extracted from the request")]
    ExtractionFailed,
    #[error("the approvals header cannot be decoded")]
    InvalidApprovals,
    #[error("the warrant does not grant this tool")]
    ToolNotInWarrant,
    #[error("an argument is outside the warrant's constraints")]
    ConstraintViolation,
    #[error("the warrant has expired")]
    WarrantExpired,
    #[error("no proof-of-possession signature")]
    MissingPop,
    #[error("the proof-of-possession signature is invalid")]
    InvalidPop,
    #[error("the warrant chain is invalid")]
    ChainInvalid,
    #[error("the warrant chain does not start at a trusted issuer")]
    UntrustedRoot,
    #[error("the warrant has been revoked")]
    WarrantRevoked,
    #[error("the warrant requires approvals that are missing or invalid")]
    ApprovalRequired,
    #[error("the session cookie is invalid")]
    SessionInvalid,
    #[error("the session has expired")]
    SessionExpired,
    #[error("the session could not be refreshed")]
    RefreshFailed,
    #[error("the session is too large for a cookie")]
    SessionTooLarge,
    #[error("no login is in progress for this state")]
    LoginStateMissing,
    #[error("the login state is invalid or has expired")]
    LoginStateInvalid,
    #[error("the login state was already used")]
    LoginStateReplayed,
    #[error("the ID token nonce does not match the login")]
    NonceMismatch,
    #[error("the login at the identity provider failed")]
    LoginFailed,
    // API keys.
    #[error("the API key is not well-formed")]
    InvalidApiKey,
    #[error("no configured API key matches")]
    UnknownApiKey,
    #[error("the API key has expired")]
    ApiKeyExpired,
}

/// Which part of portcullis decides a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The request itself, before any credential (path, headers, shape).
    Request,
    /// A bearer token (OIDC JWT) or the identity it proves.
    Token,
    /// The route rule applied to an identity.
    Rule,
    /// A Tenuo warrant (the warrant verifier caches on its own).
    Warrant,
    /// A browser session: cookie, login, callback, refresh.
    Session,
}

/// Whether a token's denial may be remembered in the negative cache, keyed
/// by the token's bytes (and the key-set generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// The same token bytes always get this answer until the keys change.
    Stable,
    /// The answer can change without the token changing (a JWKS refetch, the
    /// clock, the route), or it is not about a token at all.
    Never,
}

/// Everything that follows from a denial's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub reason: &'static str,
    pub status: Status,
    pub family: Family,
    pub cache: Cache,
}

const fn class(reason: &'static str, status: Status, family: Family, cache: Cache) -> Class {
    Class {
        reason,
        status,
        family,
        cache,
    }
}

impl Deny {
    /// The one table: reason, status, family, cacheability. Exhaustive on
    /// purpose (no `_` arm): a new variant must choose each of them.
    pub fn class(&self) -> Class {
        use Cache::{Never, Stable};
        use Family::{Request, Rule, Session, Token, Warrant};
        use Status::{BadRequest, Forbidden, NotFound, Unauthenticated};
        match self {
            Deny::InvalidPath => class("invalid_path", BadRequest, Request, Never),
            Deny::NotHttp => class("not_http", BadRequest, Request, Never),
            Deny::TooManyHeaders => class("too_many_headers", BadRequest, Request, Never),
            // The token is the whole question: the same bytes, the same answer.
            Deny::MissingCredential => class("missing_credential", Unauthenticated, Token, Never),
            Deny::MultipleCredentials => class("multiple_credentials", Unauthenticated, Token, Never),
            Deny::MalformedToken => class("malformed_token", Unauthenticated, Token, Stable),
            Deny::TokenTooLarge => class("token_too_large", Unauthenticated, Token, Never),
            Deny::UnknownIssuer => class("unknown_issuer", Unauthenticated, Token, Stable),
            // A refetch may bring the key, or the IdP may come back.
            Deny::UnknownKey => class("unknown_key", Unauthenticated, Token, Never),
            Deny::KeysUnavailable => class("keys_unavailable", Unauthenticated, Token, Never),
            Deny::DisallowedAlgorithm => class("disallowed_algorithm", Unauthenticated, Token, Stable),
            Deny::InvalidSignature => class("invalid_signature", Unauthenticated, Token, Stable),
            Deny::TokenExpired => class("token_expired", Unauthenticated, Token, Stable),
            // Becomes valid with time.
            Deny::TokenNotYetValid => class("token_not_yet_valid", Unauthenticated, Token, Never),
            Deny::WrongAudience => class("wrong_audience", Unauthenticated, Token, Stable),
            Deny::InvalidClaims => class("invalid_claims", Unauthenticated, Token, Stable),
            Deny::MissingUserClaim => class("missing_user_claim", Unauthenticated, Token, Stable),
            Deny::EmailUnverified => class("email_unverified", Unauthenticated, Token, Stable),
            Deny::MissingGroups => class("missing_groups", Forbidden, Token, Stable),
            Deny::ClientNotAllowed => class("client_not_allowed", Unauthenticated, Token, Stable),
            // The credential is genuine but unusable here (a new login brings the
            // same groups): 403. The same token bytes always carry the same
            // groups, and the filter only changes with a restart.
            Deny::GroupsOverBudget => class("groups_over_budget", Forbidden, Token, Stable),
            // Rules run on every request, after the cache: never cached.
            Deny::UserNotAllowed => class("user_not_allowed", Forbidden, Rule, Never),
            Deny::GroupNotAllowed => class("group_not_allowed", Forbidden, Rule, Never),
            Deny::NoMatchingRule => class("no_matching_rule", Forbidden, Rule, Never),
            // The proxy's route and our config disagree: refused, not served
            // by the path rules, until one of them is fixed.
            Deny::UnknownPolicy => class("unknown_policy", Forbidden, Rule, Never),
            Deny::ProviderNotAllowed => class("provider_not_allowed", Forbidden, Rule, Never),
            Deny::CrossOriginRequest => class("cross_origin_request", Forbidden, Rule, Never),
            // The principal comes with the connection, not with a token:
            // nothing here is keyed by credential bytes.
            Deny::MissingPrincipal => class("missing_principal", Unauthenticated, Rule, Never),
            Deny::PrincipalNotAllowed => class("principal_not_allowed", Forbidden, Rule, Never),
            // Warrants: tenuo-authorizer's statuses; a warrant that decodes
            // but does not authorize is a 403.
            Deny::MissingWarrant => class("missing_warrant", Unauthenticated, Warrant, Never),
            Deny::InvalidWarrant => class("invalid_warrant", BadRequest, Warrant, Never),
            Deny::NoRoute => class("no_route", NotFound, Warrant, Never),
            Deny::ExtractionFailed => class("extraction_failed", BadRequest, Warrant, Never),
            Deny::InvalidApprovals => class("invalid_approvals", BadRequest, Warrant, Never),
            Deny::ToolNotInWarrant => class("tool_not_in_warrant", Forbidden, Warrant, Never),
            Deny::ConstraintViolation => class("constraint_violation", Forbidden, Warrant, Never),
            Deny::WarrantExpired => class("warrant_expired", Forbidden, Warrant, Never),
            Deny::MissingPop => class("missing_pop", Forbidden, Warrant, Never),
            Deny::InvalidPop => class("invalid_pop", Forbidden, Warrant, Never),
            Deny::ChainInvalid => class("chain_invalid", Forbidden, Warrant, Never),
            Deny::UntrustedRoot => class("untrusted_root", Forbidden, Warrant, Never),
            Deny::WarrantRevoked => class("warrant_revoked", Forbidden, Warrant, Never),
            Deny::ApprovalRequired => class("approval_required", Forbidden, Warrant, Never),
            // Sessions are opened by their own cache, never the decision cache.
            Deny::SessionInvalid => class("session_invalid", Unauthenticated, Session, Never),
            Deny::SessionExpired => class("session_expired", Unauthenticated, Session, Never),
            Deny::RefreshFailed => class("refresh_failed", Unauthenticated, Session, Never),
            Deny::SessionTooLarge => class("session_too_large", Unauthenticated, Session, Never),
            Deny::LoginStateMissing => class("login_state_missing", Unauthenticated, Session, Never),
            Deny::LoginStateInvalid => class("login_state_invalid", Unauthenticated, Session, Never),
            Deny::LoginStateReplayed => class("login_state_replayed", Unauthenticated, Session, Never),
            Deny::NonceMismatch => class("nonce_mismatch", Unauthenticated, Session, Never),
            Deny::LoginFailed => class("login_failed", Unauthenticated, Session, Never),
            // Cached by a keyed hash of the key and the key file's
            // generation: a reload that adds, changes or removes a key
            // changes every cache key, so none of these outlives it.
            Deny::InvalidApiKey => class("invalid_api_key", Unauthenticated, Token, Stable),
            Deny::UnknownApiKey => class("unknown_api_key", Unauthenticated, Token, Stable),
            Deny::ApiKeyExpired => class("api_key_expired", Unauthenticated, Token, Stable),
        }
    }

    /// Stable snake_case reason: in the JSON body, the debug header, logs and
    /// the `reason` metric label (bounded by this enum).
    pub fn reason(&self) -> &'static str {
        self.class().reason
    }

    pub fn status(&self) -> Status {
        self.class().status
    }

    /// Whether the same token bytes always produce this denial, so a short
    /// negative cache entry is safe.
    pub fn is_stable(&self) -> bool {
        self.class().cache == Cache::Stable
    }

    /// Denials of the browser-session path (cookie, login, refresh).
    pub fn is_session(&self) -> bool {
        self.class().family == Family::Session
    }

    /// Denials decided by the warrant verifier.
    pub fn is_warrant(&self) -> bool {
        self.class().family == Family::Warrant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_facts_are_negative_cacheable() {
        // Every Stable denial is about a token's own bytes; nothing that
        // depends on the route, the clock or a key refetch is.
        for d in [
            Deny::UnknownKey,
            Deny::KeysUnavailable,
            Deny::TokenNotYetValid,
            Deny::UserNotAllowed,
            Deny::ProviderNotAllowed,
            Deny::CrossOriginRequest,
            Deny::SessionExpired,
            Deny::InvalidPop,
            Deny::InvalidPath,
            Deny::UnknownPolicy,
        ] {
            assert!(!d.is_stable(), "{d:?}");
        }
        for d in [
            Deny::InvalidSignature,
            Deny::TokenExpired,
            Deny::WrongAudience,
            Deny::MalformedToken,
        ] {
            assert!(d.is_stable(), "{d:?}");
            assert_eq!(d.class().family, Family::Token);
        }
    }
}
