//! The process as an operator sees it: CLI (`--version`, `check-config`),
//! config from the environment, admin endpoints (`/healthz`, `/readyz`,
//! `/metrics`), gRPC health, JSON logs, and graceful shutdown on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn run(args: &[&str]) -> Output {
    Command::new(portcullis_bin())
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .expect("run portcullis")
}

fn check_config(config_text: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, config_text).expect("write config");
    run(&["check-config", "--config", path.to_str().unwrap()])
}

fn good_config() -> Value {
    base_config(
        loopback(9090),
        loopback(9091),
        &["http://127.0.0.1:1", "https://idp.example.com/realms/main"],
    )
}

fn yaml(v: &Value) -> String {
    serde_norway::to_string(v).expect("yaml")
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// CLI.

#[test]
fn version_flag_prints_the_crate_version() {
    let o = run(&["--version"]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("portcullis") && out.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {out:?}"
    );
}

#[test]
fn check_config_accepts_a_good_config() {
    let o = check_config(&yaml(&good_config()));
    assert!(o.status.success(), "stderr: {}", stderr_of(&o));
}

#[test]
fn check_config_accepts_the_full_documented_config() {
    let mut c = good_config();
    c["headers"]["strip"] = json!(["x-internal-role", "x-tenant-*"]);
    c["oidc"]["providers"][0]["jwks_uri"] = json!("http://127.0.0.1:1/jwks");
    c["oidc"]["providers"][0]["algorithms"] = json!(["RS256", "ES256", "EdDSA"]);
    c["oidc"]["providers"][0]["require_groups"] = json!(true);
    c["oidc"]["providers"][0]["client_credentials"] = json!({"enabled": true, "allowed_clients": ["ci-pipeline"]});
    c["rules"] = json!([
        {"path_prefix": "/admin", "allowed_groups": ["admins", "client:ci-pipeline"], "providers": ["http://127.0.0.1:1"]},
        {"path_prefix": "/", "allowed_users": []},
    ]);
    let o = check_config(&yaml(&c));
    assert!(o.status.success(), "stderr: {}", stderr_of(&o));
    // The same groups without naming whose they are, with two providers configured.
    c["rules"][0].as_object_mut().map(|r| r.remove("providers"));
    let o = check_config(&yaml(&c));
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("rules[0].providers"), "{}", stderr_of(&o));
}

#[test]
fn check_config_rejects_an_unknown_top_level_key_and_names_it() {
    let mut c = good_config();
    c["listne"] = json!("127.0.0.1:1");
    let o = check_config(&yaml(&c));
    assert!(!o.status.success(), "unknown key accepted");
    let err = stderr_of(&o);
    assert!(err.contains("listne"), "stderr must name the key: {err}");
}

#[test]
fn check_config_rejects_an_unknown_nested_key_with_its_path() {
    let mut c = good_config();
    c["oidc"]["providers"][0]["audience"] = json!("portcullis");
    let o = check_config(&yaml(&c));
    assert!(!o.status.success(), "unknown nested key accepted");
    let err = stderr_of(&o);
    assert!(
        err.contains("oidc.providers[0]") && err.contains("audience"),
        "stderr must give the field path: {err}"
    );
}

#[test]
fn check_config_rejects_plain_http_issuer_on_a_public_host() {
    let mut c = good_config();
    c["oidc"]["providers"][1]["issuer"] = json!("http://idp.example.com");
    let o = check_config(&yaml(&c));
    assert!(!o.status.success(), "http issuer on a public host accepted");
    let err = stderr_of(&o);
    assert!(
        err.contains("oidc.providers[1].issuer"),
        "stderr must give the field path: {err}"
    );
}

#[test]
fn check_config_rejects_garbage_yaml() {
    for text in [
        "listen: [unclosed\n",
        "\u{0}\u{1}\u{2} not yaml: : :\n  - - -",
        "just a string",
        "",
    ] {
        let o = check_config(text);
        assert!(!o.status.success(), "{text:?} accepted");
        assert!(!stderr_of(&o).trim().is_empty(), "{text:?}: no diagnostic");
    }
}

#[test]
fn check_config_rejects_a_missing_file() {
    let o = run(&["check-config", "--config", "/nonexistent/portcullis.yaml"]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("/nonexistent/portcullis.yaml"));
}

#[test]
fn check_config_reads_the_path_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml(&good_config())).expect("write");
    let o = Command::new(portcullis_bin())
        .arg("check-config")
        .env("PORTCULLIS_CONFIG", &path)
        .output()
        .expect("run");
    assert!(o.status.success(), "stderr: {}", stderr_of(&o));
}

// ---------------------------------------------------------------------------
// Admin endpoints, gRPC health, logs.

#[test]
fn admin_endpoints_answer_health_readiness_and_metrics() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    assert_allowed(&s.get_bearer("/", &token));
    assert_denied(&s.get("/", &[]), 401, "missing_credential");

    assert_eq!(s.admin("/healthz").status, 200);
    assert_eq!(s.admin("/readyz").status, 200);
    let m = s.admin("/metrics");
    assert_eq!(m.status, 200);
    let ct = m.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "{ct}"
    );
    let text = m.text();
    assert!(
        text.lines().any(|l| l.starts_with("portcullis_")),
        "no portcullis_ metric in:\n{text}"
    );
}

#[test]
fn without_debug_the_deny_reason_header_is_absent_but_the_body_keeps_it() {
    let s = Stack::builder().config(|c| c["debug"] = json!(false)).start();
    let r = s.get("/", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(r.header("x-portcullis-deny-reason"), None, "{}", r.summary());
    assert_eq!(r.json()["reason"], json!("missing_credential"));
    assert_www_authenticate(&r, "missing_credential");
    let r = s.get_bearer("/", "garbage");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-portcullis-deny-reason"), None);
    assert_eq!(r.json()["reason"], json!("malformed_token"));
}

#[test]
fn realm_is_configurable() {
    let s = Stack::builder().config(|c| c["realm"] = json!("payments-api")).start();
    let r = s.get("/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="payments-api""#));
}

#[test]
fn readyz_is_503_until_the_jwks_is_loaded() {
    let s = Stack::builder().idp_down_at_start().without_envoy().start();
    assert_eq!(s.admin("/healthz").status, 200, "alive while not ready");
    assert_eq!(s.admin("/readyz").status, 503, "ready without any JWKS");
    s.jwks_up();
    wait_until("readiness after the IdP came up", READY_TIMEOUT, POLL, || {
        match s.admin("/readyz").status {
            200 => Ok(()),
            st => Err(format!("/readyz {st}")),
        }
    });
}

#[test]
fn readyz_waits_for_every_configured_issuer() {
    let s = Stack::builder()
        .idps(2)
        .idps_down_at_start(&[1])
        .without_envoy()
        .start();
    assert_eq!(s.admin("/readyz").status, 503, "ready with one issuer's JWKS missing");
    s.idps[1].up();
    wait_until("readiness once both issuers are up", READY_TIMEOUT, POLL, || {
        match s.admin("/readyz").status {
            200 => Ok(()),
            st => Err(format!("/readyz {st}")),
        }
    });
}

/// `grpc.health.v1.Health/Check` for `service`: the serving status.
fn grpc_health(s: &Stack, service: &str) -> i32 {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let url = format!("http://{}", s.grpc_addr);
    let service = service.to_string();
    s.block_on(async move {
        let channel = tonic::transport::Channel::from_shared(url)
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check {service:?}: {e}"))
            .into_inner()
            .status
    })
}

const GRPC_SERVICES: [&str; 2] = ["", "envoy.service.auth.v3.Authorization"];

fn wait_grpc_serving(s: &Stack) {
    use tonic_health::pb::health_check_response::ServingStatus;
    for service in GRPC_SERVICES {
        wait_until(
            &format!("gRPC health {service:?} SERVING"),
            READY_TIMEOUT,
            POLL,
            || match grpc_health(s, service) {
                st if st == ServingStatus::Serving as i32 => Ok(()),
                st => Err(format!("status {st}")),
            },
        );
    }
}

#[test]
fn grpc_health_reports_serving() {
    let s = Stack::builder().without_envoy().start();
    wait_grpc_serving(&s);
}

#[test]
fn grpc_health_is_not_serving_until_the_jwks_is_loaded() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let s = Stack::builder().idp_down_at_start().without_envoy().start();
    for service in GRPC_SERVICES {
        assert_eq!(
            grpc_health(&s, service),
            ServingStatus::NotServing as i32,
            "service {service:?} before any JWKS is loaded"
        );
    }
    s.jwks_up();
    wait_grpc_serving(&s);
}

#[test]
fn logs_are_json_lines() {
    let s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    assert_allowed(&s.get_bearer("/", &token));
    assert_denied(&s.get("/", &[]), 401, "missing_credential");
    let logs = format!("{}\n{}", s.portcullis.stdout(), s.portcullis.stderr());
    let mut n = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        n += 1;
    }
    assert!(n > 0, "no log lines at all");
    // Tokens never appear in logs.
    assert!(!logs.contains(&token), "a bearer token was logged");
}

// ---------------------------------------------------------------------------
// Shutdown.

/// envoy/envoy.yaml fails closed: with portcullis gone, even a valid token
/// gets 503 and nothing reaches the upstream.
#[test]
fn envoy_fails_closed_when_portcullis_is_down() {
    let mut s = Stack::start();
    let token = s.token_for("alice", &["users"]);
    assert_allowed(&s.get_bearer("/", &token));
    let hits = s.echo_hits();
    s.portcullis.kill();
    for _ in 0..3 {
        let fresh = s.token_for("alice", &["users"]);
        let r = s.get_bearer("/", &fresh);
        assert_eq!(r.status, 503, "{}", r.summary());
        let r = s.get("/", &[]);
        assert_eq!(r.status, 503, "{}", r.summary());
    }
    assert_eq!(s.echo_hits(), hits, "fail-open: a request reached the upstream");
}

#[test]
fn sigterm_exits_zero_within_a_few_seconds() {
    let mut s = Stack::builder().without_envoy().start();
    s.portcullis.signal("TERM");
    let st = s
        .portcullis
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM"));
    assert!(st.success(), "exit status after SIGTERM: {st}");
}

#[test]
fn shutdown_delay_turns_readiness_off_before_exiting() {
    let mut s = Stack::builder()
        .without_envoy()
        .config(|c| c["shutdown_delay_seconds"] = json!(2))
        .start();
    let admin = s.admin_addr;
    let sent = Instant::now();
    s.portcullis.signal("TERM");
    wait_until(
        "readiness to turn off",
        Duration::from_millis(1500),
        POLL,
        || match admin_get(admin, "/readyz") {
            Some(r) if r.status == 503 => Ok(()),
            Some(r) => Err(format!("/readyz {}", r.status)),
            None => Err("admin not answering (exited too early?)".into()),
        },
    );
    assert!(
        s.portcullis.try_wait().is_none(),
        "exited before the shutdown delay elapsed"
    );
    // Still serving decisions during the delay.
    assert_eq!(admin_get(admin, "/healthz").map(|r| r.status), Some(200));
    let st = s
        .portcullis
        .wait_timeout(Duration::from_secs(8))
        .unwrap_or_else(|| panic!("still running 8 s after SIGTERM"));
    assert!(st.success(), "exit status: {st}");
    assert!(
        sent.elapsed() >= Duration::from_millis(1900),
        "exited after {:?}, before the 2 s delay",
        sent.elapsed()
    );
}

#[test]
fn serve_reads_config_from_the_environment() {
    let logs = Logs::new();
    let idp = Idp::start(&logs, "idp");
    let grpc = loopback(free_port());
    let admin = loopback(free_port());
    let path = logs.path().join("env.yaml");
    write_config(&path, &base_config(grpc, admin, &[idp.issuer.as_str()]));
    let mut cmd = Command::new(portcullis_bin());
    cmd.arg("serve").env("PORTCULLIS_CONFIG", &path);
    let mut child = ChildGuard::spawn("portcullis-env", cmd, &logs);
    wait_admin_status(&mut child, admin, "/readyz", 200);
}

#[test]
fn serve_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    let mut c = good_config();
    c["oidc"]["providers"][0]["issuer"] = json!("http://idp.example.com");
    std::fs::write(&path, yaml(&c)).expect("write");
    let mut child = Command::new(portcullis_bin())
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running with an invalid config");
        }
        std::thread::sleep(POLL);
    };
    assert!(!status.success());
}

/// A listener that cannot be bound stops the process at start-up, naming
/// the address, with a non-zero exit: a replica serving Checks without its
/// probes (or probes without Checks) would be worse than none.
#[test]
fn serve_stops_with_the_address_when_the_admin_port_is_taken() {
    let logs = Logs::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin = taken.local_addr().expect("local addr");
    let path = logs.path().join("portcullis.yaml");
    write_config(
        &path,
        &base_config(loopback(free_port()), admin, &["http://127.0.0.1:1"]),
    );
    let mut child = spawn_portcullis("portcullis-admin-taken", &path, &logs);
    let st = child
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running with its admin port taken"));
    assert_eq!(st.code(), Some(1), "exit status: {st}");
    let log = child.stdout();
    let failed: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "serve_failed")
        .unwrap_or_else(|| panic!("no serve_failed line: {log}"));
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.starts_with(&format!("cannot bind {admin}: ")), "{failed}");
    drop(taken);
}
