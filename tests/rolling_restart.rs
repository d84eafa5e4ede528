//! Rolling restarts and reloads under load lose no request.
//!
//! Two portcullis replicas behind the shipped envoy/envoy.yaml (its
//! `portcullis` cluster rendered with both loopback endpoints), a steady
//! stream of bearer-token requests through Envoy on keep-alive connections,
//! and one replica after the other stopped with SIGTERM and started again.
//! Every response must be the upstream's 200 with the injected identity: a
//! single ext_authz error would be a 503 (`failure_mode_allow: false`).
//!
//! What makes it work is envoy/envoy.yaml's gRPC health check: portcullis
//! answers NOT_SERVING from the moment SIGTERM arrives and keeps answering
//! Checks for `shutdown_delay_seconds`; Envoy takes the replica out of the
//! rotation within `unhealthy_threshold` x `no_traffic_interval`, before its
//! listener closes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tenuo::{tenuo_section, write_gateway, GATEWAY};
use common::{
    free_port, loopback, spawn_portcullis, wait_admin_status, wait_until, write_config, ChildGuard, Req, Stack,
};
use serde_json::json;

/// Replicas keep serving this long after SIGTERM (3 s in the issue's setup;
/// 2 s is still twice what Envoy needs to notice NOT_SERVING).
const SHUTDOWN_DELAY_SECONDS: u64 = 2;
/// Concurrent keep-alive client connections to Envoy.
const CLIENTS: usize = 16;
/// Requests that must succeed between two steps of a scenario.
const STEP: u64 = 500;
const USER: &str = "rolling-user";

// ---------------------------------------------------------------------------
// Load.

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    /// The first few failures, for the assertion message.
    samples: Mutex<Vec<String>>,
}

/// `CLIENTS` tasks sending `GET /rolling/<n>` with a bearer token through
/// Envoy as fast as it answers, each on its own keep-alive connection.
struct Load {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    fn start(envoy: SocketAddr, token: &str) -> Load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("load runtime");
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let want = format!(r#"["x-user-id","{USER}"]"#);
        let tasks = (0..CLIENTS)
            .map(|i| {
                let (counts, stop, want) = (counts.clone(), stop.clone(), want.clone());
                let auth = format!("Bearer {token}");
                rt.spawn(async move {
                    // One client per task: one keep-alive connection each.
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .timeout(Duration::from_secs(5))
                        .build()
                        .expect("client");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let url = format!("http://{envoy}/rolling/{i}/{n}");
                        let outcome = match client.get(&url).header("authorization", &auth).send().await {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                let deny = resp
                                    .headers()
                                    .get("x-portcullis-deny-reason")
                                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                                match resp.text().await {
                                    Ok(body) if status == 200 && body.contains(&want) => Ok(()),
                                    Ok(body) => Err(format!(
                                        "status {status}, deny reason {deny:?}, body {}",
                                        &body[..body.len().min(200)]
                                    )),
                                    Err(e) => Err(format!("status {status}, body error: {e}")),
                                }
                            }
                            Err(e) => Err(format!("transport: {e}")),
                        };
                        match outcome {
                            Ok(()) => {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                let mut s = counts.samples.lock().unwrap();
                                if s.len() < 5 {
                                    s.push(e);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            counts,
            stop,
            rt,
            tasks,
            started: Instant::now(),
        }
    }

    fn ok(&self) -> u64 {
        self.counts.ok.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Returns once `n` more requests succeeded than when called.
    fn await_more(&self, n: u64, what: &str) {
        let target = self.ok() + n;
        wait_until(
            &format!("{n} more successful requests ({what})"),
            Duration::from_secs(20),
            Duration::from_millis(10),
            || {
                let ok = self.ok();
                if ok >= target {
                    Ok(())
                } else {
                    Err(format!("{ok} of {target} ok, {} failed", self.failed()))
                }
            },
        );
    }

    /// Stops every client after its current request; `(ok, failed, samples, req/s)`.
    fn finish(self) -> (u64, u64, Vec<String>, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        for t in self.tasks {
            self.rt.block_on(t).expect("load task");
        }
        let ok = self.counts.ok.load(Ordering::SeqCst);
        let failed = self.counts.failed.load(Ordering::SeqCst);
        let samples = self.counts.samples.lock().unwrap().clone();
        (ok, failed, samples, (ok + failed) as f64 / elapsed)
    }
}

// ---------------------------------------------------------------------------
// Replicas and Envoy's view of them.

/// A portcullis replica with the stack's config on its own loopback ports.
struct Replica {
    child: ChildGuard,
    grpc: SocketAddr,
    admin: SocketAddr,
}

/// Starts a replica of the stack's portcullis on `grpc` (a fresh port if
/// `None`) and returns once it is ready.
fn start_replica(stack: &Stack, name: &str, grpc: Option<SocketAddr>) -> Replica {
    let grpc = grpc.unwrap_or_else(|| loopback(free_port()));
    let admin = loopback(free_port());
    let mut config = stack.config.clone();
    config["listen"] = json!(grpc.to_string());
    config["admin_listen"] = json!(admin.to_string());
    let path = stack.logs.path().join(format!("{name}.yaml"));
    write_config(&path, &config);
    let mut child = spawn_portcullis(name, &path, &stack.logs);
    wait_admin_status(&mut child, admin, "/readyz", 200);
    Replica { child, grpc, admin }
}

/// envoy/envoy.yaml (rendered for `first`) with a second endpoint, `second`,
/// in the `portcullis` cluster: what DNS gives Envoy for a name with two A
/// records.
fn two_endpoints(rendered: &str, first: u16, second: u16) -> String {
    let lines: Vec<&str> = rendered.lines().collect();
    let needle = format!("socket_address: {{ address: 127.0.0.1, port_value: {first} }}");
    let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(&needle)).collect();
    assert_eq!(at.len(), 1, "one endpoint on port {first} in the rendered envoy.yaml");
    let at = at[0];
    assert!(
        lines[at - 2].trim() == "- endpoint:" && lines[at - 1].trim() == "address:",
        "unexpected endpoint layout in envoy/envoy.yaml:\n{}",
        lines[at - 2..=at].join("\n")
    );
    let mut out: Vec<String> = lines[..=at].iter().map(|l| l.to_string()).collect();
    out.push(lines[at - 2].to_string());
    out.push(lines[at - 1].to_string());
    out.push(lines[at].replace(&format!("port_value: {first} "), &format!("port_value: {second} ")));
    out.extend(lines[at + 1..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

/// Envoy's health flags for the portcullis endpoint on `port`
/// (`healthy`, `/failed_active_hc`, ...), from its admin `/clusters`.
fn envoy_health(stack: &Stack, port: u16) -> String {
    let admin = stack.envoy_admin.expect("envoy admin");
    let text = common::http::send(admin, &Req::get("/clusters"))
        .map(|r| r.text())
        .unwrap_or_default();
    let prefix = format!("portcullis::127.0.0.1:{port}::health_flags::");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("<absent>")
        .to_string()
}

fn await_envoy_health(stack: &Stack, port: u16, want: &str) {
    wait_until(
        &format!("Envoy to see portcullis :{port} as {want}"),
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            let got = envoy_health(stack, port);
            if got == want {
                Ok(())
            } else {
                Err(got)
            }
        },
    );
}

/// `portcullis_authz_allow_total{source="oidc_user"}` of a replica.
fn allowed(admin: SocketAddr) -> u64 {
    let text = common::admin_get(admin, "/metrics").expect("metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"portcullis_authz_allow_total{source="oidc_user"} "#))
        .map(|v| v.trim().parse().expect("counter"))
        .unwrap_or(0)
}

/// SIGTERM, then returns once the process has exited, with the time it took;
/// asserts the load kept succeeding while the replica drained.
fn stop_replica(load: &Load, child: &mut ChildGuard) -> Duration {
    let t0 = Instant::now();
    let ok_before = load.ok();
    child.signal("TERM");
    let status = child
        .wait_timeout(Duration::from_secs(SHUTDOWN_DELAY_SECONDS + 15))
        .unwrap_or_else(|| panic!("{} did not exit after SIGTERM\n{}", child.name, child.logs_tail(20)));
    assert!(status.success(), "{} exited with {status}", child.name);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(SHUTDOWN_DELAY_SECONDS),
        "{} exited after {took:?}, before shutdown_delay_seconds",
        child.name
    );
    assert!(
        load.ok() > ok_before,
        "requests kept succeeding while {} drained",
        child.name
    );
    took
}

/// Two replicas behind Envoy, stopped and restarted one after the other
/// under load: not one request fails.
#[test]
fn rolling_restart_of_two_replicas_under_load_fails_no_request() {
    // Replica A is the stack's own portcullis, B a second process with the
    // same config; Envoy's portcullis cluster has both.
    let mut stack = Stack::builder()
        .without_envoy()
        .config(|c| c["shutdown_delay_seconds"] = json!(SHUTDOWN_DELAY_SECONDS))
        .start();
    let (a_grpc, a_admin) = (stack.grpc_addr, stack.admin_addr);
    let mut b = start_replica(&stack, "portcullis-b", None);
    stack.start_envoy_edited(|r| two_endpoints(r, a_grpc.port(), b.grpc.port()));
    await_envoy_health(&stack, a_grpc.port(), "healthy");
    await_envoy_health(&stack, b.grpc.port(), "healthy");

    let token = stack.token_for(USER, &["users"]);
    let load = Load::start(stack.envoy(), &token);
    load.await_more(STEP, "both replicas up");
    assert!(
        allowed(a_admin) > 0 && allowed(b.admin) > 0,
        "both replicas serve Checks"
    );

    // 1. A goes away, B serves alone.
    let a_took = stop_replica(&load, &mut stack.portcullis);
    await_envoy_health(&stack, a_grpc.port(), "/failed_active_hc");
    load.await_more(STEP, "A stopped");

    // 2. A comes back on the same address (a new pod would get a new one;
    //    DNS re-resolution is Envoy's business, not this test's).
    let a2 = start_replica(&stack, "portcullis-a2", Some(a_grpc));
    stack.portcullis = a2.child;
    await_envoy_health(&stack, a_grpc.port(), "healthy");
    load.await_more(STEP, "A restarted");
    assert!(allowed(a2.admin) > 0, "the restarted A serves Checks again");

    // 3. B goes away, A serves alone.
    let b_took = stop_replica(&load, &mut b.child);
    await_envoy_health(&stack, b.grpc.port(), "/failed_active_hc");
    load.await_more(STEP, "B stopped");

    let (ok, failed, samples, rate) = load.finish();
    eprintln!(
        "rolling restart: {ok} ok, {failed} failed, {rate:.0} req/s; A exited {a_took:?} and B {b_took:?} after SIGTERM"
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed; first: {samples:#?}",
        ok + failed
    );
    assert!(ok >= 4 * STEP);
    assert_eq!(stack.echo_hits() as u64, ok, "every success reached the upstream once");
}

// ---------------------------------------------------------------------------
// Reloads under load.

/// RFC 8032's first two Ed25519 test-vector public keys: valid
/// `trusted_issuers` entries (no warrant is verified in these tests).
const ISSUER_1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const ISSUER_2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

/// The value of a metric line `name` (exact, labels included) on `admin`.
fn metric(admin: SocketAddr, name: &str) -> Option<String> {
    let text = common::admin_get(admin, "/metrics").expect("metrics").text();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
}

fn await_metric(admin: SocketAddr, name: &str, want: &str) {
    wait_until(
        &format!("{name} == {want}"),
        Duration::from_secs(10),
        Duration::from_millis(20),
        || match metric(admin, name) {
            Some(v) if v == want => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// A Tenuo trust reload by SIGHUP, a good one then a broken config file,
/// while requests flow: nothing fails, the broken file is refused and the
/// set loaded before it stays in force.
#[test]
fn sighup_reloads_under_load_fail_no_request_and_a_bad_file_keeps_the_old_config() {
    let logs = common::Logs::new();
    let mut tenuo = tenuo_section(ISSUER_1, &write_gateway(&logs, GATEWAY));
    // Only SIGHUP reloads during the test.
    tenuo["reload_interval_seconds"] = json!(3600);
    let mut stack = Stack::builder()
        .config(move |c| {
            c["tenuo"] = tenuo;
            c["rules"] = json!([
                {"path_prefix": "/files", "require": "tenuo"},
                {"path_prefix": "/", "require": "oidc"},
            ]);
        })
        .start();
    let admin = stack.admin_addr;
    let pid = stack.portcullis.pid();
    let issuers = "portcullis_tenuo_trusted_issuers";
    let success = r#"portcullis_tenuo_reloads_total{result="success"}"#;
    let failure = r#"portcullis_tenuo_reloads_total{result="failure"}"#;
    assert_eq!(metric(admin, issuers).as_deref(), Some("1"));
    assert_eq!(metric(admin, success).as_deref(), Some("1"), "the load at start");

    let token = stack.token_for(USER, &["users"]);
    let load = Load::start(stack.envoy(), &token);
    load.await_more(STEP, "before any reload");

    // A valid change: a second issuer.
    let mut config = stack.config.clone();
    config["tenuo"]["trusted_issuers"] = json!([ISSUER_1, ISSUER_2]);
    write_config(&stack.config_path, &config);
    stack.portcullis.signal("HUP");
    await_metric(admin, success, "2");
    assert_eq!(metric(admin, issuers).as_deref(), Some("2"));
    load.await_more(STEP, "after a good reload");

    // A broken file: refused, the two-issuer set stays.
    std::fs::write(&stack.config_path, "tenuo: [this is not a config").expect("write");
    stack.portcullis.signal("HUP");
    await_metric(admin, failure, "1");
    load.await_more(STEP, "after a bad reload");
    // A valid file whose tenuo section is broken: refused too.
    config["tenuo"]["trusted_issuers"] = json!(["zz"]);
    write_config(&stack.config_path, &config);
    stack.portcullis.signal("HUP");
    await_metric(admin, failure, "2");
    load.await_more(STEP, "after a second bad reload");

    let (ok, failed, samples, rate) = load.finish();
    eprintln!("reloads: {ok} ok, {failed} failed, {rate:.0} req/s");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed; first: {samples:#?}",
        ok + failed
    );
    assert_eq!(stack.echo_hits() as u64, ok);
    assert!(stack.portcullis.try_wait().is_none(), "portcullis still runs");
    assert_eq!(stack.portcullis.pid(), pid, "no restart");
    assert_eq!(
        metric(admin, issuers).as_deref(),
        Some("2"),
        "the last good set is in force"
    );
    assert_eq!(metric(admin, success).as_deref(), Some("2"));
    let log = stack.portcullis.stdout();
    assert_eq!(
        log.matches("tenuo_reload_failed").count(),
        2,
        "one log line per refused reload"
    );
    // The old rules still apply: /files needs a warrant, a bearer token is not one.
    let r = stack.get_bearer("/files?path=/data/a", &token);
    assert!(r.status == 401 || r.status == 403, "{}", r.summary());
    assert_eq!(stack.get_bearer("/after-reloads", &token).status, 200);
    drop(logs);
}

/// Without a `tenuo` section nothing reloads, and SIGHUP (a config
/// reloader's habit) must not stop the process: logged, nothing else.
#[test]
fn sighup_without_a_reloadable_section_changes_nothing_under_load() {
    let mut stack = Stack::start();
    let pid = stack.portcullis.pid();
    let token = stack.token_for(USER, &["users"]);
    let load = Load::start(stack.envoy(), &token);
    load.await_more(STEP, "before SIGHUP");
    std::fs::write(&stack.config_path, "listen: [this is not a config").expect("write");
    stack.portcullis.signal("HUP");
    stack
        .portcullis
        .await_stdout("SIGHUP logged", "reload_ignored", Duration::from_secs(10));
    load.await_more(STEP, "after SIGHUP");
    let (ok, failed, samples, _) = load.finish();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed; first: {samples:#?}",
        ok + failed
    );
    assert!(stack.portcullis.try_wait().is_none(), "portcullis still runs");
    assert_eq!(stack.portcullis.pid(), pid);
    assert_eq!(stack.echo_hits() as u64, ok);
}
