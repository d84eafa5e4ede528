//! Memory report for the byte-bounded caches: the heap of a decoded warrant
//! per CBOR byte (calibrates the stack weight), moka's per-entry overhead
//! (calibrates `ENTRY_OVERHEAD`), and the process RSS idle and with the
//! caches of a bearer + session + Tenuo checker filled past their budgets by
//! real Checks: 100,000 bearer identities, 100,000 browser sessions, 50,000
//! distinct warrant stacks, exact repeats and untrusted stacks. Per cache:
//! entries, weighted size, and the growth of the requested heap, of glibc's
//! chunks for it, and of RSS. Linux with glibc (reads `/proc/self/status`,
//! calls `malloc_usable_size`).
//!
//! Run: `cargo run --release --example cache_rss`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/warrant.rs"]
mod warrant;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use jsonwebtoken::Algorithm;
use portcullis::app::App;
use portcullis::check::Checker;
use portcullis::config::sessions::Secret;
use portcullis::config::RawConfig;
use portcullis::session::cookie::Sealer;
use portcullis::session::state::SessionData;
use serde_json::json;
use support::{check_request, ready, Issuer};
use tenuo::{ConstraintValue, SigningKey, Warrant};
use warrant::*;

const BEARERS: usize = 100_000;
const SESSIONS: usize = 100_000;
/// Distinct stacks, half single warrants, half 2-link delegations.
const STACKS: usize = 50_000;
const REPEATS: usize = 20_000;
const UNTRUSTED: usize = 8_000;
/// The session key of the example's config.
const SESSION_KEY: [u8; 32] = [7; 32];

/// Net heap bytes in use (as requested), counted by the allocator below, the
/// highest value since the last [`mark`], and what the live allocations
/// occupy in glibc's heap (usable size + the 8-byte chunk header).
static HEAP: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

unsafe extern "C" {
    fn malloc_usable_size(p: *mut u8) -> usize;
    fn malloc_trim(pad: usize) -> i32;
}

fn grow(by: isize) {
    let now = HEAP.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// # Safety
/// `p` is null or a live allocation of the system allocator.
unsafe fn chunk(p: *mut u8) -> isize {
    if p.is_null() {
        0
    } else {
        // SAFETY: see above.
        unsafe { malloc_usable_size(p) as isize + 8 }
    }
}

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size() as isize);
        let p = unsafe { System.alloc(l) };
        CHUNKS.fetch_add(unsafe { chunk(p) }, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        CHUNKS.fetch_sub(unsafe { chunk(p) }, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let old = unsafe { chunk(p) };
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            grow(new as isize - l.size() as isize);
            CHUNKS.fetch_add(unsafe { chunk(q) } - old, Ordering::Relaxed);
        }
        q
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

/// Counted heap and RSS at the start of a fill, to report its growth.
struct Mark {
    heap: isize,
    chunks: isize,
    rss: u64,
}

fn mark() -> Mark {
    PEAK.store(heap(), Ordering::Relaxed);
    Mark {
        heap: heap(),
        chunks: CHUNKS.load(Ordering::Relaxed),
        rss: rss_kib(),
    }
}

/// One line of the report: a cache (or a group of caches) after a fill.
/// `heap` is what was asked of the allocator (its peak during the fill),
/// `chunks` what that occupies in glibc's heap, RSS what the kernel sees.
fn report(label: &str, entries: u64, weighted: u64, since: &Mark) {
    let grown = heap() - since.heap;
    let peak = PEAK.load(Ordering::Relaxed) - since.heap;
    let chunks = CHUNKS.load(Ordering::Relaxed) - since.chunks;
    println!(
        "{label}: {entries} entries, weighted {:.1} MiB; heap +{:.1} MiB ({:.0} B/entry, peak +{:.1}), chunks +{:.1} MiB, RSS +{:.1} MiB",
        mib(weighted),
        mib(grown.max(0) as u64),
        grown as f64 / entries.max(1) as f64,
        mib(peak.max(0) as u64),
        mib(chunks.max(0) as u64),
        kib_as_mib(rss_kib().saturating_sub(since.rss))
    );
}

fn kib_as_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Bearer on `/`, sessions (login `idp`) on `/app`, Tenuo on `/files`.
fn config_yaml(oidc_url: &str, tenuo_issuer: &SigningKey) -> String {
    let gateway: String = GATEWAY.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n\
         oidc:\n  providers:\n    - issuer: {oidc_url}\n      audiences: [portcullis]\n      user_claim: email\n      login: {{name: idp, client_id: web}}\n\
         sessions:\n  keys: [{{file: /nonexistent}}]\n  public_url: https://app.example.com\n\
         cache:\n  max_ttl_seconds: 3600\n\
         rules:\n  - path_prefix: /files\n    require: tenuo\n  - path_prefix: /app\n    login: idp\n  - path_prefix: /\n\
         tenuo:\n  trusted_issuers: [\"{}\"]\n  debug: false\n  gateway:\n{gateway}",
        hex_key(tenuo_issuer)
    )
}

fn allowed(resp: &CheckResponse) -> bool {
    matches!(resp.http_response, Some(HttpResponse::OkResponse(_)))
}

/// Bearer tokens, each admitted by a real Check.
fn fill_bearers(app: &App, oidc: &Issuer) {
    let checker = &app.checker;
    let since = mark();
    for i in 0..BEARERS {
        let token = oidc.mint(Algorithm::EdDSA, &format!("user-{i:06}"), json!({ "jti": i }));
        assert!(allowed(&ready(checker.check(&check_request(&token)))), "token {i}");
    }
    app.cache.sync();
    let (entries, weighted) = (app.cache.entry_count(), app.cache.weighted_size());
    report("decision cache (identities)", entries, weighted, &since);
}

/// Distinct session cookies, sealed as the callback seals them (the key of
/// the config, the cookie's name as associated data), each admitted by a
/// real Check. Without refresh or ID token: the opened-session cache never
/// holds them, they only make the cookie longer.
fn fill_sessions(checker: &Checker, oidc: &Issuer, cookie_name: &str) {
    let since = mark();
    let sealer = Sealer::new(&[SESSION_KEY]);
    let aad = format!("session:{cookie_name}");
    let t = now();
    for i in 0..SESSIONS {
        let user = format!("user-{i:06}@example.com");
        let data = SessionData {
            p: "idp".into(),
            iss: oidc.url.clone(),
            sub: format!("user-{i:06}"),
            user: user.clone(),
            email: Some(user),
            groups: "dev,ops".into(),
            iat: t,
            exp: t + 3600,
            end: t + 3600,
            rt: None,
            idt: None,
        };
        let value = sealer.seal(&aad, &serde_json::to_vec(&data).expect("json"));
        let cookie = format!("{cookie_name}={value}");
        let resp = ready(checker.check(&request("GET", "/app/page", &[("cookie", &cookie)], "")));
        assert_eq!(status(&resp), 200, "session {i}: {}", body(&resp));
    }
    let sessions = checker.sessions().expect("sessions");
    for (name, entries, weighted) in sessions.cache_usage() {
        if name == "opened" {
            report("opened sessions", entries, weighted, &since);
        } else {
            println!("session {name}: {entries} entries, weighted {:.2} MiB", mib(weighted));
        }
    }
}

/// A `read_file` call under `w`, its PoP signed by `holder`.
fn call(checker: &Checker, w: &Warrant, holder: &SigningKey, hdr: &str, file: &str) -> CheckResponse {
    let a = args(&[("path", ConstraintValue::String(file.into()))]);
    let p = pop(w, holder, "read_file", &a, None);
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
}

fn all_tools() -> Vec<(&'static str, tenuo::ConstraintSet)> {
    vec![
        ("read_file", read_file_caps()),
        ("deploy", deploy_caps()),
        ("tenant_report", report_caps()),
    ]
}

/// Warrant caches: distinct stacks (each with an allowed call; odd ones
/// delegated once more), exact repeats of one stack (a fresh PoP each), and
/// rejected stacks from an untrusted issuer.
fn fill_warrants(app: &App, issuer: &SigningKey) {
    let checker = &app.checker;
    let since = mark();
    let (agent, sub) = (key(), key());
    let mut rss_trail = Vec::new();
    for i in 0..STACKS {
        let root = mint(issuer, &agent, all_tools(), 3600);
        let file = format!("/data/{i}");
        let resp = if i % 2 == 0 {
            call(checker, &root, &agent, &header(&[&root]), &file)
        } else {
            let child = delegate(&root, &agent, &sub, "read_file", read_file_caps(), 1800);
            call(checker, &child, &sub, &header(&[&root, &child]), &file)
        };
        assert_eq!(status(&resp), 200, "{}", body(&resp));
        if (i + 1) % 10_000 == 0 {
            rss_trail.push(format!("{:.1}", kib_as_mib(rss_kib())));
        }
    }
    println!("RSS (MiB) every 10,000 distinct stacks: {}", rss_trail.join(", "));
    let w = mint(issuer, &agent, all_tools(), 3600);
    let hdr = header(&[&w]);
    for i in 0..REPEATS {
        assert_eq!(status(&call(checker, &w, &agent, &hdr, &format!("/data/r{i}"))), 200);
    }
    let stranger = key();
    for i in 0..UNTRUSTED {
        let w = mint(&stranger, &agent, all_tools(), 3600);
        let resp = call(checker, &w, &agent, &header(&[&w]), &format!("/data/{i}"));
        assert_eq!(status(&resp), 403);
    }
    let trust = app.warrant.as_ref().expect("tenuo").trust();
    let (mut entries, mut weighted) = (0, 0);
    for (name, n, bytes) in trust.cache_usage() {
        (entries, weighted) = (entries + n, weighted + bytes);
        println!("warrant {name}: {n} entries, weighted {:.2} MiB", mib(bytes));
    }
    report("warrant caches", entries, weighted, &since);
}

fn main() {
    decoded_ratio();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let oidc = rt.block_on(Issuer::start());
    let issuer = key();
    let mut config = RawConfig::from_yaml(&config_yaml(&oidc.url, &issuer))
        .expect("yaml")
        .validate()
        .expect("valid");
    let sessions = config.sessions.as_mut().expect("sessions");
    sessions.keys = vec![Secret::with_value("sessions.keys[0]", &SESSION_KEY)];
    let cookie_name = sessions.cookie_name.clone();
    println!(
        "budgets: decision cache {:.0} MiB, warrant caches {:.0} MiB, session caches 9 MiB (fixed)",
        mib(config.cache.max_bytes),
        mib(config.tenuo.as_ref().map_or(0, |t| t.cache_max_bytes))
    );
    let app = App::new(config).expect("app");
    rt.block_on(app.oidc.load_all()).expect("keys");
    let idle = rss_kib();
    println!(
        "idle: {idle} KiB RSS, {:.1} MiB heap, {:.1} MiB chunks",
        mib(heap().max(0) as u64),
        mib(CHUNKS.load(Ordering::Relaxed).max(0) as u64)
    );

    fill_bearers(&app, &oidc);
    fill_sessions(&app.checker, &oidc, &cookie_name);
    fill_warrants(&app, &issuer);

    let full = rss_kib();
    println!(
        "full: {full} KiB RSS, {:.1} MiB heap, {:.1} MiB chunks; RSS +{:.1} MiB since idle",
        mib(heap().max(0) as u64),
        mib(CHUNKS.load(Ordering::Relaxed).max(0) as u64),
        kib_as_mib(full.saturating_sub(idle))
    );
    // What glibc keeps of freed memory: a server never calls this.
    // SAFETY: glibc's malloc_trim takes no pointer and is thread-safe.
    unsafe { malloc_trim(0) };
    println!("after malloc_trim(0): {} KiB RSS", rss_kib());
}
