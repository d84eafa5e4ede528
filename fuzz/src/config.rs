//! `config`: YAML → `RawConfig::from_yaml` → `validate`.
//!
//! Input: YAML text (the corpus holds the shipped and example configs).
//!
//! Invariants: never panics; parsing fails only as `ConfigError::Parse`
//! with a message; `validate` returns a `Config` or `ConfigError::Invalid`
//! with at least one error, each naming a field path and a message (it
//! reads no file, so never `Read`); validating twice gives the same answer;
//! a valid config's policy decides `/` and its header policy strips the
//! built-in spoofable names.

use portcullis::config::{ConfigError, RawConfig};
use portcullis::headers::BUILTIN_STRIP;

use crate::ensure;

pub fn check(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let raw = match RawConfig::from_yaml(text) {
        Ok(raw) => raw,
        Err(ConfigError::Parse(msg)) => return ensure(!msg.is_empty(), || "empty parse error".into()),
        Err(e) => return Err(format!("from_yaml failed with {e:?}, not Parse")),
    };
    let first = raw.validate();
    let again = raw.validate();
    match (&first, &again) {
        (Err(ConfigError::Invalid(a)), Err(ConfigError::Invalid(b))) => {
            ensure(!a.is_empty(), || "Invalid with no field error".into())?;
            for e in a {
                ensure(!e.path.is_empty() && !e.message.is_empty(), || {
                    format!("field error without path or message: {e:?}")
                })?;
            }
            ensure(a == b, || format!("validate is not deterministic: {a:?} then {b:?}"))
        }
        (Ok(config), Ok(_)) => {
            // `/` starts every judged path: with rules it must be decided or
            // explicitly unmatched, never a panic.
            let _ = config.policy.rule_for("/");
            for entry in BUILTIN_STRIP {
                let probe = entry.strip_suffix('*').map_or(entry.to_string(), |p| format!("{p}x"));
                ensure(config.headers.is_spoofable(&probe), || {
                    format!("built-in {entry} not stripped")
                })?;
            }
            Ok(())
        }
        (a, b) => Err(format!("validate gave {a:?}, then {b:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_and_broken_ones_pass() {
        let example = include_str!("../../portcullis.example.yaml");
        for text in [
            example,
            "",
            "{}",
            "listen: [",
            "oidc: {providers: [{issuer: 'http://example.com', audiences: []}]}",
            "a: &a [*a]",
        ] {
            assert_eq!(check(text.as_bytes()), Ok(()), "{text:.60}");
        }
    }
}
