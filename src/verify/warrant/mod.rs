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
mod json;
pub mod reload;
mod trust;
pub mod wire;

use std::hash::Hasher;
use std::sync::Arc;

use arc_swap::ArcSwap;
use siphasher::sip128::Hasher128;
use tenuo::{ErrorCode, Warrant, WarrantType};

pub use self::args::Args;
pub use self::trust::{check_files, LoadError, Trust};
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

/// What a request asks of a warrant (see [`WarrantVerifier::tool_call`]).
#[derive(Debug)]
pub struct ToolCall {
    /// The gateway route's pattern.
    pub route: String,
    pub tool: Arc<str>,
    /// The arguments the PoP must sign and the constraints judge, or why
    /// they cannot be extracted (an `extraction_failed` denial).
    pub args: Result<Args, String>,
}

/// A warrant's [`Deny`] reason with Tenuo's details (tool, constraint,
/// expected and actual value): what the log line and the
/// tenuo-authorizer-shaped body show.
#[derive(Debug, Clone, PartialEq)]
pub struct WarrantDenial {
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

impl WarrantDenial {
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
    /// Cache weight (bytes, moka's overhead included), fixed when decoded.
    weight: u32,
}

/// An `Arc`'s two counters, in front of the value it shares.
const ARC_BYTES: usize = 2 * std::mem::size_of::<usize>();
/// Heap bytes of decoded warrants per byte of their CBOR, measured with a
/// counting allocator (`cargo run --release --example cache_rss`): 16.6 for a
/// three-tool warrant of 381 bytes, 12.9 for a 2-link stack (the decoded
/// payload keeps its bytes for re-verification, plus maps of constraints).
const DECODED_PER_CBOR_BYTE: usize = 16;

impl Grant {
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.warrant_id.len() + self.holder.len() + self.root_issuer.len()
    }
}

impl WarrantDenial {
    /// Approximate heap bytes (the `actual` JSON value by its text length).
    fn heap_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let actual = self.actual.as_ref().map_or(0, |v| 64 + v.to_string().len());
        std::mem::size_of::<Self>()
            + self.warrant_id.as_ref().map_or(0, |w| w.len())
            + opt(&self.constraint)
            + opt(&self.expected)
            + actual
            + self.detail.len()
    }
}

/// A cached outcome of one exact request, valid until `until` (unix seconds).
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    Allow(Arc<Grant>, i64),
    Deny(Arc<WarrantDenial>, i64),
}

impl Decision {
    fn until(&self) -> i64 {
        match self {
            Decision::Allow(_, t) | Decision::Deny(_, t) => *t,
        }
    }

    /// The entry and what its `Arc` holds (possibly shared, counted anyway).
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + ARC_BYTES
            + match self {
                Decision::Allow(g, _) => g.heap_bytes(),
                Decision::Deny(d, _) => d.heap_bytes(),
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

    /// The request's tool and arguments, read exactly as [`Self::verify`]
    /// reads them (same route, same refusals, same extraction), without
    /// looking at any warrant: `portcullis explain` shows them beside the
    /// decision, so they must not be read any other way.
    pub fn tool_call(&self, view: &RequestView<'_>) -> Result<ToolCall, Box<WarrantDenial>> {
        let trust = self.trust.load();
        let (route, tool) = tool_route(&trust, view)?;
        let args = args::extract(&trust.gateway, &route, view).map_err(|e| e.to_string());
        Ok(ToolCall {
            route: route.route.config.pattern.clone(),
            tool,
            args,
        })
    }

    /// Route → warrant → (exact-repeat cache) → chain (stack cache) →
    /// expiry → arguments → PoP → constraints.
    pub fn verify(&self, view: &RequestView<'_>, now: i64) -> Result<Arc<Grant>, Arc<WarrantDenial>> {
        let trust = self.trust.load();
        let (route, tool) = tool_route(&trust, view).map_err(Arc::from)?;
        let header = match view.single(&trust.names.warrant) {
            Single::Absent => return Err(WarrantDenial::new(Deny::MissingWarrant, "").about(&tool, None).into()),
            Single::Unusable => {
                return Err(WarrantDenial::new(Deny::InvalidWarrant, "sent more than once")
                    .about(&tool, None)
                    .into())
            }
            Single::One(h) if h.len() > trust.max_warrant_bytes => {
                return Err(
                    WarrantDenial::new(Deny::InvalidWarrant, "larger than max_warrant_bytes")
                        .about(&tool, None)
                        .into(),
                )
            }
            Single::One(h) => h,
        };
        let pop = view.single(&trust.names.pop);
        let approvals = view.single(&trust.names.approvals);

        let key = exact_key(&trust, header, pop, approvals, view, &route);
        if let Some(hit) = trust.decisions.get(&key).filter(|d| d.until() > now) {
            return match hit {
                Decision::Allow(grant, _) if grant.expires_at > now => Ok(grant),
                Decision::Allow(..) => Err(WarrantDenial::new(Deny::WarrantExpired, "").about(&tool, None).into()),
                Decision::Deny(denial, _) => Err(denial),
            };
        }
        let chain = self
            .chain(&trust, header, now)
            .map_err(|d| Arc::from(Box::new((*d).clone()).about(&tool, None)))?;
        let attempt = Attempt {
            route: &route,
            tool: &tool,
            view,
            pop,
            approvals,
            now,
        };
        let decision = match decide(&trust, &chain, &attempt) {
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
    fn chain(&self, trust: &Trust, header: &str, now: i64) -> Result<Arc<Chain>, Arc<WarrantDenial>> {
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
                let denial: Arc<WarrantDenial> = Arc::from(denial);
                // Not yet valid can become valid; everything else is final for these bytes.
                if denial.error != Some(ErrorCode::IssuedInFuture) {
                    trust.rejected.insert(key, denial.clone());
                }
                Err(denial)
            }
        }
    }
}

/// The gateway route a request matches and its tool, or why the request is
/// refused before any warrant is read: no route, or a target whose tool or
/// arguments an upstream could read another way.
fn tool_route<'t>(
    trust: &'t Trust,
    view: &RequestView<'_>,
) -> Result<(tenuo::RouteMatch<'t>, Arc<str>), Box<WarrantDenial>> {
    // As tenuo-authorizer: routes match the target as Envoy sent it
    // (`RequestView::path` is exactly that, minus the query), so path
    // parameters are what the client signed (`a%20b` stays `a%20b`).
    let target = view.path;
    let Some(route) = trust.gateway.match_route(view.method, target) else {
        return Err(WarrantDenial::new(
            Deny::NoRoute,
            format!("no route matches {} {target}", view.method),
        ));
    };
    let tool = route.route.tool.clone();
    if let Some(why) = ambiguous_target(target) {
        return Err(WarrantDenial::new(Deny::ExtractionFailed, why).about(&tool, None));
    }
    // A case-insensitive upstream router (Express, IIS) would pick the
    // route whose literal text matches ignoring case: if that is another
    // tool, the warrant would be checked for the wrong one.
    // When neither the routes nor the target have an upper-case letter,
    // the folded match is the match above (same routes, same input).
    let same_when_folded = trust.routes_fold_to_themselves && !target.bytes().any(|b| b.is_ascii_uppercase());
    if !same_when_folded
        && trust
            .folded
            .match_route(view.method, &target.to_ascii_lowercase())
            .map(|r| &*r.route.tool)
            != Some(&*tool)
    {
        return Err(
            WarrantDenial::new(Deny::ExtractionFailed, "the tool depends on the path's letter case").about(&tool, None),
        );
    }
    Ok((route, tool))
}

fn verify_chain(trust: &Trust, header: &str, now: i64) -> Result<Chain, Box<WarrantDenial>> {
    let bytes = wire::base64(header)
        .ok_or_else(|| WarrantDenial::new(Deny::InvalidWarrant, wire::WireError::Base64.to_string()))?;
    // The root's issuer, read without verifying anything: a stack that no
    // trusted key could have started is refused before it costs one
    // signature check (decoding verifies every link's signature).
    if let Some(issuer) = wire::root_issuer(&bytes) {
        if !trust.roots.contains(&issuer) {
            let mut d = WarrantDenial::new(Deny::UntrustedRoot, tenuo::Error::UntrustedRoot.to_string());
            d.error = Some(ErrorCode::UntrustedRoot);
            return Err(d);
        }
    }
    let warrants = wire::warrants(&bytes, trust.max_chain).map_err(|e| match e {
        wire::WireError::TooLong(_) => WarrantDenial::new(Deny::ChainInvalid, e.to_string()),
        _ => WarrantDenial::new(Deny::InvalidWarrant, e.to_string()),
    })?;
    let (Some(root), Some(leaf)) = (warrants.first(), warrants.last()) else {
        return Err(WarrantDenial::new(Deny::InvalidWarrant, "empty warrant stack"));
    };
    let leaf_id = leaf.id().to_string();
    trust.authorizer.verify_chain_as_of(&warrants, now).map_err(|e| {
        let deny = match e.code() {
            ErrorCode::UntrustedRoot => Deny::UntrustedRoot,
            ErrorCode::WarrantRevoked => Deny::WarrantRevoked,
            ErrorCode::WarrantExpired => Deny::WarrantExpired,
            _ => Deny::ChainInvalid,
        };
        let mut d = WarrantDenial::from_tenuo(deny, &e);
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
    let weight = crate::cache::weight(
        ARC_BYTES
            + std::mem::size_of::<Chain>()
            + grant_base.heap_bytes()
            + warrants.len() * std::mem::size_of::<Warrant>()
            + bytes.len() * DECODED_PER_CBOR_BYTE,
    );
    Ok(Chain {
        warrants,
        expires_at,
        grant_base,
        gated,
        weight,
    })
}

type Outcome = Result<(Grant, i64), (Box<WarrantDenial>, i64)>;

/// What one request asks of a verified chain: the matched route and tool,
/// the request (for the tool's arguments), its PoP and approvals headers,
/// and the time it is judged at.
struct Attempt<'a> {
    route: &'a tenuo::RouteMatch<'a>,
    tool: &'a Arc<str>,
    view: &'a RequestView<'a>,
    pop: Single<'a>,
    approvals: Single<'a>,
    now: i64,
}

/// Per-request checks on a verified chain, in the crate's order. Returns how
/// long the outcome holds for an exact repeat.
fn decide(trust: &Trust, chain: &Chain, attempt: &Attempt<'_>) -> Outcome {
    let &Attempt {
        route,
        tool,
        view,
        pop,
        approvals,
        now,
    } = attempt;
    let (window, windows) = trust.authorizer.pop_window_config();
    // A denial that depends on the clock holds until the current window ends.
    let window_end = (now.div_euclid(window) + 1) * window;
    let deny = |d: Box<WarrantDenial>| Err((d, window_end));
    if let Some(w) = chain.warrants.iter().find(|w| w.is_expired_as_of(now)) {
        let mut d = WarrantDenial::new(Deny::WarrantExpired, format!("{} at {}", w.id(), w.expires_at()));
        d.error = Some(ErrorCode::WarrantExpired);
        return Err((d, i64::MAX));
    }
    let args = match args::extract(&trust.gateway, route, view) {
        Ok(a) => a,
        Err(e) => return deny(WarrantDenial::new(Deny::ExtractionFailed, e.to_string())),
    };
    let signature = match pop {
        Single::Absent => None,
        Single::One(text) => match wire::pop(text) {
            Some(sig) => Some(sig),
            None => {
                let mut d = WarrantDenial::new(Deny::InvalidPop, "not a 64-byte signature in base64 or hex");
                d.error = Some(ErrorCode::SignatureInvalid);
                return deny(d);
            }
        },
        Single::Unusable => return deny(WarrantDenial::new(Deny::InvalidPop, "sent more than once")),
    };
    let approvals = match approvals {
        Single::Absent => Vec::new(),
        Single::One(text) => match wire::approvals(text) {
            Some(a) => a,
            None => return deny(WarrantDenial::new(Deny::InvalidApprovals, "not base64 CBOR approvals")),
        },
        Single::Unusable => return deny(WarrantDenial::new(Deny::InvalidApprovals, "sent more than once")),
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
        return deny(WarrantDenial::new(Deny::InvalidWarrant, "empty warrant stack"));
    };
    if leaf.r#type() != WarrantType::Execution {
        return deny(WarrantDenial::new(
            Deny::ChainInvalid,
            "only execution warrants authorize actions",
        ));
    }
    let granted = leaf
        .capabilities()
        .is_some_and(|t| t.contains_key(&**tool) || t.contains_key("*"));
    if !granted {
        let mut d = WarrantDenial::new(Deny::ToolNotInWarrant, format!("tool {tool:?} is not in the warrant"));
        d.error = Some(ErrorCode::ToolNotAuthorized);
        return deny(d);
    }
    let Some(signature) = signature else {
        // The crate reports a missing PoP as a signature error too (its 403 body says so).
        let mut d = WarrantDenial::new(Deny::MissingPop, "Proof-of-Possession required");
        d.error = Some(ErrorCode::SignatureInvalid);
        return deny(d);
    };
    let Some(signed_at) = pop_window(leaf, tool, &args, &signature, now, window, windows) else {
        let mut d = WarrantDenial::new(Deny::InvalidPop, "Proof-of-Possession verification failed");
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
fn leaf_denial(e: &tenuo::Error, args: &Args) -> Box<WarrantDenial> {
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
    let mut d = WarrantDenial::from_tenuo(deny, e);
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
        for name in ["x-envoy-auth-partial-body", "content-length", "transfer-encoding"] {
            match view.joined(name) {
                Some(v) => field(v.as_bytes()),
                None => field(b"\0absent"),
            }
        }
    }
    h.finish128().as_u128()
}

/// Why a tool route's target is refused, if it is: upstreams disagree on
/// what `;params` and dot segments mean (servlet containers drop `;…` from a
/// segment, so `/files/a;/../b` may reach another file than the `a;` the
/// route extracted), so the tool or an argument could change between the
/// warrant check and the upstream. Envoy resolves dot segments itself when
/// `normalize_path` is on; this is the second lock.
fn ambiguous_target(target: &str) -> Option<&'static str> {
    if target.contains(';') {
        return Some("`;` in the path of a tool route");
    }
    if target.split('/').any(is_dot_segment) {
        return Some("dot segment in the path of a tool route");
    }
    None
}

/// `.` or `..`, each dot possibly written `%2e` (any case). Read without
/// allocating (every tool request's segments pass here): the segment must
/// be one or two dots and nothing else, each `.` or `%2e`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ciborium::Value;
    use tenuo::{ConstraintSet, SigningKey};

    use super::*;

    const GATEWAY: &str = r#"
version: "1"
settings: {}
tools:
  t:
    description: A tool
    constraints: {}
routes:
  - { pattern: "/t", method: [GET], tool: t }
"#;

    fn trust(issuer: &SigningKey) -> Trust {
        Trust::for_tests(issuer, GATEWAY)
    }

    /// A root and its child, every signature replaced by garbage, as a header.
    fn garbage_stack(issuer: &SigningKey) -> String {
        let (agent, sub) = (SigningKey::generate(), SigningKey::generate());
        let root = Warrant::builder()
            .holder(agent.public_key())
            .capability("t", ConstraintSet::new())
            .ttl(Duration::from_secs(60))
            .build(issuer)
            .expect("mint");
        let child = root
            .attenuate()
            .capability("t", ConstraintSet::new())
            .holder(sub.public_key())
            .ttl(Duration::from_secs(30))
            .build(&agent)
            .expect("delegate");
        let stack = tenuo::wire::encode_stack(&tenuo::wire::WarrantStack(vec![root, child])).expect("stack");
        let mut value: Value = ciborium::de::from_reader(&stack[..]).expect("cbor");
        let mut flipped = 0;
        if let Value::Array(envelopes) = &mut value {
            for envelope in envelopes {
                if let Value::Array(items) = envelope {
                    // [version, payload, signature]: garble the signature's 64 bytes.
                    flipped += garble(&mut items[2]);
                }
            }
        }
        assert_eq!(flipped, 2, "both signatures garbled");
        let mut out = Vec::new();
        ciborium::ser::into_writer(&value, &mut out).expect("encode");
        URL_SAFE_NO_PAD.encode(out)
    }

    fn garble(v: &mut Value) -> usize {
        match v {
            Value::Bytes(b) if b.len() == 64 => {
                b.iter_mut().for_each(|x| *x ^= 0x5a);
                1
            }
            Value::Array(items) => items.iter_mut().map(garble).sum(),
            _ => 0,
        }
    }

    #[test]
    fn an_untrusted_root_is_refused_before_any_signature_is_checked() {
        let (issuer, stranger) = (SigningKey::generate(), SigningKey::generate());
        let now = chrono::Utc::now().timestamp();
        // Trusted issuer: the garbage reaches signature verification and fails there.
        let trusted = garbage_stack(&issuer);
        let d = verify_chain(&trust(&issuer), &trusted, now).expect_err("garbage");
        assert_eq!(d.deny, Deny::InvalidWarrant, "{}", d.detail);
        assert!(d.detail.contains("signature"), "{}", d.detail);
        // The same garbage from an untrusted issuer: refused on the issuer
        // alone; had any signature been checked, the answer would be the
        // signature failure above.
        let untrusted = garbage_stack(&stranger);
        let d = verify_chain(&trust(&issuer), &untrusted, now).expect_err("untrusted");
        assert_eq!(d.deny, Deny::UntrustedRoot, "{}", d.detail);
        assert_eq!(d.error, Some(ErrorCode::UntrustedRoot));
    }

    #[test]
    fn warrant_caches_stay_within_their_byte_budget() {
        let issuer = SigningKey::generate();
        let t = trust(&issuer);
        let budget: u64 = 1 << 20;
        // One real verified stack, shared by many keys: each entry still weighs it.
        let header = tenuo::wire::encode_base64(
            &Warrant::builder()
                .holder(issuer.public_key())
                .capability("t", ConstraintSet::new())
                .ttl(Duration::from_secs(600))
                .build(&issuer)
                .expect("mint"),
        )
        .expect("encode");
        let now = chrono::Utc::now().timestamp();
        let chain = Arc::new(verify_chain(&t, &header, now).expect("verified"));
        assert!(
            chain.weight > 1000,
            "a stack weighs its decoded warrants: {}",
            chain.weight
        );
        let mut big = WarrantDenial::new(Deny::ConstraintViolation, "x".repeat(4000));
        big.actual = Some(serde_json::Value::String("y".repeat(4000)));
        let big: Arc<WarrantDenial> = Arc::from(big);
        for i in 0..5_000u128 {
            t.stacks.insert(i, chain.clone());
            t.rejected.insert(i, big.clone());
            t.decisions.insert(i, Decision::Deny(big.clone(), now + 60));
        }
        let usage = t.cache_usage();
        let limits = [budget / 2, budget / 8, budget - budget / 2 - budget / 8];
        for ((name, entries, bytes), limit) in usage.iter().zip(limits) {
            assert!(*bytes <= limit, "{name}: {bytes} B > {limit} B");
            assert!(*bytes > limit / 2, "{name}: the budget is used: {bytes} B of {limit} B");
            assert!(*entries < 5_000, "{name}: {entries} entries");
        }
    }

    #[test]
    fn dot_segments_are_told_as_the_lower_casing_replace_told_them() {
        let reference =
            |s: &str| s.len() <= 6 && matches!(s.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | "..");
        const PIECES: &[&str] = &[".", "%2e", "%2E", "%", "2", "e", "E", "a", "%2", "%%2e"];
        let mut segments = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..4 {
            layer = layer
                .iter()
                .flat_map(|s| PIECES.iter().map(move |p| format!("{s}{p}")))
                .collect();
            segments.extend(layer.iter().cloned());
        }
        for s in &segments {
            assert_eq!(is_dot_segment(s), reference(s), "{s:?}");
        }
    }

    #[test]
    fn semicolons_and_dot_segments_in_tool_routes_are_refused() {
        for target in [
            "/files/a;b",
            "/files/a;/../b",
            "/files/..",
            "/files/%2e%2E",
            "/files/./x",
            "/x/.%2e/y",
        ] {
            assert!(ambiguous_target(target).is_some(), "{target}");
        }
        for target in ["/files/a", "/files/a.b", "/files/...", "/files/.x", "/files/a%20b"] {
            assert_eq!(ambiguous_target(target), None, "{target}");
        }
    }
}
