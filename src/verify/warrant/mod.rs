//! Tenuo warrants with proof of possession (`X-Tenuo-Warrant`, `X-Tenuo-PoP`).
//!
//! The decision is Tenuo's own (`tenuo` crate: decoding, chain verification,
//! extraction, constraints, PoP); what this module adds is the caching that
//! makes a repeat cheap without changing that decision:
//!
//! - a verified stack is cached by a keyed hash of the header bytes, so a
//!   repeated warrant costs one Ed25519 verify (the PoP), not one per link
//!   plus the PoP; expiry is re-checked against the clock on every request;
//! - an exact repeat (same stack, PoP, route, arguments) reuses the decision
//!   while the PoP's time window still admits it.
//!
//! Warrants whose leaf carries approval gates or required approvers always go
//! through the crate's full `check_chain` (approvals are per request).

mod args;
pub mod reload;
mod trust;
pub mod wire;

use std::hash::Hasher;
use std::sync::Arc;

use arc_swap::ArcSwap;
use siphasher::sip128::Hasher128;
use tenuo::{ErrorCode, Warrant, WarrantType};

use self::args::Args;
pub use self::trust::{LoadError, Trust};
use crate::deny::Deny;
use crate::request::{RequestView, Single};

/// What an allowed warrant request proves; injected as `x-tenuo-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The leaf warrant's id (`tnu_wrt_…`).
    pub warrant_id: Box<str>,
    pub tool: Arc<str>,
    /// Fingerprint of the leaf holder's key (the key that signed the PoP).
    pub holder: Box<str>,
    /// Hex public key of the root issuer the chain was verified against.
    pub root_issuer: Box<str>,
    /// Unix seconds; the earliest expiry in the chain.
    pub expires_at: i64,
}

/// A denial with what the log line and the tenuo-authorizer-shaped body show.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub deny: Deny,
    pub tool: Option<Arc<str>>,
    pub warrant_id: Option<Box<str>>,
    /// Tenuo's canonical error, for the body of a 403.
    pub error: Option<ErrorCode>,
    pub constraint: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<serde_json::Value>,
    /// Free text after the reason (debug header and log); never the warrant.
    pub detail: String,
}

impl Denial {
    fn new(deny: Deny, detail: impl Into<String>) -> Box<Self> {
        Box::new(Self {
            deny,
            tool: None,
            warrant_id: None,
            error: None,
            constraint: None,
            expected: None,
            actual: None,
            detail: detail.into(),
        })
    }

    fn from_tenuo(deny: Deny, e: &tenuo::Error) -> Box<Self> {
        let mut d = Self::new(deny, e.to_string());
        d.error = Some(e.code());
        d
    }

    /// A warrant header that is absent where one is required.
    pub fn missing() -> Self {
        *Self::new(Deny::MissingWarrant, "")
    }

    /// The same denial, about this request's tool (and leaf warrant, when known).
    fn about(mut self: Box<Self>, tool: &Arc<str>, chain: Option<&Chain>) -> Box<Self> {
        self.tool = Some(tool.clone());
        if let Some(c) = chain {
            self.warrant_id = Some(c.grant_base.warrant_id.clone());
        }
        self
    }

    /// `reason: detail`, the debug header's value (as tenuo-authorizer's).
    pub fn header_value(&self) -> String {
        match (&self.constraint, &self.expected, &self.actual) {
            (Some(c), Some(e), Some(a)) => format!("{}: {c}={a} exceeds {e}", self.deny.reason()),
            _ if self.detail.is_empty() => self.deny.reason().to_string(),
            _ => format!("{}: {}", self.deny.reason(), self.detail),
        }
    }
}

/// A decoded, chain-verified stack (cached).
#[derive(Debug)]
pub(crate) struct Chain {
    warrants: Vec<Warrant>,
    expires_at: i64,
    /// Every `Grant` field but the tool.
    grant_base: Grant,
    /// Approval gates or required approvers: decide with the full `check_chain`.
    gated: bool,
}

/// A cached outcome of one exact request, valid until `until` (unix seconds).
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    Allow(Arc<Grant>, i64),
    Deny(Arc<Denial>, i64),
}

impl Decision {
    fn until(&self) -> i64 {
        match self {
            Decision::Allow(_, t) | Decision::Deny(_, t) => *t,
        }
    }
}

pub struct WarrantVerifier {
    trust: ArcSwap<Trust>,
}

// === impl WarrantVerifier ===

impl WarrantVerifier {
    pub fn new(trust: Trust) -> Self {
        Self {
            trust: ArcSwap::from_pointee(trust),
        }
    }

    pub fn trust(&self) -> Arc<Trust> {
        self.trust.load_full()
    }

    /// Swaps in a new trust set; every cache built on the old one goes with it.
    pub fn replace(&self, trust: Trust) {
        self.trust.store(Arc::new(trust));
    }

    /// Tenuo's debug mode: denials carry `x-tenuo-deny-reason`.
    pub fn debug(&self) -> bool {
        self.trust.load().debug
    }

    /// Credential headers to remove before the upstream, when configured so.
    pub fn credential_headers(&self) -> Vec<String> {
        let trust = self.trust.load();
        if !trust.remove_credentials {
            return Vec::new();
        }
        let n = &trust.names;
        vec![n.warrant.clone(), n.pop.clone(), n.approvals.clone()]
    }

    /// Whether the request carries a warrant header at all.
    pub fn is_presented(&self, view: &RequestView<'_>) -> bool {
        !matches!(view.single(&self.trust.load().names.warrant), Single::Absent)
    }

    /// Route → warrant → (exact-repeat cache) → chain (stack cache) →
    /// expiry → arguments → PoP → constraints.
    pub fn verify(&self, view: &RequestView<'_>, now: i64) -> Result<Arc<Grant>, Arc<Denial>> {
        let trust = self.trust.load();
        let Some(route) = trust.gateway.match_route(view.method, view.path) else {
            return Err(Denial::new(Deny::NoRoute, format!("no route matches {} {}", view.method, view.path)).into());
        };
        let tool = route.route.tool.clone();
        let header = match view.single(&trust.names.warrant) {
            Single::Absent => return Err(Denial::new(Deny::MissingWarrant, "").about(&tool, None).into()),
            Single::Unusable => {
                return Err(Denial::new(Deny::InvalidWarrant, "sent more than once")
                    .about(&tool, None)
                    .into())
            }
            Single::One(h) if h.len() > trust.max_warrant_bytes => {
                return Err(Denial::new(Deny::InvalidWarrant, "larger than max_warrant_bytes")
                    .about(&tool, None)
                    .into())
            }
            Single::One(h) => h,
        };
        let pop = view.single(&trust.names.pop);
        let approvals = view.single(&trust.names.approvals);

        let key = exact_key(&trust, header, pop, approvals, view, &route);
        if let Some(hit) = trust.decisions.get(&key).filter(|d| d.until() > now) {
            return match hit {
                Decision::Allow(grant, _) if grant.expires_at > now => Ok(grant),
                Decision::Allow(..) => Err(Denial::new(Deny::WarrantExpired, "").about(&tool, None).into()),
                Decision::Deny(denial, _) => Err(denial),
            };
        }
        let chain = self
            .chain(&trust, header, now)
            .map_err(|d| Arc::from(Box::new((*d).clone()).about(&tool, None)))?;
        let decision = match decide(&trust, &chain, &route, &tool, view, pop, approvals, now) {
            Ok((grant, until)) => Decision::Allow(Arc::new(grant), until),
            Err((denial, until)) => Decision::Deny(Arc::from(denial.about(&tool, Some(&chain))), until),
        };
        if decision.until() > now {
            trust.decisions.insert(key, decision.clone());
        }
        match decision {
            Decision::Allow(grant, _) => Ok(grant),
            Decision::Deny(denial, _) => Err(denial),
        }
    }

    /// The verified chain for a header, from the stack cache or decoded and
    /// verified now. Rejections are cached too, so replayed garbage is cheap.
    fn chain(&self, trust: &Trust, header: &str, now: i64) -> Result<Arc<Chain>, Arc<Denial>> {
        let key = {
            let mut h = trust.hasher();
            h.write(header.as_bytes());
            h.finish128().as_u128()
        };
        if let Some(chain) = trust.stacks.get(&key) {
            return Ok(chain);
        }
        if let Some(denial) = trust.rejected.get(&key) {
            return Err(denial);
        }
        match verify_chain(trust, header, now) {
            Ok(chain) => {
                let chain = Arc::new(chain);
                trust.stacks.insert(key, chain.clone());
                Ok(chain)
            }
            Err(denial) => {
                let denial: Arc<Denial> = Arc::from(denial);
                // Not yet valid can become valid; everything else is final for these bytes.
                if denial.error != Some(ErrorCode::IssuedInFuture) {
                    trust.rejected.insert(key, denial.clone());
                }
                Err(denial)
            }
        }
    }
}

fn verify_chain(trust: &Trust, header: &str, now: i64) -> Result<Chain, Box<Denial>> {
    let warrants = wire::warrants(header, trust.max_chain).map_err(|e| match e {
        wire::WireError::TooLong(_) => Denial::new(Deny::ChainInvalid, e.to_string()),
        _ => Denial::new(Deny::InvalidWarrant, e.to_string()),
    })?;
    let (Some(root), Some(leaf)) = (warrants.first(), warrants.last()) else {
        return Err(Denial::new(Deny::InvalidWarrant, "empty warrant stack"));
    };
    let leaf_id = leaf.id().to_string();
    trust.authorizer.verify_chain_as_of(&warrants, now).map_err(|e| {
        let deny = match e.code() {
            ErrorCode::UntrustedRoot => Deny::UntrustedRoot,
            ErrorCode::WarrantRevoked => Deny::WarrantRevoked,
            ErrorCode::WarrantExpired => Deny::WarrantExpired,
            _ => Deny::ChainInvalid,
        };
        let mut d = Denial::from_tenuo(deny, &e);
        d.warrant_id = Some(leaf_id.clone().into());
        d
    })?;
    let expires_at = warrants.iter().map(|w| w.expires_at().timestamp()).min().unwrap_or(0);
    let gated = leaf.extension(tenuo::APPROVAL_GATE_EXTENSION_KEY).is_some()
        || leaf.required_approvers().is_some_and(|a| !a.is_empty());
    let grant_base = Grant {
        warrant_id: leaf_id.into(),
        tool: Arc::from(""),
        holder: leaf.authorized_holder().fingerprint().into(),
        root_issuer: hex::encode(root.issuer().to_bytes()).into(),
        expires_at,
    };
    Ok(Chain {
        warrants,
        expires_at,
        grant_base,
        gated,
    })
}

type Outcome = Result<(Grant, i64), (Box<Denial>, i64)>;

/// Per-request checks on a verified chain, in the crate's order. Returns how
/// long the outcome holds for an exact repeat.
#[allow(clippy::too_many_arguments)]
fn decide(
    trust: &Trust,
    chain: &Chain,
    route: &tenuo::RouteMatch<'_>,
    tool: &Arc<str>,
    view: &RequestView<'_>,
    pop: Single<'_>,
    approvals: Single<'_>,
    now: i64,
) -> Outcome {
    let (window, windows) = trust.authorizer.pop_window_config();
    // A denial that depends on the clock holds until the current window ends.
    let window_end = (now.div_euclid(window) + 1) * window;
    let deny = |d: Box<Denial>| Err((d, window_end));
    if let Some(w) = chain.warrants.iter().find(|w| w.is_expired_as_of(now)) {
        let mut d = Denial::new(Deny::WarrantExpired, format!("{} at {}", w.id(), w.expires_at()));
        d.error = Some(ErrorCode::WarrantExpired);
        return Err((d, i64::MAX));
    }
    let args = match args::extract(&trust.gateway, route, view) {
        Ok(a) => a,
        Err(e) => return deny(Denial::new(Deny::ExtractionFailed, e.to_string())),
    };
    let signature = match pop {
        Single::Absent => None,
        Single::One(text) => match wire::pop(text) {
            Some(sig) => Some(sig),
            None => {
                let mut d = Denial::new(Deny::InvalidPop, "not a 64-byte signature in base64 or hex");
                d.error = Some(ErrorCode::SignatureInvalid);
                return deny(d);
            }
        },
        Single::Unusable => return deny(Denial::new(Deny::InvalidPop, "sent more than once")),
    };
    let approvals = match approvals {
        Single::Absent => Vec::new(),
        Single::One(text) => match wire::approvals(text) {
            Some(a) => a,
            None => return deny(Denial::new(Deny::InvalidApprovals, "not base64 CBOR approvals")),
        },
        Single::Unusable => return deny(Denial::new(Deny::InvalidApprovals, "sent more than once")),
    };
    let grant = || Grant {
        tool: tool.clone(),
        ..chain.grant_base.clone()
    };
    if chain.gated || !approvals.is_empty() {
        // Approvals are checked per request by the crate; never cached.
        return match trust.authorizer.check_chain_with_pop_args_as_of(
            &chain.warrants,
            tool,
            &args,
            &args,
            signature.as_ref(),
            &approvals,
            now,
        ) {
            Ok(_) => Ok((grant(), now)),
            Err(e) => Err((leaf_denial(&e, &args), now)),
        };
    }
    let Some(leaf) = chain.warrants.last() else {
        return deny(Denial::new(Deny::InvalidWarrant, "empty warrant stack"));
    };
    if leaf.r#type() != WarrantType::Execution {
        return deny(Denial::new(
            Deny::ChainInvalid,
            "only execution warrants authorize actions",
        ));
    }
    let granted = leaf
        .capabilities()
        .is_some_and(|t| t.contains_key(&**tool) || t.contains_key("*"));
    if !granted {
        let mut d = Denial::new(Deny::ToolNotInWarrant, format!("tool {tool:?} is not in the warrant"));
        d.error = Some(ErrorCode::ToolNotAuthorized);
        return deny(d);
    }
    let Some(signature) = signature else {
        // The crate reports a missing PoP as a signature error too (its 403 body says so).
        let mut d = Denial::new(Deny::MissingPop, "Proof-of-Possession required");
        d.error = Some(ErrorCode::SignatureInvalid);
        return deny(d);
    };
    let Some(signed_at) = pop_window(leaf, tool, &args, &signature, now, window, windows) else {
        let mut d = Denial::new(Deny::InvalidPop, "Proof-of-Possession verification failed");
        d.error = Some(ErrorCode::SignatureInvalid);
        return deny(d);
    };
    if let Err(e) = leaf.check_constraints(tool, &args) {
        return deny(leaf_denial(&e, &args));
    }
    // The PoP stays acceptable while its window is within `windows / 2` of now.
    let pop_until = signed_at + (i64::from(windows / 2) + 1) * window;
    Ok((grant(), pop_until.min(chain.expires_at)))
}

/// The window whose PoP signature verifies, trying the current one first
/// (so a fresh PoP costs one verify) and at most `windows` in all, in the
/// crate's order: 0, -1, +1, -2, +2.
fn pop_window(
    leaf: &Warrant,
    tool: &str,
    args: &Args,
    signature: &tenuo::Signature,
    now: i64,
    window: i64,
    windows: u32,
) -> Option<i64> {
    let half = i64::from(windows / 2);
    (0..i64::from(windows))
        .map(|i| if i % 2 == 1 { -(i + 1) / 2 } else { i / 2 })
        .filter(|offset| offset.abs() <= half)
        .map(|offset| (now.div_euclid(window) + offset) * window)
        .find(|&at| {
            leaf.verify_pop_as_of(tool, args, Some(signature), window, 1, at)
                .is_ok()
        })
}

/// A leaf-level error from the crate, as a denial with the seed's reason names.
fn leaf_denial(e: &tenuo::Error, args: &Args) -> Box<Denial> {
    let deny = match e {
        tenuo::Error::MissingSignature(_) => Deny::MissingPop,
        tenuo::Error::SignatureInvalid(_) => Deny::InvalidPop,
        _ => match e.code() {
            ErrorCode::ToolNotAuthorized => Deny::ToolNotInWarrant,
            ErrorCode::ConstraintViolation | ErrorCode::UnknownConstraintType => Deny::ConstraintViolation,
            ErrorCode::WarrantExpired => Deny::WarrantExpired,
            ErrorCode::WarrantRevoked => Deny::WarrantRevoked,
            ErrorCode::UntrustedRoot => Deny::UntrustedRoot,
            ErrorCode::ApprovalRequired
            | ErrorCode::InsufficientApprovals
            | ErrorCode::ApprovalInvalid
            | ErrorCode::ApprovalExpired => Deny::ApprovalRequired,
            _ => Deny::ChainInvalid,
        },
    };
    let mut d = Denial::from_tenuo(deny, e);
    if let tenuo::Error::ConstraintNotSatisfied { field, reason } = e {
        d.constraint = Some(field.clone());
        d.expected = Some(reason.clone());
        d.actual = args.get(field).and_then(|v| serde_json::to_value(v).ok());
    }
    d
}

/// Everything an exact repeat must share: the credential headers and every
/// input the route's extraction reads.
fn exact_key(
    trust: &Trust,
    header: &str,
    pop: Single<'_>,
    approvals: Single<'_>,
    view: &RequestView<'_>,
    route: &tenuo::RouteMatch<'_>,
) -> u128 {
    let mut h = trust.hasher();
    let mut field = |bytes: &[u8]| {
        h.write_usize(bytes.len());
        h.write(bytes);
    };
    field(header.as_bytes());
    for single in [pop, approvals] {
        match single {
            Single::Absent => field(b"\0absent"),
            Single::Unusable => field(b"\0unusable"),
            Single::One(v) => field(v.as_bytes()),
        }
    }
    field(view.method.as_bytes());
    field(view.path.as_bytes());
    field(view.raw_path.as_bytes());
    field(route.route.config.pattern.as_bytes());
    let mut reads_body = false;
    for rule in route.route.extraction_rules.rules.values() {
        match (&rule.rule.from, rule.lowercase_key.as_deref()) {
            (tenuo::ExtractionSource::Header, Some(name)) => {
                field(name.as_bytes());
                match view.joined(name) {
                    Some(v) => field(v.as_bytes()),
                    None => field(b"\0absent"),
                }
            }
            (tenuo::ExtractionSource::Body, _) => reads_body = true,
            _ => {}
        }
    }
    if reads_body {
        field(view.body);
        let partial = matches!(view.single("x-envoy-auth-partial-body"), Single::One(_));
        field(if partial { b"partial" } else { b"whole" });
    }
    h.finish128().as_u128()
}
