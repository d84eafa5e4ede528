//! `path`: how a request target is judged, and which rule then decides.
//!
//! The spec (what `RequestView::path` must be): the request target as Envoy
//! sent it minus the query (`?` onward), refused (`Deny::InvalidPath`) when it
//! does not start with `/` or contains `\`, `;`, `#`, `//`, a byte up to 0x20 (space),
//! 0x7f or a byte from 0x80 up, a raw `.` or `..` segment, a bad `%` escape,
//! or a `%XX` that decodes to an unreserved character (`A-Za-z0-9-._~`), to
//! one of `/ \ ; % ? #`, or to a control byte, or escapes that decode to
//! invalid UTF-8 (as the implementation does); accepted unchanged otherwise.
//! A judged path is then what the upstream will see, so a rule can only be
//! wrong if the judge and the upstream read the path differently — which is
//! exactly what the refusals rule out.

use std::sync::LazyLock;

use portcullis::deny::Deny;
use portcullis::policy::{Policy, Require, Rule};
use portcullis::request::RequestView;

use crate::ensure;

/// Which rule of the probe policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `/admin/public`: open.
    Public,
    /// `/admin`: group `admins` only.
    Admin,
    /// `/`: open.
    Root,
}

/// First match wins, so the open sub-prefix comes first. `require` only
/// tells the rules apart (the policy keeps prefixes private).
static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::new(
        vec![
            Rule::new("/admin/public", &[], &[], Require::Tenuo),
            Rule::new("/admin", &[], &["admins".into()], Require::Oidc),
            Rule::new("/", &[], &[], Require::Any),
        ],
        Require::Any,
    )
});

/// The judged path, exactly as the server computes it for a `Check`.
pub fn judge(raw: &str) -> Result<String, Deny> {
    let req = crate::request::merged(raw, &[]);
    RequestView::new(&req).map(|v| v.path.to_string())
}

/// The rule the real policy picks for a judged path (`Err(InvalidPath)`:
/// the policy refuses it, e.g. as a case variant of another rule's prefix).
pub fn rule_tag(path: &str) -> Result<Tag, Deny> {
    let rule = POLICY.rule_for(path)?;
    Ok(match rule.require() {
        Require::Tenuo => Tag::Public,
        Require::Oidc => Tag::Admin,
        // The fixture has no workload rule; `Root` keeps the match exhaustive.
        Require::Any | Require::All | Require::Workload => Tag::Root,
    })
}

/// The request target minus the query.
pub fn path_part(raw: &str) -> &str {
    raw.split('?').next().unwrap_or_default()
}

/// Why the spec refuses a path part, or `None` if it accepts it.
pub fn spec_refusal(p: &str) -> Option<&'static str> {
    let b = p.as_bytes();
    if !p.starts_with('/') {
        return Some("does not start with /");
    }
    if let Some(&c) = b.iter().find(|&&c| matches!(c, b'\\' | b';' | b'#')) {
        return Some(match c {
            b'\\' => "contains \\",
            b';' => "contains ;",
            _ => "contains #",
        });
    }
    if p.contains("//") {
        return Some("contains //");
    }
    if b.iter().any(|&c| !(0x21..0x7f).contains(&c)) {
        return Some("space, control or non-ASCII byte");
    }
    if p.split('/').any(|s| s == "." || s == "..") {
        return Some("dot segment");
    }
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Some("bad % escape");
            };
            // from_str_radix takes a leading '+': "%+1" is not an escape.
            if !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return Some("bad % escape");
            }
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                return Some("escaped unreserved char");
            }
            if matches!(v, b'/' | b'\\' | b';' | b'%' | b'?' | b'#') {
                return Some("escaped delimiter");
            }
            if v < 0x20 || v == 0x7f {
                return Some("escaped control byte");
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    // Upstreams disagree on what invalid UTF-8 means: refused too.
    if std::str::from_utf8(&decoded).is_err() {
        return Some("escapes decode to invalid UTF-8");
    }
    None
}

/// `p` is `prefix` or below it, on a segment boundary.
fn under(p: &str, prefix: &str) -> bool {
    p.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The fuzz entry point: real judge, real policy.
pub fn check(data: &[u8]) -> Result<(), String> {
    // Envoy's `path` is a protobuf string: always UTF-8.
    let Ok(raw) = std::str::from_utf8(data) else {
        return Ok(());
    };
    check_with(raw, &judge, &rule_tag)
}

/// Every invariant, for any judge and rule lookup (unit tests pass models of
/// known-bad behaviour to prove each one fires).
pub fn check_with(
    raw: &str,
    judge: &dyn Fn(&str) -> Result<String, Deny>,
    tag: &dyn Fn(&str) -> Result<Tag, Deny>,
) -> Result<(), String> {
    let p = path_part(raw);
    let out = match judge(raw) {
        Err(d) => {
            ensure(d == Deny::InvalidPath, || {
                format!("{raw:?}: refused as {d:?}, not InvalidPath")
            })?;
            // Over-refusal is a spec bug too. Lenient only for control bytes
            // in the query, which the spec does not mention.
            let query_clean = !raw[p.len()..].bytes().any(|c| c < 0x20 || c == 0x7f);
            // Escapes of non-ASCII text may also be refused: characters that
            // NFKC or Unicode case folding turn into ASCII are ambiguous too.
            let escapes_ascii = !p
                .as_bytes()
                .windows(3)
                .any(|w| w[0] == b'%' && w[1] >= b'8' && w[1].is_ascii_hexdigit());
            return match spec_refusal(p) {
                None if query_clean && escapes_ascii => Err(format!("{raw:?}: refused, but the spec accepts {p:?}")),
                _ => Ok(()),
            };
        }
        Ok(out) => out,
    };
    ensure(out == p, || {
        format!("{raw:?}: accepted as {out:?}, not unchanged as {p:?}")
    })?;
    if let Some(why) = spec_refusal(&out) {
        return Err(format!("{raw:?}: accepted {out:?}, which the spec refuses ({why})"));
    }
    ensure(judge(&out).as_deref() == Ok(out.as_str()), || {
        format!("{raw:?}: judging {out:?} again gives {:?}", judge(&out))
    })?;
    let t = match tag(&out) {
        Ok(t) => t,
        // Refused by the policy: nothing reaches the upstream.
        Err(Deny::InvalidPath) => return Ok(()),
        Err(d) => return Err(format!("{raw:?}: accepted {out:?}, then {d:?}, yet `/` is a rule")),
    };
    // The upstream serves `p`: under /admin (and not /admin/public) it is
    // the admins' area, whatever rule the judged path fell to.
    if under(p, "/admin") && !under(p, "/admin/public") {
        ensure(t == Tag::Admin, || {
            format!("{raw:?}: the upstream serves /admin, yet rule {t:?} decides (judged {out:?})")
        })?;
    }
    if under(p, "/admin/public") {
        ensure(t == Tag::Public, || {
            format!("{raw:?}: under /admin/public, yet rule {t:?}")
        })?;
    }
    // Case-insensitive upstreams read /ADMIN as /admin: such a path must be
    // refused or fall to the same rule.
    if crate::waived("path-case") {
        return Ok(());
    }
    for other in [out.to_ascii_lowercase(), out.to_ascii_uppercase()] {
        if let Ok(o) = judge(&other) {
            let u = tag(&o);
            ensure(u == Ok(t) || u == Err(Deny::InvalidPath), || {
                format!("{raw:?}: {out:?} falls to rule {t:?} but its case variant {o:?} to {u:?}")
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A judge that implements the spec.
    fn spec_judge(raw: &str) -> Result<String, Deny> {
        let p = path_part(raw);
        match spec_refusal(p) {
            None => Ok(p.to_string()),
            Some(_) => Err(Deny::InvalidPath),
        }
    }

    /// Segment-boundary prefix rules, case-insensitive (what a fix for `/ADMIN` looks like).
    fn tag_ci(p: &str) -> Result<Tag, Deny> {
        let l = p.to_ascii_lowercase();
        Ok(if under(&l, "/admin/public") {
            Tag::Public
        } else if under(&l, "/admin") {
            Tag::Admin
        } else {
            Tag::Root
        })
    }

    #[test]
    fn the_spec_model_accepts_plain_paths_and_refuses_each_listed_feature() {
        for ok in [
            "/",
            "/admin",
            "/admin/public/x",
            "/a%20b",
            "/%C3%A9",
            "/a.b/..c/...",
            "/x?q=../..;#",
        ] {
            assert_eq!(spec_refusal(path_part(ok)), None, "{ok}");
        }
        for bad in [
            "",
            "*",
            "admin",
            "http://x/admin",
            "/a\\b",
            "/a;b",
            "/a#b",
            "//admin",
            "/a//b",
            "/a\tb",
            "/a\u{7f}",
            "/é",
            "/.",
            "/./a",
            "/a/..",
            "/a/../b",
            "/%",
            "/%4",
            "/%zz",
            "/%+1",
            "/%61",
            "/%2e",
            "/%2E%2e",
            "/%7e",
            "/%A2D5",
            "/%C3",
            "/%2f",
            "/%5C",
            "/%3b",
            "/%25",
            "/%3f",
            "/%23",
            "/%00",
            "/%7f",
            "/%0a",
        ] {
            assert!(spec_refusal(path_part(bad)).is_some(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_spec_judge_with_case_insensitive_rules_breaks_no_invariant() {
        for raw in [
            "/admin/..;/users",
            "/ADMIN",
            "/Admin/Public/x",
            "/admin/publicity",
            "/admin?x=/public",
            "/%C3%A9",
            "/x/%20",
            "/admin%2f..",
            "/",
            "no-slash",
            "/a\u{1}?b",
        ] {
            assert_eq!(check_with(raw, &spec_judge, &tag_ci), Ok(()), "{raw}");
        }
    }

    /// What `normalize_path` did before the spec: resolve dot segments and
    /// `;params`, merge slashes, decode escapes (outputs from its own tests).
    fn resolving_judge(raw: &str) -> Result<String, Deny> {
        match raw {
            "/admin/..;/users" | "/admin/../users" | "/admin/%2e%2e/users" => Ok("/users".into()),
            "//admin" | "/%61dmin" | "/public/..;/admin" => Ok("/admin".into()),
            "/admin?x=/public" => Ok("/admin".into()),
            other => spec_judge(other),
        }
    }

    #[test]
    fn the_known_path_bypasses_are_violations() {
        for raw in ["/admin/..;/users", "/admin/../users", "/admin/%2e%2e/users"] {
            let err = check_with(raw, &resolving_judge, &tag_ci).expect_err(raw);
            assert!(err.contains("not unchanged"), "{raw}: {err}");
        }
        // Rule matching without segment boundaries opens /admin/publicity.
        let no_boundary = |p: &str| {
            Ok(if p.starts_with("/admin/public") {
                Tag::Public
            } else if under(p, "/admin") {
                Tag::Admin
            } else {
                Tag::Root
            })
        };
        let err = check_with("/admin/publicity", &spec_judge, &no_boundary).expect_err("boundary");
        assert!(err.contains("upstream serves /admin"), "{err}");
        // Normalising (even to the right rule) is a violation: the upstream sees other bytes.
        for raw in ["//admin", "/%61dmin", "/public/..;/admin"] {
            assert!(check_with(raw, &resolving_judge, &tag_ci).is_err(), "{raw}");
        }
        assert_eq!(check_with("/admin?x=/public", &resolving_judge, &tag_ci), Ok(()));
    }

    #[test]
    fn case_sensitive_rules_make_upper_case_paths_a_violation() {
        let tag_cs = |p: &str| {
            Ok(if under(p, "/admin/public") {
                Tag::Public
            } else if under(p, "/admin") {
                Tag::Admin
            } else {
                Tag::Root
            })
        };
        let err = check_with("/ADMIN", &spec_judge, &tag_cs).expect_err("/ADMIN");
        assert!(err.contains("case variant"), "{err}");
        assert!(
            check_with("/admin/x", &spec_judge, &tag_cs).is_err(),
            "its upper-case variant is open"
        );
        assert_eq!(check_with("/users", &spec_judge, &tag_cs), Ok(()));
    }

    #[test]
    fn a_policy_may_refuse_case_variants_but_must_decide_every_plain_path() {
        let refuse_variants = |p: &str| {
            let l = p.to_ascii_lowercase();
            if l != p && under(&l, "/admin") {
                Err(Deny::InvalidPath)
            } else {
                tag_ci(p)
            }
        };
        for raw in ["/ADMIN", "/admin/x", "/Admin/Public/x", "/users"] {
            assert_eq!(check_with(raw, &spec_judge, &refuse_variants), Ok(()), "{raw}");
        }
        let unmatched = |_: &str| Err(Deny::NoMatchingRule);
        assert!(check_with("/users", &spec_judge, &unmatched).is_err());
    }

    #[test]
    fn over_refusal_and_wrong_reasons_are_violations() {
        let refuse_all = |_: &str| Err(Deny::InvalidPath);
        assert!(check_with("/fine", &refuse_all, &tag_ci).is_err());
        assert_eq!(check_with("/a;b", &refuse_all, &tag_ci), Ok(()));
        assert_eq!(
            check_with("/a?\u{1}", &refuse_all, &tag_ci),
            Ok(()),
            "lenient on control bytes in the query"
        );
        let wrong = |_: &str| Err(Deny::NotHttp);
        assert!(check_with("/a;b", &wrong, &tag_ci).is_err());
    }
}
