//! `CheckRequest`s shaped like Envoy's, so targets reach the parsers through
//! the same `RequestView` the server uses.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

/// Headers as Envoy sends them by default: lower-case names, repeats joined with `,`.
pub fn merged(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in headers {
        map.entry(k.to_ascii_lowercase())
            .and_modify(|e| {
                e.push(',');
                e.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    wrap(HttpRequest {
        method: "GET".into(),
        path: path.into(),
        headers: map,
        ..Default::default()
    })
}

/// Headers as Envoy sends them with `encode_raw_headers`: one entry per
/// occurrence, the value as raw bytes (so not necessarily UTF-8).
pub fn raw(path: &str, headers: &[(&str, &[u8])]) -> CheckRequest {
    let headers = headers
        .iter()
        .map(|(k, v)| HeaderValue {
            key: k.to_string(),
            raw_value: v.to_vec(),
            ..Default::default()
        })
        .collect();
    wrap(HttpRequest {
        method: "GET".into(),
        path: path.into(),
        header_map: Some(HeaderMap { headers }),
        ..Default::default()
    })
}

/// Envoy's default `max_request_headers_count`: requests with at most this
/// many headers must always be read (a crate limit may refuse more).
pub const FEW_HEADERS: usize = 100;

/// Headers in a probe request (one per raw entry, one per merged name).
pub fn count(req: &CheckRequest) -> usize {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    http.map_or(0, |h| {
        h.headers.len() + h.header_map.as_ref().map_or(0, |m| m.headers.len())
    })
}

fn wrap(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}
