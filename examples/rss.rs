//! Memory report: RSS of a checker with its keys loaded, then with 100k
//! distinct identities in the decision cache (each admitted by a real
//! `Check` of a freshly signed EdDSA token).
//!
//! Run: `cargo run --release --example rss`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

#[path = "../tests/support/mod.rs"]
mod support;

use envoy_types::ext_authz::v3::pb::HttpResponse;
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::{check_request, ready, Issuer};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    const N: u64 = 100_000;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let issuer = rt.block_on(Issuer::start());
    let app = rt.block_on(issuer.app(N + 1000));
    let checker = &app.checker;
    println!("loaded: {} KiB RSS", rss_kib());
    for i in 0..N {
        let token = issuer.mint(Algorithm::EdDSA, &format!("user-{i:06}"), json!({ "jti": i }));
        let resp = ready(checker.check(&check_request(&token)));
        assert!(
            matches!(resp.http_response, Some(HttpResponse::OkResponse(_))),
            "token {i} denied"
        );
    }
    app.cache.sync();
    println!("{} cached identities: {} KiB RSS", app.cache.entry_count(), rss_kib());
}
