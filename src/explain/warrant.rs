//! A Tenuo warrant's parts, beside the decision: the tool and arguments as
//! the verifier reads them (its own code, [`WarrantVerifier::tool_call`]),
//! the chain as *claimed* (each link decoded by the `tenuo` crate, whose
//! decoding checks a link's own signature but not its trust or linkage),
//! and the PoP against the clock. Nothing here decides: the decision is the
//! checker's. The warrant and PoP are shown by length and hash, never their
//! bytes or signatures.

use serde_json::Value;
use tenuo::{Constraint, ConstraintSet, ConstraintValue, Signature, Warrant, WarrantType};

use super::{fingerprint, is_secret_header, relative, short, step, Step};
use crate::deny::Deny;
use crate::request::{RequestView, Single};
use crate::verify::warrant::{wire, Args, ToolCall, Trust, WarrantDenial, WarrantVerifier};

/// At most this many PoP windows are tried when looking for the one a PoP
/// was signed for (±12 h of 30 s windows around the clock): each costs one
/// Ed25519 verify, about 0.2 s in all, and only for a PoP that is not
/// accepted.
const MAX_POP_SEARCH: usize = 2881;

/// The warrant steps: `warrant` (presence, size and hash, root issuer
/// against the trust set), `tool` (route, tool, arguments), one `chain`
/// step per link, `pop` (its window) and `constraints` (the leaf's, against
/// the arguments).
pub(super) fn describe(
    verifier: &WarrantVerifier,
    view: &RequestView<'_>,
    api_key_header: Option<&str>,
    now: i64,
    steps: &mut Vec<Step>,
) {
    let trust = verifier.trust();
    let call = verifier.tool_call(view);
    let header = match view.single(&trust.names.warrant) {
        Single::One(h) => h,
        absent_or_repeated => {
            let (result, detail) = match absent_or_repeated {
                Single::Unusable => ("refused", "sent more than once"),
                _ => ("info", "no warrant presented"),
            };
            step(steps, "warrant", result, detail);
            // The tool a warrant would need, on a tool route only.
            if !matches!(&call, Err(d) if d.deny == Deny::NoRoute) {
                describe_tool(&call, view, &secrets(view, &trust, api_key_header), steps);
            }
            return;
        }
    };
    let secrets = secrets(view, &trust, api_key_header);
    let chain = describe_header(&trust, header, steps);
    let args = describe_tool(&call, view, &secrets, steps);
    for (i, link) in chain.iter().enumerate() {
        step(steps, "chain", "info", link_text(&trust, &chain, i, link, now));
    }
    describe_pop(&trust, view, chain.last(), args, now, steps);
    if let (Some(leaf), Some(call)) = (chain.last(), args) {
        describe_constraints(leaf, call, &secrets, steps);
    }
}

/// The `warrant` step; the links as claimed, when the header decodes.
fn describe_header(trust: &Trust, header: &str, steps: &mut Vec<Step>) -> Vec<Warrant> {
    let presented = format!("presented in {}: {}", trust.names.warrant, fingerprint(header));
    if header.len() > trust.max_warrant_bytes() {
        let detail = format!(
            "{presented}; larger than max_warrant_bytes ({})",
            trust.max_warrant_bytes()
        );
        step(steps, "warrant", "refused", detail);
        return Vec::new();
    }
    let Some(bytes) = wire::base64(header) else {
        step(steps, "warrant", "refused", format!("{presented}; not base64"));
        return Vec::new();
    };
    // Read from the CBOR alone, as the verifier reads it before any signature.
    let root = wire::root_issuer(&bytes).map(|key| {
        let trusted = trust.is_trusted_root(&key);
        let text = format!(
            "claimed root issuer {}: {}",
            short_key(&key),
            if trusted {
                "in the trust set"
            } else {
                "NOT in the trust set"
            }
        );
        (trusted, text)
    });
    let (trusted, root_text) = root.unwrap_or((false, "no root issuer readable".into()));
    match wire::warrants(&bytes, trust.max_chain()) {
        Ok(chain) => {
            let result = if trusted { "ok" } else { "refused" };
            let detail = format!("{presented}; {} warrant(s), {root_text}", chain.len());
            step(steps, "warrant", result, detail);
            chain
        }
        Err(e) => {
            step(
                steps,
                "warrant",
                "refused",
                format!("{presented}; not decodable ({e}); {root_text}"),
            );
            Vec::new()
        }
    }
}

/// The `tool` step; the tool and its arguments when they were extracted.
fn describe_tool<'c>(
    call: &'c Result<ToolCall, Box<WarrantDenial>>,
    view: &RequestView<'_>,
    secrets: &[&str],
    steps: &mut Vec<Step>,
) -> Option<(&'c str, &'c Args)> {
    let call = match call {
        Ok(c) => c,
        Err(d) => {
            let tool = d.tool.as_deref().map(|t| format!("tool {t:?}: ")).unwrap_or_default();
            let detail = format!("{tool}{} ({})", d.deny.reason(), d.detail);
            step(steps, "tool", "refused", detail);
            return None;
        }
    };
    let named = format!("route {} {} -> tool {:?}", view.method, call.route, &*call.tool);
    match &call.args {
        Ok(args) => {
            let detail = format!("{named}; arguments: {}", arguments(args, secrets));
            step(steps, "tool", "ok", detail);
            Some((&call.tool, args))
        }
        Err(e) => {
            step(steps, "tool", "refused", format!("{named}; extraction_failed ({e})"));
            None
        }
    }
}

/// Values of the request's credential headers (the API key's header
/// included): an argument equal to one is shown by its length (a gateway
/// may extract a header that is a secret).
fn secrets<'a>(view: &RequestView<'a>, trust: &Trust, api_key_header: Option<&str>) -> Vec<&'a str> {
    let n = &trust.names;
    view.header_names()
        .filter(|h| {
            is_secret_header(h)
                || api_key_header.is_some_and(|k| k.eq_ignore_ascii_case(h))
                || [&n.warrant, &n.pop, &n.approvals].iter().any(|s| s.as_str() == *h)
        })
        .filter_map(|h| view.header(h))
        .filter(|v| !v.is_empty())
        .collect()
}

/// The request's credential header values, for [`redact`] (none without Tenuo).
pub(super) fn credential_values<'a>(
    verifier: Option<&WarrantVerifier>,
    view: &RequestView<'a>,
    api_key_header: Option<&str>,
) -> Vec<&'a str> {
    verifier.map_or_else(Vec::new, |v| secrets(view, &v.trust(), api_key_header))
}

/// `text` with every credential header value in it shown by its length.
pub(super) fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s, &format!("<{} bytes>", s.len())))
}

/// `name=value, …` sorted by name, values as JSON.
fn arguments(args: &Args, secrets: &[&str]) -> String {
    if args.is_empty() {
        return "none".into();
    }
    let mut pairs: Vec<_> = args.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", value_text(v, secrets)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An argument's value as JSON, cut short; by its length if it is a secret.
fn value_text(v: &ConstraintValue, secrets: &[&str]) -> String {
    match v {
        ConstraintValue::String(s) if secrets.contains(&s.as_str()) => format!("<{} bytes>", s.len()),
        v => serde_json::to_value(v).map_or_else(|_| v.to_string(), |j| short(&j)),
    }
}

/// The `constraints` step: the leaf's constraints for the tool against the
/// arguments, by the crate's `check_constraints` (the decision's own call),
/// naming the argument and constraint that fail.
fn describe_constraints(leaf: &Warrant, call: (&str, &Args), secrets: &[&str], steps: &mut Vec<Step>) {
    let (tool, args) = call;
    match leaf.check_constraints(tool, args) {
        Ok(()) => step(
            steps,
            "constraints",
            "ok",
            format!("the arguments satisfy the leaf's constraints for {tool:?}"),
        ),
        Err(tenuo::Error::ConstraintNotSatisfied { field, reason }) => {
            let constraint = leaf
                .capabilities()
                .and_then(|tools| tools.get(tool).or_else(|| tools.get("*")))
                .and_then(|set| set.get(&field))
                .map_or_else(|| "no constraint".to_string(), constraint_text);
            let value = args
                .get(&field)
                .map_or_else(|| "-".to_string(), |v| value_text(v, secrets));
            let detail = format!("{field}={value} does not satisfy {constraint}: {reason}");
            step(steps, "constraints", "refused", detail);
        }
        Err(e) => step(steps, "constraints", "refused", e.to_string()),
    }
}

/// One link as claimed: id, keys, depth, times against the clock, tools.
fn link_text(trust: &Trust, chain: &[Warrant], i: usize, w: &Warrant, now: i64) -> String {
    let position = match (i, chain.len()) {
        (0, 1) => "root and leaf".to_string(),
        (0, _) => "root".to_string(),
        (i, n) if i + 1 == n => "leaf".to_string(),
        _ => "delegated".to_string(),
    };
    let issuer_key = w.issuer().to_bytes();
    // The root must be trusted; every other link must be issued by its parent's holder.
    let issuer_is = match i.checked_sub(1).and_then(|p| chain.get(p)) {
        None if trust.is_trusted_root(&issuer_key) => "trusted root".to_string(),
        None => "NOT a trusted root".to_string(),
        Some(parent) if parent.authorized_holder() == w.issuer() => format!("link {i}'s holder"),
        Some(_) => format!("NOT link {i}'s holder"),
    };
    let depth = match w.max_depth() {
        Some(max) => format!("depth {} (max {max})", w.depth()),
        None => format!("depth {}", w.depth()),
    };
    let kind = match w.r#type() {
        WarrantType::Execution => "",
        WarrantType::Issuer => ", type issuer",
    };
    format!(
        "claimed: link {} of {} ({position}): id {}, issuer {} ({issuer_is}), holder {}, {depth}{kind}, {}, {}; tools: {}",
        i + 1,
        chain.len(),
        w.id(),
        short_key(&issuer_key),
        short_key(&w.authorized_holder().to_bytes()),
        issued_text(trust, w, now),
        expires_text(w, now),
        tools_text(w),
    )
}

fn issued_text(trust: &Trust, w: &Warrant, now: i64) -> String {
    let t = w.issued_at().timestamp();
    let tolerance = trust.clock_tolerance();
    let late = if w.is_issued_in_future_as_of(now, tolerance) {
        format!(": beyond the {}s tolerance", tolerance.num_seconds())
    } else {
        String::new()
    };
    format!("issued {t} ({}{late})", relative(t, now))
}

fn expires_text(w: &Warrant, now: i64) -> String {
    let t = w.expires_at().timestamp();
    let expired = if w.is_expired_as_of(now) { ": expired" } else { "" };
    format!("expires {t} ({}{expired})", relative(t, now))
}

/// A key by its fingerprint (the first 8 bytes, as `x-tenuo-holder` shows it).
fn short_key(key: &[u8; 32]) -> String {
    format!("{}…", hex::encode(&key[..8]))
}

fn tools_text(w: &Warrant) -> String {
    match w.capabilities() {
        Some(tools) if !tools.is_empty() => tools
            .iter()
            .map(|(tool, set)| format!("{tool} {}", constraints_text(set)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => match w.issuable_tools() {
            Some(tools) => format!("none (may issue {tools:?})"),
            None => "none".into(),
        },
    }
}

/// `{arg: Constraint, …}`; an empty set admits any arguments (Tenuo's open world).
fn constraints_text(set: &ConstraintSet) -> String {
    if set.is_empty() {
        return "{any arguments}".into();
    }
    let mut parts: Vec<String> = set
        .iter()
        .map(|(k, c)| format!("{k}: {}", constraint_text(c)))
        .collect();
    if set.allow_unknown() {
        parts.push("other arguments allowed".into());
    }
    format!("{{{}}}", parts.join(", "))
}

/// The constraint's type and its parameters, from the crate's own
/// serialization (`[type id, parameters]`): one parameter is shown bare
/// (`Pattern "/data/*"`), a range as an interval.
fn constraint_text(c: &Constraint) -> String {
    let name = c.type_name();
    if let Constraint::Range(r) = c {
        let min = r.min.map_or("-inf".to_string(), |m| m.to_string());
        let max = r.max.map_or("inf".to_string(), |m| m.to_string());
        let open = if r.min_inclusive && r.min.is_some() { '[' } else { '(' };
        let close = if r.max_inclusive && r.max.is_some() { ']' } else { ')' };
        return format!("{name} {open}{min}, {max}{close}");
    }
    let params = match serde_json::to_value(c) {
        Ok(Value::Array(mut parts)) if parts.len() == 2 => parts.pop(),
        _ => None,
    };
    match params {
        None | Some(Value::Null) => name.to_string(),
        Some(Value::Object(m)) if m.len() == 1 => {
            let only = m.values().next().map(short).unwrap_or_default();
            format!("{name} {only}")
        }
        Some(v) => format!("{name} {}", short(&v)),
    }
}

/// The `pop` step: its size and hash, and the window it verifies for over
/// the tool and arguments above (the crate's `verify_pop_as_of`, one window
/// at a time), against the windows the verifier accepts around the clock.
fn describe_pop(
    trust: &Trust,
    view: &RequestView<'_>,
    leaf: Option<&Warrant>,
    call: Option<(&str, &Args)>,
    now: i64,
    steps: &mut Vec<Step>,
) {
    let name = &trust.names.pop;
    let text = match view.single(name) {
        Single::One(t) => t,
        Single::Absent => return step(steps, "pop", "refused", format!("no PoP presented ({name})")),
        Single::Unusable => return step(steps, "pop", "refused", format!("{name} sent more than once")),
    };
    let presented = format!("presented in {name}: {}", fingerprint(text));
    let Some(signature) = wire::pop(text) else {
        let detail = format!("{presented}; not a 64-byte signature in base64 or hex");
        return step(steps, "pop", "refused", detail);
    };
    let (Some(leaf), Some((tool, args))) = (leaf, call) else {
        let detail = format!("{presented}; not checked: no decoded warrant, or no tool arguments to check it against");
        return step(steps, "pop", "info", detail);
    };
    let (window, windows) = trust.pop_window();
    let half = i64::from(windows / 2);
    let clock_window = now.div_euclid(window) * window;
    let accepted = format!(
        "accepted: {windows} windows of {window}s around the clock's {clock_window} (±{}s)",
        half * window
    );
    let signs = format!("by the leaf's holder over tool {tool:?} and the arguments above");
    let (result, found) = match signed_window(leaf, (tool, args), &signature, now, window) {
        Found::At(offset) => {
            let at = clock_window + offset * window;
            let (result, verdict) = if is_accepted(offset, windows, half) {
                ("ok", String::new())
            } else {
                ("refused", format!(": outside the accepted ±{}s", half * window))
            };
            let found = format!(
                "signed {signs}, for the window {at} ({}){verdict}",
                window_offset(offset, window)
            );
            (result, found)
        }
        Found::Nowhere { from, to, tried } => (
            "refused",
            format!(
                "not signed {signs} in any window from {from} to {to} ({tried} tried): it signs another tool, \
                 other arguments or another warrant, or is by another key"
            ),
        ),
    };
    step(steps, "pop", result, format!("{presented}; {found}; {accepted}"));
}

fn window_offset(offset: i64, window: i64) -> String {
    match offset {
        0 => "the clock's".to_string(),
        o if o < 0 => format!("{}s before the clock's", -o * window),
        o => format!("{}s after the clock's", o * window),
    }
}

enum Found {
    /// The window's offset from the clock's, in windows.
    At(i64),
    Nowhere {
        from: i64,
        to: i64,
        tried: usize,
    },
}

/// Window offsets from the clock's, in the crate's order: 0, -1, +1, -2, +2, …
fn offsets() -> impl Iterator<Item = i64> {
    (0..).map(|i: i64| if i % 2 == 1 { -(i + 1) / 2 } else { i / 2 })
}

/// Whether the verifier tries this window: among its first `windows`
/// offsets, and within `windows / 2` of the clock's (as `verify_pop_as_of`).
fn is_accepted(offset: i64, windows: u32, half: i64) -> bool {
    offsets()
        .take(usize::try_from(windows).unwrap_or(usize::MAX))
        .any(|o| o == offset && o.abs() <= half)
}

/// The window a PoP verifies for: the accepted ones first, in the crate's
/// order, then outwards (at most [`MAX_POP_SEARCH`] windows around the
/// clock's), so that a stale PoP, or one from a skewed clock, is dated too.
fn signed_window(leaf: &Warrant, call: (&str, &Args), signature: &Signature, now: i64, window: i64) -> Found {
    let (tool, args) = call;
    let here = now.div_euclid(window);
    let (mut tried, mut from, mut to) = (0, here, here);
    for offset in offsets().take(MAX_POP_SEARCH) {
        let index = here + offset;
        (tried, from, to) = (tried + 1, from.min(index), to.max(index));
        // The verifier's own call, one window at a time.
        if leaf
            .verify_pop_as_of(tool, args, Some(signature), window, 1, index * window)
            .is_ok()
        {
            return Found::At(offset);
        }
    }
    Found::Nowhere {
        from: from * window,
        to: to * window,
        tried,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenuo::{Exact, OneOf, Pattern, Range, SigningKey, Subpath, Wildcard};

    use super::*;

    #[test]
    fn windows_are_tried_in_the_crate_s_order_and_accepted_as_it_accepts_them() {
        assert_eq!(offsets().take(7).collect::<Vec<_>>(), [0, -1, 1, -2, 2, -3, 3]);
        let accepted = |windows: u32| (-3..=3).filter(move |&o| is_accepted(o, windows, i64::from(windows / 2)));
        assert_eq!(accepted(5).collect::<Vec<_>>(), [-2, -1, 0, 1, 2]);
        // Four windows: 0, -1, +1, -2 (the crate skips nothing, tries no +2).
        assert_eq!(accepted(4).collect::<Vec<_>>(), [-2, -1, 0, 1]);
        assert_eq!(accepted(1).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn constraints_read_as_their_type_and_parameters() {
        let cases: [(Constraint, &str); 7] = [
            (Pattern::new("/data/*").unwrap().into(), "Pattern \"/data/*\""),
            (Range::new(Some(1.0), Some(10.0)).unwrap().into(), "Range [1, 10]"),
            (Range::new(None, Some(2.5)).unwrap().into(), "Range (-inf, 2.5]"),
            (Exact::new("prod").into(), "Exact \"prod\""),
            (OneOf::new(["a", "b"]).into(), "OneOf [\"a\",\"b\"]"),
            (Wildcard::new().into(), "Wildcard"),
            (
                Subpath::new("/data").unwrap().into(),
                "Subpath {\"allow_equal\":true,\"case_sensitive\":true,\"root\":\"/data\"}",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(constraint_text(&c), want);
        }
        let mut set = ConstraintSet::new();
        assert_eq!(constraints_text(&set), "{any arguments}");
        set.insert("path", Pattern::new("/data/*").unwrap());
        set.insert("mode", Exact::new("r"));
        assert_eq!(constraints_text(&set), "{mode: Exact \"r\", path: Pattern \"/data/*\"}");
    }

    #[test]
    fn an_argument_that_is_a_credential_header_s_value_is_shown_by_length() {
        let args: Args = [
            ("tenant".to_string(), ConstraintValue::from("acme")),
            ("auth".to_string(), ConstraintValue::from("Bearer sekrit-token")),
            ("n".to_string(), ConstraintValue::from(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            arguments(&args, &["Bearer sekrit-token"]),
            "auth=<19 bytes>, n=3, tenant=\"acme\""
        );
        assert_eq!(arguments(&Args::new(), &[]), "none");
        // Tenuo's debug header names the failing argument's value.
        assert_eq!(
            redact("constraint_violation: key=\"sk_live_1\" exceeds x", &["sk_live_1"]),
            "constraint_violation: key=\"<9 bytes>\" exceeds x"
        );
    }

    /// A warrant anyone can sign (its root untrusted) names tools and
    /// constraint keys that are escape sequences and lines of their own; a
    /// gateway extracts the API key's header as an argument. Neither reaches
    /// the output as sent.
    #[test]
    fn a_hostile_warrant_and_an_api_key_argument_are_shown_safely() {
        use crate::explain::Input;
        const GATEWAY: &str = r#"
version: "1"
settings: {}
tools:
  read_file:
    description: A tool
    constraints:
      path: { from: query, path: path, required: true }
      key: { from: header, path: X-Api-Key }
routes:
  - { pattern: "/files", method: [GET], tool: read_file }
"#;
        let (trusted, attacker) = (SigningKey::generate(), SigningKey::generate());
        let trust = Trust::for_tests(&trusted, GATEWAY);
        let mut set = ConstraintSet::new();
        set.insert("k\u{1b}[2J\n=> ALLOW 200 allowed", Pattern::new("/x/*").unwrap());
        let w = Warrant::builder()
            .holder(attacker.public_key())
            .capability("read_file", set)
            .capability("t\n=> ALLOW 200 allowed\u{1b}[8m", ConstraintSet::new())
            .ttl(Duration::from_secs(600))
            .build(&attacker)
            .unwrap();
        let input = Input {
            method: "GET".into(),
            path: "/files?path=%2Fetc%2Fpasswd".into(),
            headers: vec![
                ("x-tenuo-warrant".into(), tenuo::wire::encode_base64(&w).unwrap()),
                ("x-api-key".into(), "sk_live_SUPERSECRET".into()),
            ],
            ..Default::default()
        };
        let req = input.to_check_request();
        let view = RequestView::new(&req).unwrap();
        let mut steps = Vec::new();
        describe(
            &WarrantVerifier::new(trust),
            &view,
            Some("X-Api-Key"),
            chrono::Utc::now().timestamp(),
            &mut steps,
        );
        for s in &steps {
            assert!(!s.detail.contains(['\n', '\u{1b}']), "{}", s.detail);
            assert!(!s.detail.contains("SUPERSECRET"), "{}", s.detail);
        }
        let tool = steps.iter().find(|s| s.step == "tool").unwrap();
        assert!(tool.detail.contains("key=<19 bytes>"), "{}", tool.detail);
    }

    /// A PoP is dated however far from the clock it was signed (within the
    /// search), and one over other arguments verifies nowhere.
    #[test]
    fn a_pop_is_dated_or_found_nowhere() {
        let (issuer, holder) = (SigningKey::generate(), SigningKey::generate());
        let mut set = ConstraintSet::new();
        set.insert("path", Wildcard::new());
        let leaf = Warrant::builder()
            .holder(holder.public_key())
            .capability("read_file", set)
            .ttl(Duration::from_secs(7200))
            .build(&issuer)
            .unwrap();
        let args: Args = [("path".to_string(), ConstraintValue::from("/a"))]
            .into_iter()
            .collect();
        let now = leaf.issued_at().timestamp();
        let window = 30;
        let stale = leaf
            .sign_with_timestamp(&holder, "read_file", &args, Some(now - 1800))
            .unwrap();
        assert!(matches!(
            signed_window(&leaf, ("read_file", &args), &stale, now, window),
            Found::At(-60)
        ));
        let fresh = leaf
            .sign_with_timestamp(&holder, "read_file", &args, Some(now))
            .unwrap();
        assert!(matches!(
            signed_window(&leaf, ("read_file", &args), &fresh, now, window),
            Found::At(0)
        ));
        let other: Args = [("path".to_string(), ConstraintValue::from("/b"))]
            .into_iter()
            .collect();
        let here = now.div_euclid(window) * window;
        match signed_window(&leaf, ("read_file", &other), &fresh, now, window) {
            Found::Nowhere { from, to, tried } => {
                assert_eq!((from, to, tried), (here - 1440 * 30, here + 1440 * 30, MAX_POP_SEARCH));
            }
            Found::At(o) => panic!("verified over other arguments at {o}"),
        }
    }
}
