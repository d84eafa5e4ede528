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
