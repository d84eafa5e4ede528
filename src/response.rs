//! The only place a decision becomes a `CheckResponse`: OK with header
//! edits, or a denied HTTP response (RFC 6750 `WWW-Authenticate`, a small
//! JSON body). Denials are data, never gRPC errors: Envoy treats those as
//! an outage of portcullis.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::rpc;

use crate::deny::{Deny, Status};
use crate::headers::Edits;
use crate::verify::warrant::WarrantDenial;

/// Header that carries the deny reason when `debug: true`.
pub const DEBUG_REASON_HEADER: &str = "x-portcullis-deny-reason";
/// tenuo-authorizer's debug header, sent for warrant denials when Tenuo's debug mode is on.
pub const TENUO_DEBUG_HEADER: &str = "x-tenuo-deny-reason";

/// A warrant denial's details, shaped like tenuo-authorizer's responses.
pub struct WarrantDenialBody<'a> {
    pub denial: &'a WarrantDenial,
    pub request_id: &'a str,
    pub debug: bool,
}

const GRPC_OK: i32 = 0;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_NOT_FOUND: i32 = 5;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;

pub fn allowed(edits: Edits) -> CheckResponse {
    let mut response_headers: Vec<HeaderValueOption> = edits.set_cookies.into_iter().map(set_cookie).collect();
    if !response_headers.is_empty() {
        // A renewed session cookie must never be stored by a shared cache
        // and replayed to someone else, whatever the upstream allowed.
        response_headers.push(overwrite("cache-control", "no-store"));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: GRPC_OK,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: edits.set,
            headers_to_remove: edits.remove,
            response_headers_to_add: response_headers,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn denied(deny: &Deny, realm: &str, debug: bool, warrant: Option<WarrantDenialBody<'_>>) -> CheckResponse {
    // `error` is the RFC 6750 code of the challenge; the body names the HTTP class.
    let (http, grpc, error, class) = match deny.status() {
        Status::BadRequest => (
            HttpStatusCode::BadRequest,
            GRPC_INVALID_ARGUMENT,
            "invalid_request",
            "bad_request",
        ),
        Status::Unauthenticated => (
            HttpStatusCode::Unauthorized,
            GRPC_UNAUTHENTICATED,
            "invalid_token",
            "unauthorized",
        ),
        Status::Forbidden => (
            HttpStatusCode::Forbidden,
            GRPC_PERMISSION_DENIED,
            "insufficient_scope",
            "forbidden",
        ),
        Status::NotFound => (HttpStatusCode::NotFound, GRPC_NOT_FOUND, "", "not_found"),
    };
    let mut headers = vec![
        overwrite("content-type", "application/json"),
        overwrite("cache-control", "no-store"),
    ];
    match deny {
        // A 401 names a scheme (RFC 9110 §11.6.1); Tenuo's has no registered one.
        Deny::MissingWarrant => headers.push(overwrite("www-authenticate", format!("Tenuo realm=\"{realm}\""))),
        _ if deny.is_warrant() => {}
        // RFC 6750 §3.1: no error code when the request had no credential.
        Deny::MissingCredential => headers.push(overwrite("www-authenticate", format!("Bearer realm=\"{realm}\""))),
        _ if deny.status() != Status::BadRequest => headers.push(overwrite(
            "www-authenticate",
            format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{deny}\""),
        )),
        _ => {}
    }
    if debug {
        headers.push(overwrite(DEBUG_REASON_HEADER, deny.reason()));
    }
    let body = match &warrant {
        Some(w) => {
            if w.debug {
                headers.push(overwrite(TENUO_DEBUG_HEADER, w.denial.header_value()));
            }
            warrant_body(deny, w)
        }
        None => serde_json::json!({
            "error": class,
            "reason": deny.reason(),
            "status": http as i32,
        }),
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc,
            message: deny.reason().to_string(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers,
            body: body.to_string(),
        })),
        ..Default::default()
    }
}

/// tenuo-authorizer's body: a 403 names Tenuo's canonical error; earlier
/// denials (no route, no or undecodable warrant, extraction) their reason.
/// `reason` is portcullis' own, as in every other denial.
fn warrant_body(deny: &Deny, w: &WarrantDenialBody<'_>) -> serde_json::Value {
    let d = w.denial;
    if deny.status() == Status::Forbidden {
        serde_json::json!({
            "authorized": false,
            "error": d.error.map_or(deny.reason(), |e| e.name()),
            "error_code": d.error.map(|e| e.code()),
            "message": d.error.map_or_else(|| deny.to_string(), |e| e.description().to_string()),
            "warrant_id": d.warrant_id.as_deref(),
            "tool": d.tool.as_deref(),
            "request_id": w.request_id,
            "reason": deny.reason(),
        })
    } else {
        serde_json::json!({
            "error": deny.reason(),
            "message": deny.to_string(),
            "request_id": w.request_id,
            "reason": deny.reason(),
        })
    }
}

/// A browser redirect (login, callback, logout): 302 with `location`, never
/// cached, with the given `Set-Cookie` values. A denial for Envoy: the
/// request does not reach the upstream.
pub fn redirect(location: &str, set_cookies: Vec<String>) -> CheckResponse {
    let mut headers = vec![overwrite("location", location), overwrite("cache-control", "no-store")];
    headers.extend(set_cookies.into_iter().map(set_cookie));
    CheckResponse {
        status: Some(rpc::Status {
            code: GRPC_UNAUTHENTICATED,
            message: "redirect".into(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: HttpStatusCode::Found as i32,
            }),
            headers,
            body: String::new(),
        })),
        ..Default::default()
    }
}

/// Adds `Set-Cookie` values to a denied response (e.g. clearing a broken
/// session cookie along with the 401). Allowed responses carry theirs in
/// [`Edits::set_cookies`].
pub fn with_set_cookies(mut response: CheckResponse, set_cookies: Vec<String>) -> CheckResponse {
    if let Some(HttpResponse::DeniedResponse(d)) = response.http_response.as_mut() {
        d.headers.extend(set_cookies.into_iter().map(set_cookie));
    }
    response
}

/// `Set-Cookie` is appended, never overwriting another cookie (RFC 6265:
/// one header per cookie).
fn set_cookie(value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: "set-cookie".into(),
            value,
            ..Default::default()
        }),
        append_action: HeaderAppendAction::AppendIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// A header set with overwrite semantics (what `Edits::set` holds).
pub fn overwrite(key: impl Into<String>, value: impl Into<String>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        // `append` is deprecated: leave it unset and say what we mean.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied_parts(d: &Deny, debug: bool) -> (i32, i32, Vec<(String, String)>, String) {
        let r = denied(d, "portcullis", debug, None);
        let Some(HttpResponse::DeniedResponse(dr)) = r.http_response else {
            panic!("not a denial")
        };
        let headers = dr
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
            .collect();
        (
            r.status.map(|s| s.code).unwrap_or(-1),
            dr.status.map(|s| s.code).unwrap_or(-1),
            headers,
            dr.body,
        )
    }

    fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn header_pairs(h: &[HeaderValueOption]) -> Vec<(String, String, i32)> {
        h.iter()
            .filter_map(|o| {
                o.header
                    .as_ref()
                    .map(|h| (h.key.clone(), h.value.clone(), o.append_action))
            })
            .collect()
    }

    #[test]
    fn every_response_that_sets_a_cookie_is_no_store() {
        let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
        let append = HeaderAppendAction::AppendIfExistsOrAdd as i32;
        let renewed = allowed(Edits {
            set_cookies: vec!["s=1".into()],
            ..Default::default()
        });
        let Some(HttpResponse::OkResponse(ok)) = renewed.http_response else {
            panic!("not OK")
        };
        assert_eq!(
            header_pairs(&ok.response_headers_to_add),
            vec![
                ("set-cookie".into(), "s=1".into(), append),
                ("cache-control".into(), "no-store".into(), overwrite)
            ]
        );
        // Without a cookie the upstream's caching is none of our business.
        let Some(HttpResponse::OkResponse(ok)) = allowed(Edits::default()).http_response else {
            panic!("not OK")
        };
        assert!(ok.response_headers_to_add.is_empty());
        for r in [
            redirect("/x", vec!["s=1".into()]),
            with_set_cookies(
                denied(&Deny::SessionInvalid, "p", false, None),
                vec!["s=; Max-Age=0".into()],
            ),
        ] {
            let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
                panic!("not a denial")
            };
            let h = header_pairs(&d.headers);
            assert!(
                h.contains(&("cache-control".into(), "no-store".into(), overwrite)),
                "{h:?}"
            );
            assert!(h.iter().any(|(k, _, _)| k == "set-cookie"), "{h:?}");
        }
    }

    #[test]
    fn missing_credential_is_401_with_bare_challenge() {
        let (grpc, http, h, body) = denied_parts(&Deny::MissingCredential, false);
        assert_eq!((grpc, http), (GRPC_UNAUTHENTICATED, 401));
        assert_eq!(header(&h, "www-authenticate"), Some("Bearer realm=\"portcullis\""));
        assert_eq!(header(&h, DEBUG_REASON_HEADER), None);
        assert!(body.contains("\"reason\":\"missing_credential\""));
    }

    #[test]
    fn invalid_token_is_401_with_error_and_forbidden_is_403() {
        let (_, http, h, _) = denied_parts(&Deny::TokenExpired, true);
        assert_eq!(http, 401);
        let challenge = header(&h, "www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\"")
                && challenge.contains("error_description=\"the token has expired\"")
        );
        assert_eq!(header(&h, DEBUG_REASON_HEADER), Some("token_expired"));
        let (grpc, http, _, _) = denied_parts(&Deny::GroupNotAllowed, false);
        assert_eq!((grpc, http), (GRPC_PERMISSION_DENIED, 403));
        let (_, http, h, _) = denied_parts(&Deny::InvalidPath, false);
        assert_eq!((http, header(&h, "www-authenticate")), (400, None));
    }
}
