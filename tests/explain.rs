//! `portcullis explain`: the real binary, on the config file of a running
//! stack (the node test IdP, portcullis, Envoy). Its decision must be the
//! server's: for every request below, `explain --json` gives the status and
//! reason the client gets through Envoy. It must also say which rule, which
//! identity and which header edits, judge a ticket's token at the time
//! given (`--at`), work offline with `--jwks-file`, and never print the
//! token.
//!
//! The comparison with a running server uses a stack on free ports with the
//! quickstart's kinds of rules (a bearer API, an `/admin` group rule, a
//! named policy): running the quickstart itself binds fixed ports (9090,
//! 9400…) that parallel test runs share. The quickstart's own config file
//! is explained too, offline, against the answers quickstart/run.sh expects;
//! quickstart/run.sh itself compares `explain --json` on that file with the
//! running quickstart server for every curl request it sends.
//!
//! Warrants (minted by Tenuo's Python SDK, tests/tenuo/mint.py) get the same
//! comparison, and explain's warrant steps are checked exactly: the tool and
//! arguments, each link of the chain as claimed, the PoP's window against
//! the clock, with no warrant or PoP bytes in the output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::path::Path;
use std::process::Command;

use common::tenuo::{tenuo_section, write_gateway, Key, Minted, Minter, Pop, GATEWAY};
use common::*;
use serde_json::{json, Value};

fn stack() -> Stack {
    Stack::builder()
        .rules(json!([
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/", "require": "oidc"},
        ]))
        .config(|c| c["policies"] = json!({"admins-only": {"allowed_groups": ["admins"]}}))
        .start()
}

/// Runs `portcullis explain --json --config <config> ARGS`: (exit code, JSON, all output).
fn explain(config: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .output()
        .expect("run portcullis explain");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, all)
}

fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}")
}

/// What the client got through Envoy: status and portcullis' reason.
fn through_envoy(s: &Stack, path: &str, headers: &[(&str, &str)]) -> (u64, String) {
    let r = s.get(path, headers);
    let reason = if r.status == 200 {
        "allowed".to_string()
    } else {
        r.json()["reason"].as_str().unwrap_or_default().to_string()
    };
    (u64::from(r.status), reason)
}

#[test]
fn explain_gives_the_running_server_s_answer_for_every_request() {
    let s = stack();
    let alice = s.token_for("alice", &["users"]);
    let root = s.token_for("root", &["admins"]);
    let expired = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "exp": now() - 600, "iat": now() - 4200}),
    );
    let other_audience = s.mint("RS256", json!({"sub": "alice", "aud": "someone-else"}));
    let forged = s
        .attack("unknown-kid")
        .into_iter()
        .next()
        .unwrap_or_else(|| "a.b.c".into());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("/api/items", vec![]),
        ("/api/items", vec![("authorization", format!("Bearer {alice}"))]),
        ("/admin/users", vec![("authorization", format!("Bearer {alice}"))]),
        ("/admin/users", vec![("authorization", format!("Bearer {root}"))]),
        ("/api/items", vec![("authorization", format!("Bearer {expired}"))]),
        (
            "/api/items",
            vec![("authorization", format!("Bearer {other_audience}"))],
        ),
        ("/api/items", vec![("authorization", format!("Bearer {forged}"))]),
        ("/api/items", vec![("authorization", "Bearer not.a.jwt".into())]),
        ("/api/items", vec![("authorization", "Basic dXNlcjpwYXNz".into())]),
        ("/api/items?q=1", vec![("authorization", format!("Bearer {alice}"))]),
    ];
    for (path, headers) in &cases {
        let sent: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, reason) = through_envoy(&s, path, &sent);
        let mut args = vec!["--path".to_string(), path.to_string()];
        for (k, v) in headers {
            args.push("--header".into());
            args.push(format!("{k}: {v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, e, out) = explain(&s.config_path, &args);
        assert_eq!(
            (e["status"].as_u64(), e["reason"].as_str()),
            (Some(status), Some(reason.as_str())),
            "{path} {headers:?}: explain disagrees with the server\n{out}"
        );
        assert_eq!(code, if status == 200 { 0 } else { 1 }, "{out}");
        for (_, v) in headers {
            if let Some(token) = v.strip_prefix("Bearer ") {
                assert!(!out.contains(token), "the token was printed:\n{out}");
            }
        }
    }
}

#[test]
fn explain_names_the_rule_the_identity_and_the_edits() {
    let s = stack();
    let root = s.token_for("root", &["admins", "ops"]);
    let (code, e, out) = explain(&s.config_path, &["--path", "/admin/x", "--header", &bearer(&root)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(e["decision"], "allow");
    assert_eq!(e["status"], 200);
    assert_eq!(e["reason"], "allowed");
    assert_eq!(e["rule"], json!({"index": 0, "prefix": "/admin", "policy": null}));
    assert_eq!(
        e["identity"],
        json!({
            "user": "root",
            "email": "root@example.com",
            "groups": ["admins", "ops"],
            "issuer": s.idp().issuer,
            "source": "oidc_user",
        })
    );
    assert_eq!(e["edits"]["set"]["x-user-id"], "root");
    assert_eq!(e["edits"]["set"]["x-auth-request-groups"], "admins,ops");
    assert!(e["edits"]["set"].get("authorization").is_none(), "{out}");
    assert!(!out.contains(&root), "the token was printed:\n{out}");
    let steps: Vec<&str> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for want in [
        "path",
        "rule",
        "credential",
        "token header",
        "issuer",
        "times",
        "verify",
        "identity",
    ] {
        assert!(steps.contains(&want), "no {want} step: {steps:?}");
    }
}

#[test]
fn explain_says_why_a_request_is_denied() {
    let s = stack();
    let alice = s.token_for("alice", &["users"]);

    let (code, e, out) = explain(&s.config_path, &["--path", "/admin/x"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        (&e["decision"], &e["status"], &e["reason"]),
        (&json!("deny"), &json!(401), &json!("missing_credential"))
    );
    assert_eq!(e["identity"], Value::Null);

    let (code, e, out) = explain(&s.config_path, &["--path", "/admin/x", "--header", &bearer(&alice)]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        (&e["status"], &e["reason"], &e["rule"]["prefix"]),
        (&json!(403), &json!("group_not_allowed"), &json!("/admin"))
    );

    // A route whose policy name is not configured: closed, and said why.
    let (code, e, out) = explain(
        &s.config_path,
        &[
            "--path",
            "/console",
            "--header",
            &bearer(&alice),
            "--context-extension",
            "portcullis_policy=admins-olny",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(e["reason"], "unknown_policy");
    assert_eq!(e["rule"]["policy"], "admins-olny");
    assert!(out.contains("not in `policies:`"), "{out}");

    // The named policy itself decides on its route.
    let (_, e, _) = explain(
        &s.config_path,
        &[
            "--path",
            "/console",
            "--header",
            &bearer(&alice),
            "--context-extension",
            "portcullis_policy=admins-only",
        ],
    );
    assert_eq!(
        (&e["reason"], &e["rule"]["index"]),
        (&json!("group_not_allowed"), &Value::Null)
    );

    // A query is shown by its size: it may carry a secret.
    let (_, _, out) = explain(&s.config_path, &["--path", "/api/x?access_token=sekrit-value"]);
    assert!(out.contains("+ query (26 bytes)") && !out.contains("sekrit"), "{out}");

    // A path whose meaning depends on the reader.
    let (code, e, out) = explain(&s.config_path, &["--path", "/admin/..;/x", "--header", &bearer(&alice)]);
    assert_eq!(
        (code, &e["status"], &e["reason"]),
        (1, &json!(400), &json!("invalid_path")),
        "{out}"
    );
}

#[test]
fn a_ticket_s_token_is_judged_at_the_time_given_and_offline_with_a_jwks_file() {
    let s = stack();
    let alice = s.token_for("alice", &["users"]);
    let later = (now() + 2 * 3600).to_string();
    let (code, e, out) = explain(
        &s.config_path,
        &["--path", "/api/x", "--header", &bearer(&alice), "--at", &later],
    );
    assert_eq!((code, &e["reason"]), (1, &json!("token_expired")), "{out}");
    assert!(!out.contains(&alice), "the token was printed:\n{out}");
    let at_issue = now().to_string();
    let (code, _, out) = explain(
        &s.config_path,
        &["--path", "/api/x", "--header", &bearer(&alice), "--at", &at_issue],
    );
    assert_eq!(code, 0, "{out}");

    // The keys from a file, with the issuer unreachable: no call is made.
    // What the issuer publishes, as an operator would save it.
    let jwks = http::send(s.idp().addr(), &Req::get("/jwks")).unwrap().json();
    assert!(jwks["keys"].is_array(), "{jwks}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    s.jwks_down();
    let file = file.to_str().unwrap();
    let (code, e, out) = explain(
        &s.config_path,
        &["--path", "/api/x", "--header", &bearer(&alice), "--jwks-file", file],
    );
    assert_eq!((code, &e["identity"]["user"]), (0, &json!("alice")), "{out}");
    let pair = format!("{}={file}", s.idp().issuer);
    let (code, _, out) = explain(
        &s.config_path,
        &["--path", "/api/x", "--header", &bearer(&alice), "--jwks-file", &pair],
    );
    assert_eq!(code, 0, "{out}");
    // A key the file does not have is unknown, not fetched.
    let forged = s.attack("unknown-kid").into_iter().next().unwrap();
    let (_, e, out) = explain(
        &s.config_path,
        &["--path", "/api/x", "--header", &bearer(&forged), "--jwks-file", file],
    );
    assert_eq!(e["reason"], "unknown_key", "{out}");
}

#[test]
fn a_check_request_as_json_is_explained_and_bad_input_exits_2() {
    let s = stack();
    let root = s.token_for("root", &["admins"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.json");
    let req = json!({"attributes": {
        "request": {"http": {
            "method": "GET", "path": "/console/a", "host": "app.example",
            "headers": {":method": "GET", ":path": "/console/a", "authorization": format!("Bearer {root}")},
        }},
        "contextExtensions": {"portcullis_policy": "admins-only"},
    }});
    std::fs::write(&file, req.to_string()).unwrap();
    let (code, e, out) = explain(&s.config_path, &["--check-request", file.to_str().unwrap()]);
    assert_eq!(
        (code, &e["decision"], &e["rule"]["policy"]),
        (0, &json!("allow"), &json!("admins-only")),
        "{out}"
    );
    assert!(!out.contains(&root), "the token was printed:\n{out}");

    std::fs::write(&file, "{}").unwrap();
    let (code, _, out) = explain(&s.config_path, &["--check-request", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    let (code, _, out) = explain(&s.config_path, &["--path", "/x", "--header", "no-colon"]);
    assert_eq!(code, 2, "{out}");
    let (code, _, out) = explain(Path::new("/nonexistent.yaml"), &["--path", "/x"]);
    assert_eq!(code, 2, "{out}");
}

/// The quickstart's own config file, offline: its issuer's keys from a file
/// (tokens signed here with the bench key, claims as quickstart/idp.mjs
/// issues them), and the answers quickstart/run.sh expects of the running
/// server for each bearer request it sends. The warrant and browser parts
/// of run.sh need its IdP, Tenuo's SDK and a browser, and are not repeated.
#[test]
fn the_quickstart_config_gives_the_answers_run_sh_expects() {
    use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
    let root = repo_root();
    let config = root.join("quickstart/portcullis.yaml");
    let key = EncodingKey::from_rsa_pem(&std::fs::read(root.join("benches/keys/rs256.pem")).unwrap()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("quickstart".into());
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let issuer = "http://127.0.0.1:9400";
    let sign = |claims: Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("quickstart".into());
        let mut claims = claims;
        claims["iss"] = json!(issuer);
        claims["iat"] = json!(now());
        claims["exp"] = json!(now() + 3600);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let user = |name: &str, groups: &[&str]| {
        sign(json!({"sub": name, "aud": "portcullis", "email": format!("{name}@example.com"), "groups": groups}))
    };
    let alice = user("alice", &["admins", "dev"]);
    let bob = user("bob", &["dev"]);
    let ci = sign(json!({"sub": "ci-pipeline", "aud": "ci-pipeline"}));
    let forged = format!(
        "{}.{}",
        alice.rsplit_once('.').unwrap().0,
        bob.rsplit_once('.').unwrap().1
    );
    let run = |path: &str, headers: &[String]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("explain").arg("--config").arg(&config).arg("--json");
        cmd.args(["--path", path, "--jwks-file"]).arg(&jwks);
        for h in headers {
            cmd.args(["--header", h]);
        }
        // The session key the config names ({env: PORTCULLIS_SESSION_KEY}); run.sh makes one too.
        let out = cmd.env("PORTCULLIS_SESSION_KEY", "00".repeat(32)).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for t in [&alice, &bob, &ci] {
            assert!(!all.contains(t.as_str()), "a token was printed:\n{all}");
        }
        let e: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (e, all)
    };
    let spoofed = [
        "x-user-id: root".to_string(),
        "x-auth-request-groups: admins".to_string(),
    ];
    let cases: Vec<(&str, Vec<String>, u64, &str)> = vec![
        ("/hello", vec![], 401, "missing_credential"),
        (
            "/hello",
            [vec![bearer(&alice)], spoofed.to_vec()].concat(),
            200,
            "allowed",
        ),
        ("/hello", spoofed.to_vec(), 401, "missing_credential"),
        ("/admin/users", vec![bearer(&bob)], 403, "group_not_allowed"),
        ("/admin/users", vec![bearer(&alice)], 200, "allowed"),
        ("/deploy", vec![bearer(&ci)], 200, "allowed"),
        ("/hello", vec![bearer(&forged)], 401, "invalid_signature"),
    ];
    for (path, headers, status, reason) in &cases {
        let (e, out) = run(path, headers);
        assert_eq!(
            (e["status"].as_u64(), e["reason"].as_str()),
            (Some(*status), Some(*reason)),
            "{path}\n{out}"
        );
    }
    // The upstream is told the real identity, not the spoofed one.
    let (e, out) = run("/hello", &[vec![bearer(&alice)], spoofed.to_vec()].concat());
    assert_eq!(e["edits"]["set"]["x-user-id"], "alice@example.com", "{out}");
    assert_eq!(e["identity"]["groups"], json!(["admins", "dev"]), "{out}");
    // The same request as run.sh's curl line for Bob, given as that line.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("explain")
        .arg("--config")
        .arg(&config)
        .arg("--jwks-file")
        .arg(&jwks)
        .arg("--json")
        .arg("--curl")
        .arg(format!(
            "curl -s -H \"Authorization: Bearer {bob}\" http://127.0.0.1:8080/admin/users"
        ))
        .env("PORTCULLIS_SESSION_KEY", "00".repeat(32))
        .output()
        .unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        (out.status.code(), &e["reason"], &e["rule"]["prefix"]),
        (Some(1), &json!("group_not_allowed"), &json!("/admin")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&bob));
    // A tool route without a warrant: Tenuo's answer, and a warrant step saying so.
    let (e, out) = run("/tools/read_file?path=/data/reports/q3.txt", &[]);
    assert_eq!(
        (&e["status"], &e["reason"]),
        (&json!(401), &json!("missing_warrant")),
        "{out}"
    );
    let warrant = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "warrant" && s["result"] == "refused");
    assert!(warrant.is_some(), "{out}");
    let (e, out) = run("/deploy", &[bearer(&ci)]);
    assert_eq!(
        (&e["identity"]["source"], &e["identity"]["groups"]),
        (&json!("oidc_client"), &json!(["client:ci-pipeline"])),
        "{out}"
    );
}

// --- Tenuo warrants -----------------------------------------------------------

/// A stack whose every path needs a warrant (the Tenuo tests' gateway
/// config: `GET /files` is the tool `read_file`, its argument `path` from
/// the query), and Tenuo's Python SDK to mint warrants and PoPs.
struct Warrants {
    stack: Stack,
    minter: Minter,
    issuer: Key,
    agent: Key,
    _logs: std::sync::Arc<Logs>,
}

fn warrants() -> Warrants {
    let logs = Logs::new();
    let minter = Minter::start(&logs);
    let (issuer, agent) = (minter.key(), minter.key());
    let gateway = write_gateway(&logs, GATEWAY);
    let tenuo = tenuo_section(&issuer.public_hex, &gateway);
    let stack = Stack::builder()
        .config(move |c| {
            c["tenuo"] = tenuo;
            c["rules"] = json!([{"path_prefix": "/", "require": "tenuo"}]);
        })
        .start();
    Warrants {
        stack,
        minter,
        issuer,
        agent,
        _logs: logs,
    }
}

/// A warrant request: the path (with its query) and the two Tenuo headers.
struct WarrantReq {
    path: String,
    warrant: Option<String>,
    pop: Option<String>,
}

impl WarrantReq {
    fn new(path: &str, warrant: &str, pop: &Pop) -> Self {
        WarrantReq {
            path: path.into(),
            warrant: Some(warrant.into()),
            pop: Some(pop.std.clone()),
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = Vec::new();
        if let Some(w) = &self.warrant {
            h.push(("x-tenuo-warrant", w.as_str()));
        }
        if let Some(p) = &self.pop {
            h.push(("x-tenuo-pop", p.as_str()));
        }
        h
    }

    /// `explain` arguments for this request, then `extra` (`--at`).
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["--path".to_string(), self.path.clone()];
        for (k, v) in self.headers() {
            args.extend(["--header".to_string(), format!("{k}: {v}")]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }
}

/// `explain --json` of a warrant request.
fn explain_warrant(config: &Path, req: &WarrantReq, extra: &[&str]) -> (i32, Value, String) {
    let args = req.args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    explain(config, &args)
}

/// The `(result, detail)` of every step named `name`, in order.
fn steps_named(e: &Value, name: &str) -> Vec<(String, String)> {
    e["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter(|s| s["step"] == name)
                .map(|s| {
                    (
                        s["result"].as_str().unwrap_or_default().to_string(),
                        s["detail"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The one step named `name` (a test fails if there is not exactly one).
fn the_step(e: &Value, name: &str, out: &str) -> (String, String) {
    let mut found = steps_named(e, name);
    assert_eq!(found.len(), 1, "one {name} step expected:\n{out}");
    found.remove(0)
}

/// How explain shows a secret (a warrant, a PoP): length and SHA-256 prefix.
fn shown_as(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    format!("{} bytes, sha256 {}", secret.len(), hex::encode(&digest[..6]))
}

/// A key as explain shows it: its fingerprint (first 8 bytes) and `…`.
fn key_shown(hex_key: &str) -> String {
    format!("{}…", &hex_key[..16])
}

/// `in 30s` / `10s ago`, as explain says a time against its clock.
fn rel(t: i64, at: i64) -> String {
    if t >= at {
        format!("in {}s", t - at)
    } else {
        format!("{}s ago", at - t)
    }
}

/// A link of the chain, as explain claims it.
struct Link<'a> {
    minted: &'a Minted,
    ttl: i64,
    of: usize,
    position: &'a str,
    issuer_is: &'a str,
    /// The SDK's default `max_depth`.
    max_depth: u32,
    tools: &'a str,
}

impl Link<'_> {
    fn text(&self, at: i64) -> String {
        let m = self.minted;
        // The SDK issues at its clock's second and expires `ttl` later.
        let issued = m.expires_at - self.ttl;
        format!(
            "claimed: link {} of {} ({}): id {}, issuer {} ({}), holder {}, depth {} (max {}), issued {issued} ({}), \
             expires {} ({}); tools: {}",
            m.depth + 1,
            self.of,
            self.position,
            m.id,
            key_shown(&m.issuer_hex),
            self.issuer_is,
            key_shown(&m.holder_hex),
            m.depth,
            self.max_depth,
            rel(issued, at),
            m.expires_at,
            rel(m.expires_at, at),
            self.tools
        )
    }
}

/// No warrant, PoP or warrant signature, in any encoding, in the output.
fn assert_no_warrant_bytes(out: &str, warrants: &[&str], pops: &[&Pop]) {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    for header in warrants {
        assert!(!out.contains(header), "a warrant was printed:\n{out}");
        // Any part of it, too: every 16 characters.
        for chunk in header.as_bytes().chunks(16).filter(|c| c.len() == 16) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!out.contains(chunk), "part of a warrant ({chunk}) was printed:\n{out}");
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(header.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(header))
            .unwrap();
        // A tampered warrant does not decode: its text alone is checked.
        let links = ::tenuo::wire::decode_stack(&bytes)
            .map(|s| s.0)
            .or_else(|_| ::tenuo::wire::decode(&bytes).map(|w| vec![w]))
            .unwrap_or_default();
        for link in &links {
            let sig = link.signature().to_bytes();
            for shown in [hex::encode(sig), STANDARD.encode(sig), URL_SAFE_NO_PAD.encode(sig)] {
                assert!(!out.contains(&shown[..24]), "a warrant signature was printed:\n{out}");
            }
        }
    }
    for pop in pops {
        for shown in [&pop.std, &pop.urlsafe, &pop.hex] {
            assert!(!out.contains(&shown[..24]), "a PoP was printed:\n{out}");
        }
    }
}

/// Every warrant request below gets the server's status and reason from
/// explain, and explain shows what the verifier read: the tool and
/// arguments, each link as claimed, the PoP's window against the clock.
#[test]
fn explain_shows_a_warrant_s_tool_arguments_chain_and_pop() {
    let w = warrants();
    let m = &w.minter;
    let config = &w.stack.config_path;
    let ttl = 3600;
    let root = m.mint(
        &w.issuer,
        &w.agent,
        json!({"read_file": {"path": {"pattern": "/data/*"}}}),
        ttl as u64,
    );
    let q3 = json!({"path": "/data/reports/q3.txt"});
    let pop = m.pop(&root, &w.agent, "read_file", &q3, None);
    let t0 = pop.ts;
    let at = t0.to_string();
    let allowed = WarrantReq::new("/files?path=/data/reports/q3.txt", &root.warrant, &pop);
    // A constraint violation, with a PoP over exactly those arguments.
    let passwd_pop = m.pop(&root, &w.agent, "read_file", &json!({"path": "/etc/passwd"}), Some(t0));
    let passwd = WarrantReq::new("/files?path=/etc/passwd", &root.warrant, &passwd_pop);
    // A PoP signed half an hour before the clock.
    let stale_pop = m.pop(&root, &w.agent, "read_file", &q3, Some(t0 - 1800));
    let stale = WarrantReq::new("/files?path=/data/reports/q3.txt", &root.warrant, &stale_pop);
    // A PoP over other arguments.
    let other_pop = m.pop(&root, &w.agent, "read_file", &json!({"path": "/data/x"}), Some(t0));
    let other = WarrantReq::new("/files?path=/data/reports/q3.txt", &root.warrant, &other_pop);
    let no_pop = WarrantReq {
        pop: None,
        ..WarrantReq::new("/files?path=/data/reports/q3.txt", &root.warrant, &pop)
    };
    // Delegated once: the stack root → child, the PoP by the child's holder.
    let sub = m.key();
    let child = m.grant(
        &root,
        &w.agent,
        &sub,
        "read_file",
        json!({"path": {"pattern": "/data/reports/*"}}),
        600,
    );
    let stack_header = m.stack(&[&root, &child]);
    let child_pop = m.pop(&child, &sub, "read_file", &q3, Some(t0));
    let delegated = WarrantReq::new("/files?path=/data/reports/q3.txt", &stack_header, &child_pop);
    // The delegated leaf sent without its parent.
    let alone = WarrantReq::new("/files?path=/data/reports/q3.txt", &child.warrant, &child_pop);
    let none = WarrantReq {
        path: "/files?path=/data/reports/q3.txt".into(),
        warrant: None,
        pop: None,
    };
    // One character of the warrant changed: its signature no longer holds.
    let mut tampered = root.warrant.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = WarrantReq::new("/files?path=/data/reports/q3.txt", &tampered, &pop);

    let cases: [(&WarrantReq, u64, &str); 9] = [
        (&allowed, 200, "allowed"),
        (&forged, 400, "invalid_warrant"),
        (&passwd, 403, "constraint_violation"),
        (&stale, 403, "invalid_pop"),
        (&other, 403, "invalid_pop"),
        (&no_pop, 403, "missing_pop"),
        (&delegated, 200, "allowed"),
        (&alone, 403, "untrusted_root"),
        (&none, 401, "missing_warrant"),
    ];
    let warrant_headers = [
        root.warrant.as_str(),
        child.warrant.as_str(),
        stack_header.as_str(),
        tampered.as_str(),
    ];
    let pops = [&pop, &passwd_pop, &stale_pop, &other_pop, &child_pop];
    for (req, status, reason) in cases {
        let server = through_envoy(&w.stack, &req.path, &req.headers());
        assert_eq!(server, (status, reason.to_string()), "{}", req.path);
        let (code, e, out) = explain_warrant(config, req, &[]);
        assert_eq!(
            (e["status"].as_u64(), e["reason"].as_str()),
            (Some(status), Some(reason)),
            "{reason}: explain disagrees with the server\n{out}"
        );
        assert_eq!(code, if status == 200 { 0 } else { 1 }, "{out}");
        assert_no_warrant_bytes(&out, &warrant_headers, &pops);
    }

    // Allowed, at the PoP's time: every step exactly.
    let (code, e, out) = explain_warrant(config, &allowed, &["--at", &at]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(e["edits"]["set"]["x-tenuo-warrant-id"], json!(root.id), "{out}");
    let window = t0.div_euclid(30) * 30;
    let accepted = format!("accepted: 5 windows of 30s around the clock's {window} (±60s)");
    let signs = "signed by the leaf's holder over tool \"read_file\" and the arguments above,";
    assert_eq!(
        the_step(&e, "warrant", &out),
        (
            "ok".into(),
            format!(
                "presented in x-tenuo-warrant: {}; 1 warrant(s), claimed root issuer {}: in the trust set",
                shown_as(&root.warrant),
                key_shown(&w.issuer.public_hex)
            )
        ),
        "{out}"
    );
    assert_eq!(
        the_step(&e, "tool", &out),
        (
            "ok".into(),
            "route GET /files -> tool \"read_file\"; arguments: path=\"/data/reports/q3.txt\"".into()
        ),
        "{out}"
    );
    let root_link = Link {
        minted: &root,
        ttl,
        of: 1,
        position: "root and leaf",
        issuer_is: "trusted root",
        max_depth: 64,
        tools: "read_file {path: Pattern \"/data/*\"}",
    };
    assert_eq!(
        steps_named(&e, "chain"),
        vec![("info".to_string(), root_link.text(t0))],
        "{out}"
    );
    assert_eq!(
        the_step(&e, "pop", &out),
        (
            "ok".into(),
            format!(
                "presented in x-tenuo-pop: {}; {signs} for the window {window} (the clock's); {accepted}",
                shown_as(&pop.std)
            )
        ),
        "{out}"
    );
    assert_eq!(
        the_step(&e, "constraints", &out),
        (
            "ok".into(),
            "the arguments satisfy the leaf's constraints for \"read_file\"".into()
        ),
        "{out}"
    );
    // The text output has the same steps, one a line.
    let text = explain_text(config, &allowed.args(&["--at", &at]));
    for s in e["steps"].as_array().unwrap() {
        let mark = match s["result"].as_str().unwrap() {
            "ok" => "ok",
            "refused" => "REFUSED",
            _ => "..",
        };
        let line = format!(
            "{:<13} {mark:<7} {}\n",
            s["step"].as_str().unwrap(),
            s["detail"].as_str().unwrap()
        );
        assert!(text.contains(&line), "no line {line:?} in:\n{text}");
    }
    assert!(text.ends_with("=> ALLOW 200 allowed\n"), "{text}");
    assert_no_warrant_bytes(&text, &warrant_headers, &pops);

    // A constraint violation: the arguments as extracted, a good PoP, and
    // the failing constraint in the denial.
    let (_, e, out) = explain_warrant(config, &passwd, &["--at", &at]);
    assert_eq!(e["reason"], "constraint_violation", "{out}");
    assert_eq!(
        the_step(&e, "tool", &out).1,
        "route GET /files -> tool \"read_file\"; arguments: path=\"/etc/passwd\"",
        "{out}"
    );
    assert_eq!(the_step(&e, "pop", &out).0, "ok", "{out}");
    assert_eq!(
        the_step(&e, "constraints", &out),
        (
            "refused".into(),
            "path=\"/etc/passwd\" does not satisfy Pattern \"/data/*\": value does not match constraint".into()
        ),
        "{out}"
    );
    // The denial as the server sends it (Tenuo's debug mode is on in GATEWAY).
    let refused: Vec<_> = steps_named(&e, "warrant")
        .into_iter()
        .filter(|(r, _)| r == "refused")
        .collect();
    assert_eq!(
        refused,
        vec![(
            "refused".to_string(),
            format!(
                "error constraint-violation, tool read_file, warrant_id {}: Constraint not satisfied; \
                 x-tenuo-deny-reason: constraint_violation: path=\"/etc/passwd\" exceeds value does not match \
                 constraint",
                root.id
            )
        )],
        "{out}"
    );

    // A PoP half an hour old: out of window, and dated.
    let (_, e, out) = explain_warrant(config, &stale, &["--at", &at]);
    assert_eq!(e["reason"], "invalid_pop", "{out}");
    assert_eq!(
        the_step(&e, "pop", &out),
        (
            "refused".into(),
            format!(
                "presented in x-tenuo-pop: {}; {signs} for the window {} (1800s before the clock's): outside the \
                 accepted ±60s; {accepted}",
                shown_as(&stale_pop.std),
                window - 1800
            )
        ),
        "{out}"
    );
    // The fresh PoP judged half an hour later: the same answer.
    let later = t0 + 1800;
    let (_, e, out) = explain_warrant(config, &allowed, &["--at", &later.to_string()]);
    assert_eq!(e["reason"], "invalid_pop", "{out}");
    let later_window = later.div_euclid(30) * 30;
    assert_eq!(
        the_step(&e, "pop", &out).1,
        format!(
            "presented in x-tenuo-pop: {}; {signs} for the window {window} (1800s before the clock's): outside the \
             accepted ±60s; accepted: 5 windows of 30s around the clock's {later_window} (±60s)",
            shown_as(&pop.std)
        ),
        "{out}"
    );
    assert_eq!(steps_named(&e, "chain")[0].1, root_link.text(later), "{out}");
    // Judged before the warrant was issued: the link says so.
    let earlier = t0 - 1800;
    let (_, e, out) = explain_warrant(config, &allowed, &["--at", &earlier.to_string()]);
    assert_eq!(e["reason"], "chain_invalid", "{out}");
    let link = &steps_named(&e, "chain")[0].1;
    assert!(link.contains("(in 1800s: beyond the 30s tolerance)"), "{out}");
    assert!(
        the_step(&e, "pop", &out)
            .1
            .contains("(1800s after the clock's): outside"),
        "{out}"
    );

    // A PoP over other arguments verifies in no window.
    let (_, e, out) = explain_warrant(config, &other, &["--at", &at]);
    assert_eq!(
        the_step(&e, "pop", &out),
        (
            "refused".into(),
            format!(
                "presented in x-tenuo-pop: {}; not {} in any window from {} to {} (2881 tried): it signs another \
                 tool, other arguments or another warrant, or is by another key; {accepted}",
                shown_as(&other_pop.std),
                signs.trim_end_matches(','),
                window - 1440 * 30,
                window + 1440 * 30
            )
        ),
        "{out}"
    );

    // A chain of two: each link, the child issued by the root's holder.
    let (code, e, out) = explain_warrant(config, &delegated, &["--at", &at]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        the_step(&e, "warrant", &out).1,
        format!(
            "presented in x-tenuo-warrant: {}; 2 warrant(s), claimed root issuer {}: in the trust set",
            shown_as(&stack_header),
            key_shown(&w.issuer.public_hex)
        ),
        "{out}"
    );
    let child_link = Link {
        minted: &child,
        ttl: 600,
        of: 2,
        position: "leaf",
        issuer_is: "link 1's holder",
        max_depth: 64,
        tools: "read_file {path: Pattern \"/data/reports/*\"}",
    };
    let root_of_two = Link {
        of: 2,
        position: "root",
        ..root_link
    };
    assert_eq!(
        steps_named(&e, "chain"),
        vec![
            ("info".to_string(), root_of_two.text(t0)),
            ("info".to_string(), child_link.text(t0))
        ],
        "{out}"
    );
    assert_eq!(the_step(&e, "pop", &out).0, "ok", "{out}");

    // The child alone: its issuer (the agent) is no trusted root.
    let (_, e, out) = explain_warrant(config, &alone, &["--at", &at]);
    let presented = steps_named(&e, "warrant");
    assert_eq!(
        presented[0],
        (
            "refused".to_string(),
            format!(
                "presented in x-tenuo-warrant: {}; 1 warrant(s), claimed root issuer {}: NOT in the trust set",
                shown_as(&child.warrant),
                key_shown(&w.agent.public_hex)
            )
        ),
        "{out}"
    );
    assert!(steps_named(&e, "chain")[0].1.contains("(NOT a trusted root)"), "{out}");

    // A tampered warrant: not decodable, no link claimed.
    let (_, e, out) = explain_warrant(config, &forged, &["--at", &at]);
    let (result, detail) = &steps_named(&e, "warrant")[0];
    let want = format!("presented in x-tenuo-warrant: {}; not decodable (", shown_as(&tampered));
    assert!(result == "refused" && detail.starts_with(&want), "{out}");
    assert!(steps_named(&e, "chain").is_empty(), "{out}");

    // No warrant: the tool it would need.
    let (_, e, out) = explain_warrant(config, &none, &["--at", &at]);
    assert_eq!(steps_named(&e, "warrant")[0].1, "no warrant presented", "{out}");
    assert_eq!(
        the_step(&e, "tool", &out).1,
        "route GET /files -> tool \"read_file\"; arguments: path=\"/data/reports/q3.txt\"",
        "{out}"
    );
}

/// `portcullis explain` without `--json`: its text output.
fn explain_text(config: &Path, args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run portcullis explain");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A mesh-only config (no IdP): explain names the principals a rule admits
/// and says of the peer whether it is one of them, as the server decides.
#[test]
fn explain_names_the_workloads_a_rule_admits_and_judges_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mesh.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nrules:\n  - {path_prefix: /hooks, require: workload, allowed_principals: [\"spiffe://td/ns/ci/*\"]}\n",
    )
    .unwrap();
    let config = config.as_path();
    let deployer = "spiffe://td/ns/ci/sa/deployer";
    let (code, e, out) = explain(config, &["--path", "/hooks/x", "--principal", deployer]);
    assert_eq!(
        (code, e["decision"].as_str(), e["status"].as_u64()),
        (0, Some("allow"), Some(200)),
        "{out}"
    );
    let (_, rule) = the_step(&e, "rule", &out);
    assert!(
        rule.contains("require workload; admits workloads [\"spiffe://td/ns/ci/*\"]"),
        "{rule}"
    );
    assert_eq!(
        the_step(&e, "principal", &out),
        ("ok".into(), format!("mTLS peer {deployer:?} is listed"))
    );
    let (_, e, out) = explain(
        config,
        &["--path", "/hooks/x", "--principal", "spiffe://td/ns/web/sa/x"],
    );
    assert_eq!(
        (e["status"].as_u64(), e["reason"].as_str()),
        (Some(403), Some("principal_not_allowed")),
        "{out}"
    );
    assert_eq!(the_step(&e, "principal", &out).0, "refused");
    let (_, e, out) = explain(config, &["--path", "/hooks/x"]);
    assert_eq!(
        (e["status"].as_u64(), e["reason"].as_str()),
        (Some(401), Some("missing_principal")),
        "{out}"
    );
    assert_eq!(
        the_step(&e, "principal", &out),
        ("refused".into(), "no mTLS peer principal: missing_principal".into())
    );
    let (_, e, out) = explain(config, &["--path", "/other", "--principal", deployer]);
    assert_eq!(
        (e["status"].as_u64(), e["reason"].as_str()),
        (Some(403), Some("no_matching_rule")),
        "{out}"
    );
}
