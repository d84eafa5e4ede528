//! API keys through real Envoy: a key in `Authorization: ApiKey` or in the
//! configured header proves its file entry's identity; the upstream never
//! sees the key nor the header; removing the entry and sending SIGHUP
//! revokes it (its cached decision included); the key is never in
//! portcullis's logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const KEY: &str = "pk_ci-bot_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo";
const SECRET: &str = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo";
const OTHER: &str = "pk_reader_cXV4cXV4cXV4cXV4cXV4cXV4cXV4cXV4cXV4cXV4";

fn entry(id: &str, key: &str, user: &str) -> String {
    format!(
        "  {id}: {{sha256: {}, user: {user}, groups: [deployers]}}\n",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

#[test]
fn a_key_is_verified_stripped_revoked_by_sighup_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-keys.yaml");
    std::fs::write(
        &file,
        format!(
            "keys:\n{}{}",
            entry("ci-bot", KEY, "ci"),
            entry("reader", OTHER, "reader")
        ),
    )
    .unwrap();
    let path = file.display().to_string();
    let s = Stack::builder()
        .rules(json!([
            {"path_prefix": "/deploy", "providers": ["api-keys"], "allowed_groups": ["deployers"]},
            {"path_prefix": "/"}
        ]))
        // Only SIGHUP reloads during the test.
        .config(move |c| c["api_keys"] = json!({"file": path, "header": "x-api-key", "reload_interval_seconds": 3600}))
        .start();

    let authorization = format!("ApiKey {KEY}");
    for (name, value) in [("authorization", authorization.as_str()), ("x-api-key", KEY)] {
        let echo = assert_allowed(&s.get("/deploy/app", &[(name, value), ("x-user-id", "spoofed")]));
        assert_eq!(echo.header("x-user-id"), Some("ci"), "{echo:?}");
        assert_eq!(echo.header("x-auth-request-groups"), Some("deployers"));
        assert_eq!(echo.header(name), None, "{name} reached the upstream: {echo:?}");
        assert!(
            !format!("{echo:?}").contains(SECRET),
            "the key reached the upstream: {echo:?}"
        );
    }
    // Not a route that names api-keys; a wrong secret for a configured id.
    assert_denied(&s.get("/other", &[("x-api-key", KEY)]), 403, "provider_not_allowed");
    let wrong = KEY.replace("Zm9v", "Zm9w");
    assert_denied(&s.get("/deploy", &[("x-api-key", &wrong)]), 401, "unknown_api_key");
    assert_eq!(s.echo_hits(), 2, "only the allowed requests reached the upstream");

    // Revocation: the entry goes, SIGHUP, and the cached decision with it.
    std::fs::write(&file, format!("keys:\n{}", entry("reader", OTHER, "reader"))).unwrap();
    // Waits for the reload's log line, not by sending the key again: every
    // request counts in the metrics asserted below.
    let reloads = || s.portcullis.stdout().matches("api_keys_reloaded").count();
    let before = reloads();
    s.portcullis.signal("HUP");
    wait_until("the key file reloaded", READY_TIMEOUT, POLL, || {
        if reloads() > before {
            Ok(())
        } else {
            Err("no new api_keys_reloaded in its log yet".into())
        }
    });
    assert_denied(&s.get("/deploy", &[("x-api-key", KEY)]), 401, "unknown_api_key");
    assert_allowed(&s.get("/deploy", &[("x-api-key", OTHER)]));
    assert!(
        s.portcullis.stdout().contains("api_keys_reloaded"),
        "{}",
        s.portcullis.stdout()
    );
    // By key id: the key was good for /other too (the rule refused it); once
    // revoked, its id is no longer a label value of its own.
    let metrics = s.admin("/metrics").text();
    for line in [
        r#"portcullis_api_key_checks_total{key_id="ci-bot",result="allowed"} 3"#,
        r#"portcullis_api_key_checks_total{key_id="ci-bot",result="unknown_api_key"} 1"#,
        r#"portcullis_api_key_checks_total{key_id="unknown",result="unknown_api_key"} 1"#,
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    for (what, text) in [
        ("stdout", s.portcullis.stdout()),
        ("stderr", s.portcullis.stderr()),
        ("metrics", metrics),
    ] {
        assert!(
            !text.contains(SECRET) && !text.contains(&OTHER[10..]),
            "a key is in portcullis's {what}"
        );
    }
}
