//! The real upstream routers of `tests/path_differential.rs`, each a child
//! process on a free loopback port that names, in its JSON answer, the
//! handler that dispatched the request (`{"handler": "admin"|"root",
//! "path": <what it routed on>, "raw": <the target it received>}`).
//!
//! Installed by `tests/routers/install.sh` (called by `tests/run.sh`), found
//! through `NGINX_BIN`, `NODE_BIN` and `ROUTERS_PYTHON` with fallbacks.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, http, loopback, repo_root, wait_until, ChildGuard, Logs, Req, POLL, READY_TIMEOUT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Express,
    Starlette,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Nginx, Kind::Express, Kind::Starlette];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Express => "express",
            Kind::Starlette => "starlette",
        }
    }
}

/// Which handler a router reported, with the paths it reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub handler: String,
    /// What the router routed on (nginx `$uri`, Express `baseUrl + path`,
    /// Starlette's decoded `scope["path"]`).
    pub path: String,
    /// The request target the router received from Envoy.
    pub raw: String,
}

/// Reads a router's answer. nginx writes `$uri` into its JSON unescaped, so
/// a decoded `"` or `\` or a non-UTF-8 byte can break the JSON; the handler
/// is the fixed first field, so it is still read from the body's prefix.
pub fn dispatch_of(body: &[u8]) -> Option<Dispatch> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let handler = field("handler");
        if !handler.is_empty() {
            return Some(Dispatch {
                handler,
                path: field("path"),
                raw: field("raw"),
            });
        }
    }
    let text = String::from_utf8_lossy(body);
    ["admin", "root"]
        .into_iter()
        .find(|h| text.starts_with(&format!("{{\"handler\":\"{h}\"")))
        .map(|h| Dispatch {
            handler: h.to_string(),
            path: format!("(unparsable body) {text}"),
            raw: String::new(),
        })
}

/// A running router.
pub struct Router {
    pub kind: Kind,
    pub port: u16,
    _guard: ChildGuard,
}

/// Why a router cannot run here.
pub type Unavailable = String;

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `name` on `PATH`, else the first existing `fallbacks` entry.
fn which(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
}

fn routers_dir() -> PathBuf {
    repo_root().join("tests/routers")
}

impl Router {
    /// Starts the router and waits until it answers `/` from its root handler.
    pub fn start(kind: Kind, logs: &Logs) -> Result<Router, Unavailable> {
        let (guard, port) = match kind {
            Kind::Nginx => start_nginx(logs)?,
            Kind::Express => start_express(logs)?,
            Kind::Starlette => start_starlette(logs)?,
        };
        let router = Router {
            kind,
            port,
            _guard: guard,
        };
        wait_until(
            &format!("{} to answer on port {port}", kind.name()),
            READY_TIMEOUT,
            POLL,
            || {
                let resp = http::send(loopback(port), &Req::get("/")).map_err(|e| e.to_string())?;
                match dispatch_of(&resp.body) {
                    Some(d) if resp.status == 200 && d.handler == "root" => Ok(()),
                    _ => Err(format!("answered {} {:?}", resp.status, resp.text())),
                }
            },
        );
        Ok(router)
    }
}

fn start_nginx(logs: &Logs) -> Result<(ChildGuard, u16), Unavailable> {
    let bin = env_path("NGINX_BIN")
        .or_else(|| which("nginx", &["/usr/sbin/nginx"]))
        .ok_or("nginx not found (set NGINX_BIN or run tests/routers/install.sh)")?;
    if !bin.is_file() {
        return Err(format!("NGINX_BIN={} does not exist", bin.display()));
    }
    let template = std::fs::read_to_string(routers_dir().join("nginx.conf.in")).map_err(|e| e.to_string())?;
    // A port picked a moment ago can be taken by someone else: retry.
    for attempt in 1..=3 {
        let dir = logs.path().join(format!("nginx-{attempt}"));
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@PORT@", &port.to_string());
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-p").arg(&dir).arg("-c").arg(&conf_path);
        cmd.arg("-e").arg(dir.join("error.log"));
        let mut guard = ChildGuard::spawn(&format!("nginx-{attempt}"), cmd, logs);
        let listening = guard.wait_up("nginx to listen", READY_TIMEOUT, || {
            std::net::TcpStream::connect(loopback(port))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if listening {
            return Ok((guard, port));
        }
        let err = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        if !err.contains("in use") {
            return Err(format!("nginx exited at start-up: {err}\n{}", guard.logs_tail(20)));
        }
    }
    Err("nginx: no free port after 3 attempts".into())
}

/// Starts a child that prints `{"port": N}` as its first stdout line.
fn start_announcing(name: &str, cmd: Command, logs: &Logs) -> (ChildGuard, u16) {
    let (guard, line) = ChildGuard::spawn_with_first_line(name, cmd, logs, Duration::from_secs(30));
    let port = serde_json::from_str::<Value>(line.trim())
        .ok()
        .and_then(|v| v["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("{name} announced {line:?} instead of {{\"port\": N}}"));
    (guard, port)
}

fn start_express(logs: &Logs) -> Result<(ChildGuard, u16), Unavailable> {
    let node = env_path("NODE_BIN")
        .or_else(|| which("node", &[]))
        .ok_or("node not found (set NODE_BIN)")?;
    if !routers_dir().join("node_modules/express").is_dir() {
        return Err("tests/routers/node_modules/express missing (run tests/routers/install.sh)".into());
    }
    let mut cmd = Command::new(node);
    cmd.arg("express.js").current_dir(routers_dir());
    Ok(start_announcing("express", cmd, logs))
}

fn start_starlette(logs: &Logs) -> Result<(ChildGuard, u16), Unavailable> {
    let python = env_path("ROUTERS_PYTHON").unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let importable = Command::new(&python)
        .args(["-c", "import starlette, uvicorn"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !importable {
        return Err(format!(
            "{} cannot import starlette and uvicorn (set ROUTERS_PYTHON or run tests/routers/install.sh)",
            python.display()
        ));
    }
    let mut cmd = Command::new(python);
    cmd.arg("asgi.py").current_dir(routers_dir());
    Ok(start_announcing("starlette", cmd, logs))
}
