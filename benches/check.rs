//! Hot-path benchmarks: a full `Check` decision on a cache hit, a cold
//! verification per algorithm, and the raw `jsonwebtoken` verify it wraps.
//!
//! Run: `cargo bench --bench check`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use envoy_types::ext_authz::v3::pb::HttpResponse;
use jsonwebtoken::Validation;
use serde_json::{json, Map, Value};
use support::{check_request, ready, Issuer, ALGS};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let issuer = rt.block_on(Issuer::start());
    let checker = rt.block_on(issuer.checker(100_000));

    let token = issuer.mint(jsonwebtoken::Algorithm::RS256, "alice", json!({}));
    let req = check_request(&token);
    let first = ready(checker.check(&req));
    assert!(
        matches!(first.http_response, Some(HttpResponse::OkResponse(_))),
        "bench token must be allowed"
    );
    c.bench_function("check/cache_hit", |b| b.iter(|| ready(checker.check(&req))));

    let mut cold = c.benchmark_group("verify_cold");
    for alg in ALGS {
        // A fresh token per iteration: nothing can be cached.
        let mut n = 0u64;
        cold.bench_function(format!("portcullis/{alg:?}"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    issuer.mint(alg, "alice", json!({ "jti": n }))
                },
                |t| ready(checker.oidc().verify(&t, SystemTime::now())).expect("valid"),
                BatchSize::SmallInput,
            )
        });
        let key = issuer.decoding_key(alg);
        let mut v = Validation::new(alg);
        v.set_audience(&["portcullis"]);
        v.set_issuer(&[&issuer.url]);
        cold.bench_function(format!("jsonwebtoken_raw/{alg:?}"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    issuer.mint(alg, "alice", json!({ "jti": n }))
                },
                |t| jsonwebtoken::decode::<Map<String, Value>>(&t, &key, &v).expect("valid"),
                BatchSize::SmallInput,
            )
        });
    }
    cold.finish();

    let denied = check_request("not-a-jwt");
    c.bench_function("check/malformed_token", |b| b.iter(|| ready(checker.check(&denied))));
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
