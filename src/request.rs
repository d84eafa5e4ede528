//! A cheap, read-only view over the HTTP request inside a `CheckRequest`.
//!
//! Envoy fills either `headers` (names lower-cased, repeated headers merged
//! with `,`) or, with `encode_raw_headers`, `header_map` (one entry per
//! occurrence, value possibly in `raw_value`). Both are read here so nothing
//! downstream has to care which one Envoy used.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;

use crate::deny::Deny;

#[derive(Debug)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The normalized path used for rule matching (no query, dot-segments
    /// resolved, slashes merged, `;params` dropped).
    pub path: String,
    /// The request target as Envoy sent it (query included).
    pub raw_path: &'a str,
    /// The body, when Envoy is configured to send it (`with_request_body`).
    pub body: &'a [u8],
    headers: Headers<'a>,
}

#[derive(Debug)]
enum Headers<'a> {
    Merged(&'a HashMap<String, String>),
    Raw(&'a [HeaderValue]),
}

/// What a header that must appear at most once holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Single<'a> {
    Absent,
    One(&'a str),
    /// Several headers, or one that is not valid UTF-8.
    Unusable,
}

// === impl RequestView ===

impl<'a> RequestView<'a> {
    pub fn new(req: &'a CheckRequest) -> Result<Self, Deny> {
        let http = http(req).ok_or(Deny::NotHttp)?;
        let headers = match &http.header_map {
            Some(map) if !map.headers.is_empty() => Headers::Raw(&map.headers),
            _ => Headers::Merged(&http.headers),
        };
        // `body` holds UTF-8 bodies, `raw_body` any body when Envoy packs it as bytes.
        let body = if http.raw_body.is_empty() {
            http.body.as_bytes()
        } else {
            &http.raw_body[..]
        };
        Ok(Self {
            method: &http.method,
            path: normalize_path(&http.path)?,
            raw_path: &http.path,
            body,
            headers,
        })
    }

    /// Lower-cased names of every header the client sent (repeats possible).
    pub fn header_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        let (merged, raw) = match self.headers {
            Headers::Merged(m) => (Some(m.keys()), None),
            Headers::Raw(r) => (None, Some(r.iter())),
        };
        merged
            .into_iter()
            .flatten()
            .map(String::as_str)
            .chain(raw.into_iter().flatten().map(|h| h.key.as_str()))
    }

    /// Every value of a header (lower-case name): one merged value, or one
    /// per occurrence with `encode_raw_headers`. Non-UTF-8 values are skipped.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        let (merged, raw) = match self.headers {
            Headers::Merged(m) => (m.get(name).map(String::as_str), None),
            Headers::Raw(r) => (None, Some(r.iter())),
        };
        merged.into_iter().chain(
            raw.into_iter()
                .flatten()
                .filter(move |h| h.key.eq_ignore_ascii_case(name))
                .filter_map(raw_value),
        )
    }

    /// The first value of a header (lower-case name).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    pub fn authorization(&self) -> Single<'a> {
        self.single("authorization")
    }

    /// A header that is meaningful only once (`name` lower-case). Envoy joins
    /// repeats with ',', which no credential header here contains, so a ','
    /// means it was sent twice.
    pub fn single(&self, name: &str) -> Single<'a> {
        match self.headers {
            Headers::Merged(m) => match m.get(name) {
                None => Single::Absent,
                Some(v) if v.contains(',') => Single::Unusable,
                Some(v) => Single::One(v),
            },
            Headers::Raw(r) => {
                let mut found = r.iter().filter(|h| h.key.eq_ignore_ascii_case(name));
                match (found.next(), found.next()) {
                    (None, _) => Single::Absent,
                    (Some(h), None) => raw_value(h).map_or(Single::Unusable, Single::One),
                    (Some(_), Some(_)) => Single::Unusable,
                }
            }
        }
    }

    /// Every value of a header, joined with ',' as Envoy does (`name` lower-case).
    pub fn joined(&self, name: &str) -> Option<std::borrow::Cow<'a, str>> {
        let mut values = self.header_values(name);
        let first = values.next()?;
        Some(values.fold(std::borrow::Cow::Borrowed(first), |mut acc, v| {
            let s = acc.to_mut();
            s.push(',');
            s.push_str(v);
            acc
        }))
    }
}

fn http(req: &CheckRequest) -> Option<&HttpRequest> {
    req.attributes.as_ref()?.request.as_ref()?.http.as_ref()
}

fn raw_value(h: &HeaderValue) -> Option<&str> {
    if h.raw_value.is_empty() {
        Some(&h.value)
    } else {
        std::str::from_utf8(&h.raw_value).ok()
    }
}

/// Normalizes a request target for rule matching, so that `/public/../admin`,
/// `//admin`, `/%61dmin` and `/public/..;/admin` are all seen as `/admin`.
/// Encoded `/`, `\`, `?`, `#`, `%`, control bytes and bad escapes are refused outright:
/// upstreams disagree on what they mean.
pub fn normalize_path(raw: &str) -> Result<String, Deny> {
    let target = raw.split(['?', '#']).next().unwrap_or_default();
    if !target.starts_with('/') || target.contains('\\') {
        return Err(Deny::InvalidPath);
    }
    if is_plain(target) {
        return Ok(target.to_string());
    }
    let decoded = percent_decode(target)?;
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        // Servlet containers drop `;params` from each segment, so `..;` means `..`.
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

/// Already normal (the common case, since Envoy normalizes first): nothing
/// to decode, no empty, `.` or `..` segment, no `;params`.
fn is_plain(target: &str) -> bool {
    let b = target.as_bytes();
    !b.iter().any(|&c| matches!(c, b'%' | b';') || c < 0x20 || c == 0x7f)
        && !target.contains("//")
        && !target.split('/').any(|s| s == "." || s == "..")
}

fn percent_decode(s: &str) -> Result<String, Deny> {
    if !s.contains('%') {
        return check_bytes(s.as_bytes()).map(|()| s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(Deny::InvalidPath)?;
            let hex = std::str::from_utf8(hex).map_err(|_| Deny::InvalidPath)?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| Deny::InvalidPath)?;
            // Decoded, these change how a path splits; upstreams that decode
            // twice (or re-parse) would see another path than our rules.
            if matches!(b, b'/' | b'\\' | b'%' | b'?' | b'#') {
                return Err(Deny::InvalidPath);
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    check_bytes(&out)?;
    String::from_utf8(out).map_err(|_| Deny::InvalidPath)
}

fn check_bytes(b: &[u8]) -> Result<(), Deny> {
    if b.iter().any(|&c| c < 0x20 || c == 0x7f) {
        Err(Deny::InvalidPath)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_normalize_to_the_real_target() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/admin?x=/public", "/admin"),
            ("/public/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/../../admin", "/admin"),
            ("/", "/"),
            ("/a/b/..", "/a"),
            ("/%2e%2e/admin", "/admin"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for raw in [
            "/admin%2fx",
            "/admin%5cx",
            "/a\\b",
            "/%zz",
            "/%",
            "/%0a",
            "*",
            "http://x/admin",
            "",
            "/%25",
            "/a%ff",
        ] {
            assert_eq!(normalize_path(raw), Err(Deny::InvalidPath), "{raw}");
        }
    }
}
