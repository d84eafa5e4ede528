//! Tool arguments from the request, by the gateway route's extraction rules
//! (Tenuo's own `extract_constraints`, so values match what clients sign).
//!
//! Inputs are read as tenuo-authorizer reads them: path parameters come from
//! the request target as Envoy sent it (matchit does not percent-decode, so
//! `/files/a%20b` gives `a%20b`), query values are form-decoded. Where the
//! authorizer would silently pick one reading of an ambiguous request (a
//! header sent twice, a body it never saw, a body that is not JSON, a JSON
//! object naming a key twice) the
//! request is refused instead: the upstream may act on another reading than
//! the one the warrant was checked against.

use std::collections::HashMap;

use tenuo::{CompiledGatewayConfig, ConstraintValue, ExtractionSource, RequestContext, RouteMatch};

use crate::request::{RequestView, Single};

/// Envoy sets this when `with_request_body` cut the body at `max_request_bytes`.
const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

pub type Args = HashMap<String, ConstraintValue>;

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("query parameter {0:?} appears more than once")]
    AmbiguousQuery(String),
    #[error("header {0:?} appears more than once or holds a comma-joined list")]
    AmbiguousHeader(String),
    #[error("the body was truncated by Envoy (raise max_request_bytes)")]
    PartialBody,
    #[error("the request has a body that Envoy did not forward (enable with_request_body)")]
    BodyNotForwarded,
    #[error("the body is not JSON")]
    BodyNotJson,
    #[error("the JSON body names a key twice")]
    RepeatedBodyKey,
    #[error("{0}")]
    Extraction(String),
}

pub fn extract(
    gateway: &CompiledGatewayConfig,
    route: &RouteMatch<'_>,
    view: &RequestView<'_>,
) -> Result<Args, ArgsError> {
    let rules = &route.route.extraction_rules.rules;
    let mut ctx = RequestContext::new();
    let (mut query_read, mut body_read) = (false, false);
    // Only what the rules read is gathered: the context is cloned by the crate.
    for rule in rules.values() {
        match rule.rule.from {
            ExtractionSource::Header => {
                if let Some(name) = rule.lowercase_key.as_deref() {
                    match view.single(name) {
                        Single::Absent => {}
                        Single::One(v) => {
                            ctx.headers.insert(name.to_string(), v.to_string());
                        }
                        Single::Unusable => return Err(ArgsError::AmbiguousHeader(name.to_string())),
                    }
                }
            }
            ExtractionSource::Query if !query_read => {
                query_read = true;
                ctx.query_params = query(view.raw_path)?;
            }
            ExtractionSource::Body if !body_read => {
                body_read = true;
                ctx.body = body(view)?;
            }
            _ => {}
        }
    }
    gateway
        .extract_constraints(route, &ctx)
        .map(|r| r.constraints)
        .map_err(|e| ArgsError::Extraction(e.to_string()))
}

/// The JSON body, or `null` when the request has none. A body that exists
/// but was not seen whole, or is not JSON, is an error rather than `null`:
/// `null` would let an optional argument fall back to its `default` while
/// the upstream reads the real value from the body.
fn body(view: &RequestView<'_>) -> Result<serde_json::Value, ArgsError> {
    if matches!(view.single(PARTIAL_BODY), Single::One(v) if v.eq_ignore_ascii_case("true")) {
        return Err(ArgsError::PartialBody);
    }
    if view.body.is_empty() {
        return if declares_body(view) {
            Err(ArgsError::BodyNotForwarded)
        } else {
            Ok(serde_json::Value::Null)
        };
    }
    super::json::parse_unique(view.body).map_err(|e| match e {
        super::json::BodyError::NotJson => ArgsError::BodyNotJson,
        super::json::BodyError::RepeatedKey => ArgsError::RepeatedBodyKey,
    })
}

/// Whether the request headers announce a body: a non-zero (or unreadable)
/// `content-length`, or any `transfer-encoding` (chunked). HTTP/2 requests
/// may carry a body with neither; such a body is only seen when Envoy
/// forwards it (`with_request_body`).
pub fn declares_body(view: &RequestView<'_>) -> bool {
    let length = match view.single("content-length") {
        Single::Absent => false,
        Single::One(v) => v.trim().parse::<u64>().map_or(true, |n| n > 0),
        Single::Unusable => true,
    };
    length || !matches!(view.single("transfer-encoding"), Single::Absent)
}

/// Decoded query parameters. A repeated name is refused: the upstream may
/// read another copy than the one the warrant was checked against.
fn query(raw_path: &str) -> Result<HashMap<String, String>, ArgsError> {
    let Some((_, query)) = raw_path.split_once('?') else {
        return Ok(HashMap::new());
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(ArgsError::AmbiguousQuery(k.into_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::ext_authz::v3::pb::CheckRequest;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use tenuo::GatewayConfig;

    use super::*;

    const GATEWAY: &str = r#"
version: "1"
settings: {}
tools:
  get:
    description: Get a file
    constraints:
      name: { from: path, path: name, required: true }
      tenant: { from: header, path: X-Tenant }
      mode: { from: body, path: mode, default: "safe" }
routes:
  - { pattern: "/files/{name}", method: [GET, POST], tool: get }
"#;

    fn gateway() -> CompiledGatewayConfig {
        CompiledGatewayConfig::compile(GatewayConfig::from_yaml(GATEWAY).expect("yaml")).expect("compile")
    }

    fn check(path: &str, headers: &[(&str, &str)], body: &str) -> CheckRequest {
        let headers: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "POST".into(),
                        path: path.into(),
                        headers,
                        body: body.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn run(path: &str, headers: &[(&str, &str)], body: &str) -> Result<Args, ArgsError> {
        let gw = gateway();
        let req = check(path, headers, body);
        let view = RequestView::new(&req).expect("view");
        let target = path.split('?').next().unwrap_or_default();
        let route = gw.match_route("POST", target).expect("route");
        extract(&gw, &route, &view)
    }

    fn text(args: &Args, k: &str) -> Option<String> {
        match args.get(k) {
            Some(ConstraintValue::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn query_is_decoded_and_repeats_refused() {
        let q = query("/x?a=1&b=two%20words&c=x+y").expect("query");
        assert_eq!(q.get("b").map(String::as_str), Some("two words"));
        assert_eq!(q.get("c").map(String::as_str), Some("x y"));
        assert!(query("/x").expect("no query").is_empty());
        assert!(matches!(query("/x?a=1&a=2"), Err(ArgsError::AmbiguousQuery(k)) if k == "a"));
    }

    #[test]
    fn path_parameters_stay_as_envoy_sent_them() {
        let args = run("/files/my%20file.txt", &[], "").expect("args");
        assert_eq!(text(&args, "name").as_deref(), Some("my%20file.txt"));
        assert_eq!(
            text(&args, "mode").as_deref(),
            Some("safe"),
            "no body: the default applies"
        );
    }

    #[test]
    fn a_repeated_or_comma_joined_header_argument_is_refused() {
        let one = run("/files/a", &[("x-tenant", "acme")], "").expect("one value");
        assert_eq!(text(&one, "tenant").as_deref(), Some("acme"));
        let joined = run("/files/a", &[("x-tenant", "acme,evil")], "");
        assert!(
            matches!(&joined, Err(ArgsError::AmbiguousHeader(h)) if h == "x-tenant"),
            "{joined:?}"
        );
    }

    #[test]
    fn a_body_never_falls_back_to_the_default_unless_there_is_none() {
        let json = run("/files/a", &[("content-length", "16")], r#"{"mode":"fast"}"#).expect("json body");
        assert_eq!(text(&json, "mode").as_deref(), Some("fast"));
        for headers in [
            &[("content-length", "16")][..],
            &[("transfer-encoding", "chunked")][..],
            &[("content-length", "x")][..],
        ] {
            let r = run("/files/a", headers, "");
            assert!(matches!(r, Err(ArgsError::BodyNotForwarded)), "{headers:?}: {r:?}");
        }
        let r = run("/files/a", &[("content-length", "9")], "mode=fast");
        assert!(matches!(r, Err(ArgsError::BodyNotJson)), "{r:?}");
        let r = run("/files/a", &[("x-envoy-auth-partial-body", "true")], r#"{"mo"#);
        assert!(matches!(r, Err(ArgsError::PartialBody)), "{r:?}");
        let none = run("/files/a", &[("content-length", "0")], "").expect("empty body");
        assert_eq!(text(&none, "mode").as_deref(), Some("safe"));
    }
}
