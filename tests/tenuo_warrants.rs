//! Tenuo warrants end to end: warrants, delegation stacks and PoPs minted by
//! Tenuo's own Python SDK (tests/tenuo/mint.py), through a real Envoy
//! (envoy/envoy.yaml, with its `with_request_body` example enabled where a
//! tool reads the body) to portcullis and the echo upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::tenuo::{tenuo_section, write_gateway, Key, Minter, GATEWAY};
use common::{wait_until, Logs, Req, Resp, Stack};
use serde_json::{json, Value};

fn caps() -> Value {
    json!({
        "read_file": {"path": {"pattern": "/data/*"}},
        "deploy": {"cluster": {"pattern": "staging-*"}, "replicas": {"range": [1, 10]}},
    })
}

struct World {
    stack: Stack,
    minter: Minter,
    issuer: Key,
    agent: Key,
    gateway: PathBuf,
    logs: std::sync::Arc<Logs>,
}

/// A stack whose portcullis trusts `issuers` (`None`: a fresh issuer key),
/// reads `GATEWAY` from a file, and applies `edit` to its config.
fn world(edit: impl FnOnce(&mut Value) + 'static) -> World {
    world_with(true, edit)
}

/// `body`: whether Envoy forwards request bodies to portcullis.
fn world_with(body: bool, edit: impl FnOnce(&mut Value) + 'static) -> World {
    let logs = Logs::new();
    let minter = Minter::start(&logs);
    let (issuer, agent) = (minter.key(), minter.key());
    let gateway = write_gateway(&logs, GATEWAY);
    let mut tenuo = tenuo_section(&issuer.public_hex, &gateway);
    tenuo["reload_interval_seconds"] = json!(1);
    let builder = if body {
        Stack::builder().with_request_body()
    } else {
        Stack::builder()
    };
    let stack = builder
        .config(move |c| {
            c["tenuo"] = tenuo;
            c["rules"] = json!([{"path_prefix": "/", "require": "tenuo"}]);
            edit(c);
        })
        .start();
    World {
        stack,
        minter,
        issuer,
        agent,
        gateway,
        logs,
    }
}

fn read(stack: &Stack, path: &str, warrant: &str, pop: Option<&str>) -> Resp {
    let mut req = Req::get(path).header("X-Tenuo-Warrant", warrant);
    if let Some(p) = pop {
        req = req.header("X-Tenuo-PoP", p);
    }
    stack.send(&req)
}

fn deploy(stack: &Stack, cluster: &str, body: &Value, warrant: &str, pop: &str) -> Resp {
    stack.send(
        &Req::post_json(&format!("/clusters/{cluster}/deploy"), body)
            .header("X-Tenuo-Warrant", warrant)
            .header("X-Tenuo-PoP", pop),
    )
}

fn file_args(path: &str) -> Value {
    json!({ "path": path })
}

/// Status, `reason` of the body, and the debug header's first word.
fn denial(r: &Resp) -> (u16, String, String) {
    let body = r.json();
    let debug = r.header("x-tenuo-deny-reason").unwrap_or_default();
    (
        r.status,
        body["reason"].as_str().unwrap_or_default().to_string(),
        debug.split(':').next().unwrap_or_default().to_string(),
    )
}

fn expect_denied(w: &World, r: &Resp, status: u16, reason: &str) {
    let (got_status, got_reason, debug) = denial(r);
    assert_eq!(
        (got_status, got_reason.as_str(), debug.as_str()),
        (status, reason, reason),
        "{}\n{}",
        r.summary(),
        w.stack.portcullis.logs_tail(5)
    );
}

fn holder_fingerprint(k: &Key) -> String {
    tenuo::PublicKey::from_bytes(&k.public_bytes())
        .expect("key")
        .fingerprint()
}

#[test]
fn sdk_warrants_and_chains_pass_envoy_with_injected_identity() {
    let w = world(|_| {});
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, caps(), 600);
    let args = file_args("/data/report.csv");
    let pop = m.pop(&root, &w.agent, "read_file", &args, None);

    // The SDK's own PoP encoding, and the two others verifiers accept.
    for p in [&pop.std, &pop.urlsafe, &pop.hex] {
        let r = s.send(
            &Req::get("/files?path=/data/report.csv")
                .header("X-Tenuo-Warrant", &root.warrant)
                .header("X-Tenuo-PoP", p)
                // Spoofed: must be overwritten or removed.
                .header("x-tenuo-tool", "deploy")
                .header("X-Tenuo-Warrant-Id", "tnu_wrt_forged")
                .header("x-user-id", "root"),
        );
        assert_eq!(r.status, 200, "{}", r.summary());
        let up = r.upstream();
        assert_eq!(up.header_all("x-tenuo-warrant-id"), [root.id.as_str()]);
        assert_eq!(up.header_all("x-tenuo-tool"), ["read_file"]);
        assert_eq!(up.header_all("x-tenuo-holder"), [holder_fingerprint(&w.agent).as_str()]);
        assert_eq!(up.header_all("x-tenuo-root-issuer"), [w.issuer.public_hex.as_str()]);
        assert!(up.header("x-user-id").is_none(), "a warrant proves no user");
        // Not removed unless remove_credential_headers is set.
        assert_eq!(up.header("x-tenuo-warrant"), Some(root.warrant.as_str()));
    }

    // A delegated chain: agent -> sub, narrower, sent as the SDK's padded standard base64 stack.
    let sub = m.key();
    let child = m.grant(
        &root,
        &w.agent,
        &sub,
        "deploy",
        json!({"cluster": {"pattern": "staging-eu*"}, "replicas": {"range": [1, 5]}}),
        300,
    );
    let stack_header = m.stack(&[&root, &child]);
    assert!(stack_header.ends_with('=') || stack_header.contains('+') || stack_header.contains('/'));
    let body = json!({"spec": {"replicas": 3}});
    let pop = m.pop(
        &child,
        &sub,
        "deploy",
        &json!({"cluster": "staging-eu1", "replicas": 3}),
        None,
    );
    let r = deploy(s, "staging-eu1", &body, &stack_header, &pop.std);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.upstream().header("x-tenuo-warrant-id"), Some(child.id.as_str()));
    assert_eq!(
        r.upstream().header("x-tenuo-holder"),
        Some(holder_fingerprint(&sub).as_str())
    );
    assert_eq!(
        r.upstream().header("x-tenuo-root-issuer"),
        Some(w.issuer.public_hex.as_str())
    );

    // The SDK's one-call header helper.
    let h = m
        .headers(
            &child,
            &sub,
            "deploy",
            &json!({"cluster": "staging-eu2", "replicas": 1}),
            &[&root],
        )
        .expect("sdk headers");
    let r = deploy(
        s,
        "staging-eu2",
        &json!({"spec": {"replicas": 1}}),
        h["X-Tenuo-Warrant"].as_str().expect("warrant"),
        h["X-Tenuo-PoP"].as_str().expect("pop"),
    );
    assert_eq!(r.status, 200, "{}", r.summary());

    // The seed's metrics, with the tool label.
    let metrics = s.admin("/metrics").text();
    for needle in [
        r#"tenuo_authz_total{result="allow",tool="read_file"} 3"#,
        r#"tenuo_authz_total{result="allow",tool="deploy"} 2"#,
        "tenuo_authz_duration_seconds_count 5",
        "tenuo_warrant_ttl_remaining_seconds_count 5",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }
}

fn doc_caps() -> Value {
    json!({
        "get_doc": {"name": {"wildcard": true}, "tenant": {"exact": "acme"}},
        "scale": {"cluster": {"pattern": "staging-*"}, "replicas": {"range": [1, 3]}},
    })
}

fn get_doc(s: &Stack, target: &str, tenants: &[&str], warrant: &str, pop: &str) -> Resp {
    let mut req = Req::get(target)
        .header("X-Tenuo-Warrant", warrant)
        .header("X-Tenuo-PoP", pop);
    for t in tenants {
        req = req.header("X-Tenant", t);
    }
    s.send(&req)
}

fn scale(s: &Stack, cluster: &str, body: Option<(&str, &[u8])>, warrant: &str, pop: &str) -> Resp {
    let mut req = Req::new("POST", &format!("/clusters/{cluster}/scale"))
        .header("X-Tenuo-Warrant", warrant)
        .header("X-Tenuo-PoP", pop);
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    s.send(&req)
}

/// Path parameters are what Envoy sent (so an SDK PoP over the encoded name
/// verifies, as with tenuo-authorizer); what the upstream could read another
/// way than the verifier did is refused.
#[test]
fn arguments_are_read_as_sent_and_ambiguous_ones_refused() {
    let w = world(|_| {});
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, doc_caps(), 600);
    let pop_for = |name: &str, tenant: &str| {
        m.pop(
            &root,
            &w.agent,
            "get_doc",
            &json!({"name": name, "tenant": tenant}),
            None,
        )
        .std
    };

    // A file name with a space, percent-encoded in the path: signed as sent.
    let pop = pop_for("my%20file.txt", "acme");
    let r = get_doc(s, "/docs/my%20file.txt", &["acme"], &root.warrant, &pop);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.upstream().path, "/docs/my%20file.txt");
    // Signed over the decoded name: not what tenuo-authorizer extracts either.
    let decoded = pop_for("my file.txt", "acme");
    let r = get_doc(s, "/docs/my%20file.txt", &["acme"], &root.warrant, &decoded);
    expect_denied(&w, &r, 403, "invalid_pop");

    // `;` in a tool route's path: refused, whatever the PoP covers. (The
    // global path judge may refuse it first, as `invalid_path`.)
    let hits = s.echo_hits();
    let pop = pop_for("a;b.txt", "acme");
    let r = get_doc(s, "/docs/a;b.txt", &["acme"], &root.warrant, &pop);
    let (status, reason, _) = denial(&r);
    assert_eq!(status, 400, "{}", r.summary());
    assert!(
        ["extraction_failed", "invalid_path"].contains(&reason.as_str()),
        "{reason}"
    );

    // A header argument sent twice, or as a comma-joined list: ambiguous.
    let pop = pop_for("x.txt", "acme");
    let r = get_doc(s, "/docs/x.txt", &["acme", "acme"], &root.warrant, &pop);
    expect_denied(&w, &r, 400, "extraction_failed");
    let joined = pop_for("x.txt", "acme,evil");
    let r = get_doc(s, "/docs/x.txt", &["acme,evil"], &root.warrant, &joined);
    expect_denied(&w, &r, 400, "extraction_failed");
    assert_eq!(s.echo_hits(), hits, "no refused request reached the upstream");
    let r = get_doc(s, "/docs/x.txt", &["acme"], &root.warrant, &pop);
    assert_eq!(r.status, 200, "{}", r.summary());

    // Bodies: JSON is read; a body that is not JSON never means "use the default".
    let scale_pop = |replicas: i64| {
        m.pop(
            &root,
            &w.agent,
            "scale",
            &json!({"cluster": "staging-1", "replicas": replicas}),
            None,
        )
        .std
    };
    let r = scale(
        s,
        "staging-1",
        Some(("application/json", br#"{"replicas":2}"#)),
        &root.warrant,
        &scale_pop(2),
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    let r = scale(
        s,
        "staging-1",
        Some(("text/plain", b"replicas=50")),
        &root.warrant,
        &scale_pop(1),
    );
    expect_denied(&w, &r, 400, "extraction_failed");
    // No body at all: the default applies, as in tenuo-authorizer.
    let r = scale(s, "staging-1", None, &root.warrant, &scale_pop(1));
    assert_eq!(r.status, 200, "{}", r.summary());
}

/// Without `with_request_body` Envoy sends the headers only: a body
/// argument cannot be read, and must not silently become its default while
/// the upstream reads the real body.
#[test]
fn a_body_that_envoy_did_not_forward_is_never_replaced_by_the_default() {
    let w = world_with(false, |_| {});
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, doc_caps(), 600);
    let default_pop = m
        .pop(
            &root,
            &w.agent,
            "scale",
            &json!({"cluster": "staging-1", "replicas": 1}),
            None,
        )
        .std;
    let hits = s.echo_hits();
    let r = scale(
        s,
        "staging-1",
        Some(("application/json", br#"{"replicas":50}"#)),
        &root.warrant,
        &default_pop,
    );
    expect_denied(&w, &r, 400, "extraction_failed");
    assert_eq!(s.echo_hits(), hits);
    assert!(
        w.stack.portcullis.logs_tail(20).contains("did not forward"),
        "{}",
        w.stack.portcullis.logs_tail(20)
    );
    let r = scale(s, "staging-1", None, &root.warrant, &default_pop);
    assert_eq!(r.status, 200, "{}", r.summary());
}

#[test]
fn broken_warrants_are_denied_with_the_right_reason_and_never_reach_upstream() {
    let w = world(|_| {});
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, caps(), 600);
    let files_only = m.mint(
        &w.issuer,
        &w.agent,
        json!({"read_file": {"path": {"pattern": "/data/*"}}}),
        600,
    );
    let short = m.mint(&w.issuer, &w.agent, caps(), 1);
    let stranger = m.key();
    let rogue_issuer = m.key();
    let rogue = m.mint(&rogue_issuer, &w.agent, caps(), 600);
    let sub = m.key();
    let child = m.grant(
        &root,
        &w.agent,
        &sub,
        "read_file",
        json!({"path": {"pattern": "/data/*"}}),
        300,
    );
    let ok_args = file_args("/data/a.csv");
    let ok_pop = m.pop(&root, &w.agent, "read_file", &ok_args, None).std;
    std::thread::sleep(Duration::from_millis(2100)); // `short` expires
    let hits = s.echo_hits();

    expect_denied(&w, &s.get("/files?path=/data/a.csv", &[]), 401, "missing_warrant");
    let r = s.get("/files?path=/data/a.csv", &[]);
    assert_eq!(r.header("www-authenticate"), Some("Tenuo realm=\"portcullis\""));

    // A byte changed in the signed payload: the SDK's signature no longer verifies.
    let mut tampered = root.warrant.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &tampered, Some(&ok_pop)),
        400,
        "invalid_warrant",
    );
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", "%%%not-base64", Some(&ok_pop)),
        400,
        "invalid_warrant",
    );

    // Wrong tool: a files-only warrant on the deploy route.
    let dargs = json!({"cluster": "staging-1", "replicas": 2});
    let pop = m.pop(&files_only, &w.agent, "deploy", &dargs, None).std;
    let r = deploy(
        s,
        "staging-1",
        &json!({"spec": {"replicas": 2}}),
        &files_only.warrant,
        &pop,
    );
    expect_denied(&w, &r, 403, "tool_not_in_warrant");

    // Constraint violation, with a PoP that is valid for exactly these args.
    let bad = file_args("/etc/passwd");
    let pop = m.pop(&root, &w.agent, "read_file", &bad, None).std;
    let r = read(s, "/files?path=/etc/passwd", &root.warrant, Some(&pop));
    expect_denied(&w, &r, 403, "constraint_violation");
    // tenuo-authorizer's 403 body, so its clients keep parsing it.
    let body = r.json();
    assert_eq!(body["authorized"], json!(false));
    assert_eq!(body["error"], json!("constraint-violation"));
    assert_eq!(body["error_code"], json!(1501));
    assert_eq!(body["warrant_id"], json!(root.id));
    assert_eq!(body["tool"], json!("read_file"));
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
    let debug = r.header("x-tenuo-deny-reason").unwrap_or_default();
    assert!(debug.contains("path") && debug.contains("/etc/passwd"), "{debug}");

    let pop = m.pop(&short, &w.agent, "read_file", &ok_args, None).std;
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &short.warrant, Some(&pop)),
        403,
        "warrant_expired",
    );
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &root.warrant, None),
        403,
        "missing_pop",
    );
    // PoP for other args, PoP by another key, PoP that is not a signature.
    let other = m.pop(&root, &w.agent, "read_file", &file_args("/data/b.csv"), None).std;
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &root.warrant, Some(&other)),
        403,
        "invalid_pop",
    );
    let by_stranger = m.pop(&root, &stranger, "read_file", &ok_args, None).std;
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &root.warrant, Some(&by_stranger)),
        403,
        "invalid_pop",
    );
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &root.warrant, Some("AAAA")),
        403,
        "invalid_pop",
    );
    // A stale PoP (4 windows old) is refused; one a window old is still fine.
    let stale = m
        .pop(&root, &w.agent, "read_file", &ok_args, Some(common::now() - 125))
        .std;
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &root.warrant, Some(&stale)),
        403,
        "invalid_pop",
    );

    // Delegated leaf without its parents; a chain from an issuer nobody trusts.
    let pop = m.pop(&child, &sub, "read_file", &ok_args, None).std;
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &child.warrant, Some(&pop)),
        403,
        "untrusted_root",
    );
    let pop = m.pop(&rogue, &w.agent, "read_file", &ok_args, None).std;
    expect_denied(
        &w,
        &read(s, "/files?path=/data/a.csv", &rogue.warrant, Some(&pop)),
        403,
        "untrusted_root",
    );

    // No gateway route for this method + path; a required argument missing.
    expect_denied(&w, &read(s, "/files/x", &root.warrant, Some(&ok_pop)), 404, "no_route");
    expect_denied(
        &w,
        &read(s, "/files", &root.warrant, Some(&ok_pop)),
        400,
        "extraction_failed",
    );
    // Parameter pollution: the upstream might read the other copy.
    let r = read(
        s,
        "/files?path=/data/a.csv&path=/etc/passwd",
        &root.warrant,
        Some(&ok_pop),
    );
    expect_denied(&w, &r, 400, "extraction_failed");

    assert_eq!(s.echo_hits(), hits, "a denied request reached the upstream");

    // The seed's log line for a denial, and never the warrant itself.
    let out = s.portcullis.stdout();
    let line = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["reason"] == "constraint_violation")
        .expect("constraint_violation log line");
    assert_eq!(line["event"], "authorization_denied");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["tool"], "read_file");
    assert_eq!(line["constraint"], "path");
    assert_eq!(line["actual"], "/etc/passwd");
    assert!(line["expected"].as_str().is_some_and(|e| !e.is_empty()), "{line}");
    assert!(!out.contains(&root.warrant), "a warrant was logged");
}

#[test]
fn require_any_all_and_oidc_combine_tokens_and_warrants() {
    let w = world(|c| {
        c["rules"] = json!([
            {"path_prefix": "/files/both", "require": "all"},
            {"path_prefix": "/clusters", "require": "tenuo"},
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/", "require": "any"},
        ]);
    });
    std::fs::write(
        &w.gateway,
        GATEWAY.replace(
            "routes:\n",
            "routes:\n  - { pattern: \"/files/both\", method: [GET], tool: read_file }\n  - { pattern: \"/files/either\", method: [GET], tool: read_file }\n",
        ),
    )
    .expect("gateway");
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, caps(), 600);
    let args = file_args("/data/a");
    let pop = m.pop(&root, &w.agent, "read_file", &args, None).std;
    let token = s.token_for("alice", &["dev"]);
    // The gateway file changed: wait for the reload to pick it up.
    wait_until(
        "gateway reload",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let r = read(s, "/files/either?path=/data/a", &root.warrant, Some(&pop));
            if r.status == 200 {
                Ok(())
            } else {
                Err(r.summary())
            }
        },
    );

    let with = |path: &str, bearer: Option<&str>, warrant: Option<(&str, &str)>| {
        let mut req = Req::get(path);
        if let Some(t) = bearer {
            req = req.bearer(t);
        }
        if let Some((wh, p)) = warrant {
            req = req.header("X-Tenuo-Warrant", wh).header("X-Tenuo-PoP", p);
        }
        s.send(&req)
    };
    let wp = Some((root.warrant.as_str(), pop.as_str()));

    // any: a token alone, a warrant alone, or both; nothing is 401.
    let r = with("/files/either?path=/data/a", Some(&token), None);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.upstream().header("x-user-id"), Some("alice"));
    assert!(r.upstream().header("x-tenuo-warrant-id").is_none());
    let r = with("/files/either?path=/data/a", None, wp);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.upstream().header("x-tenuo-warrant-id"), Some(root.id.as_str()));
    assert!(r.upstream().header("x-user-id").is_none());
    let r = with("/files/either?path=/data/a", None, None);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (401, Some("missing_credential"))
    );
    // Every credential presented must hold: a good token does not excuse a bad PoP.
    let r = with(
        "/files/either?path=/data/a",
        Some(&token),
        Some((root.warrant.as_str(), "AAAA")),
    );
    assert_eq!((r.status, r.json()["reason"].as_str()), (403, Some("invalid_pop")));
    let r = with("/files/either?path=/data/a", Some("not.a.jwt"), wp);
    assert_eq!(r.status, 401, "{}", r.summary());

    // all: both, and both identities reach the upstream.
    let r = with("/files/both?path=/data/a", Some(&token), None);
    assert_eq!((r.status, r.json()["reason"].as_str()), (401, Some("missing_warrant")));
    let r = with("/files/both?path=/data/a", None, wp);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (401, Some("missing_credential"))
    );
    let r = with("/files/both?path=/data/a", Some(&token), wp);
    assert_eq!(r.status, 200, "{}", r.summary());
    let up = r.upstream();
    assert_eq!(up.header("x-user-id"), Some("alice"));
    assert_eq!(up.header("x-tenuo-tool"), Some("read_file"));

    // tenuo: a token is not enough; oidc with groups: a warrant is not enough.
    let r = s.send(&Req::post_json("/clusters/staging-1/deploy", &json!({"spec": {"replicas": 1}})).bearer(&token));
    assert_eq!((r.status, r.json()["reason"].as_str()), (401, Some("missing_warrant")));
    let r = with("/admin", None, wp);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (401, Some("missing_credential"))
    );
    let admin = s.token_for("root", &["admins"]);
    assert_eq!(with("/admin", Some(&admin), None).status, 200);
}

/// The seed's rotation steps, with no restart: trust old + new, switch the
/// control plane to new, remove old. Removing a key takes effect at once,
/// even for a warrant whose decisions are cached.
#[test]
fn trusted_issuers_rotate_at_runtime_and_bad_reloads_keep_the_old_set() {
    let w = world(|_| {});
    let (m, s) = (&w.minter, &w.stack);
    let pid = s.portcullis.pid();
    let new_issuer = m.key();
    let old_w = m.mint(&w.issuer, &w.agent, caps(), 600);
    let new_w = m.mint(&new_issuer, &w.agent, caps(), 600);
    let args = file_args("/data/a");
    let old_pop = m.pop(&old_w, &w.agent, "read_file", &args, None).std;
    let new_pop = m.pop(&new_w, &w.agent, "read_file", &args, None).std;
    let status = |wt: &str, p: &str| read(s, "/files?path=/data/a", wt, Some(p)).status;
    let set_issuers = |keys: &[&str]| {
        let mut config = s.config.clone();
        config["tenuo"]["trusted_issuers"] = json!(keys);
        // A problem outside the tenuo section (which applies only at
        // start-up) is none of the trust reload's business.
        config["listen"] = json!("not an address");
        common::write_config(&s.config_path, &config);
        s.portcullis.signal("HUP");
    };
    let await_status = |what: &str, wt: &str, p: &str, want: u16| {
        wait_until(what, Duration::from_secs(10), Duration::from_millis(100), || {
            let got = status(wt, p);
            if got == want {
                Ok(())
            } else {
                Err(format!("status {got}"))
            }
        });
    };

    // Warm the caches with the old warrant (stack + exact repeat).
    for _ in 0..3 {
        assert_eq!(status(&old_w.warrant, &old_pop), 200);
    }
    assert_eq!(status(&new_w.warrant, &new_pop), 403);

    // 1. add the new key
    set_issuers(&[&w.issuer.public_hex, &new_issuer.public_hex]);
    await_status("new issuer trusted", &new_w.warrant, &new_pop, 200);
    assert_eq!(status(&old_w.warrant, &old_pop), 200, "old warrants keep working");

    // A broken config is refused; the running set stays.
    std::fs::write(&s.config_path, "tenuo: [this is not a config").expect("write");
    s.portcullis.signal("HUP");
    s.portcullis
        .await_stdout("reload failure logged", "tenuo_reload_failed", Duration::from_secs(10));
    assert_eq!(status(&new_w.warrant, &new_pop), 200);
    assert_eq!(status(&old_w.warrant, &old_pop), 200);
    // An issuer key that is not a key: refused too, and the log says which.
    set_issuers(&["zz"]);
    s.portcullis.await_stdout(
        "the bad key named in the log",
        "tenuo.trusted_issuers[0]: must be a 32-byte Ed25519 public key",
        Duration::from_secs(10),
    );
    assert_eq!(status(&old_w.warrant, &old_pop), 200);

    // 5. remove the old key: its cached decisions go with it.
    set_issuers(&[&new_issuer.public_hex]);
    await_status("old issuer removed", &old_w.warrant, &old_pop, 403);
    let r = read(s, "/files?path=/data/a", &old_w.warrant, Some(&old_pop));
    assert_eq!(r.json()["reason"], "untrusted_root");
    assert_eq!(status(&new_w.warrant, &new_pop), 200);
    assert_eq!(s.portcullis.pid(), pid, "no restart");
    let metrics = s.admin("/metrics").text();
    assert!(metrics.contains("portcullis_tenuo_trusted_issuers 1"), "{metrics}");
    assert!(
        metrics.contains(r#"portcullis_tenuo_reloads_total{result="failure"}"#),
        "{metrics}"
    );
}

/// A signed revocation list (minted by the SDK), reloaded from its file:
/// revoking takes effect without a restart, a rollback to an older list is refused.
#[test]
fn revocation_list_file_is_reloaded_and_never_rolled_back() {
    // The list must be signed by a trusted issuer, which exists only once the
    // world is up: the config gains `revocation_list` by a reload.
    let w = world(|_| {});
    let srl_path = w.logs.path().join("revoked.srl");
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, caps(), 600);
    let spare = m.mint(&w.issuer, &w.agent, caps(), 600);
    let args = file_args("/data/a");
    let pop = m.pop(&root, &w.agent, "read_file", &args, None).std;
    let spare_pop = m.pop(&spare, &w.agent, "read_file", &args, None).std;
    assert_eq!(read(s, "/files?path=/data/a", &root.warrant, Some(&pop)).status, 200);

    let v1 = m.srl(&w.issuer, &[], 1);
    std::fs::write(&srl_path, v1.bytes()).expect("srl");
    let mut config = s.config.clone();
    config["tenuo"]["revocation_list"] = json!(srl_path.display().to_string());
    common::write_config(&s.config_path, &config);
    s.portcullis.signal("HUP");
    let v2 = m.srl(&w.issuer, &[&root.id], 2);
    std::fs::write(&srl_path, v2.bytes()).expect("srl");
    wait_until(
        "revocation applied",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let r = read(s, "/files?path=/data/a", &root.warrant, Some(&pop));
            if r.status == 403 && r.json()["reason"] == "warrant_revoked" {
                Ok(())
            } else {
                Err(r.summary())
            }
        },
    );
    assert_eq!(
        read(s, "/files?path=/data/a", &spare.warrant, Some(&spare_pop)).status,
        200
    );

    // Rolling the file back to version 1 is refused: the warrant stays revoked.
    std::fs::write(&srl_path, v1.bytes()).expect("srl");
    s.portcullis.signal("HUP");
    s.portcullis
        .await_stdout("rollback refused", "rollback refused", Duration::from_secs(10));
    assert_eq!(read(s, "/files?path=/data/a", &root.warrant, Some(&pop)).status, 403);

    // An SRL signed by a key that is not trusted is refused as well.
    let outsider = m.key();
    std::fs::write(&srl_path, m.srl(&outsider, &[], 3).bytes()).expect("srl");
    let failures = || s.portcullis.stdout().matches("tenuo_reload_failed").count();
    let before = failures();
    s.portcullis.signal("HUP");
    wait_until(
        "the foreign SRL refused",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            if failures() > before {
                Ok(())
            } else {
                Err("no new tenuo_reload_failed in its log yet".into())
            }
        },
    );
    assert_eq!(read(s, "/files?path=/data/a", &root.warrant, Some(&pop)).status, 403);
}

#[test]
fn credential_headers_can_be_removed_before_the_upstream() {
    let w = world(|c| c["tenuo"]["remove_credential_headers"] = json!(true));
    let (m, s) = (&w.minter, &w.stack);
    let root = m.mint(&w.issuer, &w.agent, caps(), 600);
    let pop = m.pop(&root, &w.agent, "read_file", &file_args("/data/a"), None).std;
    let r = read(s, "/files?path=/data/a", &root.warrant, Some(&pop));
    assert_eq!(r.status, 200, "{}", r.summary());
    let up = r.upstream();
    assert!(up.header("x-tenuo-warrant").is_none() && up.header("x-tenuo-pop").is_none());
    assert_eq!(up.header("x-tenuo-warrant-id"), Some(root.id.as_str()));
}
