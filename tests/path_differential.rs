//! Differential path test against real upstream routers.
//!
//! portcullis judges a request by its path; the application behind Envoy
//! dispatches it by *its own* reading of the same bytes. If the two readings
//! differ, a path that portcullis judges under an open rule can land in a
//! protected handler (e.g. `GET /admin/..;/users`: judged as `/users`,
//! dispatched inside `/admin` by nginx, Express and Starlette).
//!
//! Here each of three real routers (nginx, Express 5, Starlette on uvicorn;
//! `tests/routers/`) sits behind the real stack — Envoy (envoy/envoy.yaml)
//! → portcullis → router — with the rules `/admin → admins only`,
//! `/ → any user`. A generated corpus of tricky targets (`routers/corpus.rs`)
//! is sent with the token of a user who is NOT in `admins`. Every answer is
//! classified (Envoy refused, portcullis refused or denied, or reached the
//! router and which handler the router reported). The test fails if any
//! request reached the router's admin handler, listing each one with what
//! Envoy forwarded and what the router routed on.
//!
//! So that it cannot pass vacuously: an `admins` token reaches the admin
//! handler of every router, the user's own `/public` reaches root, and the
//! routers still answer after the corpus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;
#[path = "routers/corpus.rs"]
mod corpus;
#[path = "routers/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::*;
use serde_json::json;
use servers::{dispatch_of, Dispatch, Kind, Router};

/// Concurrent connections per router while the corpus is sent. A request
/// mostly waits (Envoy → portcullis → router round trips), so this is more
/// than the cores.
const SENDERS: usize = 12;

/// What became of one request.
#[derive(Clone, Debug)]
enum Outcome {
    /// Envoy answered by itself with this status (it rejected the request).
    Envoy(u16),
    /// portcullis refused the path: 400 `invalid_path`.
    Refused,
    /// portcullis denied: 401/403 with this reason.
    Denied(u16, String),
    /// portcullis answered with another status/reason than the above.
    PortcullisOther(u16, String),
    /// Allowed: the router dispatched it to a handler.
    Dispatched(Dispatch),
    /// Allowed: the router answered without naming a handler (its own error).
    RouterOther(u16, String),
    /// No HTTP response at all.
    NoResponse(String),
}

impl Outcome {
    fn column(&self) -> &'static str {
        match self {
            Outcome::Envoy(_) => "envoy",
            Outcome::Refused => "invalid_path",
            Outcome::Denied(..) => "denied",
            Outcome::PortcullisOther(..) => "pc-other",
            Outcome::Dispatched(d) if d.handler == "admin" => "ADMIN",
            Outcome::Dispatched(_) => "root",
            Outcome::RouterOther(..) => "router-err",
            Outcome::NoResponse(_) => "no-resp",
        }
    }

    fn is_admin(&self) -> bool {
        matches!(self, Outcome::Dispatched(d) if d.handler == "admin")
    }

    /// Outcomes that say the harness, not the path judge, went wrong: the
    /// router was unreachable or crashed, or portcullis failed.
    fn is_broken(&self) -> bool {
        match self {
            Outcome::Envoy(status) => *status >= 500,
            Outcome::PortcullisOther(status, _) => *status >= 500,
            Outcome::NoResponse(_) => true,
            _ => false,
        }
    }
}

const COLUMNS: [&str; 8] = [
    "envoy",
    "invalid_path",
    "denied",
    "root",
    "ADMIN",
    "router-err",
    "pc-other",
    "no-resp",
];

fn send(envoy: SocketAddr, target: &[u8], token: &str) -> Outcome {
    let req = Req::get("/").target_bytes(target).bearer(token);
    let resp = match http::send(envoy, &req) {
        Ok(r) => r,
        Err(e) => return Outcome::NoResponse(e.to_string()),
    };
    if let Some(reason) = resp.header("x-portcullis-deny-reason") {
        return match (resp.status, reason) {
            (400, "invalid_path") => Outcome::Refused,
            (401 | 403, _) => Outcome::Denied(resp.status, reason.to_string()),
            (s, _) => Outcome::PortcullisOther(s, reason.to_string()),
        };
    }
    // Envoy's router stamps this on responses that came from the upstream;
    // its own replies (codec errors, rejected paths) do not carry it.
    if resp.header("x-envoy-upstream-service-time").is_none() {
        return Outcome::Envoy(resp.status);
    }
    match dispatch_of(&resp.body) {
        Some(d) if resp.status == 200 => Outcome::Dispatched(d),
        _ => Outcome::RouterOther(resp.status, resp.text().chars().take(120).collect()),
    }
}

/// Runs `probe` on every target, `SENDERS` at a time; results in corpus order.
fn for_all<T: Send>(corpus: &[Vec<u8>], probe: impl Fn(&[u8]) -> T + Sync) -> Vec<T> {
    let probe = &probe;
    let mut results: Vec<Option<T>> = (0..corpus.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..SENDERS)
            .map(|w| {
                s.spawn(move || {
                    (w..corpus.len())
                        .step_by(SENDERS)
                        .map(|i| (i, probe(&corpus[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for (i, o) in w.join().expect("sender thread") {
                results[i] = Some(o);
            }
        }
    });
    results.into_iter().map(|o| o.expect("every target sent")).collect()
}

/// Whether the router, asked directly (no Envoy, no portcullis), dispatches
/// `target` to its admin handler.
fn admin_when_direct(router: SocketAddr, target: &[u8]) -> bool {
    http::send(router, &Req::get("/").target_bytes(target))
        .ok()
        .and_then(|r| dispatch_of(&r.body).filter(|_| r.status == 200))
        .is_some_and(|d| d.handler == "admin")
}

/// Spelled as the protected prefix itself: `/admin` or `/admin/...`.
fn literally_admin(target: &[u8]) -> bool {
    target == b"/admin" || target.starts_with(b"/admin/")
}

/// The results of one router.
struct Report {
    kind: Kind,
    outcomes: Vec<Outcome>,
    /// Targets the router dispatches to admin when asked directly.
    direct_admin: usize,
    /// Seconds taken: direct probes, stack start-up, corpus through the stack.
    timings: [f64; 3],
}

/// Asserts the stack can see both handlers: without this the test could
/// pass because nothing ever reaches the admin handler.
fn assert_handlers_visible(kind: Kind, envoy: SocketAddr, user: &str, admin: &str, when: &str) {
    let name = kind.name();
    match send(envoy, b"/admin/x", admin) {
        Outcome::Dispatched(d) if d.handler == "admin" => {}
        o => panic!("{name} ({when}): an admins token on /admin/x must reach the admin handler; got {o:?}"),
    }
    match send(envoy, b"/public", user) {
        Outcome::Dispatched(d) if d.handler == "root" => {}
        o => panic!("{name} ({when}): the user's /public must reach the root handler; got {o:?}"),
    }
    match send(envoy, b"/admin/x", user) {
        Outcome::Denied(403, _) => {}
        o => panic!("{name} ({when}): the user's /admin/x must be denied with 403; got {o:?}"),
    }
}

fn run_router(kind: Kind, router: &Router, corpus: &[Vec<u8>]) -> Report {
    let clock = std::time::Instant::now();
    // The corpus must be able to fool this router: some target not spelled
    // `/admin...` must reach its admin handler when nothing stands in front.
    let direct = for_all(corpus, |t| admin_when_direct(loopback(router.port), t));
    assert!(
        corpus
            .iter()
            .zip(&direct)
            .any(|(t, admin)| *admin && !literally_admin(t)),
        "{}: no target of the corpus reaches the admin handler directly unless spelled /admin...; \
         the corpus cannot expose this router's own reading of paths",
        kind.name()
    );
    let direct_done = clock.elapsed().as_secs_f64();
    let stack = Stack::builder()
        .upstream(router.port)
        .rules(json!([
            {"path_prefix": "/admin", "allowed_groups": ["admins"]},
            {"path_prefix": "/"},
        ]))
        .start();
    let user = stack.token_for("mallory", &["users"]);
    let admin = stack.token_for("alice", &["admins"]);
    let envoy = stack.envoy();
    assert_handlers_visible(kind, envoy, &user, &admin, "before the corpus");
    let stack_done = clock.elapsed().as_secs_f64();
    let outcomes = for_all(corpus, |t| send(envoy, t, &user));
    let corpus_done = clock.elapsed().as_secs_f64();
    assert_handlers_visible(kind, envoy, &user, &admin, "after the corpus");
    Report {
        kind,
        outcomes,
        direct_admin: direct.iter().filter(|a| **a).count(),
        timings: [direct_done, stack_done - direct_done, corpus_done - stack_done],
    }
}

fn table(reports: &[Report], sent: usize) -> String {
    let mut out = format!("{:<10} {:>5}", "router", "sent");
    for c in COLUMNS {
        out.push_str(&format!(" {c:>12}"));
    }
    // For scale: how many targets reach admin with nothing in front.
    out.push_str(&format!(" {:>12}\n", "direct-admin"));
    for r in reports {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &r.outcomes {
            *counts.entry(o.column()).or_default() += 1;
        }
        out.push_str(&format!("{:<10} {:>5}", r.kind.name(), sent));
        for c in COLUMNS {
            out.push_str(&format!(" {:>12}", counts.get(c).copied().unwrap_or(0)));
        }
        let [direct, stack, sent] = r.timings;
        out.push_str(&format!(
            " {:>12}  (direct {direct:.1} s, stack start {stack:.1} s, corpus {sent:.1} s)\n",
            r.direct_admin
        ));
    }
    out
}

/// One line per request in `pick`: target, what happened, what the router saw.
fn listing(reports: &[Report], corpus: &[Vec<u8>], pick: impl Fn(&Outcome) -> bool) -> String {
    let mut out = String::new();
    for r in reports {
        for (target, o) in corpus.iter().zip(&r.outcomes).filter(|(_, o)| pick(o)) {
            let what = match o {
                Outcome::Dispatched(d) => format!(
                    "portcullis allowed; Envoy forwarded {:?}; router routed on {:?} -> {} handler",
                    d.raw, d.path, d.handler
                ),
                Outcome::Envoy(status) => format!("Envoy answered {status} itself"),
                Outcome::Refused => "portcullis refused: 400 invalid_path".to_string(),
                Outcome::Denied(status, reason) => format!("portcullis denied: {status} {reason}"),
                Outcome::PortcullisOther(status, reason) => format!("portcullis answered {status} {reason}"),
                Outcome::RouterOther(status, body) => {
                    format!("portcullis allowed; the router answered {status} without a handler: {body:?}")
                }
                Outcome::NoResponse(error) => format!("no response: {error}"),
            };
            out.push_str(&format!(
                "  {:<10} {:<40} {what}\n",
                r.kind.name(),
                corpus::show(target)
            ));
        }
    }
    out
}

#[test]
fn no_open_judged_path_reaches_a_protected_handler() {
    let corpus = corpus::corpus();
    assert!(corpus.len() >= 300, "corpus too small: {}", corpus.len());
    let logs = Logs::new();

    let mut routers = Vec::new();
    let mut unavailable = Vec::new();
    for kind in Kind::ALL {
        match Router::start(kind, &logs) {
            Ok(r) => routers.push(r),
            Err(why) => unavailable.push(format!("{}: {why}", kind.name())),
        }
    }
    if !unavailable.is_empty() {
        let msg = format!(
            "routers unavailable (tests/routers/install.sh installs them):\n  {}",
            unavailable.join("\n  ")
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("WARNING: skipping part of the differential path test: {msg}");
    }
    assert!(!routers.is_empty(), "no router available at all");

    // One stack per router, all at once (each sends over SENDERS connections).
    let reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = routers
            .iter()
            .map(|r| s.spawn(|| run_router(r.kind, r, &corpus)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });

    if std::env::var_os("PATH_DIFFERENTIAL_VERBOSE").is_some() {
        println!("every outcome:\n{}", listing(&reports, &corpus, |_| true));
    }
    let summary = table(&reports, corpus.len());
    println!(
        "differential path test, {} targets per router:\n{summary}",
        corpus.len()
    );

    let offending = listing(&reports, &corpus, Outcome::is_admin);
    let count = reports
        .iter()
        .map(|r| r.outcomes.iter().filter(|o| o.is_admin()).count())
        .sum::<usize>();
    assert!(
        offending.is_empty(),
        "{count} requests of a user WITHOUT `admins` were judged open by portcullis and \
         dispatched to a router's ADMIN handler:\n{offending}\n{summary}"
    );
    let broken = listing(&reports, &corpus, Outcome::is_broken);
    assert!(
        broken.is_empty(),
        "requests that got no usable answer (router or stack failure):\n{broken}\n{summary}"
    );
}
