//! Instruction counts of the two hot paths the criterion benches time, for
//! callgrind: counts are deterministic where wall-clock time on a shared
//! machine is not.
//!
//! - `bearer N`: N Checks of a cached bearer token (`check/cache_hit`);
//! - `warrant N`: N exact repeats of a warrant request within its PoP
//!   window (`warrant/portcullis_exact_repeat/single`).
//!
//! Only `measure` is counted (setup, key loading and the first, uncached
//! Check are not):
//!
//! ```text
//! cargo build --release --example hot_path
//! valgrind --tool=callgrind --toggle-collect='hot_path::measure' \
//!     target/release/examples/hot_path bearer 20000
//! ```
//!
//! Instructions per Check: the run's collected total divided by N (or
//! the difference of two runs, which leaves out what is counted once).
//! `hot_path bearer 20000 time` prints the fastest of 30 timed batches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/warrant.rs"]
mod warrant;

use std::hint::black_box;

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use portcullis::check::Checker;
use serde_json::json;
use support::{check_request, ready, Issuer};
use tenuo::ConstraintValue;

/// The counted loop; never inlined, so callgrind can toggle on its name.
#[inline(never)]
fn measure(checker: &Checker, req: &CheckRequest, n: u64) -> u64 {
    let mut allowed = 0;
    for _ in 0..n {
        let resp = ready(checker.check(black_box(req)));
        allowed += u64::from(matches!(resp.http_response, Some(HttpResponse::OkResponse(_))));
        drop(black_box(resp));
    }
    allowed
}

fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_else(|| "bearer".into());
    let n: u64 = argv.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let (checker, req) = match mode.as_str() {
        "bearer" => {
            let issuer = rt.block_on(Issuer::start());
            let checker = rt.block_on(issuer.checker(100_000));
            let token = issuer.mint(jsonwebtoken::Algorithm::RS256, "alice", json!({}));
            (checker, check_request(&token))
        }
        "warrant" => {
            let (issuer, agent) = (warrant::key(), warrant::key());
            let root = warrant::mint(&issuer, &agent, vec![("read_file", warrant::read_file_caps())], 3600);
            let hdr = warrant::header(&[&root]);
            let args = warrant::args(&[("path", ConstraintValue::String("/data/f0".into()))]);
            let pop = warrant::pop(&root, &agent, "read_file", &args, None);
            let req = warrant::request(
                "GET",
                "/files?path=/data/f0",
                &[("x-tenuo-warrant", &hdr), ("x-tenuo-pop", &pop)],
                "",
            );
            (warrant::checker(&[&issuer]), req)
        }
        other => panic!("unknown mode {other:?}: bearer or warrant"),
    };
    // The first Check fills the caches; every measured one is a repeat.
    let first = ready(checker.check(&req));
    assert!(
        matches!(first.http_response, Some(HttpResponse::OkResponse(_))),
        "the request must be allowed: {first:?}"
    );
    if argv.next().as_deref() == Some("time") {
        // Wall-clock on a shared machine: the fastest of many batches is
        // the least disturbed by other work.
        let best = (0..30)
            .map(|_| {
                let t = std::time::Instant::now();
                black_box(measure(&checker, &req, n));
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("{mode}: fastest of 30 batches of {n}: {best:.0} ns per Check");
        return;
    }
    let allowed = measure(&checker, &req, n);
    assert_eq!(allowed, n, "every repeat must be allowed");
    // What every Check's future moves around (tonic boxes it per request).
    let future = std::mem::size_of_val(&checker.check(&req));
    println!("{mode}: {n} Checks allowed; a Check's future is {future} bytes");
}
