//! The Tenuo minting service (tests/tenuo/mint.py, the official Python SDK)
//! against the Rust `tenuo` crate directly, without portcullis: warrants,
//! delegation stacks and proof-of-possession signatures made by the SDK are
//! accepted by `tenuo::Authorizer::check_chain`, and every way they can be
//! wrong is refused with the expected `tenuo::Error`. This pins the
//! cross-implementation contract (PyPI tenuo 0.3.3 -> crate tenuo 0.3.5) the
//! portcullis verifier relies on: header encodings, stack order, PoP
//! preimage (CBOR of the args), key formats, SRLs.
//!
//! Needs the SDK: ./tests/tenuo/install.sh (./tests/run.sh does it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
// `::tenuo` is the crate; `common::tenuo` (glob-imported below) is the minter harness.
use ::tenuo::{Authorizer, ChainVerificationResult, ConstraintValue, Error, PublicKey, Signature, Warrant};
use common::tenuo::{unhex, Key, Minted, Minter};
use common::{now, Logs};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers: what a verifier does with the two headers.

/// `X-Tenuo-Warrant` -> chain (root first): URL-safe base64 without padding,
/// else standard base64; then a WarrantStack, else a single warrant.
fn decode_header(header: &str) -> ::tenuo::Result<Vec<Warrant>> {
    let raw = URL_SAFE_NO_PAD
        .decode(header)
        .or_else(|_| STANDARD.decode(header))
        .map_err(|e| Error::DeserializationError(format!("base64: {e}")))?;
    match ::tenuo::wire::decode_stack(&raw) {
        Ok(stack) => Ok(stack.0),
        Err(_) => ::tenuo::wire::decode(&raw).map(|w| vec![w]),
    }
}

/// `X-Tenuo-PoP` -> signature: URL-safe no-pad, standard base64, or hex,
/// whichever yields 64 bytes. The length check must come per candidate: 128
/// hex digits are also valid URL-safe base64 (of 96 bytes), so "base64, else
/// hex" by decode success alone never reaches hex (the official
/// tenuo-authorizer 0.3.5 has exactly that, and treats hex PoPs as missing).
fn decode_pop(pop: &str) -> Signature {
    let raw: [u8; 64] = [
        URL_SAFE_NO_PAD.decode(pop).ok(),
        STANDARD.decode(pop).ok(),
        (pop.len() == 128 && pop.bytes().all(|b| b.is_ascii_hexdigit())).then(|| unhex(pop)),
    ]
    .into_iter()
    .flatten()
    .find(|b| b.len() == 64)
    .expect("PoP is 64 bytes in some encoding")
    .try_into()
    .unwrap();
    Signature::from_bytes(&raw).expect("signature")
}

fn args(v: &Value) -> HashMap<String, ConstraintValue> {
    serde_json::from_value(v.clone()).expect("args as ConstraintValue map")
}

fn pk(key: &Key) -> PublicKey {
    PublicKey::from_bytes(&key.public_bytes()).expect("public key")
}

fn authorizer(root: &Key) -> Authorizer {
    Authorizer::builder()
        .trusted_root(pk(root))
        .build()
        .expect("authorizer")
}

/// Decodes the warrant header and runs `check_chain` for one call.
fn check(
    auth: &Authorizer,
    header: &str,
    tool: &str,
    call_args: &Value,
    pop: Option<&str>,
) -> ::tenuo::Result<ChainVerificationResult> {
    let chain = decode_header(header)?;
    let sig = pop.map(decode_pop);
    auth.check_chain(&chain, tool, &args(call_args), sig.as_ref(), &[])
}

fn denied(r: ::tenuo::Result<ChainVerificationResult>) -> Error {
    match r {
        Ok(v) => panic!("expected a denial, got allowed: chain_length={}", v.chain_length),
        Err(e) => e,
    }
}

/// An issuer, an agent holding a root warrant for `deploy`, and the minter.
struct Fixture {
    _logs: std::sync::Arc<Logs>,
    m: Minter,
    issuer: Key,
    agent: Key,
    root: Minted,
}

const DEPLOY_ARGS: &str = r#"{"service": "web-frontend", "replicas": 3}"#;

fn deploy_args() -> Value {
    serde_json::from_str(DEPLOY_ARGS).unwrap()
}

fn fixture() -> Fixture {
    let logs = Logs::new();
    let m = Minter::start(&logs);
    let issuer = m.key();
    let agent = m.key();
    let root = m.mint(
        &issuer,
        &agent,
        json!({
            "deploy": {"service": {"pattern": "web-*"}, "replicas": {"range": [1, 10]}},
            "status": {"service": {"wildcard": true}},
        }),
        600,
    );
    Fixture {
        _logs: logs,
        m,
        issuer,
        agent,
        root,
    }
}

// ---------------------------------------------------------------------------
// Accepted.

#[test]
fn sdk_root_warrant_with_sdk_pop_is_allowed() {
    let f = fixture();
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &deploy_args(), None);
    let ok = check(
        &authorizer(&f.issuer),
        &f.root.warrant,
        "deploy",
        &deploy_args(),
        Some(&pop.std),
    )
    .expect("SDK root warrant + SDK PoP must be allowed");
    assert_eq!(ok.chain_length, 1);
    assert_eq!(ok.leaf_depth, 0);
    assert_eq!(ok.root_issuer, Some(f.issuer.public_bytes()));

    // The SDK's view of the warrant and the crate's agree.
    let w = &decode_header(&f.root.warrant).unwrap()[0];
    assert_eq!(w.id().to_string(), f.root.id);
    assert!(
        f.root.id.starts_with("tnu_wrt_") && f.root.id.len() == 8 + 32,
        "{}",
        f.root.id
    );
    assert_eq!(w.expires_at().timestamp(), f.root.expires_at);
    assert_eq!(w.depth(), 0);
    assert_eq!(w.issuer().to_bytes(), f.issuer.public_bytes());
    assert_eq!(w.authorized_holder().to_bytes(), f.agent.public_bytes());
    let left = f.root.expires_at - now();
    assert!((590..=601).contains(&left), "ttl 600 s, {left} s left");

    // Warrant.to_base64() is URL-safe without padding: the crate's own codec reads it.
    assert!(!f.root.warrant.contains(['+', '/', '=']), "{}", f.root.warrant);
    assert_eq!(::tenuo::wire::decode_base64(&f.root.warrant).unwrap().id(), w.id());
}

#[test]
fn pop_is_accepted_in_standard_urlsafe_and_hex_encodings() {
    let f = fixture();
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &deploy_args(), None);
    let bytes = STANDARD.decode(&pop.std).unwrap();
    assert_eq!(bytes.len(), 64);
    assert!(
        pop.std.ends_with("=="),
        "SDK PoP is padded standard base64: {}",
        pop.std
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(&pop.urlsafe).unwrap(), bytes);
    assert_eq!(unhex(&pop.hex), bytes);
    let auth = authorizer(&f.issuer);
    for enc in [&pop.std, &pop.urlsafe, &pop.hex] {
        check(&auth, &f.root.warrant, "deploy", &deploy_args(), Some(enc)).unwrap_or_else(|e| panic!("PoP {enc}: {e}"));
    }
}

/// Ed25519 is deterministic, so the same preimage signed by the same key
/// gives the same bytes: the crate's `sign_with_timestamp` must reproduce
/// the SDK's PoP exactly, for every JSON argument type (the CBOR encoding of
/// the args is where two implementations would drift).
#[test]
fn rust_crate_pop_is_byte_identical_to_the_sdk_pop_for_every_arg_type() {
    let logs = Logs::new();
    let m = Minter::start(&logs);
    let (issuer, agent) = (m.key(), m.key());
    let names = ["s", "i", "neg", "f", "half", "big", "b", "l", "o", "n", "u"];
    let cons: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), json!({"wildcard": true})))
        .collect();
    let root = m.mint(&issuer, &agent, json!({ "call": cons }), 600);
    let call = json!({
        "s": "héllo wörld ✓", "i": 3, "neg": -70000, "f": 2.5, "half": 0.1, "big": 1e300,
        "b": true, "l": ["a", 1, false, 1.5], "o": {"z": 1, "a": ["x"], "m": {"k": "v"}},
        "n": null, "u": "",
    });
    let w = &decode_header(&root.warrant).unwrap()[0];
    let key = ::tenuo::SigningKey::from_bytes(&agent.secret_bytes());
    assert_eq!(key.public_key().to_bytes(), agent.public_bytes());
    for (label, a) in [
        ("all types", call.clone()),
        ("empty args", json!({})),
        ("one string", json!({"s": "x"})),
        ("integral float", json!({"f": 3.0, "i": 3})),
    ] {
        let pop = m.pop(&root, &agent, "call", &a, Some(now()));
        let rust = w.sign_with_timestamp(&key, "call", &args(&a), Some(pop.ts)).unwrap();
        assert_eq!(
            hex(&rust.to_bytes()),
            pop.hex,
            "{label}: crate PoP differs from the SDK PoP over {a}"
        );
    }
    // And the full call is allowed (every constrained arg present: a
    // Wildcard constraint still makes its argument required).
    let pop = m.pop(&root, &agent, "call", &call, None);
    check(&authorizer(&issuer), &root.warrant, "call", &call, Some(&pop.std)).expect("all arg types");
    let pop = m.pop(&root, &agent, "call", &json!({}), None);
    let e = denied(check(
        &authorizer(&issuer),
        &root.warrant,
        "call",
        &json!({}),
        Some(&pop.std),
    ));
    assert!(matches!(e, Error::ConstraintNotSatisfied { .. }), "{e:?}");
}

/// A deploy-only child of the root for a fresh holder: `web-front*`, 1..=5 replicas.
fn narrowed_child(f: &Fixture) -> (Key, Minted) {
    let worker = f.m.key();
    let child = f.m.grant(
        &f.root,
        &f.agent,
        &worker,
        "deploy",
        json!({"service": {"pattern": "web-front*"}, "replicas": {"range": [1, 5]}}),
        300,
    );
    (worker, child)
}

#[test]
fn two_link_stack_from_the_sdk_verifies() {
    let f = fixture();
    let (worker, child) = narrowed_child(&f);
    assert_eq!(child.depth, 1);
    assert_eq!(
        child.issuer_hex, f.agent.public_hex,
        "child is signed by the parent's holder"
    );
    assert_eq!(child.holder_hex, worker.public_hex);
    assert!(child.expires_at <= f.root.expires_at);

    let header = f.m.stack(&[&f.root, &child]);
    // encode_warrant_stack emits standard base64 (padded when needed); a
    // verifier must fall back from URL-safe to standard to read it.
    assert!(
        URL_SAFE_NO_PAD.decode(&header).is_err() || !header.contains(['-', '_']),
        "stack header is not standard base64: {header}"
    );
    let chain = decode_header(&header).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].id().to_string(), f.root.id, "root first");
    assert_eq!(chain[1].id().to_string(), child.id, "leaf last");

    let pop = f.m.pop(&child, &worker, "deploy", &deploy_args(), None);
    let ok = check(
        &authorizer(&f.issuer),
        &header,
        "deploy",
        &deploy_args(),
        Some(&pop.std),
    )
    .expect("2-link stack + leaf holder PoP must be allowed");
    assert_eq!(ok.chain_length, 2);
    assert_eq!(ok.leaf_depth, 1);
    assert_eq!(ok.root_issuer, Some(f.issuer.public_bytes()));

    // Three links.
    let sub = f.m.key();
    let grandchild = f.m.grant(
        &child,
        &worker,
        &sub,
        "deploy",
        json!({"replicas": {"range": [1, 2]}}),
        120,
    );
    let header3 = f.m.stack(&[&f.root, &child, &grandchild]);
    let a = json!({"service": "web-frontend", "replicas": 2});
    let pop = f.m.pop(&grandchild, &sub, "deploy", &a, None);
    let ok = check(&authorizer(&f.issuer), &header3, "deploy", &a, Some(&pop.std)).expect("3 links");
    assert_eq!((ok.chain_length, ok.leaf_depth), (3, 2));
}

#[test]
fn the_sdks_own_headers_verify() {
    let f = fixture();
    let worker = f.m.key();
    let child = f.m.grant(
        &f.root,
        &f.agent,
        &worker,
        "deploy",
        json!({"service": {"pattern": "web-front*"}}),
        300,
    );
    let auth = authorizer(&f.issuer);
    for (label, w, key, parents) in [
        ("root", &f.root, &f.agent, vec![]),
        ("delegated", &child, &worker, vec![&f.root]),
    ] {
        let h =
            f.m.headers(w, key, "deploy", &deploy_args(), &parents)
                .expect("headers");
        let warrant = h["X-Tenuo-Warrant"].as_str().expect("X-Tenuo-Warrant");
        let pop = h["X-Tenuo-PoP"].as_str().expect("X-Tenuo-PoP");
        let ok = check(&auth, warrant, "deploy", &deploy_args(), Some(pop)).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(ok.chain_length, parents.len() + 1, "{label}");
    }
    // The SDK refuses to make headers for a call its warrant does not allow.
    let err =
        f.m.headers(
            &f.root,
            &f.agent,
            "deploy",
            &json!({"service": "db", "replicas": 3}),
            &[],
        )
        .unwrap_err();
    assert!(err.contains("service"), "{err}");
}

// ---------------------------------------------------------------------------
// Refused.

#[test]
fn wrong_tool_is_denied() {
    let f = fixture();
    let pop = f.m.pop(&f.root, &f.agent, "delete", &deploy_args(), None);
    let e = denied(check(
        &authorizer(&f.issuer),
        &f.root.warrant,
        "delete",
        &deploy_args(),
        Some(&pop.std),
    ));
    assert!(matches!(e, Error::ToolNotAuthorized { .. }), "{e:?}");
}

#[test]
fn constraint_violations_are_denied() {
    let f = fixture();
    let auth = authorizer(&f.issuer);
    for a in [
        json!({"service": "db-primary", "replicas": 3}),
        json!({"service": "web-frontend", "replicas": 11}),
        json!({"service": "web-frontend", "replicas": 0}),
        json!({"service": "web-frontend", "replicas": "3"}),
        json!({"service": "web-frontend"}),
        json!({"service": "web-frontend", "replicas": 3, "extra": "x"}),
    ] {
        // The PoP is valid for exactly these args: only the constraints refuse.
        let pop = f.m.pop(&f.root, &f.agent, "deploy", &a, None);
        let e = denied(check(&auth, &f.root.warrant, "deploy", &a, Some(&pop.std)));
        assert!(
            matches!(e, Error::ConstraintNotSatisfied { .. }),
            "{a}: {e:?} ({})",
            e.code().name()
        );
    }
}

#[test]
fn pop_over_other_args_or_tool_is_denied() {
    let f = fixture();
    let auth = authorizer(&f.issuer);
    let signed = json!({"service": "web-frontend", "replicas": 3});
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &signed, None);
    for sent in [
        json!({"service": "web-frontend", "replicas": 4}),
        json!({"service": "web-backend", "replicas": 3}),
        json!({"service": "web-frontend", "replicas": 3.0}),
    ] {
        let e = denied(check(&auth, &f.root.warrant, "deploy", &sent, Some(&pop.std)));
        assert!(matches!(e, Error::SignatureInvalid(_)), "{sent}: {e:?}");
    }
    // Same args, other tool (both allowed by the warrant).
    let a = json!({"service": "web-frontend"});
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &a, None);
    let e = denied(check(&auth, &f.root.warrant, "status", &a, Some(&pop.std)));
    assert!(matches!(e, Error::SignatureInvalid(_)), "{e:?}");
}

#[test]
fn pop_by_a_key_other_than_the_holder_is_denied() {
    let f = fixture();
    let auth = authorizer(&f.issuer);
    let stranger = f.m.key();
    for (label, k) in [("issuer", &f.issuer), ("stranger", &stranger)] {
        let pop = f.m.pop(&f.root, k, "deploy", &deploy_args(), None);
        let e = denied(check(&auth, &f.root.warrant, "deploy", &deploy_args(), Some(&pop.std)));
        assert!(matches!(e, Error::SignatureInvalid(_)), "{label}: {e:?}");
    }
}

#[test]
fn missing_pop_is_denied() {
    let f = fixture();
    let e = denied(check(
        &authorizer(&f.issuer),
        &f.root.warrant,
        "deploy",
        &deploy_args(),
        None,
    ));
    assert!(matches!(e, Error::MissingSignature(_)), "{e:?}");
    assert_eq!(e.code().name(), "signature-invalid");
}

#[test]
fn stale_and_future_pops_are_denied_but_the_window_is_plus_minus_60_s() {
    // Verifiers accept the PoP's 30 s window and the two on each side. The
    // denied offsets are >= 4 windows away, so a window boundary passing
    // between `now()` here and the check cannot make the test flaky.
    let f = fixture();
    let auth = authorizer(&f.issuer);
    let t = now();
    for (offset, ok) in [
        (-300, false),
        (-125, false),
        (-25, true),
        (25, true),
        (125, false),
        (300, false),
    ] {
        let pop = f.m.pop(&f.root, &f.agent, "deploy", &deploy_args(), Some(t + offset));
        let r = check(&auth, &f.root.warrant, "deploy", &deploy_args(), Some(&pop.std));
        match (ok, r) {
            (true, Ok(_)) => {}
            (false, Err(Error::SignatureInvalid(_))) => {}
            (want, got) => panic!("PoP at now{offset:+} s: want allowed={want}, got {got:?}"),
        }
    }
}

#[test]
fn delegated_leaf_without_its_parents_is_denied() {
    let f = fixture();
    let worker = f.m.key();
    let child = f.m.grant(&f.root, &f.agent, &worker, "deploy", Value::Null, 300);
    let pop = f.m.pop(&child, &worker, "deploy", &deploy_args(), None);
    let auth = authorizer(&f.issuer);
    let e = denied(check(&auth, &child.warrant, "deploy", &deploy_args(), Some(&pop.std)));
    assert!(matches!(e, Error::UntrustedRoot), "{e:?}");
    // Leaf first (wrong order) is refused too.
    let reversed = f.m.stack(&[&child, &f.root]);
    let e = denied(check(&auth, &reversed, "deploy", &deploy_args(), Some(&pop.std)));
    assert_eq!(e.code().name(), "untrusted-root", "{e:?}");
}

#[test]
fn delegated_narrowing_is_enforced_and_widening_is_refused_by_the_sdk() {
    let f = fixture();
    let (worker, child) = narrowed_child(&f);
    let header = f.m.stack(&[&f.root, &child]);
    let auth = authorizer(&f.issuer);
    // Allowed by the root, not by the child.
    for a in [
        json!({"service": "web-backend", "replicas": 3}),
        json!({"service": "web-frontend", "replicas": 7}),
    ] {
        let pop = f.m.pop(&child, &worker, "deploy", &a, None);
        let e = denied(check(&auth, &header, "deploy", &a, Some(&pop.std)));
        assert!(matches!(e, Error::ConstraintNotSatisfied { .. }), "{a}: {e:?}");
    }
    // The root holder's PoP does not authorize the child's warrant.
    let pop = f.m.pop(&child, &f.agent, "deploy", &deploy_args(), None);
    let e = denied(check(&auth, &header, "deploy", &deploy_args(), Some(&pop.std)));
    assert!(matches!(e, Error::SignatureInvalid(_)), "{e:?}");
    // Tool not delegated.
    let pop = f.m.pop(&child, &worker, "status", &json!({"service": "x"}), None);
    let e = denied(check(
        &auth,
        &header,
        "status",
        &json!({"service": "x"}),
        Some(&pop.std),
    ));
    assert!(matches!(e, Error::ToolNotAuthorized { .. }), "{e:?}");

    // The SDK will not mint a widening delegation, nor let a non-holder delegate.
    let err =
        f.m.try_grant(
            &f.root,
            &f.agent,
            &worker,
            "deploy",
            json!({"replicas": {"range": [1, 50]}}),
            300,
        )
        .unwrap_err();
    assert!(err.contains("Monotonicity") || err.contains("Range"), "{err}");
    let err =
        f.m.try_grant(&f.root, &worker, &worker, "deploy", Value::Null, 300)
            .unwrap_err();
    assert!(err.contains("DelegationAuthorityError"), "{err}");
}

#[test]
fn untrusted_root_is_denied() {
    let f = fixture();
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &deploy_args(), None);
    let other = f.m.key();
    for (label, trusted) in [("other issuer", &other), ("the holder", &f.agent)] {
        let e = denied(check(
            &authorizer(trusted),
            &f.root.warrant,
            "deploy",
            &deploy_args(),
            Some(&pop.std),
        ));
        assert!(matches!(e, Error::UntrustedRoot), "{label}: {e:?}");
    }
}

#[test]
fn expired_warrant_is_denied() {
    let f = fixture();
    let auth = authorizer(&f.issuer);
    let chain = decode_header(&f.root.warrant).unwrap();
    let a = args(&deploy_args());
    // Evaluated well past expiry (beyond the default 30 s clock tolerance),
    // with a PoP that is fresh at that instant.
    let at = f.root.expires_at + 120;
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &deploy_args(), Some(at));
    let sig = decode_pop(&pop.std);
    let e = auth
        .check_chain_with_pop_args_as_of(&chain, "deploy", &a, &a, Some(&sig), &[], at)
        .unwrap_err();
    assert!(matches!(e, Error::WarrantExpired { .. }), "{e:?}");
    // The same call just before expiry passes.
    let at = f.root.expires_at - 5;
    let pop = f.m.pop(&f.root, &f.agent, "deploy", &deploy_args(), Some(at));
    auth.check_chain_with_pop_args_as_of(&chain, "deploy", &a, &a, Some(&decode_pop(&pop.std)), &[], at)
        .expect("valid just before expiry");
}

#[test]
fn sdk_revocation_list_revokes_in_the_crate() {
    let f = fixture();
    let worker = f.m.key();
    let child = f.m.grant(&f.root, &f.agent, &worker, "deploy", Value::Null, 300);
    let header = f.m.stack(&[&f.root, &child]);
    let pop = f.m.pop(&child, &worker, "deploy", &deploy_args(), None);
    let with_srl = |revoked: &[&str], version| {
        let srl = f.m.srl(&f.issuer, revoked, version);
        assert_eq!(STANDARD.decode(&srl.b64).unwrap(), srl.bytes());
        let list = ::tenuo::SignedRevocationList::from_bytes(&srl.bytes()).expect("SRL decodes");
        list.verify(&pk(&f.issuer)).expect("SRL signed by the issuer");
        Authorizer::builder()
            .trusted_root(pk(&f.issuer))
            .revocation_list(list, pk(&f.issuer))
            .build()
            .expect("authorizer with SRL")
    };
    check(&with_srl(&[], 1), &header, "deploy", &deploy_args(), Some(&pop.std)).expect("empty SRL");
    check(
        &with_srl(&["tnu_wrt_00000000000000000000000000000000"], 2),
        &header,
        "deploy",
        &deploy_args(),
        Some(&pop.std),
    )
    .expect("unrelated id revoked");
    for (label, id) in [("leaf", &child.id), ("root", &f.root.id)] {
        let e = denied(check(
            &with_srl(&[id], 3),
            &header,
            "deploy",
            &deploy_args(),
            Some(&pop.std),
        ));
        assert!(matches!(e, Error::WarrantRevoked(_)), "{label}: {e:?}");
    }
}

#[test]
fn tampered_or_garbled_warrant_headers_do_not_decode() {
    let f = fixture();
    let raw = URL_SAFE_NO_PAD.decode(&f.root.warrant).unwrap();
    // Flip one bit in every 7th byte position, one at a time.
    for i in (0..raw.len()).step_by(7) {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let r = decode_header(&URL_SAFE_NO_PAD.encode(&bad));
        assert!(r.is_err(), "bit flip at byte {i} of {} still decodes", raw.len());
    }
    for garbage in ["", "!!!", "AAAA", &f.root.warrant[..f.root.warrant.len() / 2]] {
        assert!(decode_header(garbage).is_err(), "{garbage:?} decodes");
    }
    // The SDK refuses them as well.
    assert!(f.m.inspect("AAAA").is_err());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
