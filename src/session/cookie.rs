//! Sealed cookies: XChaCha20-Poly1305 with random 192-bit nonces (safe to
//! draw at random for any number of cookies), keyed by the first configured
//! key; every configured key is tried to open, so keys rotate without
//! logging anyone out. The cookie name and its purpose are the associated
//! data: a value cannot be moved to another cookie (a login-state cookie is
//! never a session).
//!
//! Wire format: base64url (no padding) of `version(1) ‖ nonce(24) ‖ ciphertext ‖ tag(16)`.
//! Size: sessions are kept small (claims needed for the headers, the
//! refresh token, the ID token for logout) and never split into chunks; see
//! [`MAX_COOKIE_BYTES`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::sessions::KEY_BYTES;
use crate::headers;

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Upper bound on a whole `Set-Cookie` value. Browsers keep at least 4096
/// bytes per cookie (name, value and attributes, RFC 6265 §6.1).
pub const MAX_COOKIE_BYTES: usize = 4000;
/// Values longer than this are refused before any decoding.
const MAX_VALUE_BYTES: usize = 8192;

/// Seals and opens cookie values.
pub struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed value")]
    Malformed,
    /// Tampered, sealed under another name or purpose, or by a key we no
    /// longer have.
    #[error("no key opens the value")]
    Unauthentic,
}

impl Sealer {
    /// The first key encrypts; all keys decrypt. `keys` must not be empty.
    pub fn new(keys: &[[u8; KEY_BYTES]]) -> Self {
        Self {
            ciphers: keys.iter().map(|k| XChaCha20Poly1305::new(k.into())).collect(),
        }
    }

    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + plaintext.len() + TAG_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        // Encryption only fails for plaintexts far beyond any cookie size.
        if let Some(cipher) = self.ciphers.first() {
            if let Ok(ct) = cipher.encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            ) {
                out.extend_from_slice(&ct);
            }
        }
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, aad: &str, value: &str) -> Result<Vec<u8>, OpenError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(OpenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(value).map_err(|_| OpenError::Malformed)?;
        if raw.len() < 1 + NONCE_BYTES + TAG_BYTES || raw[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let (nonce, ct) = raw[1..].split_at(NONCE_BYTES);
        self.ciphers
            .iter()
            .find_map(|c| {
                c.decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: aad.as_bytes(),
                    },
                )
                .ok()
            })
            .ok_or(OpenError::Unauthentic)
    }
}

/// The value of the first cookie called `name` in the `cookie` header values.
///
/// Only `;` separates cookies (RFC 6265 §5.4). Browsers accept `,` inside a
/// value, so a sibling subdomain that cannot set a `__Host-` cookie could
/// still set `x=1,__Host-portcullis=<its own session>`: splitting on `,`
/// would read that as ours (session fixation, login CSRF). Browsers send
/// one `cookie` header (HTTP/2 crumbs are rejoined with `; ` by Envoy);
/// only non-browsers send several, which Envoy's ext_authz joins with `,`
/// (indistinguishable from the attack, so not read) unless it is
/// configured with `encode_raw_headers`, where each arrives apart.
pub fn find<'a>(values: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    pairs(values)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Names of the cookies whose name starts with `prefix`.
pub fn names_with_prefix<'a>(values: impl Iterator<Item = &'a str>, prefix: &str) -> Vec<&'a str> {
    pairs(values)
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// `(name, value)` of every cookie, split on `;` only (see `find`), each
/// read by [`headers::cookie_pair`] (the stripper's reader too): only SP and
/// HTAB trimmed, token names only, compared as bytes.
fn pairs<'a>(values: impl Iterator<Item = &'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
    values.flat_map(|v| v.split(';')).filter_map(headers::cookie_pair)
}

/// `Set-Cookie` value: `Secure; HttpOnly; SameSite=Lax; Path=/`, with a
/// `Max-Age` (a session cookie of the browser when `None`).
pub fn set(name: &str, value: &str, max_age_seconds: Option<u64>) -> String {
    let mut out = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_seconds {
        out.push_str(&format!("; Max-Age={age}"));
    }
    out
}

/// `Set-Cookie` value that deletes the cookie.
pub fn clear(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_name_and_a_known_key() {
        let old = Sealer::new(&[[1; 32]]);
        let v = old.seal("session:a", b"hello");
        assert_eq!(old.open("session:a", &v).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(old.open("session:b", &v), Err(OpenError::Unauthentic));
        assert_eq!(old.open("login:a", &v), Err(OpenError::Unauthentic));
        // Rotation: a new first key, the old one still opens old cookies.
        let rotated = Sealer::new(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open("session:a", &v).as_deref(), Ok(&b"hello"[..]));
        let fresh = rotated.seal("session:a", b"x");
        assert_eq!(old.open("session:a", &fresh), Err(OpenError::Unauthentic));
        // Retired key: nothing opens.
        assert_eq!(
            Sealer::new(&[[2; 32]]).open("session:a", &v),
            Err(OpenError::Unauthentic)
        );
        // Two seals of the same plaintext differ (random nonce).
        assert_ne!(old.seal("session:a", b"hello"), v);
    }

    #[test]
    fn tampering_is_detected() {
        let s = Sealer::new(&[[9; 32]]);
        let v = s.seal("n", b"{\"user\":\"alice\"}");
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in [0, 1, 30, raw.len() - 1] {
            raw[i] ^= 1;
            let t = URL_SAFE_NO_PAD.encode(&raw);
            assert!(s.open("n", &t).is_err(), "flipped byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(s.open("n", "short"), Err(OpenError::Malformed));
        assert_eq!(s.open("n", "!!!"), Err(OpenError::Malformed));
        assert_eq!(s.open("n", &"A".repeat(9000)), Err(OpenError::Malformed));
    }

    #[test]
    fn cookie_lookup_and_attributes() {
        let h = ["a=1; __Host-p=v1; b=2", "__Host-p=v2"];
        assert_eq!(find(h.into_iter(), "__Host-p"), Some("v1"));
        assert_eq!(find(["x=1"].into_iter(), "__Host-p"), None);
        assert_eq!(find(["__Host-pp=1"].into_iter(), "__Host-p"), None);
        // Smuggled inside another cookie's value (cookie tossing).
        assert_eq!(find(["x=1,__Host-p=evil"].into_iter(), "__Host-p"), None);
        assert_eq!(
            find(["x=\"1, __Host-p=evil\"; __Host-p=v"].into_iter(), "__Host-p"),
            Some("v")
        );
        assert_eq!(
            set("n", "v", Some(60)),
            "n=v; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(clear("n").ends_with("Max-Age=0"));
    }

    /// A name that is ours only after trimming Unicode spaces or controls
    /// (cookie tossing past the `__Host-` prefix) is never read as ours.
    #[test]
    fn look_alike_names_padded_with_unicode_spaces_are_not_ours() {
        for pad in ["\u{2000}", "\u{00a0}", "\u{feff}", "\x0b", "\x0c"] {
            for h in [format!("{pad}__Host-p=evil"), format!("__Host-p{pad}=evil")] {
                assert_eq!(find([h.as_str()].into_iter(), "__Host-p"), None, "{h:?}");
                assert!(
                    names_with_prefix([h.as_str()].into_iter(), "__Host-p").is_empty(),
                    "{h:?}"
                );
                // The look-alike first does not shadow the real cookie after it.
                let both = format!("{h}; __Host-p=real");
                assert_eq!(find([both.as_str()].into_iter(), "__Host-p"), Some("real"), "{h:?}");
            }
        }
        assert_eq!(find(["\t__Host-p =  v "].into_iter(), "__Host-p"), Some("v"));
        assert_eq!(
            find(["__host-p=v"].into_iter(), "__Host-p"),
            None,
            "bytes, not case-folded"
        );
    }
}
