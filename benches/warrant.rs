//! Tenuo warrant benchmarks, side by side in one run (single warrant and a
//! 2-link delegation chain):
//!
//! - `crate`: what tenuo-authorizer does per request — decode the header,
//!   then `Authorizer::check_chain` (every signature, every time);
//! - `portcullis_cold`: a full `Check` with a warrant never seen before;
//! - `portcullis_repeat_warrant`: a known warrant, new arguments and PoP each
//!   time (stack cache hit: one Ed25519 verify for the PoP);
//! - `portcullis_exact_repeat`: the same request again within its PoP window.
//!
//! Run: `cargo bench --bench warrant`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

#[path = "../tests/support/warrant.rs"]
mod fixture;
#[path = "../tests/support/mod.rs"]
mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use fixture::*;
use support::ready;
use tenuo::{Authorizer, ConstraintValue, SigningKey, Warrant};

struct Setup {
    label: &'static str,
    chain: Vec<Warrant>,
    holder: SigningKey,
}

fn file_args(n: u64) -> std::collections::HashMap<String, ConstraintValue> {
    args(&[("path", ConstraintValue::String(format!("/data/f{n}")))])
}

fn file_request(warrant: &str, n: u64, pop: &str) -> envoy_types::ext_authz::v3::pb::CheckRequest {
    request(
        "GET",
        &format!("/files?path=/data/f{n}"),
        &[("x-tenuo-warrant", warrant), ("x-tenuo-pop", pop)],
        "",
    )
}

fn decode(header: &str) -> Vec<Warrant> {
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .or_else(|_| STANDARD.decode(header))
        .expect("base64");
    match tenuo::wire::decode_stack(&bytes) {
        Ok(s) => s.0,
        Err(_) => vec![tenuo::wire::decode(&bytes).expect("warrant")],
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let issuer = key();
    let agent = key();
    let sub = key();
    let root = mint(&issuer, &agent, vec![("read_file", read_file_caps())], 3600);
    let child = delegate(&root, &agent, &sub, "read_file", read_file_caps(), 3000);
    let authorizer = Authorizer::builder()
        .trusted_root(issuer.public_key())
        .build()
        .expect("authorizer");
    let setups = [
        Setup {
            label: "single",
            chain: vec![root.clone()],
            holder: agent.clone(),
        },
        Setup {
            label: "chain2",
            chain: vec![root.clone(), child.clone()],
            holder: sub.clone(),
        },
    ];

    let mut g = c.benchmark_group("warrant");
    for s in &setups {
        let leaf = s.chain.last().expect("leaf");
        let links: Vec<&Warrant> = s.chain.iter().collect();
        let hdr = header(&links);
        let a = file_args(0);
        let sig = leaf.sign(&s.holder, "read_file", &a).expect("sign");

        g.bench_function(format!("crate_decode_check_chain/{}", s.label), |b| {
            b.iter(|| {
                let chain = decode(&hdr);
                authorizer
                    .check_chain(&chain, "read_file", &a, Some(&sig), &[])
                    .expect("allowed")
            })
        });

        // A new checker per batch and a new warrant per iteration: nothing cached.
        let cold = checker(&[&issuer]);
        let mut n = 0u64;
        g.bench_function(format!("portcullis_cold/{}", s.label), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let fresh_root = mint(&issuer, &agent, vec![("read_file", read_file_caps())], 3600);
                    let (chain, holder) = if s.chain.len() == 1 {
                        (vec![fresh_root], agent.clone())
                    } else {
                        let c = delegate(&fresh_root, &agent, &sub, "read_file", read_file_caps(), 3000);
                        (vec![fresh_root, c], sub.clone())
                    };
                    let links: Vec<&Warrant> = chain.iter().collect();
                    let leaf = chain.last().expect("leaf");
                    let p = pop(leaf, &holder, "read_file", &file_args(n), None);
                    file_request(&header(&links), n, &p)
                },
                |req| assert_eq!(status(&ready(cold.check(&req))), 200),
                BatchSize::SmallInput,
            )
        });

        let warm = checker(&[&issuer]);
        let first = file_request(&hdr, 0, &pop(leaf, &s.holder, "read_file", &a, None));
        assert_eq!(status(&ready(warm.check(&first))), 200);
        let mut n = 0u64;
        g.bench_function(format!("portcullis_repeat_warrant/{}", s.label), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    file_request(&hdr, n, &pop(leaf, &s.holder, "read_file", &file_args(n), None))
                },
                |req| assert_eq!(status(&ready(warm.check(&req))), 200),
                BatchSize::SmallInput,
            )
        });

        g.bench_function(format!("portcullis_exact_repeat/{}", s.label), |b| {
            b.iter(|| ready(warm.check(&first)))
        });
        assert_eq!(status(&ready(warm.check(&first))), 200);
    }
    g.finish();
}

criterion_group!(warrant, benches);
criterion_main!(warrant);
