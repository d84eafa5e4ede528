//! Tool arguments from the request, by the gateway route's extraction rules
//! (Tenuo's own `extract_constraints`, so values match what clients sign).

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
    #[error("the body was truncated by Envoy (raise max_request_bytes)")]
    PartialBody,
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
    // Only what the rules read is gathered: the context is cloned by the crate.
    for rule in rules.values() {
        match rule.rule.from {
            ExtractionSource::Header => {
                if let Some(name) = rule.lowercase_key.as_deref() {
                    if let Some(v) = view.joined(name) {
                        ctx.headers.insert(name.to_string(), v.into_owned());
                    }
                }
            }
            ExtractionSource::Query if ctx.query_params.is_empty() => ctx.query_params = query(view.raw_path)?,
            ExtractionSource::Body if ctx.body.is_null() => {
                if matches!(view.single(PARTIAL_BODY), Single::One(v) if v.eq_ignore_ascii_case("true")) {
                    return Err(ArgsError::PartialBody);
                }
                // As tenuo-authorizer: a body that is not JSON counts as absent.
                ctx.body = serde_json::from_slice(view.body).unwrap_or_default();
            }
            _ => {}
        }
    }
    gateway
        .extract_constraints(route, &ctx)
        .map(|r| r.constraints)
        .map_err(|e| ArgsError::Extraction(e.to_string()))
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
    use super::*;

    #[test]
    fn query_is_decoded_and_repeats_refused() {
        let q = query("/x?a=1&b=two%20words&c=x+y").expect("query");
        assert_eq!(q.get("b").map(String::as_str), Some("two words"));
        assert_eq!(q.get("c").map(String::as_str), Some("x y"));
        assert!(query("/x").expect("no query").is_empty());
        assert!(matches!(query("/x?a=1&a=2"), Err(ArgsError::AmbiguousQuery(k)) if k == "a"));
    }
}
