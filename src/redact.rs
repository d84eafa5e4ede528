//! What `Debug` prints in place of a secret (a token, a PKCE verifier, a
//! login state): whether there is one, never any of its bytes, so a `{:?}`
//! in a log line or a panic message cannot leak it.

use std::fmt;

pub struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "<redacted>" } else { "None" })
    }
}

/// For an optional secret: `<redacted>` or `None`.
pub fn redacted(secret: Option<&str>) -> Redacted {
    Redacted(secret.is_some())
}

/// For a secret that is always there.
pub const REDACTED: Redacted = Redacted(true);
