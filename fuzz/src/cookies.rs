//! `cookies`: the session-cookie reader (`Sessions::cookie`) and the
//! stripper (`Sessions::upstream_cookie_edit`) on arbitrary `cookie` headers.
//!
//! Input: byte 0 bit 0 picks how Envoy sends headers (joined with `,`, or
//! one raw entry per header, bytes not necessarily UTF-8), bit 1 the cookie
//! name (`__Host-portcullis` or `sid`); the rest is header values separated
//! by `\n`.
//!
//! Invariants: a session the reader finds is never passed upstream; after
//! the edit no cookie of ours is left for any reading (`;` pairs, `,` parts,
//! the reader itself); every other cookie passes byte for byte and in order;
//! `Keep` only when nothing of ours was sent, even in a header that is not
//! UTF-8; a found value is a non-empty slice of what was sent and never
//! opens as a sealed session.

use std::sync::{Arc, LazyLock};

use portcullis::config::sessions::Secret;
use portcullis::config::RawConfig;
use portcullis::headers::CookieEdit;
use portcullis::idp::IdpClient;
use portcullis::request::RequestView;
use portcullis::session::cookie::Sealer;
use portcullis::session::{login, Sessions};
use portcullis::telemetry::Metrics;

use crate::ensure;

const KEY: [u8; 32] = [3; 32];

pub struct Jar {
    pub sessions: Sessions,
    pub name: String,
    pub login_prefix: String,
}

static JARS: LazyLock<[Jar; 2]> = LazyLock::new(|| [jar(None), jar(Some("sid"))]);

/// A real `Sessions` through the config path, with an in-memory key.
pub fn jar(cookie_name: Option<&str>) -> Jar {
    let name_line = cookie_name.map(|n| format!("  cookie_name: {n}\n")).unwrap_or_default();
    let yaml = format!(
        "oidc:\n  providers:\n    - issuer: https://dex.example.com/dex\n      audiences: [portcullis]\n      \
         login: {{name: dex, client_id: web}}\nsessions:\n  keys: [{{file: /unused}}]\n  \
         public_url: https://app.example.com\n{name_line}"
    );
    let mut cfg = RawConfig::from_yaml(&yaml)
        .and_then(|r| r.validate())
        .unwrap_or_else(|e| panic!("probe config must validate: {e}"));
    let Some(mut s) = cfg.sessions.take() else {
        panic!("probe config has sessions")
    };
    s.keys = vec![Secret::with_value("k", &KEY)];
    let name = s.cookie_name.clone();
    let idp = IdpClient::new(cfg.oidc.fetch_timeout).unwrap_or_else(|e| panic!("{e}"));
    let sessions =
        Sessions::new(&s, &Arc::new(idp), Arc::new(Metrics::new())).unwrap_or_else(|e| panic!("sessions: {e}"));
    Jar {
        sessions,
        login_prefix: login::login_cookie_prefix(&name),
        name,
    }
}

impl Jar {
    /// Ours: our session name, or a login-state name (our prefix). Names
    /// with bytes outside RFC 9110 `tchar` are never cookies portcullis set
    /// (it only sets token names), so they are nobody's and pass as sent.
    pub fn ours(&self, name: &str) -> bool {
        let token = !name.is_empty() && name.bytes().all(is_tchar);
        token && (name == self.name || name.starts_with(&self.login_prefix))
    }

    fn ours_bytes(&self, name: &[u8]) -> bool {
        name == self.name.as_bytes() || name.starts_with(self.login_prefix.as_bytes())
    }
}

fn name_of(pair: &str) -> &str {
    pair.split('=').next().unwrap_or_default().trim()
}

/// What must reach the upstream: every `;` pair (trimmed of spaces and tabs)
/// verbatim, except ours; a pair holding `,` parts of which one is ours is
/// two merged headers, so its other parts pass (trimmed).
pub fn expected_upstream<'a>(jar: &Jar, values: &[&'a str]) -> (Vec<&'a str>, bool) {
    let mut kept = Vec::new();
    let mut dropped = false;
    for pair in values.iter().flat_map(|v| v.split(';')) {
        let pair = pair.trim_matches([' ', '\t']);
        if pair.is_empty() {
            continue;
        }
        if jar.ours(name_of(pair)) {
            dropped = true;
        } else if pair.split(',').any(|p| jar.ours(name_of(p))) {
            dropped = true;
            kept.extend(
                pair.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && !jar.ours(name_of(p))),
            );
        } else {
            kept.push(pair);
        }
    }
    (kept, dropped)
}

/// A header that is not UTF-8 and, read as bytes, holds a cookie of ours.
pub fn hidden_ours(jar: &Jar, sent: &[&[u8]]) -> Option<String> {
    sent.iter()
        .filter(|v| std::str::from_utf8(v).is_err())
        .find(|v| {
            v.split(|&b| b == b';' || b == b',')
                .map(|p| p.split(|&b| b == b'=').next().unwrap_or_default().trim_ascii())
                .any(|n| jar.ours_bytes(n))
        })
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub fn check(data: &[u8]) -> Result<(), String> {
    let Some(&mode) = data.first() else {
        return Ok(());
    };
    let jar = &JARS[usize::from(mode >> 1 & 1)];
    let values: Vec<&[u8]> = data[1..].split(|&b| b == b'\n').collect();
    if mode & 1 == 0 {
        let text: Vec<String> = values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        let headers: Vec<(&str, &str)> = text.iter().map(|v| ("cookie", v.as_str())).collect();
        let sent: Vec<&[u8]> = text.iter().map(|v| v.as_bytes()).collect();
        check_request(jar, &crate::request::merged("/", &headers), &sent)
    } else {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("cookie", *v)).collect();
        check_request(jar, &crate::request::raw("/", &headers), &values)
    }
}

pub fn check_request(
    jar: &Jar,
    req: &envoy_types::ext_authz::v3::pb::CheckRequest,
    sent: &[&[u8]],
) -> Result<(), String> {
    let view = match RequestView::new(req) {
        Ok(view) => view,
        // Past the request's header-count limit nothing reads the headers.
        Err(_) if crate::request::count(req) > crate::request::FEW_HEADERS => return Ok(()),
        Err(d) => return Err(format!("probe request refused: {d:?}")),
    };
    let found = jar.sessions.cookie(&view);
    let edit = jar.sessions.upstream_cookie_edit(&view);
    // A header the parsers cannot read (not UTF-8) may hide ours: the whole
    // `cookie` header is dropped, whatever else it held (fail closed).
    if sent.iter().any(|v| std::str::from_utf8(v).is_err()) {
        return ensure(matches!(edit, CookieEdit::Remove), || {
            format!("a cookie header is not UTF-8, yet the edit is {edit:?}")
        });
    }
    let read: Vec<&str> = view.header_values("cookie").collect();
    let (expected, dropped) = expected_upstream(jar, &read);
    let upstream: Vec<&str> = match &edit {
        CookieEdit::Keep => expected.clone(),
        CookieEdit::Remove => Vec::new(),
        CookieEdit::Set(s) => s.split("; ").collect(),
    };
    ensure(upstream == expected, || {
        format!("cookies {read:?}: upstream gets {upstream:?}, expected {expected:?} ({edit:?})")
    })?;
    ensure(matches!(edit, CookieEdit::Keep) != dropped, || {
        format!("cookies {read:?}: {edit:?}, yet something of ours was sent: {dropped}")
    })?;
    for c in &upstream {
        ensure(!c.split(',').any(|p| jar.ours(name_of(p))), || {
            format!("cookies {read:?}: ours passes upstream in {c:?}")
        })?;
    }
    if let Some(v) = found {
        ensure(!v.is_empty() && read.iter().any(|r| r.contains(v)), || {
            format!("reader found {v:?}, not a non-empty part of {read:?}")
        })?;
        ensure(!matches!(edit, CookieEdit::Keep), || {
            format!("session {v:?} read, yet kept for upstream")
        })?;
        let aad = format!("session:{}", jar.name);
        ensure(Sealer::new(&[KEY]).open(&aad, v).is_err(), || {
            format!("{v:?} opened as a session")
        })?;
        // The reader, run on what the upstream gets, finds nothing.
        let joined = upstream.join("; ");
        let after = crate::request::merged("/", &[("cookie", joined.as_str())]);
        let after = RequestView::new(&after).map_err(|d| format!("{d:?}"))?;
        ensure(jar.sessions.cookie(&after).is_none(), || {
            format!("the reader still finds ours in {joined:?}")
        })?;
    }
    // A header the parsers skip (not UTF-8) still passes upstream on Keep:
    // it must not hold one of our cookies.
    if matches!(edit, CookieEdit::Keep) && !crate::waived("cookie-not-utf8") {
        if let Some(v) = hidden_ours(jar, sent) {
            return Err(format!(
                "cookie header {v:?} (not UTF-8) holds ours and passes upstream"
            ));
        }
    }
    Ok(())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(mode: u8, headers: &[&[u8]]) -> Vec<u8> {
        let mut d = vec![mode];
        d.extend(headers.join(&b'\n'));
        d
    }

    #[test]
    fn typical_cookie_headers_pass() {
        for mode in 0..4 {
            for h in [
                &[&b"a=1; b=2"[..]][..],
                &[b"__Host-portcullis=abc; x=\"q r\"; __Host-portcullis-login-Zz=1"],
                &[b"sid=abc;sid-login-x=2;  y=3 "],
                &[b"a=1", b"__Host-portcullis=xyz; c=3"],
                &[b"x=1,__Host-portcullis=evil; keep=me"],
                &[b"", b";;; ;", b"=", b"noequals"],
            ] {
                assert_eq!(check(&input(mode, h)), Ok(()), "mode {mode} {h:?}");
            }
        }
    }

    #[test]
    fn a_stripper_that_misses_ours_or_rewrites_others_is_caught() {
        let jar = &JARS[0];
        let read = ["a=1 ;  __Host-portcullis=s; b=\"x y\""];
        let (kept, dropped) = expected_upstream(jar, &read);
        assert!(dropped);
        assert_eq!(
            kept,
            ["a=1", "b=\"x y\""],
            "byte for byte, trimmed of the separator's spaces only"
        );
        // Keep would pass the session: the real check flags that shape.
        let req = crate::request::merged("/", &[("cookie", read[0])]);
        assert_eq!(check_request(jar, &req, &[read[0].as_bytes()]), Ok(()));
    }

    #[test]
    fn our_cookie_in_a_header_that_is_not_utf8_is_found_as_bytes() {
        let jar = &JARS[0];
        let latin1: &[u8] = b"lang=fr\xe9; __Host-portcullis=stolen";
        assert!(hidden_ours(jar, &[latin1]).is_some());
        assert!(hidden_ours(jar, &[b"x=\xe9,__Host-portcullis-login-a=1"]).is_some());
        assert!(hidden_ours(jar, &[b"lang=fr\xe9; other=1"]).is_none());
        assert!(
            hidden_ours(jar, &[b"__Host-portcullis=utf8"]).is_none(),
            "UTF-8 is the parsers' job"
        );
    }
}
