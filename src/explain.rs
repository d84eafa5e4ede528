//! `portcullis explain`: why a request is allowed or denied, offline.
//!
//! The decision is the real one: the request becomes a `CheckRequest` and
//! goes through [`Checker::check`] of an [`App`] built from the config, as
//! the server builds it. Around it, informational steps say what each stage
//! saw (the path as judged, the rule, the credential, the token's claims as
//! *claimed*, the verification's result; for a Tenuo warrant the tool and
//! arguments, the chain as claimed and the PoP's window, see [`warrant`]).
//! They never replace the decision: when a step and the response disagree,
//! the response is what the server answers. No secret is printed: a token,
//! a warrant or a PoP is shown by its length and hash, cookie values by
//! their length.

mod warrant;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::clock::{self, Clock};
use crate::config::Config;
use crate::deny::Deny;
use crate::identity::Source;
use crate::policy::{PrincipalPattern, Require};
use crate::request::{RequestView, Single};
use crate::response::TENUO_DEBUG_HEADER;
use crate::verify::credential::{self, ApiKeyPlaces, Credential};
use crate::verify::oidc::jwks::KeySet;
use crate::verify::warrant::WarrantVerifier;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// Holds at most the first few bytes of the argument: it may be a
    /// credential typed without its name (`Authorization Bearer eyJ…`).
    #[error("--header {0:?}…: expected `name: value`")]
    Header(String),
    #[error("--context-extension {0:?}: expected `key=value`")]
    Extension(String),
    #[error("{path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a CheckRequest: {error}")]
    CheckRequest { path: PathBuf, error: String },
    #[error("--jwks-file {path}: {error}")]
    Jwks { path: PathBuf, error: String },
    #[error("--jwks-file: no provider has the issuer {0:?}")]
    UnknownIssuer(String),
    #[error("--jwks-file {0}: the config has several providers, say which one: `ISSUER=FILE`")]
    WhichIssuer(PathBuf),
    #[error("--curl: {0}")]
    Curl(String),
    #[error("{0}")]
    Start(#[from] crate::server::ServeError),
}

/// A request as given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Input {
    pub method: String,
    pub path: String,
    pub host: String,
    /// `name: value` pairs, in order; a repeated name is sent as Envoy sends
    /// it without `encode_raw_headers`: one value joined with `,`.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub context_extensions: Vec<(String, String)>,
    /// The mTLS peer's principal (`attributes.source.principal`, `--principal`).
    pub principal: String,
}

/// The first bytes of an argument, for an error: enough to find it, too
/// few to be a usable secret.
fn prefix(arg: &str) -> String {
    arg.chars().take(8).collect()
}

/// Splits `name: value` (the name lower-cased, as Envoy sends names).
pub fn parse_header(arg: &str) -> Result<(String, String), ExplainError> {
    let (name, value) = arg.split_once(':').ok_or_else(|| ExplainError::Header(prefix(arg)))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ExplainError::Header(prefix(arg)));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_string()))
}

pub fn parse_extension(arg: &str) -> Result<(String, String), ExplainError> {
    let (k, v) = arg.split_once('=').ok_or_else(|| ExplainError::Extension(arg.into()))?;
    Ok((k.to_string(), v.to_string()))
}

impl Input {
    pub fn to_check_request(&self) -> CheckRequest {
        let mut headers: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for (k, v) in &self.headers {
            headers
                .entry(k.clone())
                .and_modify(|old| {
                    old.push(',');
                    old.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        // Envoy always sends the pseudo-headers among the headers too.
        headers.entry(":method".into()).or_insert_with(|| self.method.clone());
        headers.entry(":path".into()).or_insert_with(|| self.path.clone());
        if !self.host.is_empty() {
            headers.entry(":authority".into()).or_insert_with(|| self.host.clone());
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: self.method.clone(),
                        path: self.path.clone(),
                        host: self.host.clone(),
                        headers,
                        body: self.body.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: self.context_extensions.iter().cloned().collect(),
                source: peer(&self.principal),
                ..Default::default()
            }),
        }
    }
}

/// The downstream peer Envoy describes; `None` without a principal.
fn peer(principal: &str) -> Option<Peer> {
    (!principal.is_empty()).then(|| Peer {
        principal: principal.to_string(),
        ..Default::default()
    })
}

/// The request a `curl` command line sends (`--curl`): its URL (path and
/// query, host), `-X`, `-H`, `-d`/`--data*` (a body; POST unless `-X`),
/// `-b` (a cookie header), `-u` (Basic), `-A`, `-e`. Output and transport
/// options (`-s -i -v -k -L -o -w -m …`) are skipped; any other option is
/// refused rather than guessed at. Quotes and backslashes are read as a
/// POSIX shell reads them; variables are not expanded.
pub fn parse_curl(line: &str) -> Result<Input, ExplainError> {
    let err = |m: String| ExplainError::Curl(m);
    let words = shell_words(line).map_err(err)?;
    let mut words = words.into_iter().peekable();
    if words.peek().map(String::as_str) == Some("curl") {
        words.next();
    }
    let mut input = Input::default();
    let mut method = None;
    let mut url = None;
    while let Some(w) = words.next() {
        let mut value = |name: &str| words.next().ok_or_else(|| err(format!("{name} needs a value")));
        match w.as_str() {
            "-H" | "--header" => input.headers.push(parse_header(&value(&w)?)?),
            "-X" | "--request" => method = Some(value(&w)?),
            "-d" | "--data" | "--data-raw" | "--data-binary" | "--data-ascii" | "--json" => {
                let body = value(&w)?;
                if !input.body.is_empty() {
                    // curl joins several -d with `&`.
                    input.body.push('&');
                }
                input.body.push_str(&body);
            }
            "-b" | "--cookie" => input.headers.push(("cookie".into(), value(&w)?)),
            "-A" | "--user-agent" => input.headers.push(("user-agent".into(), value(&w)?)),
            "-e" | "--referer" => input.headers.push(("referer".into(), value(&w)?)),
            "-u" | "--user" => {
                let basic = base64::engine::general_purpose::STANDARD.encode(value(&w)?);
                input.headers.push(("authorization".into(), format!("Basic {basic}")));
            }
            "-o" | "--output" | "-w" | "--write-out" | "-m" | "--max-time" | "--connect-timeout" => {
                value(&w)?;
            }
            "-s" | "--silent" | "-S" | "--show-error" | "-i" | "--include" | "-v" | "--verbose" | "-k"
            | "--insecure" | "-L" | "--location" | "-f" | "--fail" | "--compressed" | "-sS" | "-si" | "-fsS" => {}
            // Only the option's first characters: `-uuser:pass` or
            // `-H'Authorization: …'` carry their value attached.
            other if other.starts_with('-') => {
                return Err(err(format!(
                    "unsupported option {}… (write values as separate words)",
                    prefix(other)
                )))
            }
            other => url = Some(other.to_string()),
        }
    }
    let url = url.ok_or_else(|| err("no URL".into()))?;
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    input.host = host.to_string();
    input.path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    input.method = method.unwrap_or_else(|| if input.body.is_empty() { "GET" } else { "POST" }.into());
    Ok(input)
}

/// Splits a command line as a POSIX shell does (quotes, backslashes,
/// line continuations), without expanding anything.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => word.get_or_insert_with(String::new).push(n),
                None => return Err("ends with a backslash".into()),
            },
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => w.push(n),
                        None => return Err("unclosed '".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => w.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                w.push('\\');
                                w.push(n);
                            }
                            None => return Err("unclosed \"".into()),
                        },
                        Some(n) => w.push(n),
                        None => return Err("unclosed \"".into()),
                    }
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// A `CheckRequest` in its JSON form (proto3 JSON, as Envoy's access log or
/// a gRPC tool prints it). `envoy-types` has no serde, so the fields a
/// decision reads are taken by hand: `attributes.request.http.{method, path,
/// host, id, headers, header_map, body}` and `attributes.context_extensions`
/// (camelCase spellings accepted too). Anything else is ignored.
pub fn check_request_from_json(text: &str) -> Result<CheckRequest, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let attributes = v.get("attributes").ok_or("no `attributes`")?;
    let http = attributes
        .get("request")
        .and_then(|r| r.get("http"))
        .ok_or("no `attributes.request.http`")?;
    let text_of = |key: &str| http.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let string_map = |v: Option<&Value>| -> Result<std::collections::HashMap<String, String>, String> {
        match v {
            None | Some(Value::Null) => Ok(Default::default()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => Ok((k.clone(), s.to_string())),
                    None => Err(format!("{k}: not a string")),
                })
                .collect(),
            Some(_) => Err("expected an object of strings".into()),
        }
    };
    let raw = http.get("header_map").or_else(|| http.get("headerMap"));
    let header_map = match raw.and_then(|m| m.get("headers")).and_then(Value::as_array) {
        None => None,
        Some(list) => Some(HeaderMap {
            headers: list
                .iter()
                .map(|h| {
                    let field = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default();
                    // proto3 JSON spells bytes as base64.
                    let raw_value = match h.get("raw_value").or_else(|| h.get("rawValue")).and_then(Value::as_str) {
                        Some(b) => base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|e| format!("raw_value: {e}"))?,
                        None => Vec::new(),
                    };
                    Ok(HeaderValue {
                        key: field("key").to_string(),
                        value: field("value").to_string(),
                        raw_value,
                    })
                })
                .collect::<Result<_, String>>()?,
        }),
    };
    let extensions = attributes
        .get("context_extensions")
        .or_else(|| attributes.get("contextExtensions"));
    Ok(CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: text_of("id"),
                    method: text_of("method"),
                    path: text_of("path"),
                    host: text_of("host"),
                    headers: string_map(http.get("headers"))?,
                    header_map,
                    body: text_of("body"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: string_map(extensions)?,
            source: peer(
                attributes
                    .get("source")
                    .and_then(|s| s.get("principal"))
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            ..Default::default()
        }),
    })
}

/// Where the OIDC keys come from.
#[derive(Debug, Default)]
pub struct Options {
    /// The decision's clock (`--at`); `None`: now.
    pub at: Option<u64>,
    /// `(issuer, file)`: keys from files instead of the issuers (offline).
    /// An issuer of `None` means the config's only provider.
    pub jwks_files: Vec<(Option<String>, PathBuf)>,
}

/// `ISSUER=FILE` or `FILE`. An issuer is a URL, so only an `http(s)://…=`
/// prefix is taken for one: a file name may hold `=` too.
pub fn parse_jwks_arg(arg: &str) -> (Option<String>, PathBuf) {
    if arg.starts_with("http://") || arg.starts_with("https://") {
        if let Some((issuer, file)) = arg.split_once('=') {
            return (Some(issuer.to_string()), PathBuf::from(file));
        }
    }
    (None, PathBuf::from(arg))
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    /// `allow` or `deny` (a login redirect is a denial: the request does not pass).
    pub decision: &'static str,
    /// The HTTP status the client gets (200 when allowed).
    pub status: u16,
    /// The deny reason (`Deny::reason`), `redirect` for a login redirect,
    /// `allowed` when allowed.
    pub reason: String,
    pub rule: Option<RuleRef>,
    pub identity: Option<IdentityOut>,
    pub edits: EditsOut,
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
pub struct RuleRef {
    /// Index in `rules:`; `None` for a named policy or the built-in rule of a config without rules.
    pub index: Option<usize>,
    pub prefix: Option<String>,
    pub policy: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IdentityOut {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub issuer: String,
    pub source: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub struct EditsOut {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    /// `ok`, `refused`, or `info`.
    pub result: &'static str,
    pub detail: String,
}

fn step(steps: &mut Vec<Step>, step: &'static str, result: &'static str, detail: impl Into<String>) {
    steps.push(Step {
        step,
        result,
        detail: printable(detail.into()),
    });
}

/// A step's text with control characters (ANSI escapes, line breaks) and
/// bidirectional overrides escaped: a warrant's tool names and constraint
/// keys, Tenuo's messages and the debug header are the sender's bytes, and
/// must not redraw the terminal or print a line of their own (`=> ALLOW`).
fn printable(text: String) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text;
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Builds the app as `serve` does, with the keys asked for, and explains `req`.
pub async fn explain(config: Config, req: &CheckRequest, opts: &Options) -> Result<Explanation, ExplainError> {
    let now = opts.at.map_or_else(clock::system_now, clock::from_unix);
    let clock = match opts.at {
        Some(_) => Clock::manual(now),
        None => Clock::system(),
    };
    let issuers: Vec<String> = config.oidc.providers.iter().map(|p| p.issuer.to_string()).collect();
    let app = App::with_clock(config.clone(), clock)?;
    let mut steps = Vec::new();
    if opts.jwks_files.is_empty() {
        if !issuers.is_empty() {
            match app.oidc.load_all().await {
                Ok(()) => step(&mut steps, "keys", "ok", "fetched from every issuer"),
                Err(e) => step(
                    &mut steps,
                    "keys",
                    "refused",
                    format!("fetching from the issuers failed: {e}"),
                ),
            }
        }
    } else {
        for (issuer, path) in &opts.jwks_files {
            let issuer = match (issuer, issuers.as_slice()) {
                (Some(i), _) => i.clone(),
                (None, [only]) => only.clone(),
                (None, _) => return Err(ExplainError::WhichIssuer(path.clone())),
            };
            let bytes = std::fs::read(path).map_err(|error| ExplainError::Read {
                path: path.clone(),
                error,
            })?;
            let (keys, skipped) = KeySet::parse(&bytes).map_err(|e| ExplainError::Jwks {
                path: path.clone(),
                error: e.to_string(),
            })?;
            let n = keys.len();
            if !app.oidc.install_fixed_keys(&issuer, keys) {
                return Err(ExplainError::UnknownIssuer(issuer));
            }
            step(
                &mut steps,
                "keys",
                "ok",
                format!(
                    "{n} key(s) for {issuer} from {} ({skipped} skipped); no issuer is called",
                    path.display()
                ),
            );
        }
    }
    let warrant = app.warrant.as_deref();
    let (rule, token) = describe_request(&config, warrant, req, now, &mut steps);
    let mut source = None;
    if let Some(token) = token {
        // The verifier on its own, beside the decision: its result names the
        // step that failed (the decision below may stop earlier or later).
        match app.oidc.verify(&token, now).await {
            Ok(id) => {
                source = Some(source_name(id.source));
                step(
                    &mut steps,
                    "verify",
                    "ok",
                    format!(
                        "signature, issuer, times, audience and claims hold: user {:?}, provider {:?}, {} group(s)",
                        &*id.user,
                        &*id.provider,
                        id.groups().count()
                    ),
                );
            }
            Err(deny) => step(&mut steps, "verify", "refused", format!("{} ({deny})", deny.reason())),
        }
    }
    let response = app.checker.check(req).await;
    let secrets = RequestView::new(req)
        .map(|view| warrant::credential_values(warrant, &view, api_key_header(&config)))
        .unwrap_or_default();
    Ok(conclude(&config, req, &response, rule, source, &secrets, steps))
}

/// The informational steps before the decision: path, rule, credentials,
/// the token as claimed. Returns the rule, when one was chosen.
fn describe_request(
    config: &Config,
    warrant: Option<&WarrantVerifier>,
    req: &CheckRequest,
    now: SystemTime,
    steps: &mut Vec<Step>,
) -> (Option<RuleRef>, Option<String>) {
    let view = match RequestView::new(req) {
        Ok(v) => v,
        Err(deny) => {
            let raw = req
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref())
                .map(|h| h.path.as_str())
                .unwrap_or_default();
            let why = match deny {
                Deny::InvalidPath => {
                    // Up to the first `?`, `;` or `#`: what follows may be a
                    // token (`?access_token=`, `;jsessionid=`, a pasted `#access_token=`).
                    let path = raw.split(['?', ';', '#']).next().unwrap_or_default();
                    format!("{path:?} {PATH_REFUSAL}")
                }
                d => format!("{} ({d})", d.reason()),
            };
            step(steps, "path", "refused", why);
            return (None, None);
        }
    };
    step(
        steps,
        "request",
        "info",
        format!(
            "{} {}{} ({} headers{})",
            view.method,
            view.path,
            // A query may carry a secret (`?access_token=`): its size only.
            match view.raw_path.len() - view.path.len() {
                0 => String::new(),
                n => format!(" + query ({n} bytes)"),
            },
            view.header_names().filter(|n| !n.starts_with(':')).count(),
            view.policy.map(|p| format!(", route policy {p:?}")).unwrap_or_default()
        ),
    );
    step(steps, "path", "ok", format!("judged as {}", view.path));
    let policy = &config.policy;
    let rule = match policy.rule_for_request(&view) {
        Ok(rule) => rule,
        Err(deny) => {
            let why = match deny {
                Deny::UnknownPolicy => format!(
                    "the route names policy {:?}, which is not in `policies:` (a typo closes the route)",
                    view.policy.unwrap_or_default()
                ),
                Deny::NoMatchingRule => "no rule's path_prefix starts this path".to_string(),
                Deny::InvalidPath => {
                    "ambiguous: a case-insensitive or `.format`-stripping upstream would route it under a rule \
                     with other access"
                        .to_string()
                }
                d => d.reason().to_string(),
            };
            step(steps, "rule", "refused", why);
            let rule = RuleRef {
                index: None,
                prefix: None,
                policy: view.policy.map(str::to_string),
            };
            return (Some(rule), None);
        }
    };
    let index = match view.policy {
        Some(_) => None,
        None => policy.rules().iter().position(|r| std::ptr::eq(r, rule)),
    };
    let (users, groups) = rule.allowed();
    let principals: Vec<String> = rule.principals().iter().map(PrincipalPattern::pattern).collect();
    let who = if rule.require() == Require::Workload {
        // No credential is read: the mTLS peer alone decides.
        format!("workloads {principals:?}")
    } else if users.is_empty() && groups.is_empty() {
        "anyone verified".to_string()
    } else {
        format!("users {users:?}, groups {groups:?}")
    };
    let who = if principals.is_empty() || rule.require() == Require::Workload {
        who
    } else {
        format!("{who}, over a connection from {principals:?}")
    };
    let named = match (view.policy, index) {
        (Some(p), _) => format!("policy {p:?}"),
        (None, Some(i)) => format!("rules[{i}] path_prefix {}", rule.path_prefix()),
        (None, None) => "no rules configured: every path".to_string(),
    };
    step(
        steps,
        "rule",
        "ok",
        format!(
            "{named}; require {}; admits {who}{}",
            rule.require().name(),
            rule.login()
                .map(|l| format!("; browsers log in with {l:?}"))
                .unwrap_or_default()
        ),
    );
    if !principals.is_empty() {
        let (result, detail) = match (view.principal, rule.admits_principal(view.principal)) {
            (Some(p), Ok(())) => ("ok", format!("mTLS peer {p:?} is listed")),
            (Some(p), Err(d)) => ("refused", format!("mTLS peer {p:?} is not listed: {}", d.reason())),
            (None, _) => (
                "refused",
                format!("no mTLS peer principal: {}", Deny::MissingPrincipal.reason()),
            ),
        };
        step(steps, "principal", result, detail);
    }
    let token = describe_credentials(config, warrant, &view, rule.accepts_sessions(), now, steps);
    let rule = RuleRef {
        index,
        prefix: match view.policy {
            Some(_) => None,
            None => Some(rule.path_prefix().to_string()),
        },
        policy: view.policy.map(str::to_string),
    };
    (Some(rule), token)
}

const PATH_REFUSAL: &str = "is refused: its meaning depends on the reader (`;`, `\\`, `#`, `//`, `.` or `..` \
                            segments, an escape of an unreserved or delimiter character, characters that fold \
                            to ASCII, or bytes outside printable ASCII)";

/// Returns the bearer token, if one is presented.
fn describe_credentials(
    config: &Config,
    warrant: Option<&WarrantVerifier>,
    view: &RequestView<'_>,
    sessions: bool,
    now: SystemTime,
    steps: &mut Vec<Step>,
) -> Option<String> {
    let mut token = None;
    match credential::extract(view, config.oidc.max_token_bytes, api_key_places(config)) {
        Ok(Credential::Bearer(t)) => {
            step(steps, "credential", "info", format!("bearer token, {}", fingerprint(t)));
            describe_token(config, t, now, steps);
            token = Some(t.to_string());
        }
        Ok(Credential::Session(_)) => {}
        // Never printed, not even in part: only that one was presented.
        Ok(Credential::ApiKey(_)) => step(steps, "credential", "info", "API key".to_string()),
        Err(Deny::MissingCredential) => {
            let cookie = view.header("cookie").is_some();
            let detail = match (view.authorization(), sessions, cookie) {
                (Single::One(v), _, _) => format!("no bearer token: `Authorization` uses {}", scheme_name(v)),
                (_, true, true) => "no bearer token; a cookie is sent (a session cookie is a credential here)".into(),
                (_, false, true) => "no bearer token; cookies are not a credential on this rule".into(),
                _ => "no bearer token, no cookie".into(),
            };
            step(steps, "credential", "info", detail);
        }
        Err(deny) => step(steps, "credential", "refused", deny.reason()),
    }
    if let Some(w) = warrant {
        warrant::describe(w, view, api_key_header(config), clock::unix_i64(now), steps);
    }
    token
}

/// A secret's length and the start of its SHA-256: enough to match it with
/// a log line or a ticket, useless to replay.
fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("{} bytes, sha256 {}", secret.len(), hex::encode(&digest[..6]))
}

/// The token's header and claims, decoded WITHOUT verifying them.
fn describe_token(config: &Config, token: &str, now: SystemTime, steps: &mut Vec<Step>) {
    let mut parts = token.split('.');
    let decode = |p: Option<&str>| -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(p?.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(header), Some(claims)) = (decode(parts.next()), decode(parts.next())) else {
        step(
            steps,
            "token",
            "refused",
            "not a JWT (header or payload is not base64url JSON)",
        );
        return;
    };
    let s = |m: &Map<String, Value>, k: &str| m.get(k).map_or_else(|| "-".to_string(), short);
    step(
        steps,
        "token header",
        "info",
        format!("claimed: alg {}, kid {}", s(&header, "alg"), s(&header, "kid")),
    );
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    let provider = config.oidc.providers.iter().find(|p| &*p.issuer == iss);
    step(
        steps,
        "issuer",
        if provider.is_some() { "ok" } else { "refused" },
        match provider {
            Some(p) => format!(
                "claimed iss {iss:?}: provider {:?}, audiences {:?}",
                &*p.name, p.audiences
            ),
            None => format!("claimed iss {iss:?}: no provider has this issuer"),
        },
    );
    let now = clock::unix(now);
    let skew = config.oidc.clock_skew.as_secs();
    let when = |k: &str| -> String {
        match claims.get(k).and_then(Value::as_f64) {
            None => format!("{k} -"),
            Some(t) => {
                // Whole seconds are enough to read a ticket by.
                let t = t as i64;
                format!("{k} {t} ({})", relative(t, i64::try_from(now).unwrap_or(i64::MAX)))
            }
        }
    };
    step(
        steps,
        "times",
        "info",
        format!(
            "claimed: {}, {}, {}; clock {now}, skew {skew}s",
            when("exp"),
            when("nbf"),
            when("iat")
        ),
    );
    let groups_claim = provider.map_or("groups", |p| p.groups_claim.as_str());
    let groups = match claims.get(groups_claim) {
        Some(Value::Array(a)) => a.len().to_string(),
        Some(Value::String(_)) => "1 (a string)".into(),
        _ => "none".into(),
    };
    step(
        steps,
        "claims",
        "info",
        format!(
            "claimed: sub {}, aud {}, azp {}, {groups_claim}: {groups}",
            s(&claims, "sub"),
            s(&claims, "aud"),
            s(&claims, "azp")
        ),
    );
}

/// A time against the clock: `in 30s`, `10s ago`.
fn relative(t: i64, now: i64) -> String {
    let d = t.saturating_sub(now);
    if d >= 0 {
        format!("in {d}s")
    } else {
        format!("{}s ago", d.unsigned_abs())
    }
}

/// A claim for a step line, cut short: claims are the sender's words.
fn short(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.len() > 120 {
        let mut end = 120;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text
    }
}

/// Headers whose values are credentials or cookies: shown by length only.
fn is_secret_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "set-cookie" | "proxy-authorization")
        // The warrant, not `x-tenuo-warrant-id`: an id is what logs and tickets name.
        || name == "x-tenuo-warrant"
}

fn conclude(
    config: &Config,
    req: &CheckRequest,
    response: &CheckResponse,
    rule: Option<RuleRef>,
    bearer_source: Option<&'static str>,
    secrets: &[&str],
    mut steps: Vec<Step>,
) -> Explanation {
    let mut edits = EditsOut::default();
    let (decision, status, reason) = match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            for h in ok.headers.iter().filter_map(|o| o.header.as_ref()) {
                let value = if is_secret_header(&h.key) {
                    format!("<{} bytes>", h.value.len())
                } else {
                    h.value.clone()
                };
                edits.set.insert(h.key.clone(), value);
            }
            edits.remove = ok.headers_to_remove.clone();
            ("allow", 200, "allowed".to_string())
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            let status = d
                .status
                .as_ref()
                .and_then(|s| u16::try_from(s.code).ok())
                .unwrap_or(403);
            let body = serde_json::from_str::<Value>(&d.body).ok();
            let reason = body
                .as_ref()
                .and_then(|b| b.get("reason").and_then(Value::as_str).map(str::to_string))
                .or_else(|| response.status.as_ref().map(|s| s.message.clone()))
                .unwrap_or_default();
            if let Some(w) = body.as_ref().filter(|b| b.get("message").is_some()) {
                // Only a warrant denial's body has a `message` (tenuo-authorizer's shape).
                let debug = d
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == TENUO_DEBUG_HEADER);
                let detail = match debug {
                    // Tenuo's debug mode names the failing constraint and value.
                    // Its value names the argument's value, which may be a credential header's.
                    Some(h) => format!(
                        "{}; {TENUO_DEBUG_HEADER}: {}",
                        warrant_denial(w),
                        warrant::redact(&h.value, secrets)
                    ),
                    None => warrant_denial(w),
                };
                step(&mut steps, "warrant", "refused", detail);
            }
            ("deny", status, reason)
        }
        // The checker always answers with an HTTP response; anything else
        // is Envoy's failure mode (`failure_mode_allow: false`: a 403).
        _ => ("deny", 403, String::new()),
    };
    let identity = (decision == "allow")
        .then(|| identity_from(config, req, &edits, bearer_source))
        .flatten();
    match &identity {
        Some(i) => step(
            &mut steps,
            "identity",
            "ok",
            format!(
                "user {:?}, issuer {:?}, {} group(s), source {}",
                i.user,
                i.issuer,
                i.groups.len(),
                i.source.unwrap_or("-")
            ),
        ),
        None if decision == "allow" => step(&mut steps, "identity", "info", "none (a warrant alone)"),
        None => {}
    }
    if decision == "allow" {
        step(
            &mut steps,
            "edits",
            "info",
            format!(
                "set {}; remove {}",
                edits.set.keys().cloned().collect::<Vec<_>>().join(", "),
                edits.remove.join(", ")
            ),
        );
    }
    step(
        &mut steps,
        "response",
        if decision == "allow" { "ok" } else { "refused" },
        format!("{decision} {status} {reason}"),
    );
    Explanation {
        decision,
        status,
        reason,
        rule,
        identity,
        edits,
        steps,
    }
}

/// A warrant denial's body, as one line: Tenuo's error, the tool, the
/// warrant's id and its message (no warrant or PoP bytes are in it).
fn warrant_denial(body: &Value) -> String {
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("-");
    format!(
        "error {}, tool {}, warrant_id {}: {}",
        field("error"),
        field("tool"),
        field("warrant_id"),
        field("message")
    )
}

/// The identity the upstream is told about: the values of the configured
/// identity headers in the edits (exactly what the upstream sees).
fn identity_from(
    config: &Config,
    req: &CheckRequest,
    edits: &EditsOut,
    bearer_source: Option<&'static str>,
) -> Option<IdentityOut> {
    let h = &config.headers;
    let user = edits.set.get(&h.user)?.clone();
    let source = match RequestView::new(req)
        .ok()
        .map(|v| credential::extract(&v, config.oidc.max_token_bytes, api_key_places(config)))
    {
        Some(Ok(Credential::Bearer(_))) => bearer_source,
        Some(Ok(Credential::ApiKey(_))) => Some(source_name(Source::ApiKey)),
        Some(_) => Some(source_name(Source::Session)),
        None => None,
    };
    Some(IdentityOut {
        user,
        email: edits.set.get(&h.email).cloned(),
        groups: edits
            .set
            .get(&h.groups)
            .map(|g| g.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        issuer: edits.set.get(&h.issuer).cloned().unwrap_or_default(),
        source,
    })
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::OidcUser => "oidc_user",
        Source::OidcClient => "oidc_client",
        Source::Session => "session",
        Source::ApiKey => "api_key",
    }
}

/// The scheme of an `Authorization` value, named only when it is a known
/// one: a value without a scheme may be the credential itself (a raw JWT,
/// an API key without `ApiKey `).
fn scheme_name(value: &str) -> String {
    const KNOWN: [&str; 8] = [
        "Basic",
        "Bearer",
        "Digest",
        "Negotiate",
        "NTLM",
        "ApiKey",
        "DPoP",
        "HOBA",
    ];
    let first = value.split_whitespace().next().unwrap_or_default();
    match KNOWN.iter().find(|k| k.eq_ignore_ascii_case(first)) {
        Some(k) => format!("scheme {k:?}"),
        None => format!("no known scheme (a {}-byte value, not shown)", value.len()),
    }
}

/// The header the config lets an API key be sent in, besides `Authorization`.
fn api_key_header(config: &Config) -> Option<&str> {
    config.api_keys.as_ref().and_then(|k| k.header.as_deref())
}

/// Where the config lets an API key be presented, as the checker reads it.
fn api_key_places(config: &Config) -> Option<ApiKeyPlaces<'_>> {
    config.api_keys.as_ref().map(|k| ApiKeyPlaces {
        header: k.header.as_deref(),
    })
}

/// Human text: one step a line, then the decision.
pub fn to_text(e: &Explanation) -> String {
    let mut out = String::new();
    for (i, s) in e.steps.iter().enumerate() {
        let mark = match s.result {
            "ok" => "ok",
            "refused" => "REFUSED",
            _ => "..",
        };
        out.push_str(&format!("{:>2}. {:<13} {:<7} {}\n", i + 1, s.step, mark, s.detail));
    }
    out.push_str(&format!("=> {} {} {}\n", e.decision.to_uppercase(), e.status, e.reason));
    out
}

pub fn to_json(e: &Explanation) -> Value {
    serde_json::to_value(e).unwrap_or_else(|err| json!({"error": err.to_string()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";

    #[test]
    fn arguments_that_hold_a_credential_are_never_echoed() {
        let err = parse_header(&format!("Authorization Bearer {SECRET}"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("eyJ"), "{err}");
        let err = parse_curl(&format!("curl -H'Authorization: Bearer {SECRET}' http://x/")).unwrap_err();
        assert!(!err.to_string().contains("eyJ"), "{err}");
        let err = parse_curl("curl -ualice:hunter2 http://x/").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn only_a_known_scheme_is_named() {
        assert_eq!(scheme_name("Basic YWxpY2U6cA=="), "scheme \"Basic\"");
        assert_eq!(scheme_name("digest x"), "scheme \"Digest\"");
        let raw = scheme_name(SECRET);
        assert!(!raw.contains("eyJ") && raw.contains("not shown"), "{raw}");
        assert!(!scheme_name("pk_ci_abcdefghijklmnop").contains("pk_ci"));
    }

    #[test]
    fn the_principal_comes_from_the_check_request_or_the_argument() {
        let json = r#"{"attributes": {"source": {"principal": "spiffe://cluster.local/ns/ci/sa/deployer"},
            "request": {"http": {"method": "GET", "path": "/x", "headers": {}}}}}"#;
        let req = check_request_from_json(json).unwrap();
        let principal = req.attributes.and_then(|a| a.source).map(|p| p.principal);
        assert_eq!(principal.as_deref(), Some("spiffe://cluster.local/ns/ci/sa/deployer"));
        let input = Input {
            method: "GET".into(),
            path: "/x".into(),
            principal: "spiffe://a/b".into(),
            ..Input::default()
        };
        let req = input.to_check_request();
        assert_eq!(
            req.attributes.and_then(|a| a.source).map(|p| p.principal).as_deref(),
            Some("spiffe://a/b")
        );
        let none = Input::default().to_check_request();
        assert!(none.attributes.and_then(|a| a.source).is_none());
    }

    #[test]
    fn headers_extensions_and_jwks_arguments_are_split_as_documented() {
        assert_eq!(
            parse_header("Authorization:  Bearer a:b ").ok(),
            Some(("authorization".into(), "Bearer a:b".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
        assert_eq!(
            parse_extension("portcullis_policy=a=b").ok(),
            Some(("portcullis_policy".into(), "a=b".into()))
        );
        assert!(parse_extension("novalue").is_err());
        assert_eq!(
            parse_jwks_arg("https://idp.example/realms/x=keys.json"),
            (Some("https://idp.example/realms/x".into()), PathBuf::from("keys.json"))
        );
        // A file name may hold `=`: without a URL in front, it is all file.
        assert_eq!(parse_jwks_arg("a=b.json"), (None, PathBuf::from("a=b.json")));
    }

    #[test]
    fn a_check_request_json_gives_the_fields_a_decision_reads() {
        let req = check_request_from_json(
            r#"{"attributes": {
                "request": {"http": {"id": "7", "method": "POST", "path": "/x?y=1", "host": "h",
                    "headers": {"authorization": "Bearer t"}, "body": "{}"}},
                "context_extensions": {"portcullis_policy": "p"}}}"#,
        )
        .unwrap();
        let view = RequestView::new(&req).unwrap();
        assert_eq!((view.method, view.path, view.policy), ("POST", "/x", Some("p")));
        assert_eq!(view.authorization(), Single::One("Bearer t"));
        assert_eq!(view.body, b"{}");
        // Raw headers (`encode_raw_headers`) with a base64 `raw_value`.
        let req = check_request_from_json(
            r#"{"attributes": {"request": {"http": {"method": "GET", "path": "/",
                "headerMap": {"headers": [{"key": "x-a", "rawValue": "dg=="}]}}}}}"#,
        )
        .unwrap();
        assert_eq!(RequestView::new(&req).unwrap().header("x-a"), Some("v"));
        for bad in [
            "{}",
            "[]",
            r#"{"attributes": {"request": {"http": {"headers": {"a": 1}}}}}"#,
        ] {
            assert!(check_request_from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_curl_command_line_is_the_request_it_sends() {
        let line = r#"curl -s -i \
            -H 'Authorization: Bearer a.b.c' -H "X-User-Id: root" \
            -d '{"q": 1}' "http://127.0.0.1:8080/tools/read_file?path=/data/q3.txt""#;
        let input = parse_curl(line).unwrap();
        assert_eq!((input.method.as_str(), input.host.as_str()), ("POST", "127.0.0.1:8080"));
        assert_eq!(input.path, "/tools/read_file?path=/data/q3.txt");
        assert_eq!(
            input.headers,
            vec![
                ("authorization".into(), "Bearer a.b.c".into()),
                ("x-user-id".into(), "root".into())
            ]
        );
        assert_eq!(input.body, r#"{"q": 1}"#);
        let get = parse_curl("curl -X HEAD -u u:p http://h").unwrap();
        assert_eq!((get.method.as_str(), get.path.as_str()), ("HEAD", "/"));
        assert_eq!(get.headers[0].1, "Basic dTpw");
        for bad in ["curl --proxy x http://h", "curl -H", "curl 'http://h", "curl -s"] {
            assert!(parse_curl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_headers_are_joined_as_envoy_joins_them() {
        let input = Input {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![
                ("authorization".into(), "Bearer a".into()),
                ("authorization".into(), "Bearer b".into()),
            ],
            ..Input::default()
        };
        let req = input.to_check_request();
        // Two credentials are refused as the server refuses them.
        assert_eq!(RequestView::new(&req).unwrap().authorization(), Single::Unusable);
    }

    #[test]
    fn secrets_are_shown_by_length_and_hash_only() {
        let f = fingerprint("secret-token");
        assert!(f.starts_with("12 bytes, sha256 "), "{f}");
        assert!(!f.contains("secret"), "{f}");
        for h in ["authorization", "cookie", "set-cookie", "x-tenuo-warrant"] {
            assert!(is_secret_header(h), "{h}");
        }
        assert!(!is_secret_header("x-user-id"));
        assert!(!is_secret_header("x-tenuo-warrant-id"));
    }

    /// A warrant's tool name or constraint key is the sender's text: it
    /// cannot redraw the terminal or print a step or verdict of its own.
    #[test]
    fn a_step_s_text_cannot_forge_output() {
        let mut steps = Vec::new();
        step(
            &mut steps,
            "chain",
            "info",
            "tools: t\n=> ALLOW 200 allowed\u{1b}[8m \u{202e}x",
        );
        let e = Explanation {
            decision: "deny",
            status: 403,
            reason: "x".into(),
            rule: None,
            identity: None,
            edits: EditsOut::default(),
            steps,
        };
        let text = to_text(&e);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "{text}");
        assert!(
            text.contains(r"t\u{a}=> ALLOW 200 allowed\u{1b}[8m \u{202e}x"),
            "{text}"
        );
    }
}
