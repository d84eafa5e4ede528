//! grpc-load: ext_authz v3 Check load against one server, with a latency
//! histogram and the server's CPU per Check. Prints one JSON object.
//!
//! ```text
//! grpc-load --addr 127.0.0.1:PORT --requests FILE --concurrency C
//!           [--connections K] (--duration S [--warmup S] | --once)
//!           [--pid PID] [--peer-pid PID] [--traceparent 01|00]
//!           [--expect allow|deny] [--capture FILE]
//! ```
//!
//! FILE is a JSON array of requests as Envoy describes them:
//! `{"method", "path", "host", "scheme"?, "headers": {name: value}}`.
//! C streams run at once, spread over K HTTP/2 connections (default 1: one
//! Envoy worker keeps one connection to its ext_authz cluster); each stream
//! sends its next Check as soon as the last one is answered (closed loop), so
//! a per-stream stall shows in every percentile. Requests are taken in order
//! and round robin; with `--once` each is sent exactly once (cold tokens,
//! fresh PoPs) and the run ends when all are answered.
//!
//! `--pid` names the server process: the CPU time of all its threads during
//! the measured part (from /proc/PID/task/*/schedstat, nanoseconds) divided by
//! the Checks answered. `--capture` writes the first response (protobuf) to a
//! file, for null-authz to serve the very same bytes. `--peer-pid` names
//! another process whose CPU per Check is reported too (an OpenTelemetry
//! Collector receiving the server's spans). The machine's busy CPUs (from
//! /proc/stat) minus those of the server, the peer and grpc-load itself are
//! reported as `others_busy_cpus`: load from outside the measurement.
//!
//! `--traceparent FLAGS` gives every Check (warm-up included) its own W3C
//! `traceparent` request header, `00-<new trace id>-<new parent id>-FLAGS`
//! (01: sampled, 00: not), as a client that traces would send; the ids come
//! from a per-run seed and the Check's sequence number (no two alike).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, authorization_client::AuthorizationClient, AttributeContext, CheckRequest,
};
use hdrhistogram::Histogram;
use prost::Message;
use serde::Deserialize;
use tonic::transport::{Channel, Endpoint};

#[derive(Deserialize)]
struct Spec {
    method: String,
    path: String,
    host: String,
    #[serde(default = "http")]
    scheme: String,
    #[serde(default)]
    headers: std::collections::HashMap<String, String>,
}

fn http() -> String {
    "http".into()
}

struct Args {
    addr: String,
    requests: String,
    concurrency: usize,
    connections: usize,
    duration: Option<f64>,
    warmup: f64,
    pid: Option<u32>,
    peer_pid: Option<u32>,
    traceparent: Option<String>,
    expect: Option<bool>,
    capture: Option<String>,
}

const USAGE: &str = "usage: grpc-load --addr 127.0.0.1:PORT --requests FILE --concurrency C \
[--connections K] (--duration S [--warmup S] | --once) [--pid PID] [--peer-pid PID] [--traceparent 01|00] \
[--expect allow|deny] [--capture FILE]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut addr, mut requests, mut concurrency) = (None, None, None);
    let (mut connections, mut duration, mut warmup, mut once) = (1, None, 0.0, false);
    let (mut pid, mut expect, mut capture) = (None, None, None);
    let (mut peer_pid, mut traceparent) = (None, None);
    while let Some(flag) = it.next() {
        if flag == "--once" {
            once = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--addr" => addr = Some(v),
            "--requests" => requests = Some(v),
            "--concurrency" => concurrency = Some(num(&v)? as usize),
            "--connections" => connections = num(&v)? as usize,
            "--duration" => duration = Some(num(&v)?),
            "--warmup" => warmup = num(&v)?,
            "--pid" => pid = Some(num(&v)? as u32),
            "--peer-pid" => peer_pid = Some(num(&v)? as u32),
            "--traceparent" => {
                if v != "01" && v != "00" {
                    return Err("--traceparent: 01 (sampled) or 00 (not sampled)".into());
                }
                traceparent = Some(v)
            }
            "--capture" => capture = Some(v),
            "--expect" => {
                expect = Some(match v.as_str() {
                    "allow" => true,
                    "deny" => false,
                    _ => return Err("--expect: allow or deny".into()),
                })
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let addr: String = addr.ok_or("--addr is required")?;
    let ip = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
    if !ip.parse::<std::net::IpAddr>().map(|a| a.is_loopback()).unwrap_or(false) {
        return Err(format!("--addr {addr}: loopback addresses only"));
    }
    if once == duration.is_some() {
        return Err("exactly one of --duration and --once".into());
    }
    let concurrency = concurrency.ok_or("--concurrency is required")?;
    if concurrency == 0 || connections == 0 || connections > concurrency {
        return Err("need 1 <= connections <= concurrency".into());
    }
    Ok(Args {
        addr,
        requests: requests.ok_or("--requests is required")?,
        concurrency,
        connections,
        duration,
        warmup,
        pid,
        peer_pid,
        traceparent,
        expect,
        capture,
    })
}

fn check_request(s: Spec, n: usize) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    id: format!("load-{n}"),
                    method: s.method,
                    path: s.path,
                    host: s.host,
                    scheme: s.scheme,
                    protocol: "HTTP/1.1".into(),
                    headers: s.headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// SplitMix64: distinct, well-mixed ids from a seed and a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A W3C traceparent for Check number `i` of this run: a trace id of the
/// run's seed and `i` (unique within the run), a nonzero parent span id.
fn traceparent(seed: u64, i: usize, flags: &str) -> String {
    let (hi, lo) = (mix(seed), mix(seed ^ mix(i as u64)));
    format!("00-{hi:016x}{lo:016x}-{:016x}-{flags}", mix(lo) | 1)
}

/// Busy time of the whole machine so far (all CPUs), in nanoseconds: user,
/// nice, system, irq, softirq and steal from /proc/stat, in USER_HZ (100 on Linux).
fn machine_busy_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy * 10_000_000
}

/// CPU time of every thread of `pid` so far, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[derive(Default)]
struct Tally {
    hist: Option<Histogram<u64>>,
    allowed: u64,
    denied: u64,
    errors: u64,
    first_surprise: Option<String>,
}

struct Shared {
    requests: Vec<CheckRequest>,
    next: AtomicUsize,
    once: bool,
    stop: AtomicBool,
    expect: Option<bool>,
    /// (seed, flags): a new traceparent per Check, numbered by `next`
    /// (never reset, so warm-up and measured Checks differ too).
    traceparent: Option<(u64, String)>,
}

async fn stream(client: AuthorizationClient<Channel>, shared: Arc<Shared>) -> Tally {
    let mut client = client;
    let mut t = Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).ok(),
        ..Default::default()
    };
    let n = shared.requests.len();
    while !shared.stop.load(Ordering::Relaxed) {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.once && i >= n {
            break;
        }
        let mut req = shared.requests[i % n].clone();
        if let Some((seed, flags)) = &shared.traceparent {
            if let Some(http) = req
                .attributes
                .as_mut()
                .and_then(|a| a.request.as_mut())
                .and_then(|r| r.http.as_mut())
            {
                http.headers.insert("traceparent".into(), traceparent(*seed, i, flags));
            }
        }
        let t0 = Instant::now();
        let res = client.check(req).await;
        let ns = t0.elapsed().as_nanos() as u64;
        if let Some(h) = t.hist.as_mut() {
            h.saturating_record(ns.max(1));
        }
        match res {
            Ok(resp) => {
                let resp = resp.into_inner();
                let allowed = resp.status.as_ref().map(|s| s.code).unwrap_or(0) == 0;
                if allowed {
                    t.allowed += 1;
                } else {
                    t.denied += 1;
                }
                if shared.expect.is_some_and(|e| e != allowed) && t.first_surprise.is_none() {
                    t.first_surprise = Some(format!("request {}: {resp:?}", i % n));
                }
            }
            Err(e) => {
                t.errors += 1;
                if t.first_surprise.is_none() {
                    t.first_surprise = Some(format!("request {}: gRPC error {e}", i % n));
                }
            }
        }
    }
    t
}

/// Runs `concurrency` streams until `stop` (duration) or the requests run out (once).
async fn phase(
    clients: &[AuthorizationClient<Channel>],
    shared: &Arc<Shared>,
    concurrency: usize,
    secs: Option<f64>,
) -> Tally {
    shared.stop.store(false, Ordering::Relaxed);
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| tokio::spawn(stream(clients[i % clients.len()].clone(), shared.clone())))
        .collect();
    if let Some(s) = secs {
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut total = Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).ok(),
        ..Default::default()
    };
    for task in tasks {
        let Ok(t) = task.await else {
            total.errors += 1;
            continue;
        };
        if let (Some(a), Some(b)) = (total.hist.as_mut(), t.hist.as_ref()) {
            let _ = a.add(b);
        }
        total.allowed += t.allowed;
        total.denied += t.denied;
        total.errors += t.errors;
        total.first_surprise = total.first_surprise.or(t.first_surprise);
    }
    total
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("grpc-load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let specs: Vec<Spec> = match std::fs::read(&args.requests)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("grpc-load: {}: {e}", args.requests);
            std::process::exit(2);
        }
    };
    if specs.is_empty() {
        eprintln!("grpc-load: {}: no requests", args.requests);
        std::process::exit(2);
    }
    let requests: Vec<CheckRequest> = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| check_request(s, i))
        .collect();

    let mut clients = Vec::new();
    for _ in 0..args.connections {
        // One Endpoint::connect = one HTTP/2 connection; clones multiplex on it.
        let channel = match Endpoint::from_shared(format!("http://{}", args.addr)) {
            Ok(e) => e.tcp_nodelay(true).connect().await,
            Err(e) => {
                eprintln!("grpc-load: {}: {e}", args.addr);
                std::process::exit(2);
            }
        };
        match channel {
            Ok(c) => clients.push(AuthorizationClient::new(c)),
            Err(e) => {
                eprintln!("grpc-load: connect {}: {e}", args.addr);
                std::process::exit(1);
            }
        }
    }

    if let Some(path) = &args.capture {
        match clients[0].clone().check(requests[0].clone()).await {
            Ok(r) => {
                if let Err(e) = std::fs::write(path, r.into_inner().encode_to_vec()) {
                    eprintln!("grpc-load: {path}: {e}");
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("grpc-load: capture: {e}");
                std::process::exit(1);
            }
        }
    }

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    let shared = Arc::new(Shared {
        requests,
        next: AtomicUsize::new(0),
        once: args.duration.is_none(),
        stop: AtomicBool::new(false),
        expect: args.expect,
        traceparent: args.traceparent.clone().map(|f| (seed, f)),
    });
    let mut warmup_answered = 0;
    if args.duration.is_some() && args.warmup > 0.0 {
        let w = phase(&clients, &shared, args.concurrency, Some(args.warmup)).await;
        warmup_answered = w.allowed + w.denied + w.errors;
    }
    let cpu0 = args.pid.map(cpu_ns);
    let peer0 = args.peer_pid.map(cpu_ns);
    let own0 = cpu_ns(std::process::id());
    let busy0 = machine_busy_ns();
    let t0 = Instant::now();
    let t = phase(&clients, &shared, args.concurrency, args.duration).await;
    let secs = t0.elapsed().as_secs_f64();
    let busy = machine_busy_ns().saturating_sub(busy0);
    let server_cpu = args.pid.zip(cpu0).map(|(p, c0)| cpu_ns(p).saturating_sub(c0));
    let peer_cpu = args.peer_pid.zip(peer0).map(|(p, c0)| cpu_ns(p).saturating_sub(c0));
    let own = cpu_ns(std::process::id()).saturating_sub(own0);
    let known = server_cpu.unwrap_or(0) + peer_cpu.unwrap_or(0) + own;

    let answered = t.allowed + t.denied;
    let per_check = |ns: u64| {
        if answered == 0 {
            0.0
        } else {
            ns as f64 / answered as f64 / 1000.0
        }
    };
    let q = |p: f64| {
        t.hist
            .as_ref()
            .map(|h| h.value_at_quantile(p) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    let out = serde_json::json!({
        "requests": answered + t.errors,
        "allowed": t.allowed,
        "denied": t.denied,
        "errors": t.errors,
        "seconds": secs,
        "rps": answered as f64 / secs,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "mean_us": t.hist.as_ref().map(|h| h.mean() / 1000.0).unwrap_or(0.0),
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": t.hist.as_ref().map(|h| h.max() as f64 / 1000.0).unwrap_or(0.0),
        "server_cpu_us_per_check": server_cpu.map(per_check),
        "peer_cpu_us_per_check": peer_cpu.map(per_check),
        "client_cpu_us_per_check": per_check(own),
        "machine_busy_cpus": busy as f64 / 1e9 / secs,
        "others_busy_cpus": (busy as f64 - known as f64) / 1e9 / secs,
        "warmup_requests": warmup_answered,
        "traceparent": args.traceparent,
        "wrapped": !shared.once && shared.next.load(Ordering::Relaxed) > shared.requests.len(),
        "first_surprise": t.first_surprise,
    });
    println!("{out}");
    // A run that got answers it did not expect is not a measurement of the work asked for.
    if t.errors > 0 || (args.expect == Some(true) && t.denied > 0) || (args.expect == Some(false) && t.allowed > 0) {
        std::process::exit(3);
    }
}
