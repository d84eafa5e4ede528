//! Memory report for the byte-bounded caches: the heap of a decoded warrant
//! per CBOR byte (calibrates the stack weight), moka's per-entry overhead
//! (calibrates `ENTRY_OVERHEAD`), and the process RSS idle and with every
//! cache of a bearer + Tenuo checker filled past its budget by real Checks.
//!
//! Run: `cargo run --release --example cache_rss`

#[path = "../benches/support/mod.rs"]
mod support;
#[path = "../benches/support/warrant.rs"]
mod warrant;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use envoy_types::ext_authz::v3::pb::HttpResponse;
use jsonwebtoken::Algorithm;
use portcullis::config::RawConfig;
use serde_json::json;
use support::{check_request, ready, Issuer};
use tenuo::ConstraintValue;
use warrant::*;

/// Net heap bytes in use, counted by the allocator below.
static HEAP: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap() -> isize {
    HEAP.load(Ordering::Relaxed)
}

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

fn mib(b: impl TryInto<u64>) -> f64 {
    b.try_into().map_or(0.0, |b: u64| b as f64 / (1 << 20) as f64)
}

/// Heap bytes per CBOR byte of decoded warrants, for a single warrant and a 2-link stack.
fn decoded_ratio() {
    let (issuer, agent, sub) = (key(), key(), key());
    let all = vec![
        ("read_file", read_file_caps()),
        ("deploy", deploy_caps()),
        ("tenant_report", report_caps()),
    ];
    let root = mint(&issuer, &agent, all, 600);
    let child = delegate(&root, &agent, &sub, "deploy", deploy_caps(), 300);
    for (label, chain) in [("single", vec![&root]), ("2-link stack", vec![&root, &child])] {
        let text = header(&chain);
        let bytes = portcullis_bytes(&text);
        let before = heap();
        let kept: Vec<_> = (0..500)
            .map(|_| match chain.len() {
                1 => vec![tenuo::wire::decode(&bytes).expect("decode")],
                _ => tenuo::wire::decode_stack(&bytes).expect("decode").0,
            })
            .collect();
        let per = (heap() - before) as f64 / kept.len() as f64;
        println!(
            "decoded {label}: {} CBOR bytes -> {per:.0} heap bytes ({:.2} per CBOR byte)",
            bytes.len(),
            per / bytes.len() as f64
        );
    }
}

fn portcullis_bytes(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
        .expect("base64")
}

fn main() {
    decoded_ratio();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let oidc = rt.block_on(Issuer::start());
    let (issuer, agent) = (key(), key());
    let gateway: String = GATEWAY.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\noidc:\n  providers:\n    - issuer: {}\n      audiences: [portcullis]\n      user_claim: email\ncache:\n  max_ttl_seconds: 3600\nrules:\n  - path_prefix: /files\n    require: tenuo\n  - path_prefix: /\ntenuo:\n  trusted_issuers: [\"{}\"]\n  gateway:\n{gateway}",
        oidc.url,
        hex_key(&issuer)
    );
    let config = RawConfig::from_yaml(&yaml).expect("yaml").validate().expect("valid");
    let budget = (
        config.cache.max_bytes,
        config.tenuo.as_ref().map_or(0, |t| t.cache_max_bytes),
    );
    let checker = portcullis::server::build_checker(config).expect("checker");
    rt.block_on(checker.oidc().load_all()).expect("keys");
    let trust = checker.warrant().expect("tenuo").trust();
    println!(
        "budgets: decision cache {:.0} MiB, warrant caches {:.0} MiB",
        mib(budget.0),
        mib(budget.1)
    );
    println!("idle: {} KiB RSS, {:.1} MiB heap", rss_kib(), mib(heap().max(0) as u64));

    // Bearer tokens, each admitted by a real Check, until well past the budget.
    let (heap0, rss0) = (heap(), rss_kib());
    for i in 0..100_000 {
        let token = oidc.mint(Algorithm::EdDSA, &format!("user-{i:06}"), json!({ "jti": i }));
        let resp = ready(checker.check(&check_request(&token)));
        assert!(
            matches!(resp.http_response, Some(HttpResponse::OkResponse(_))),
            "token {i}"
        );
    }
    checker.cache().sync();
    let (entries, weighted) = (checker.cache().entry_count(), checker.cache().weighted_size());
    let grown = heap() - heap0;
    println!(
        "decision cache: {entries} identities, weighted {:.1} MiB; heap +{:.1} MiB ({:.0} B/entry), RSS +{} KiB",
        mib(weighted),
        mib(grown.max(0) as u64),
        grown as f64 / entries.max(1) as f64,
        rss_kib().saturating_sub(rss0)
    );

    // Warrant caches: distinct stacks (each with an allowed call), distinct
    // exact repeats of one stack, and rejected stacks from an untrusted issuer.
    let (heap1, rss1) = (heap(), rss_kib());
    let all = || {
        vec![
            ("read_file", read_file_caps()),
            ("deploy", deploy_caps()),
            ("tenant_report", report_caps()),
        ]
    };
    let call = |w: &tenuo::Warrant, hdr: &str, file: &str| {
        let a = args(&[("path", ConstraintValue::String(file.into()))]);
        let p = pop(w, &agent, "read_file", &a, None);
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("path", file)
            .finish();
        let req = request(
            "GET",
            &format!("/files?{q}"),
            &[("x-tenuo-warrant", hdr), ("x-tenuo-pop", &p)],
            "",
        );
        ready(checker.check(&req))
    };
    for i in 0..6_000 {
        let w = mint(&issuer, &agent, all(), 3600);
        let resp = call(&w, &header(&[&w]), &format!("/data/{i}"));
        assert_eq!(status(&resp), 200, "{}", body(&resp));
    }
    let w = mint(&issuer, &agent, all(), 3600);
    let hdr = header(&[&w]);
    for i in 0..20_000 {
        assert_eq!(status(&call(&w, &hdr, &format!("/data/r{i}"))), 200);
    }
    let stranger = key();
    for i in 0..8_000 {
        let w = mint(&stranger, &agent, all(), 3600);
        assert_eq!(status(&call(&w, &header(&[&w]), &format!("/data/{i}"))), 403);
    }
    let mut total = 0;
    for (name, entries, bytes) in trust.cache_usage() {
        total += bytes;
        println!("warrant {name}: {entries} entries, weighted {:.2} MiB", mib(bytes));
    }
    let grown = heap() - heap1;
    println!(
        "warrant caches: weighted {:.1} MiB; heap +{:.1} MiB, RSS +{} KiB",
        mib(total),
        mib(grown.max(0) as u64),
        rss_kib().saturating_sub(rss1)
    );
    println!("full: {} KiB RSS, {:.1} MiB heap", rss_kib(), mib(heap().max(0) as u64));
}
