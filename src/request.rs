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

/// More request headers than this is refused before anything reads them:
/// every per-request scan stays bounded. Envoy's own default limit is 100
/// (`max_request_headers_count`), so only a misconfigured or hostile sender
/// gets here.
pub const MAX_HEADERS: usize = 200;

/// The `context_extensions` key whose value names the policy (`policies:`)
/// that decides the request. Envoy fills `context_extensions` from its own
/// route config (`ExtAuthzPerRoute.check_settings`), never from the client.
pub const POLICY_EXTENSION: &str = "portcullis_policy";

#[derive(Debug)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The path the rules judge: as Envoy sent it, without the query
    /// (see [`judge_path`]).
    pub path: &'a str,
    /// The request target as Envoy sent it (query included).
    pub raw_path: &'a str,
    /// The body, when Envoy is configured to send it (`with_request_body`).
    pub body: &'a [u8],
    /// The named policy the proxy's route chose ([`POLICY_EXTENSION`]), as
    /// sent (possibly empty); `None` when the route names none.
    pub policy: Option<&'a str>,
    /// The workload principal Envoy verified (`attributes.source.principal`:
    /// the peer certificate's first URI SAN, else its subject); `None` on a
    /// connection without a client certificate. Never read from a header:
    /// `x-forwarded-client-cert` is whatever the client or a previous hop
    /// wrote unless Envoy sanitizes it.
    pub principal: Option<&'a str>,
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
        let count = match headers {
            Headers::Merged(m) => m.len(),
            Headers::Raw(r) => r.len(),
        };
        if count > MAX_HEADERS {
            return Err(Deny::TooManyHeaders);
        }
        // `body` holds UTF-8 bodies, `raw_body` any body when Envoy packs it as bytes.
        let body = if http.raw_body.is_empty() {
            http.body.as_bytes()
        } else {
            &http.raw_body[..]
        };
        Ok(Self {
            method: &http.method,
            path: judge_path(&http.path)?,
            raw_path: &http.path,
            body,
            policy: req
                .attributes
                .as_ref()
                .and_then(|a| route_policy(&a.context_extensions)),
            principal: principal(req)?,
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
            Headers::Merged(m) => (merged_get(m, name).map(String::as_str), None),
            Headers::Raw(r) => (None, Some(r.iter())),
        };
        merged.into_iter().chain(
            raw.into_iter()
                .flatten()
                .filter(move |h| h.key.eq_ignore_ascii_case(name))
                .filter_map(raw_value),
        )
    }

    /// Whether some value of this header (lower-case name) is not UTF-8, so
    /// that [`header_values`](Self::header_values) skips it (only with
    /// `encode_raw_headers`; the merged map holds text).
    pub fn has_unreadable(&self, name: &str) -> bool {
        match self.headers {
            Headers::Merged(_) => false,
            Headers::Raw(r) => r
                .iter()
                .any(|h| h.key.eq_ignore_ascii_case(name) && raw_value(h).is_none()),
        }
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
            Headers::Merged(m) => match merged_get(m, name) {
                None => Single::Absent,
                // `memchr`: the value is often a whole token, scanned on every request.
                Some(v) if memchr::memchr(b',', v.as_bytes()).is_some() => Single::Unusable,
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

/// Up to this many merged headers, a name is found by comparing it with
/// each: for Envoy's usual dozen or two that costs less than the map's
/// lookup, which first runs std's SipHash over the name.
const SCAN_MAX: usize = 16;

/// The merged map's value for `name` (keys are unique: a scan finds what
/// `get` finds).
fn merged_get<'a>(m: &'a HashMap<String, String>, name: &str) -> Option<&'a String> {
    if m.len() <= SCAN_MAX {
        m.iter().find_map(|(k, v)| (k == name).then_some(v))
    } else {
        m.get(name)
    }
}

/// The policy name among the route's context extensions. Most routes set
/// none: an empty map is answered without hashing the key.
///
/// A key that is meant for portcullis but is not exactly
/// `portcullis_policy` (`portcullis-policy`, `Portcullis_Policy`,
/// `portcullisPolicy`…) is a typo in the proxy's route: it yields the empty
/// name, which is refused as `unknown_policy`, rather than leaving the route
/// to the path rules (which may be more open than the policy meant for it).
fn route_policy(extensions: &HashMap<String, String>) -> Option<&str> {
    if extensions.is_empty() {
        return None;
    }
    let misspelled = extensions.keys().any(|k| k != POLICY_EXTENSION && is_ours(k));
    if misspelled {
        return Some("");
    }
    extensions.get(POLICY_EXTENSION).map(String::as_str)
}

/// Whether an extension key names portcullis in any case or `-`/`_`/`.`
/// spelling.
fn is_ours(key: &str) -> bool {
    const OURS: &[u8] = b"portcullis";
    key.len() >= OURS.len() && key.as_bytes()[..OURS.len()].eq_ignore_ascii_case(OURS)
}

/// The downstream peer's principal as Envoy reports it; `""` (no client
/// certificate, or plain TCP) is none. A principal that is not printable
/// ASCII cannot be matched or injected as a header value safely: refused,
/// whatever the rule, rather than passed on or silently dropped.
fn principal(req: &CheckRequest) -> Result<Option<&str>, Deny> {
    let Some(p) = req.attributes.as_ref().and_then(|a| a.source.as_ref()) else {
        return Ok(None);
    };
    match p.principal.as_str() {
        "" => Ok(None),
        p if p.bytes().all(|b| (0x20..0x7f).contains(&b)) => Ok(Some(p)),
        _ => Err(Deny::PrincipalNotAllowed),
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

/// The path the rules judge: the request target exactly as Envoy sends it
/// (and so as the upstream receives it), without the query string — or a
/// refusal. Nothing is decoded, resolved or dropped here: interpreting the
/// path in a way Envoy does not would let the rules judge one path while the
/// upstream routes another (`/admin/..;/users` is `/users` to a servlet
/// container but `/admin/…` to nginx, Express and Starlette).
///
/// So a path is refused (`invalid_path`) when its meaning depends on the
/// reader:
/// - `;` (path parameters), `\`, `#`, `//`, and `.` or `..` segments: Envoy
///   (`normalize_path`, `merge_slashes`) never forwards the last two, so a
///   path that still has them was not normalized and upstreams differ;
/// - a `%XX` that decodes to an unreserved character (`A-Za-z0-9-._~`: RFC
///   3986 says these are never encoded, and decoders disagree on whether to
///   decode them before routing), to `/ \ ; % ? #`, or to a control byte;
///   escapes that decode to something that is not UTF-8 (overlong `%c0%ae`
///   is `.` to lenient decoders);
/// - code points that compatibility (NFKC) folding or Unicode-aware
///   case-insensitive matchers turn into ASCII letters or punctuation
///   (fullwidth `／．ａ`, dot leaders, `ſ`, `K`, `İ`, `ı`);
/// - raw bytes outside printable ASCII (Envoy's codecs do not pass them).
///
/// Rule prefixes can only hold `A-Za-z0-9-._~/` (checked at load), and none
/// of those may appear encoded here, so matching prefixes on the raw path is
/// the same as matching them on any decoding of it.
pub fn judge_path(raw: &str) -> Result<&str, Deny> {
    let path = memchr::memchr(b'?', raw.as_bytes())
        .and_then(|q| raw.get(..q))
        .unwrap_or(raw);
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(Deny::InvalidPath);
    }
    // One pass over the bytes, dot segments included: this runs on every request.
    let is_dot_segment = |s: &[u8]| s == b"." || s == b"..";
    let mut i = 0;
    let mut segment = 0;
    let mut decoded_high = false;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let d = hex_byte(b.get(i + 1..i + 3)).ok_or(Deny::InvalidPath)?;
                if d < 0x20 || d == 0x7f || is_unreserved(d) || matches!(d, b'/' | b'\\' | b';' | b'%' | b'?' | b'#') {
                    return Err(Deny::InvalidPath);
                }
                decoded_high |= d >= 0x80;
                i += 3;
            }
            b'/' => {
                if b.get(i + 1) == Some(&b'/') || b.get(segment..i).is_some_and(is_dot_segment) {
                    return Err(Deny::InvalidPath);
                }
                i += 1;
                segment = i;
            }
            b'\\' | b';' | b'#' => return Err(Deny::InvalidPath),
            0x21..=0x7e => i += 1,
            _ => return Err(Deny::InvalidPath),
        }
    }
    if b.get(segment..).is_some_and(is_dot_segment) {
        return Err(Deny::InvalidPath);
    }
    if decoded_high {
        check_decoded_text(b)?;
    }
    Ok(path)
}

/// The bytes that `%XX` escapes stand for must be UTF-8 without
/// characters that fold into ASCII (see [`judge_path`]).
fn check_decoded_text(b: &[u8]) -> Result<(), Deny> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(hex_byte(b.get(i + 1..i + 3)).ok_or(Deny::InvalidPath)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let text = std::str::from_utf8(&out).map_err(|_| Deny::InvalidPath)?;
    if text.chars().any(|c| !c.is_ascii() && folds_to_ascii(c)) {
        return Err(Deny::InvalidPath);
    }
    Ok(())
}

/// Non-ASCII characters that some reader takes for ASCII: those whose
/// NFKC form holds an ASCII character (fullwidth `ａ`, `ª`, `ﬁ`, `︰` for
/// `..`, `℀` for `a/c`…), and those whose Unicode case mapping is ASCII
/// (`ſ`, `K` Kelvin, `İ`, `ı`). Letters that merely carry an accent (`é`)
/// stay themselves under NFKC and pass, and so does `ß`.
fn folds_to_ascii(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let mut upper = c.to_uppercase();
    // A one-to-many upper case (`ß` → `SS`) is not what case-insensitive
    // matchers compare: they fold one character to one.
    let upper_ascii = matches!((upper.next(), upper.next()), (Some(u), None) if u.is_ascii());
    std::iter::once(c).nfkc().any(|d| d.is_ascii()) || c.to_lowercase().any(|d| d.is_ascii()) || upper_ascii
}

fn hex_byte(h: Option<&[u8]>) -> Option<u8> {
    let &[hi, lo] = h? else { return None };
    let digit = |c: u8| (c as char).to_digit(16);
    u8::try_from(digit(hi)? * 16 + digit(lo)?).ok()
}

/// RFC 3986 `unreserved`.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(n: usize) -> CheckRequest {
        use envoy_types::pb::envoy::service::auth::v3::attribute_context::Request;
        use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
        let headers = (0..n).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/x".into(),
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_the_routes_context_extension_names_the_policy() {
        let mut req = with_headers(0);
        let attributes = req.attributes.as_mut().expect("attributes");
        if let Some(http) = attributes.request.as_mut().and_then(|r| r.http.as_mut()) {
            // What a client can send under that name is not read.
            http.path = "/x?portcullis_policy=open".into();
            for name in ["portcullis_policy", "portcullis-policy", "x-portcullis-policy"] {
                http.headers.insert(name.into(), "open".into());
            }
        }
        attributes.context_extensions.insert("tenant".into(), "a".into());
        assert_eq!(RequestView::new(&req).map(|v| v.policy), Ok(None));
        let set = |req: &mut CheckRequest, value: &str| {
            if let Some(a) = req.attributes.as_mut() {
                a.context_extensions.insert(POLICY_EXTENSION.into(), value.into());
            }
        };
        set(&mut req, "admins-only");
        assert_eq!(RequestView::new(&req).map(|v| v.policy), Ok(Some("admins-only")));
        // Empty is passed on as empty: the policy lookup refuses it.
        set(&mut req, "");
        assert_eq!(RequestView::new(&req).map(|v| v.policy), Ok(Some("")));
    }

    #[test]
    fn a_misspelled_policy_key_is_refused_not_left_to_the_path_rules() {
        for key in [
            "portcullis-policy",
            "Portcullis_Policy",
            "portcullisPolicy",
            "PORTCULLIS.policy",
        ] {
            let mut req = with_headers(0);
            let a = req.attributes.as_mut().expect("attributes");
            a.context_extensions.insert(key.into(), "admins-only".into());
            assert_eq!(RequestView::new(&req).map(|v| v.policy), Ok(Some("")), "{key}");
            // Beside the right key too: which one was meant is not guessed.
            let a = req.attributes.as_mut().expect("attributes");
            a.context_extensions
                .insert(POLICY_EXTENSION.into(), "admins-only".into());
            assert_eq!(RequestView::new(&req).map(|v| v.policy), Ok(Some("")), "{key}");
        }
    }

    #[test]
    fn the_principal_is_the_peer_envoy_verified_never_a_header() {
        use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
        let mut req = with_headers(0);
        let attributes = req.attributes.as_mut().expect("attributes");
        if let Some(http) = attributes.request.as_mut().and_then(|r| r.http.as_mut()) {
            http.headers.insert(
                "x-forwarded-client-cert".into(),
                "By=spiffe://a;URI=spiffe://cluster.local/ns/ci/sa/deployer".into(),
            );
        }
        assert_eq!(RequestView::new(&req).map(|v| v.principal), Ok(None));
        let set = |req: &mut CheckRequest, principal: &str| {
            if let Some(a) = req.attributes.as_mut() {
                a.source = Some(Peer {
                    principal: principal.into(),
                    ..Default::default()
                });
            }
        };
        // A TLS connection without a client certificate: Envoy sends "".
        set(&mut req, "");
        assert_eq!(RequestView::new(&req).map(|v| v.principal), Ok(None));
        set(&mut req, "spiffe://cluster.local/ns/ci/sa/deployer");
        assert_eq!(
            RequestView::new(&req).map(|v| v.principal),
            Ok(Some("spiffe://cluster.local/ns/ci/sa/deployer"))
        );
        // Not a header value: refused, not matched or injected.
        set(&mut req, "spiffe://a/b\r\nx-user-id: admin");
        assert_eq!(
            RequestView::new(&req).map(|v| v.principal).err(),
            Some(Deny::PrincipalNotAllowed)
        );
    }

    #[test]
    fn a_raw_header_that_is_not_utf8_is_reported_not_silently_skipped() {
        use envoy_types::pb::envoy::config::core::v3::HeaderMap;
        let mut req = with_headers(0);
        let http = req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .expect("http");
        let header = |key: &str, raw: &[u8]| HeaderValue {
            key: key.into(),
            raw_value: raw.to_vec(),
            ..Default::default()
        };
        http.header_map = Some(HeaderMap {
            headers: vec![
                header("cookie", b"a=1"),
                header("cookie", b"lang=fr\xe9; __Host-portcullis=s"),
            ],
        });
        let view = RequestView::new(&req).expect("view");
        assert_eq!(view.header_values("cookie").collect::<Vec<_>>(), ["a=1"]);
        assert!(
            view.has_unreadable("cookie"),
            "the stripper must know a cookie header went unread"
        );
        assert!(!view.has_unreadable("accept"));
    }

    #[test]
    fn small_and_large_merged_maps_find_the_same_headers() {
        for n in [0, 1, SCAN_MAX - 1, SCAN_MAX, SCAN_MAX + 1, 3 * SCAN_MAX] {
            let req = with_headers(n);
            let view = RequestView::new(&req).expect("view");
            for i in 0..n + 2 {
                let name = format!("x-h{i}");
                let want = if i < n { Single::One("v") } else { Single::Absent };
                assert_eq!(view.single(&name), want, "{n} headers, {name}");
                assert_eq!(view.header(&name), (i < n).then_some("v"), "{n} headers, {name}");
            }
            assert_eq!(view.single("x-h"), Single::Absent);
        }
    }

    #[test]
    fn header_count_is_capped_before_anything_reads_them() {
        assert!(RequestView::new(&with_headers(MAX_HEADERS)).is_ok());
        assert_eq!(
            RequestView::new(&with_headers(MAX_HEADERS + 1)).map(|v| v.path),
            Err(Deny::TooManyHeaders)
        );
    }

    #[test]
    fn plain_paths_are_judged_as_sent() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/admin?x=/public", "/admin"),
            ("/admin?a=..;/b&c=%2f", "/admin"),
            ("/", "/"),
            ("/a.b/c..d/.e/f.", "/a.b/c..d/.e/f."),
            ("/my%20docs/caf%C3%A9", "/my%20docs/caf%C3%A9"),
            ("/%E6%97%A5%E6%9C%AC/%C3%BC%C3%9F", "/%E6%97%A5%E6%9C%AC/%C3%BC%C3%9F"),
            ("/a%2Bb/%40me/%3a", "/a%2Bb/%40me/%3a"),
            ("/~user/x-y_z", "/~user/x-y_z"),
        ] {
            assert_eq!(judge_path(raw), Ok(want), "{raw}");
        }
    }

    /// `judge_path` as it was written before it became one pass: the
    /// reference the single pass must agree with on every input.
    fn judge_path_reference(raw: &str) -> Result<&str, Deny> {
        let path = raw.split_once('?').map_or(raw, |(p, _)| p);
        let b = path.as_bytes();
        if b.first() != Some(&b'/') {
            return Err(Deny::InvalidPath);
        }
        let mut i = 0;
        let mut decoded_high = false;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    let d = hex_byte(b.get(i + 1..i + 3)).ok_or(Deny::InvalidPath)?;
                    if d < 0x20
                        || d == 0x7f
                        || is_unreserved(d)
                        || matches!(d, b'/' | b'\\' | b';' | b'%' | b'?' | b'#')
                    {
                        return Err(Deny::InvalidPath);
                    }
                    decoded_high |= d >= 0x80;
                    i += 3;
                }
                b'/' if b.get(i + 1) == Some(&b'/') => return Err(Deny::InvalidPath),
                b'\\' | b';' | b'#' => return Err(Deny::InvalidPath),
                0x21..=0x7e => i += 1,
                _ => return Err(Deny::InvalidPath),
            }
        }
        if path.split('/').any(|s| s == "." || s == "..") {
            return Err(Deny::InvalidPath);
        }
        if decoded_high {
            check_decoded_text(b)?;
        }
        Ok(path)
    }

    #[test]
    fn the_single_pass_judges_every_short_path_as_the_reference() {
        const ALPHABET: &[&str] = &["/", ".", "a", "?", "%2e", "%2f", "%c3%a9", "%", ";", " ", "é"];
        let mut paths = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..5 {
            layer = layer
                .iter()
                .flat_map(|p| ALPHABET.iter().map(move |a| format!("{p}{a}")))
                .collect();
            paths.extend(layer.iter().cloned());
        }
        for path in &paths {
            assert_eq!(judge_path(path), judge_path_reference(path), "{path:?}");
        }
    }

    #[test]
    fn paths_readers_disagree_on_are_refused() {
        for raw in [
            // Path parameters and what servlet containers make of them.
            "/admin/..;/users",
            "/admin/..%3Bx/users",
            "/admin/..%3b/users",
            "/admin;jsessionid=1/x",
            "/public/..;/admin",
            // Dot segments and doubled slashes Envoy would have removed.
            "/public/../admin",
            "/./admin",
            "/admin/.",
            "/..",
            "//admin",
            "/admin//x",
            // Encoded unreserved characters and delimiters.
            "/%61dmin",
            "/%2e%2e/admin",
            "/admin/%2E",
            "/admin%2fx",
            "/admin%2Fx",
            "/admin%5cx",
            "/%25",
            "/a%3f",
            "/a%23",
            "/%7euser",
            // Bad escapes, controls, raw non-ASCII, fragments, backslashes.
            "/%zz",
            "/%",
            "/%a",
            "/%0a",
            "/%7f",
            "/a\\b",
            "/a#b",
            "/a b",
            "/a\u{e9}",
            // Escapes that are not UTF-8 or fold into ASCII.
            "/public/%c0%ae%c0%ae/admin",
            "/a%ff",
            "/%EF%BC%8Fadmin",
            "/adm%C4%B1n",
            "/%E2%80%A5/admin",
            "/%C2%AAdmin",
            "/%F0%9D%90%9Admin",
            "/%EF%AC%81le",
            "/%E2%84%80",
            "/public/%EF%B8%B0/admin",
            "/%E1%B4%ACdmin",
            "/%E2%84%AAey",
            "/%C5%BFecret",
            // Not an origin-form path.
            "*",
            "http://x/admin",
            "",
            "?x",
        ] {
            assert_eq!(judge_path(raw), Err(Deny::InvalidPath), "{raw:?}");
        }
    }
}
