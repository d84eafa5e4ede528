//! An OIDC discovery document (OpenID Connect Discovery 1.0), kept as
//! fetched. Bearer verification reads `jwks_uri`, browser logins the
//! authorization, token and end-session endpoints; each endpoint is checked
//! when it is read, so a field one side never uses cannot fail the other.

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{may_fetch, IdpError};

#[derive(Debug)]
pub struct Discovery {
    /// Where the document came from, for errors.
    url: Url,
    doc: Document,
}

#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    #[serde(default)]
    jwks_uri: Option<Value>,
    #[serde(default)]
    authorization_endpoint: Option<Value>,
    #[serde(default)]
    token_endpoint: Option<Value>,
    #[serde(default)]
    end_session_endpoint: Option<Value>,
}

impl Discovery {
    /// The document at `url` for `issuer`. It must name exactly that
    /// issuer (§4.3): a document that names another is not this issuer's.
    pub(super) fn parse(url: &Url, body: &[u8], issuer: &str) -> Result<Self, IdpError> {
        let doc: Document = serde_json::from_slice(body).map_err(|e| IdpError::invalid(url, e))?;
        if doc.issuer != issuer {
            return Err(IdpError::invalid(
                url,
                format!("issuer is {:?}, expected {issuer:?}", doc.issuer),
            ));
        }
        Ok(Self { url: url.clone(), doc })
    }

    pub fn jwks_uri(&self) -> Result<Url, IdpError> {
        self.required("jwks_uri", &self.doc.jwks_uri)
    }

    pub fn authorization_endpoint(&self) -> Result<Url, IdpError> {
        self.required("authorization_endpoint", &self.doc.authorization_endpoint)
    }

    pub fn token_endpoint(&self) -> Result<Url, IdpError> {
        self.required("token_endpoint", &self.doc.token_endpoint)
    }

    /// Optional (RP-Initiated Logout): without it, logout only clears the cookie.
    pub fn end_session_endpoint(&self) -> Result<Option<Url>, IdpError> {
        self.endpoint("end_session_endpoint", &self.doc.end_session_endpoint)
    }

    fn required(&self, name: &str, value: &Option<Value>) -> Result<Url, IdpError> {
        self.endpoint(name, value)?
            .ok_or_else(|| IdpError::invalid(&self.url, format!("{name} is missing")))
    }

    /// An endpoint portcullis will call: a URL it may fetch (https, or
    /// http to a local host), as for configured URLs.
    fn endpoint(&self, name: &str, value: &Option<Value>) -> Result<Option<Url>, IdpError> {
        let raw = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s,
            Some(_) => return Err(IdpError::invalid(&self.url, format!("{name} is not a string"))),
        };
        let url = Url::parse(raw).map_err(|e| IdpError::invalid(&self.url, format!("{name} {raw:?}: {e}")))?;
        if !may_fetch(&url) {
            return Err(IdpError::invalid(&self.url, format!("{name} {url} must be https")));
        }
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://idp.example.com";

    fn parse(body: &str) -> Result<Discovery, IdpError> {
        let url = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        Discovery::parse(&url, body.as_bytes(), ISSUER)
    }

    fn reason(e: IdpError) -> String {
        match e {
            IdpError::Invalid { reason, .. } => reason,
            other => panic!("not Invalid: {other}"),
        }
    }

    #[test]
    fn endpoints_are_read_and_checked_one_by_one() {
        let d = parse(
            r#"{"issuer":"https://idp.example.com","jwks_uri":"https://idp.example.com/keys",
                "authorization_endpoint":"http://idp.example.com/auth","token_endpoint":7}"#,
        )
        .unwrap();
        // What bearer verification reads is fine, whatever the rest holds.
        assert_eq!(d.jwks_uri().unwrap().as_str(), "https://idp.example.com/keys");
        assert_eq!(
            reason(d.authorization_endpoint().unwrap_err()),
            "authorization_endpoint http://idp.example.com/auth must be https"
        );
        assert_eq!(
            reason(d.token_endpoint().unwrap_err()),
            "token_endpoint is not a string"
        );
        assert_eq!(d.end_session_endpoint().unwrap(), None);
    }

    #[test]
    fn a_missing_or_unparsable_endpoint_is_named() {
        let d = parse(r#"{"issuer":"https://idp.example.com","jwks_uri":"not a url","end_session_endpoint":null}"#)
            .unwrap();
        assert!(reason(d.jwks_uri().unwrap_err()).starts_with("jwks_uri \"not a url\": "));
        assert_eq!(reason(d.token_endpoint().unwrap_err()), "token_endpoint is missing");
        assert_eq!(d.end_session_endpoint().unwrap(), None);
    }

    #[test]
    fn the_document_must_name_exactly_its_issuer() {
        let e = parse(r#"{"issuer":"https://idp.example.com/"}"#).unwrap_err();
        assert_eq!(
            reason(e),
            r#"issuer is "https://idp.example.com/", expected "https://idp.example.com""#
        );
        assert!(parse(r#"{"jwks_uri":"https://idp.example.com/keys"}"#).is_err());
    }
}
