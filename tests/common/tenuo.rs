//! Tenuo warrants minted by the official Python SDK.
//!
//! [`Minter`] runs `tests/tenuo/mint.py` (PyPI `tenuo`, pinned by
//! `tests/tenuo/install.sh`) in a [`ChildGuard`] and wraps its JSON API, so
//! tests get warrants, delegation stacks, proof-of-possession signatures and
//! revocation lists made exactly the way a real Tenuo client makes them:
//!
//! ```ignore
//! let logs = Logs::new();
//! let m = Minter::start(&logs);
//! let (issuer, agent) = (m.key(), m.key());
//! let root = m.mint(&issuer, &agent, json!({"deploy": {"service": {"pattern": "web-*"}}}), 600);
//! let pop = m.pop(&root, &agent, "deploy", &json!({"service": "web-1"}), None);
//! // headers: X-Tenuo-Warrant: root.warrant, X-Tenuo-PoP: pop.std
//! ```
//!
//! The Python interpreter is `$TENUO_PYTHON` (set by tests/run.sh), else
//! `<repo>/.venv/bin/python`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{self, Req};
use super::proc::{ChildGuard, Logs};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Tenuo tests' gateway config (debug mode on), shared with the
/// benches: see the file.
pub const GATEWAY: &str = include_str!("gateway.yaml");

/// Writes a gateway config into the log directory; its path, for
/// `tenuo.gateway_config`.
pub fn write_gateway(logs: &Logs, yaml: &str) -> PathBuf {
    let path = logs.path().join("gateway.yaml");
    std::fs::write(&path, yaml).expect("write gateway");
    path
}

/// A `tenuo:` section trusting `issuer` (hex) that reads its gateway config
/// from the file `gateway`.
pub fn tenuo_section(issuer: &str, gateway: &Path) -> Value {
    json!({"trusted_issuers": [issuer], "gateway_config": gateway.display().to_string()})
}

pub fn tenuo_python() -> PathBuf {
    let p = match std::env::var_os("TENUO_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => super::repo_root().join(".venv/bin/python"),
    };
    assert!(
        p.exists(),
        "python with the Tenuo SDK not found at {} (set TENUO_PYTHON, or run ./tests/tenuo/install.sh)",
        p.display()
    );
    p
}

pub fn mint_script() -> PathBuf {
    super::repo_root().join("tests/tenuo/mint.py")
}

/// A key pair held by the minter (the secret never has to leave it, but is
/// returned for tests that sign with the Rust crate too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    /// Ed25519 public key, 64 lowercase hex digits (a `trusted_issuers` entry).
    pub public_hex: String,
    pub secret_hex: String,
}

impl Key {
    pub fn public_bytes(&self) -> [u8; 32] {
        hex32(&self.public_hex)
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        hex32(&self.secret_hex)
    }
}

/// A warrant minted or granted by the SDK.
#[derive(Clone, Debug)]
pub struct Minted {
    /// `Warrant.to_base64()`: URL-safe base64 of the single warrant
    /// (an `X-Tenuo-Warrant` value for a root warrant).
    pub warrant: String,
    /// `tnu_wrt_<32 hex>`.
    pub id: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub depth: u32,
    pub holder_hex: String,
    pub issuer_hex: String,
    pub tools: Vec<String>,
}

impl Minted {
    fn from_json(v: &Value) -> Minted {
        let s = |k: &str| text(v, k);
        Minted {
            warrant: s("warrant"),
            id: s("id"),
            expires_at: v["expires_at"].as_i64().expect("expires_at"),
            depth: v["depth"].as_u64().expect("depth") as u32,
            holder_hex: s("holder_hex"),
            issuer_hex: s("issuer_hex"),
            tools: v["tools"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                .unwrap_or_default(),
        }
    }
}

/// One proof-of-possession signature in the three encodings verifiers accept.
#[derive(Clone, Debug)]
pub struct Pop {
    /// Padded standard base64: what the SDK itself sends as `X-Tenuo-PoP`.
    pub std: String,
    /// URL-safe base64 without padding.
    pub urlsafe: String,
    /// Lowercase hex.
    pub hex: String,
    /// The timestamp that was signed (its 30 s window is what counts).
    pub ts: i64,
}

/// A SignedRevocationList built by the SDK (CBOR bytes, two encodings).
#[derive(Clone, Debug)]
pub struct Srl {
    /// Padded standard base64.
    pub b64: String,
    pub hex: String,
    pub version: u64,
}

impl Srl {
    pub fn bytes(&self) -> Vec<u8> {
        unhex(&self.hex)
    }
}

/// The running minting service.
pub struct Minter {
    guard: ChildGuard,
    pub addr: SocketAddr,
    pub url: String,
}

impl Minter {
    pub fn start(logs: &Logs) -> Minter {
        Self::start_named(logs, "tenuo-mint")
    }

    /// Like [`Minter::start`] with another log name (for a second minter).
    pub fn start_named(logs: &Logs, name: &str) -> Minter {
        let mut cmd = Command::new(tenuo_python());
        cmd.arg(mint_script())
            .args(["--port", "0"])
            .current_dir(super::repo_root())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let (guard, line) = ChildGuard::spawn_with_first_line(name, cmd, logs, START_TIMEOUT);
        let info: Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{name} announced garbage {line:?}: {e}"));
        let url = info["url"].as_str().expect("url").to_string();
        let addr: SocketAddr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name} announced a bad url {url:?}"));
        Minter { guard, addr, url }
    }

    /// POSTs `body` to `path`: `Ok(answer)` on 200, `Err(error text)` on 400.
    pub fn try_call(&self, path: &str, body: Value) -> Result<Value, String> {
        let resp = http::send(self.addr, &Req::post_json(path, &body))
            .unwrap_or_else(|e| panic!("minter POST {path}: {e}\n{}", self.guard.logs_tail(30)));
        match resp.status {
            200 => Ok(resp.json()),
            400 => Err(resp.json()["error"].as_str().unwrap_or_default().to_string()),
            s => panic!("minter POST {path}: status {s}: {}", resp.text()),
        }
    }

    /// Like [`Minter::try_call`] but panics unless the call succeeds.
    pub fn call(&self, path: &str, body: Value) -> Value {
        self.try_call(path, body.clone())
            .unwrap_or_else(|e| panic!("minter POST {path} {body} failed: {e}"))
    }

    /// A fresh Ed25519 key.
    pub fn key(&self) -> Key {
        key_from(&self.call("/key", json!({})))
    }

    /// Imports a key from its 32-byte secret (64 hex digits).
    pub fn key_from_secret(&self, secret_hex: &str) -> Key {
        key_from(&self.call("/key", json!({ "secret_hex": secret_hex })))
    }

    /// A root warrant signed by `issuer` for `holder`.
    /// `tools` = `{"<tool>": {"<arg>": <spec>, ...}, ...}`, spec e.g.
    /// `{"pattern": "web-*"}`, `{"exact": "x"}`, `{"range": [1, 10]}`,
    /// `{"one_of": ["a", "b"]}`, `{"wildcard": true}`, `{"regex": "^a"}`,
    /// `{"cidr": "10.0.0.0/8"}`, `{"subpath": "/data"}` (see mint.py).
    pub fn mint(&self, issuer: &Key, holder: &Key, tools: Value, ttl_secs: u64) -> Minted {
        self.try_mint(issuer, holder, tools, ttl_secs)
            .unwrap_or_else(|e| panic!("mint failed: {e}"))
    }

    pub fn try_mint(&self, issuer: &Key, holder: &Key, tools: Value, ttl_secs: u64) -> Result<Minted, String> {
        self.try_call(
            "/mint",
            json!({"issuer": issuer.id, "holder": holder.id, "tools": tools, "ttl": ttl_secs}),
        )
        .map(|v| Minted::from_json(&v))
    }

    /// Delegates `tool` of `parent` (held by `signer`) to `to`. The parent's
    /// constraints for the tool are kept; `constraints` (`{"<arg>": <spec>}`
    /// or `null`) narrows the given args.
    pub fn grant(
        &self,
        parent: &Minted,
        signer: &Key,
        to: &Key,
        tool: &str,
        constraints: Value,
        ttl_secs: u64,
    ) -> Minted {
        self.try_grant(parent, signer, to, tool, constraints, ttl_secs)
            .unwrap_or_else(|e| panic!("grant failed: {e}"))
    }

    /// [`Minter::grant`] returning the SDK's refusal (e.g. a widening
    /// attenuation, or a signer that does not hold the parent).
    pub fn try_grant(
        &self,
        parent: &Minted,
        signer: &Key,
        to: &Key,
        tool: &str,
        constraints: Value,
        ttl_secs: u64,
    ) -> Result<Minted, String> {
        self.try_call(
            "/grant",
            json!({
                "parent": parent.warrant, "signer": signer.id, "to": to.id,
                "tool": tool, "constraints": constraints, "ttl": ttl_secs,
            }),
        )
        .map(|v| Minted::from_json(&v))
    }

    /// `encode_warrant_stack([root, ..., leaf])`: padded standard base64, the
    /// `X-Tenuo-Warrant` value for a delegated warrant.
    pub fn stack(&self, chain: &[&Minted]) -> String {
        let ws: Vec<&str> = chain.iter().map(|m| m.warrant.as_str()).collect();
        self.call("/stack", json!({ "warrants": ws }))["header"]
            .as_str()
            .expect("header")
            .to_string()
    }

    /// `warrant.sign(key, tool, args, ts)` (ts defaults to now).
    pub fn pop(&self, warrant: &Minted, key: &Key, tool: &str, args: &Value, ts: Option<i64>) -> Pop {
        let mut body = json!({"warrant": warrant.warrant, "key": key.id, "tool": tool, "args": args});
        if let Some(ts) = ts {
            body["ts"] = json!(ts);
        }
        let v = self.call("/pop", body);
        let s = |k: &str| v[k].as_str().expect("pop field").to_string();
        Pop {
            std: s("pop"),
            urlsafe: s("pop_urlsafe"),
            hex: s("pop_hex"),
            ts: v["ts"].as_i64().expect("ts"),
        }
    }

    /// What the SDK's own `warrant.bind(key).headers(tool, args,
    /// warrant_chain=chain)` returns: `{"X-Tenuo-Warrant", "X-Tenuo-PoP"}`.
    /// `chain` = the parents, root first (empty for a root warrant). The SDK
    /// pre-validates against the root's issuer and refuses args outside the
    /// warrant (an `Err` here).
    pub fn headers(
        &self,
        warrant: &Minted,
        key: &Key,
        tool: &str,
        args: &Value,
        chain: &[&Minted],
    ) -> Result<Value, String> {
        let parents: Vec<&str> = chain.iter().map(|m| m.warrant.as_str()).collect();
        self.try_call(
            "/headers",
            json!({"warrant": warrant.warrant, "key": key.id, "tool": tool, "args": args, "chain": parents}),
        )
    }

    /// A SignedRevocationList signed by `issuer` revoking `revoked` (warrant ids).
    pub fn srl(&self, issuer: &Key, revoked: &[&str], version: u64) -> Srl {
        let v = self.call(
            "/srl",
            json!({"issuer": issuer.id, "revoked": revoked, "version": version}),
        );
        Srl {
            b64: v["srl_b64"].as_str().expect("srl_b64").to_string(),
            hex: v["srl_hex"].as_str().expect("srl_hex").to_string(),
            version: v["version"].as_u64().expect("version"),
        }
    }

    /// Decodes a single warrant (base64) with the SDK.
    pub fn inspect(&self, warrant_b64: &str) -> Result<Minted, String> {
        self.try_call("/inspect", json!({ "warrant": warrant_b64 }))
            .map(|v| Minted::from_json(&v))
    }

    pub fn logs_tail(&self, n: usize) -> String {
        self.guard.logs_tail(n)
    }
}

/// A string field of a minter answer (panics with the answer if absent).
fn text(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("minter answer lacks {k}: {v}"))
        .to_string()
}

fn key_from(v: &Value) -> Key {
    let s = |k: &str| text(v, k);
    Key {
        id: s("id"),
        public_hex: s("public_hex"),
        secret_hex: s("secret_hex"),
    }
}

/// Decodes lowercase/uppercase hex; panics on bad input (test helper).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}")))
        .collect()
}

fn hex32(s: &str) -> [u8; 32] {
    unhex(s)
        .try_into()
        .unwrap_or_else(|v: Vec<u8>| panic!("expected 32 bytes, got {}", v.len()))
}
