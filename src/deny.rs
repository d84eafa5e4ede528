//! Why a request is not allowed. One enum, one stable reason string per
//! variant, and one table (`status`) that gives each its HTTP status: the
//! response builder is the only place that turns a `Deny` into a response.

/// HTTP status class of a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: the request itself is malformed (e.g. an ambiguous path).
    BadRequest,
    /// 401: no credential, or one that does not prove anything.
    Unauthenticated,
    /// 403: a valid credential that this route does not admit.
    Forbidden,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Unauthenticated => 401,
            Status::Forbidden => 403,
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
    #[error("the token lacks the required groups claim")]
    MissingGroups,
    #[error("the client is not allowed")]
    ClientNotAllowed,
    #[error("the user is not allowed on this route")]
    UserNotAllowed,
    #[error("no group of the user is allowed on this route")]
    GroupNotAllowed,
    #[error("no rule matches this path")]
    NoMatchingRule,
    #[error("the request path is not acceptable")]
    InvalidPath,
    #[error("the request is not an HTTP request")]
    NotHttp,
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
}

impl Deny {
    /// Stable snake_case reason: in the JSON body, the debug header, logs and
    /// the `reason` metric label (bounded by this enum).
    pub fn reason(&self) -> &'static str {
        match self {
            Deny::MissingCredential => "missing_credential",
            Deny::MultipleCredentials => "multiple_credentials",
            Deny::MalformedToken => "malformed_token",
            Deny::TokenTooLarge => "token_too_large",
            Deny::UnknownIssuer => "unknown_issuer",
            Deny::UnknownKey => "unknown_key",
            Deny::KeysUnavailable => "keys_unavailable",
            Deny::DisallowedAlgorithm => "disallowed_algorithm",
            Deny::InvalidSignature => "invalid_signature",
            Deny::TokenExpired => "token_expired",
            Deny::TokenNotYetValid => "token_not_yet_valid",
            Deny::WrongAudience => "wrong_audience",
            Deny::InvalidClaims => "invalid_claims",
            Deny::MissingUserClaim => "missing_user_claim",
            Deny::MissingGroups => "missing_groups",
            Deny::ClientNotAllowed => "client_not_allowed",
            Deny::UserNotAllowed => "user_not_allowed",
            Deny::GroupNotAllowed => "group_not_allowed",
            Deny::NoMatchingRule => "no_matching_rule",
            Deny::InvalidPath => "invalid_path",
            Deny::NotHttp => "not_http",
            Deny::SessionInvalid => "session_invalid",
            Deny::SessionExpired => "session_expired",
            Deny::RefreshFailed => "refresh_failed",
            Deny::SessionTooLarge => "session_too_large",
            Deny::LoginStateMissing => "login_state_missing",
            Deny::LoginStateInvalid => "login_state_invalid",
            Deny::LoginStateReplayed => "login_state_replayed",
            Deny::NonceMismatch => "nonce_mismatch",
            Deny::LoginFailed => "login_failed",
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Deny::InvalidPath | Deny::NotHttp => Status::BadRequest,
            Deny::MissingCredential
            | Deny::MultipleCredentials
            | Deny::MalformedToken
            | Deny::TokenTooLarge
            | Deny::UnknownIssuer
            | Deny::UnknownKey
            | Deny::KeysUnavailable
            | Deny::DisallowedAlgorithm
            | Deny::InvalidSignature
            | Deny::TokenExpired
            | Deny::TokenNotYetValid
            | Deny::WrongAudience
            | Deny::InvalidClaims
            | Deny::MissingUserClaim
            | Deny::ClientNotAllowed
            | Deny::SessionInvalid
            | Deny::SessionExpired
            | Deny::RefreshFailed
            | Deny::SessionTooLarge
            | Deny::LoginStateMissing
            | Deny::LoginStateInvalid
            | Deny::LoginStateReplayed
            | Deny::NonceMismatch
            | Deny::LoginFailed => Status::Unauthenticated,
            Deny::MissingGroups | Deny::UserNotAllowed | Deny::GroupNotAllowed | Deny::NoMatchingRule => {
                Status::Forbidden
            }
        }
    }

    /// Whether the same credential bytes always produce this denial, so a
    /// short negative cache entry is safe. Anything a JWKS refetch could
    /// change (an unknown or unavailable key) is never cached.
    pub fn is_stable(&self) -> bool {
        !matches!(self, Deny::UnknownKey | Deny::KeysUnavailable | Deny::TokenNotYetValid) && !self.is_session()
    }

    /// Denials of the browser-session path (cookie, login, refresh); never
    /// put in the decision cache, which holds bearer-token decisions.
    pub fn is_session(&self) -> bool {
        matches!(
            self,
            Deny::SessionInvalid
                | Deny::SessionExpired
                | Deny::RefreshFailed
                | Deny::SessionTooLarge
                | Deny::LoginStateMissing
                | Deny::LoginStateInvalid
                | Deny::LoginStateReplayed
                | Deny::NonceMismatch
                | Deny::LoginFailed
        )
    }
}
