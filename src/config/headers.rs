//! The `headers:` section: the names of the identity headers injected for
//! the upstream, and the extra names to strip. Compiles into
//! [`HeaderPolicy`], which `headers.rs` owns.

use serde::Deserialize;

use super::Errors;
use crate::headers::HeaderPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHeaders {
    pub user: String,
    pub email: String,
    pub groups: String,
    pub issuer: String,
    /// The workload principal (mTLS peer identity) of an allowed request.
    pub principal: String,
    pub strip: Vec<String>,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            user: "x-user-id".into(),
            email: "x-auth-request-email".into(),
            groups: "x-auth-request-groups".into(),
            issuer: "x-auth-request-issuer".into(),
            principal: crate::headers::PRINCIPAL.into(),
            strip: Vec::new(),
        }
    }
}

pub(super) fn validate(h: &RawHeaders, errs: &mut Errors) -> HeaderPolicy {
    for (path, name) in [
        ("headers.user", &h.user),
        ("headers.email", &h.email),
        ("headers.groups", &h.groups),
        ("headers.issuer", &h.issuer),
        ("headers.principal", &h.principal),
    ] {
        if !is_header_name(name) {
            errs.push(path, "must be a lower-case HTTP header name, e.g. x-user-id");
        } else if is_reserved_header(name) {
            errs.push(
                path,
                "must not be a pseudo-header, hop-by-hop, host or authorization header",
            );
        }
    }
    let names = [&h.user, &h.email, &h.groups, &h.issuer, &h.principal];
    if names.iter().enumerate().any(|(i, n)| names[..i].contains(n)) {
        errs.push(
            "headers",
            "user, email, groups, issuer and principal must be distinct headers",
        );
    }
    // The warrant's headers are set by the warrant alone; the principal
    // injected under one of them would make it say two things.
    if h.principal.replace('_', "-").starts_with("x-tenuo-") {
        errs.push("headers.principal", "must not be one of the x-tenuo-* headers");
    }
    for (i, name) in h.strip.iter().enumerate() {
        let bare = name.strip_suffix('*').unwrap_or(name);
        if !is_header_name(bare) {
            errs.push(
                format!("headers.strip[{i}]"),
                "must be a lower-case header name, optionally ending in '*'",
            );
        } else if is_reserved_header(bare) || bare.len() < 3 {
            errs.push(
                format!("headers.strip[{i}]"),
                "would strip a header Envoy needs (or far too broad a prefix)",
            );
        }
    }
    HeaderPolicy::with_principal(&h.user, &h.email, &h.groups, &h.issuer, &h.principal, &h.strip)
}

pub(super) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(super) fn is_reserved_header(name: &str) -> bool {
    matches!(
        name,
        "host" | "authorization" | "connection" | "te" | "transfer-encoding" | "upgrade" | "content-length" | "cookie"
    ) || name.starts_with(':')
}
