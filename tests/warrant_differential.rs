//! Differential test: on a generated corpus of warrant requests (valid and
//! broken), portcullis's allow/deny equals the `tenuo` crate's own
//! `Authorizer::check_chain` on the same stack, tool, arguments and PoP —
//! on the first request (cold caches), on an immediate repeat (exact-repeat
//! cache) and after the whole corpus has warmed the stack cache.
//!
//! Path parameters are compared as sent (`staging-eu%201` stays encoded, as
//! tenuo-authorizer's matchit leaves it). Two deliberate differences are
//! checked the other way round: a `;` in a tool route's path and a header
//! argument holding a comma-joined list (what Envoy makes of a repeated
//! header) are allowed by the crate but refused by portcullis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

#[path = "support/warrant.rs"]
mod fixture;

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use fixture::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenuo::{Authorizer, ConstraintValue, SigningKey, Warrant};

struct Case {
    label: String,
    header: String,
    tool: &'static str,
    args: HashMap<String, ConstraintValue>,
    pop: Option<String>,
    request: CheckRequest,
    /// Refused by portcullis on purpose although the crate allows it.
    refused: bool,
}

/// What tenuo-authorizer does with the same headers: decode (URL-safe, then
/// standard; stack, then single), then one `check_chain`.
fn crate_allows(authorizer: &Authorizer, case: &Case) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD
        .decode(case.header.trim())
        .or_else(|_| STANDARD.decode(case.header.trim()))
    else {
        return false;
    };
    let chain = match tenuo::wire::decode_stack(&bytes) {
        Ok(s) if !s.0.is_empty() => s.0,
        _ => match tenuo::wire::decode(&bytes) {
            Ok(w) => vec![w],
            Err(_) => return false,
        },
    };
    let pop = case.pop.as_deref().and_then(|p| {
        let raw = URL_SAFE_NO_PAD.decode(p).ok()?;
        tenuo::Signature::from_bytes(&raw.try_into().ok()?).ok()
    });
    authorizer
        .check_chain(&chain, case.tool, &case.args, pop.as_ref(), &[])
        .is_ok()
}

fn s(v: &str) -> ConstraintValue {
    ConstraintValue::String(v.into())
}

/// The request for a tool call, with its arguments where the gateway reads them.
fn request_for(tool: &str, args: &HashMap<String, ConstraintValue>, creds: &[(&str, &str)]) -> CheckRequest {
    let text = |k: &str| match args.get(k) {
        Some(ConstraintValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    match tool {
        "read_file" => {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("path", &text("path"))
                .finish();
            request("GET", &format!("/files?{q}"), creds, "")
        }
        "deploy" => {
            let replicas = match args.get("replicas") {
                Some(ConstraintValue::Integer(n)) => *n,
                _ => 0,
            };
            let body = format!(r#"{{"spec":{{"replicas":{replicas}}}}}"#);
            request("POST", &format!("/clusters/{}/deploy", text("cluster")), creds, &body)
        }
        _ => {
            let mut h = creds.to_vec();
            let tenant = text("tenant");
            h.push(("x-tenant", &tenant));
            request("GET", "/reports", &h, "")
        }
    }
}

fn tamper(header: &str) -> String {
    let mut bytes = URL_SAFE_NO_PAD.decode(header).expect("own encoding");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "current_thread")]
async fn portcullis_decides_like_check_chain_cold_and_warm() {
    let issuer = key();
    let untrusted = key();
    let agent = key();
    let sub = key();
    let stranger = key();
    let checker = checker(&[&issuer]);
    let authorizer = Authorizer::builder()
        .trusted_root(issuer.public_key())
        .build()
        .expect("authorizer");

    let all = || {
        vec![
            ("read_file", read_file_caps()),
            ("deploy", deploy_caps()),
            ("tenant_report", report_caps()),
        ]
    };
    let root = mint(&issuer, &agent, all(), 600);
    let narrow = constraints(vec![
        ("cluster", tenuo::Pattern::new("staging-eu*").expect("p").into()),
        ("replicas", tenuo::Range::new(Some(1.0), Some(5.0)).expect("r").into()),
    ]);
    let child = delegate(&root, &agent, &sub, "deploy", narrow, 300);
    let rogue = mint(&untrusted, &agent, all(), 600);
    let files_only = mint(&issuer, &agent, vec![("read_file", read_file_caps())], 600);
    let short = mint(&issuer, &agent, all(), 1);
    // Let `short` expire; everything else has minutes left.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    // (label, header, the warrant whose holder must sign, the holder's key)
    let stacks: Vec<(&str, String, &Warrant, &SigningKey)> = vec![
        ("root", header(&[&root]), &root, &agent),
        ("chain", header(&[&root, &child]), &child, &sub),
        ("leaf-alone", header(&[&child]), &child, &sub),
        ("untrusted", header(&[&rogue]), &rogue, &agent),
        ("files-only", header(&[&files_only]), &files_only, &agent),
        ("expired", header(&[&short]), &short, &agent),
        ("tampered", tamper(&header(&[&root])), &root, &agent),
        // Refused on its untrusted issuer before the broken signature is looked at.
        ("untrusted-tampered", tamper(&header(&[&rogue])), &rogue, &agent),
        ("leaf-first", header(&[&child, &root]), &child, &sub),
    ];
    let calls: Vec<(&'static str, Vec<(&str, ConstraintValue)>)> = vec![
        ("read_file", vec![("path", s("/data/report.csv"))]),
        ("read_file", vec![("path", s("/etc/passwd"))]),
        (
            "deploy",
            vec![("cluster", s("staging-eu1")), ("replicas", ConstraintValue::Integer(3))],
        ),
        (
            "deploy",
            vec![("cluster", s("staging-us1")), ("replicas", ConstraintValue::Integer(3))],
        ),
        (
            "deploy",
            vec![("cluster", s("staging-eu1")), ("replicas", ConstraintValue::Integer(8))],
        ),
        (
            "deploy",
            vec![("cluster", s("prod-eu1")), ("replicas", ConstraintValue::Integer(1))],
        ),
        ("tenant_report", vec![("tenant", s("acme"))]),
        // Percent-encoded: the path parameter is the encoded text, the query value decoded.
        (
            "deploy",
            vec![
                ("cluster", s("staging-eu%201")),
                ("replicas", ConstraintValue::Integer(2)),
            ],
        ),
        ("read_file", vec![("path", s("/data/my report.csv"))]),
        // Deliberate differences (see the module comment).
        (
            "deploy",
            vec![
                ("cluster", s("staging-eu1;x")),
                ("replicas", ConstraintValue::Integer(2)),
            ],
        ),
        ("tenant_report", vec![("tenant", s("acme,evil"))]),
    ];
    let refused = |pairs: &[(&str, ConstraintValue)]| {
        pairs
            .iter()
            .any(|(_, v)| matches!(v, ConstraintValue::String(t) if t.contains([';', ','])))
    };
    let now = chrono::Utc::now().timestamp();
    // PoP variants: offsets chosen so that a window boundary passing mid-test cannot flip them.
    let pops = [
        "now",
        "-35s",
        "+35s",
        "-125s",
        "+125s",
        "wrong-key",
        "other-args",
        "none",
        "garbage",
    ];

    let mut rng = StdRng::seed_from_u64(0x7e_40);
    let mut cases = Vec::new();
    for (label, hdr, signer_warrant, holder) in &stacks {
        for (tool, pairs) in &calls {
            let a = args(pairs);
            // Every stack x call once with a fresh PoP, plus two random PoP variants.
            let mut variants = vec!["now"];
            variants.push(pops[rng.random_range(0..pops.len())]);
            variants.push(pops[rng.random_range(0..pops.len())]);
            for variant in variants {
                let pop = match variant {
                    "now" => Some(pop(signer_warrant, holder, tool, &a, None)),
                    "-35s" => Some(pop(signer_warrant, holder, tool, &a, Some(now - 35))),
                    "+35s" => Some(pop(signer_warrant, holder, tool, &a, Some(now + 35))),
                    "-125s" => Some(pop(signer_warrant, holder, tool, &a, Some(now - 125))),
                    "+125s" => Some(pop(signer_warrant, holder, tool, &a, Some(now + 125))),
                    "wrong-key" => Some(pop(signer_warrant, &stranger, tool, &a, None)),
                    "other-args" => {
                        let other = args(&[("path", s("/data/other"))]);
                        Some(pop(signer_warrant, holder, tool, &other, None))
                    }
                    "garbage" => Some(URL_SAFE_NO_PAD.encode([9u8; 64])),
                    _ => None,
                };
                let mut creds = vec![("x-tenuo-warrant", hdr.as_str())];
                if let Some(p) = &pop {
                    creds.push(("x-tenuo-pop", p.as_str()));
                }
                let request = request_for(tool, &a, &creds);
                cases.push(Case {
                    label: format!("{label} {tool} {pairs:?} pop={variant}"),
                    header: hdr.clone(),
                    tool,
                    args: a.clone(),
                    pop,
                    request,
                    refused: refused(pairs),
                });
            }
        }
    }

    let mut allowed = 0;
    let mut refused_allowed_by_crate = 0;
    let mut encoded_allowed = 0;
    let mut mismatches = Vec::new();
    for pass in ["cold", "repeat"] {
        for case in &cases {
            let crate_says = crate_allows(&authorizer, case);
            let got = status(&checker.check(&case.request).await) == 200;
            let want = crate_says && !case.refused;
            if want != got {
                mismatches.push(format!("[{pass}] {}: crate {crate_says}, portcullis {got}", case.label));
            }
            allowed += usize::from(got && pass == "cold");
            refused_allowed_by_crate += usize::from(case.refused && crate_says && pass == "cold");
            encoded_allowed += usize::from(got && pass == "cold" && case.label.contains("%20"));
        }
    }
    // An encoded path parameter is allowed when signed as sent (root, chain).
    assert!(encoded_allowed >= 2, "{encoded_allowed}");
    // The deliberate refusals must include requests the crate would allow.
    assert!(refused_allowed_by_crate >= 2, "{refused_allowed_by_crate}");
    // Warm caches, shuffled order: still the crate's decisions.
    let mut order: Vec<usize> = (0..cases.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    for i in order {
        let case = &cases[i];
        let crate_says = crate_allows(&authorizer, case);
        let got = status(&checker.check(&case.request).await) == 200;
        if (crate_says && !case.refused) != got {
            mismatches.push(format!("[warm] {}: crate {crate_says}, portcullis {got}", case.label));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The corpus must exercise both outcomes, or the comparison proves little.
    assert!(
        allowed >= 10 && allowed < cases.len() / 2,
        "allowed {allowed} of {}",
        cases.len()
    );
}
