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
            Deny::EmailUnverified => "email_unverified",
            Deny::MissingGroups => "missing_groups",
            Deny::ClientNotAllowed => "client_not_allowed",
            Deny::UserNotAllowed => "user_not_allowed",
            Deny::GroupNotAllowed => "group_not_allowed",
            Deny::NoMatchingRule => "no_matching_rule",
            Deny::InvalidPath => "invalid_path",
            Deny::NotHttp => "not_http",
            Deny::MissingWarrant => "missing_warrant",
            Deny::InvalidWarrant => "invalid_warrant",
            Deny::NoRoute => "no_route",
            Deny::ExtractionFailed => "extraction_failed",
            Deny::InvalidApprovals => "invalid_approvals",
            Deny::ToolNotInWarrant => "tool_not_in_warrant",
            Deny::ConstraintViolation => "constraint_violation",
            Deny::WarrantExpired => "warrant_expired",
            Deny::MissingPop => "missing_pop",
            Deny::InvalidPop => "invalid_pop",
            Deny::ChainInvalid => "chain_invalid",
            Deny::UntrustedRoot => "untrusted_root",
            Deny::WarrantRevoked => "warrant_revoked",
            Deny::ApprovalRequired => "approval_required",
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
            Deny::InvalidPath
            | Deny::NotHttp
            | Deny::InvalidWarrant
            | Deny::ExtractionFailed
            | Deny::InvalidApprovals => Status::BadRequest,
            Deny::NoRoute => Status::NotFound,
            Deny::MissingWarrant
            | Deny::MissingCredential
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
            | Deny::EmailUnverified
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
            // A warrant that decodes but does not authorize is a 403, as in tenuo-authorizer.
            Deny::MissingGroups
            | Deny::UserNotAllowed
            | Deny::GroupNotAllowed
            | Deny::NoMatchingRule
            | Deny::ToolNotInWarrant
            | Deny::ConstraintViolation
            | Deny::WarrantExpired
            | Deny::MissingPop
            | Deny::InvalidPop
            | Deny::ChainInvalid
            | Deny::UntrustedRoot
            | Deny::WarrantRevoked
            | Deny::ApprovalRequired => Status::Forbidden,
        }
    }

    /// Whether the same credential bytes always produce this denial, so a
    /// short negative cache entry is safe. Anything a JWKS refetch could
    /// change (an unknown or unavailable key) is never cached.
    pub fn is_stable(&self) -> bool {
        !matches!(self, Deny::UnknownKey | Deny::KeysUnavailable | Deny::TokenNotYetValid)
            && !self.is_warrant()
            && !self.is_session()
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

    /// Denials decided by the warrant verifier, which caches on its own.
    pub fn is_warrant(&self) -> bool {
        matches!(
            self,
            Deny::MissingWarrant
                | Deny::InvalidWarrant
                | Deny::NoRoute
                | Deny::ExtractionFailed
                | Deny::InvalidApprovals
                | Deny::ToolNotInWarrant
                | Deny::ConstraintViolation
                | Deny::WarrantExpired
                | Deny::MissingPop
                | Deny::InvalidPop
                | Deny::ChainInvalid
                | Deny::UntrustedRoot
                | Deny::WarrantRevoked
                | Deny::ApprovalRequired
        )
    }
}
