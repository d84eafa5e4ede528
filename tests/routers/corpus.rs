//! The generated corpus of request targets for `tests/path_differential.rs`.
//!
//! Deterministic (no randomness): bases (`/admin`, `/Admin`, `/ADMIN`,
//! `/admin/users`, `/public`, `/`) crossed with the mutations path judges
//! and routers disagree on — dot segments in every position, `;` parameters,
//! upper- and lower-hex percent-encodings of `/ \ . ; %` and of the letters
//! of "admin", doubled slashes, mixed case, trailing dots and spaces,
//! overlong UTF-8, non-ASCII (encoded and raw), backslashes, `?`/`#`.
//! Targets are bytes: some are deliberately not UTF-8.

use std::collections::HashSet;

/// Spellings of the protected segment "admin" that some router may still
/// route to its admin handler.
fn admin_spellings() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    // Every ASCII case variant (Express routes case-insensitively).
    for mask in 0u32..32 {
        let s: String = "admin"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        out.push(s.into_bytes());
    }
    // One letter percent-encoded, lower and upper hex (only m and n differ).
    for (i, c) in "admin".bytes().enumerate() {
        for hex in [format!("%{c:02x}"), format!("%{c:02X}")] {
            let mut s = b"admin".to_vec();
            s.splice(i..=i, hex.into_bytes());
            out.push(s);
        }
    }
    for s in [
        // Whole segment encoded; upper-case letters encoded.
        "%61%64%6d%69%6e",
        "%61%64%6D%69%6E",
        "%41dmin",
        "%41%44%4D%49%4E",
        // Double encoding (`%25` is `%`).
        "%2561dmin",
        "adm%2569n",
        "%2561%2564%256d%2569%256e",
        // Trailing dots, spaces, controls, tilde.
        "admin.",
        "admin..",
        "admin%2e",
        "admin%2E",
        "admin%20",
        "admin%20%20",
        "admin%09",
        "admin%00",
        "admin%0a",
        "admin%0d%0a",
        "admin~",
        "admin%7e",
        // Segment parameters, raw and encoded.
        "admin;",
        "admin;x",
        "admin;x=1",
        "admin%3b",
        "admin%3B",
        "admin%3bx",
        "admin%3Bx",
        "admin%253b",
        // Non-ASCII, encoded: é suffix, dotless ı, zero-width space,
        // fullwidth ａ, overlong `a`, combining acute.
        "admin%c3%a9",
        "admin%C3%A9",
        "adm%c4%b1n",
        "%e2%80%8badmin",
        "admin%e2%80%8b",
        "%ef%bd%81dmin",
        "%c1%a1dmin",
        "admi%cc%81n",
        // The same non-ASCII letters as raw UTF-8 bytes.
        "adminé",
        "admın",
        "\u{200b}admin",
        "ａdmin",
        "ADMİN",
    ] {
        out.push(s.as_bytes().to_vec());
    }
    // Raw bytes that are not UTF-8: overlong `a`, a lone continuation byte.
    out.push(b"\xc1\xa1dmin".to_vec());
    out.push(b"admin\x80".to_vec());
    out
}

/// Segments that look like `.` or `..` to someone: raw, with parameters,
/// percent-encoded (both hex cases, doubled), overlong UTF-8, padded.
const DOTS: &[&str] = &[
    ".",
    "..",
    "...",
    ".;",
    "..;",
    "..;x",
    "..;x=1",
    ";",
    ";x",
    ".%3b",
    "..%3b",
    "..%3B",
    "..%3bx",
    "..%3Bx",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2E",
    "%2e%2E",
    ".%2e",
    "%2e.",
    "%2e%2e;",
    "%2e%2e%3b",
    "%252e%252e",
    "%252e%252e;",
    "%c0%ae",
    "%c0%ae%c0%ae",
    "%C0%AE%C0%AE",
    "%e0%80%ae%e0%80%ae",
    "..%00",
    "..%20",
    "%20..",
    "..%09",
    "..%2f",
    "..%5c",
    "..\\",
    "..%c0%af",
];

/// What can stand between `admin` and `users` instead of `/`.
const SEPARATORS: &[&str] = &[
    "/",
    "//",
    "///",
    "%2f",
    "%2F",
    "/%2f",
    "%252f",
    "\\",
    "%5c",
    "%5C",
    "\\\\",
    "%255c",
    "/./",
    "/.//",
    "/%2e/",
    ";/",
    ";x/",
    "%3b/",
    "%3B/",
    "/;/",
    "/;x/",
    "/..;/",
    "%c0%af",
    "%C0%AF",
    "%c1%9c",
    "%e0%80%af",
    "%ef%bc%8f",
    "\\..\\",
    "/..\\",
    "\\../",
    "%5c..%5c",
    "/%2e%2e%5c",
    "?/",
    "#/",
    "%3f/",
    "%23/",
];

/// What can come before `admin` instead of the single leading `/`.
const LEADS: &[&str] = &[
    "//",
    "///",
    "/./",
    "/../",
    "/.;/",
    "/;/",
    "/;x/",
    "/%2e/",
    "/%2e%2e/",
    "%2f",
    "/%2f",
    "\\",
    "/\\",
    "%5c",
    "/%5c",
    "/public/../",
    "/public/..;/",
    "/public/%2e%2e/",
    "/public%2f..%2f",
    "/public/%2e%2e%2f",
    "/public/..%2f",
    "/public\\..\\",
    "/public/%c0%ae%c0%ae/",
    "/public/%c0%ae%c0%ae%c0%af",
    "/users/../../",
];

/// Pushes `t` unless already present (keeps the first occurrence's order).
struct Corpus {
    seen: HashSet<Vec<u8>>,
    list: Vec<Vec<u8>>,
}

impl Corpus {
    fn add(&mut self, parts: &[&[u8]]) {
        let t = parts.concat();
        if self.seen.insert(t.clone()) {
            self.list.push(t);
        }
    }
}

/// Every request target of the corpus, in a fixed order, without repeats.
pub fn corpus() -> Vec<Vec<u8>> {
    let mut c = Corpus {
        seen: HashSet::new(),
        list: Vec::new(),
    };

    // Plain bases and the open side of the rules.
    for base in [
        "/admin",
        "/Admin",
        "/ADMIN",
        "/admin/users",
        "/public",
        "/",
        "/public/",
        "/users",
    ] {
        c.add(&[base.as_bytes()]);
    }

    // Each spelling of the protected segment, alone, as a directory, above a resource.
    for a in admin_spellings() {
        for tail in ["", "/", "/users"] {
            c.add(&[b"/", &a, tail.as_bytes()]);
        }
    }

    // Dot-like segments in every position around the protected segment
    // (the other case variants of the bases: inside it only).
    for d in DOTS {
        let d = d.as_bytes();
        c.add(&[b"/admin/", d, b"/users"]);
        c.add(&[b"/admin/", d]);
        c.add(&[b"/admin/", d, b"/"]);
        c.add(&[b"/Admin/", d, b"/users"]);
        c.add(&[b"/ADMIN/", d, b"/users"]);
        c.add(&[b"/", d, b"/admin/users"]);
        c.add(&[b"/", d, b"/admin"]);
        c.add(&[b"/public/", d, b"/admin/users"]);
        c.add(&[b"/admin/users/", d]);
        c.add(&[b"/admin/users/", d, b"/", d, b"/users"]);
        c.add(&[b"/", d]);
    }

    // Other separators between the protected segment and the resource.
    for s in SEPARATORS {
        c.add(&[b"/admin", s.as_bytes(), b"users"]);
        c.add(&[b"/Admin", s.as_bytes(), b"users"]);
        c.add(&[b"/public", s.as_bytes(), b"admin"]);
    }
    // Other ways to lead into the protected segment.
    for l in LEADS {
        c.add(&[l.as_bytes(), b"admin/users"]);
        c.add(&[l.as_bytes(), b"admin"]);
        c.add(&[l.as_bytes(), b"Admin/users"]);
    }

    // Raw bytes in dot segments and separators that are not UTF-8.
    for raw in [
        &b"/admin/\xc0\xae\xc0\xae/users"[..],
        b"/admin\xc0\xafusers",
        b"/public/\xc0\xae\xc0\xae/admin/users",
        b"/admin/..\xc0\xaf/users",
        b"/admin\xe2\x80\x8b/users",
        b"/admin/\xff/users",
    ] {
        c.add(&[raw]);
    }

    // Query strings and fragments (which the judged path must not include).
    for t in [
        "/admin?x=1",
        "/admin/?",
        "/public?/admin",
        "/public?x=/../admin",
        "/public?..;/admin",
        "/public#/../admin",
        "/admin#x",
        "/public/..;/admin?x",
        "/public%3f/../admin",
        "/public%23/../admin",
        "/admin%3fx",
        "/admin%23x",
    ] {
        c.add(&[t.as_bytes()]);
    }

    // Absolute form (RFC 9112 §3.2.2), which proxies must accept.
    for t in [
        "http://127.0.0.1/admin/..;/users",
        "http://127.0.0.1/public/../admin/users",
        "http://127.0.0.1/Admin/users",
    ] {
        c.add(&[t.as_bytes()]);
    }

    c.list
}

/// A target for humans: printable ASCII as is, every other byte as `\xNN`.
pub fn show(target: &[u8]) -> String {
    let mut s = String::with_capacity(target.len());
    for &b in target {
        if (0x21..0x7f).contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}
