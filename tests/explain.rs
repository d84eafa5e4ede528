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

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::path::Path;
use std::process::Command;

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
