//! Rust-side Tenuo fixtures shared by the criterion benches and the
//! differential test: keys, a gateway config, warrants and PoPs minted with
//! the `tenuo` crate, and CheckRequests shaped like Envoy's.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use portcullis::check::Checker;
use portcullis::config::RawConfig;
use tenuo::wire::WarrantStack;
use tenuo::{ConstraintSet, ConstraintValue, Pattern, Range, SigningKey, Warrant, Wildcard};

/// The tests' gateway config; its routes read arguments from the query, the
/// path + JSON body and a header.
pub const GATEWAY: &str = include_str!("../common/gateway.yaml");

pub fn key() -> SigningKey {
    SigningKey::generate()
}

pub fn hex_key(k: &SigningKey) -> String {
    hex::encode(k.public_key().to_bytes())
}

/// A checker that trusts `issuers`, with the gateway above inline. Tenuo's
/// debug mode stays off, as in production: no deny-reason header to build.
pub fn checker(issuers: &[&SigningKey]) -> Arc<Checker> {
    let keys: Vec<String> = issuers.iter().map(|k| format!("\"{}\"", hex_key(k))).collect();
    let gateway: String = GATEWAY.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ntenuo:\n  trusted_issuers: [{}]\n  debug: false\n  gateway:\n{gateway}",
        keys.join(", ")
    );
    let config = RawConfig::from_yaml(&yaml).expect("yaml").validate().expect("valid");
    portcullis::server::build_checker(config).expect("checker")
}

pub fn constraints(pairs: Vec<(&str, tenuo::Constraint)>) -> ConstraintSet {
    let mut set = ConstraintSet::new();
    for (k, c) in pairs {
        set.insert(k, c);
    }
    set
}

/// The warrants of the gateway's tools, as tight as the tests need.
pub fn read_file_caps() -> ConstraintSet {
    constraints(vec![("path", Pattern::new("/data/*").expect("pattern").into())])
}

pub fn deploy_caps() -> ConstraintSet {
    constraints(vec![
        ("cluster", Pattern::new("staging-*").expect("pattern").into()),
        ("replicas", Range::new(Some(1.0), Some(10.0)).expect("range").into()),
    ])
}

pub fn report_caps() -> ConstraintSet {
    constraints(vec![("tenant", Wildcard::new().into())])
}

pub fn mint(issuer: &SigningKey, holder: &SigningKey, tools: Vec<(&str, ConstraintSet)>, ttl: u64) -> Warrant {
    let mut b = Warrant::builder()
        .holder(holder.public_key())
        .ttl(Duration::from_secs(ttl));
    for (tool, caps) in tools {
        b = b.capability(tool, caps);
    }
    b.build(issuer).expect("mint")
}

/// A child of `parent`, signed by the parent's holder.
pub fn delegate(
    parent: &Warrant,
    signer: &SigningKey,
    to: &SigningKey,
    tool: &str,
    caps: ConstraintSet,
    ttl: u64,
) -> Warrant {
    parent
        .attenuate()
        .capability(tool, caps)
        .holder(to.public_key())
        .ttl(Duration::from_secs(ttl))
        .build(signer)
        .expect("delegate")
}

/// `X-Tenuo-Warrant`: one warrant URL-safe (Rust SDK), a stack padded standard (Python SDK).
pub fn header(chain: &[&Warrant]) -> String {
    match chain {
        [one] => tenuo::wire::encode_base64(one).expect("encode"),
        _ => {
            let stack = WarrantStack(chain.iter().map(|w| (*w).clone()).collect());
            STANDARD.encode(tenuo::wire::encode_stack(&stack).expect("encode stack"))
        }
    }
}

pub fn args(pairs: &[(&str, ConstraintValue)]) -> HashMap<String, ConstraintValue> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

pub fn pop(
    w: &Warrant,
    key: &SigningKey,
    tool: &str,
    args: &HashMap<String, ConstraintValue>,
    at: Option<i64>,
) -> String {
    URL_SAFE_NO_PAD.encode(w.sign_with_timestamp(key, tool, args, at).expect("sign").to_bytes())
}

/// A CheckRequest as Envoy sends it (merged headers, names lower-case).
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> CheckRequest {
    let mut map: HashMap<String, String> = [
        (":authority", "app.example.com"),
        (":method", method),
        (":path", path),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("user-agent", "test/1.0"),
        ("x-request-id", "3c0e8f1e-5b41-4c1f-9f55-9d1f2c7a1b00"),
        ("x-user-id", "spoofed"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in headers {
        map.insert(k.to_ascii_lowercase(), v.to_string());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "req-1".into(),
                    method: method.into(),
                    path: path.into(),
                    host: "app.example.com".into(),
                    headers: map,
                    body: body.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// 200 for an OK response, else the denied HTTP status.
pub fn status(r: &CheckResponse) -> i32 {
    match &r.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(-1, |s| s.code),
        _ => -1,
    }
}

/// A header the OK response sets for the upstream.
pub fn injected<'a>(r: &'a CheckResponse, name: &str) -> Option<&'a str> {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == name)
            .map(|h| h.value.as_str()),
        _ => None,
    }
}

/// The JSON body of a denial.
pub fn body(r: &CheckResponse) -> serde_json::Value {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => serde_json::from_str(&d.body).unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}
