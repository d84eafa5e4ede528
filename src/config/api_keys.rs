//! The `api_keys:` section: where the hashed keys of machine clients are,
//! the header they may come in besides `Authorization: ApiKey`, and how
//! often the file is re-read. Only the section is checked here; the file is
//! read by `verify::apikey` (at start, every reload interval and on SIGHUP).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::headers::{is_header_name, is_reserved_header, RawHeaders};
use super::Errors;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawApiKeys {
    /// YAML or JSON file: `keys: {<id>: {sha256, user, groups, expires_at}}`.
    pub file: String,
    /// A header that carries the key alone (`x-api-key: pk_…`), besides
    /// `Authorization: ApiKey pk_…`; stripped before the upstream.
    pub header: Option<String>,
    pub reload_interval_seconds: u64,
}

impl Default for RawApiKeys {
    fn default() -> Self {
        Self {
            file: String::new(),
            header: None,
            reload_interval_seconds: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeysConfig {
    pub file: PathBuf,
    /// Lower case.
    pub header: Option<String>,
    /// A removed key stops working within this (or at once on SIGHUP).
    pub reload_interval: Duration,
}

/// The headers section with the API key header added to its strip names: a
/// credential must not reach the upstream in any case or `_` spelling (the
/// checker reads only the configured spelling, an upstream may fold `_`).
pub(super) fn strip_key_header(h: &RawHeaders, k: Option<&RawApiKeys>) -> RawHeaders {
    let mut h = h.clone();
    if let Some(name) = k.and_then(|k| k.header.as_ref()).map(|n| n.to_ascii_lowercase()) {
        // An unusable name is reported under `api_keys.header` alone.
        if is_header_name(&name) && !is_reserved_header(&name) {
            h.strip.push(name);
        }
    }
    h
}

pub(super) fn validate(k: &RawApiKeys, headers: &RawHeaders, errs: &mut Errors) -> ApiKeysConfig {
    if k.file.is_empty() {
        errs.push("api_keys.file", "must name the file of hashed keys");
    }
    // Header names are case-insensitive: any spelling is read in lower case.
    let header = k.header.as_ref().map(|h| h.to_ascii_lowercase());
    if let Some(h) = &header {
        if !is_header_name(h) || is_reserved_header(h) {
            errs.push(
                "api_keys.header",
                "must be a lower-case HTTP header name other than authorization, e.g. x-api-key",
            );
        }
    }
    if let Some(h) = &header {
        let same = |n: &str| n.replace('_', "-") == h.replace('_', "-");
        let injected = [
            &headers.user,
            &headers.email,
            &headers.groups,
            &headers.issuer,
            &headers.principal,
        ];
        if injected.iter().any(|n| same(n)) {
            // The identity injected under that name would be stripped as the credential.
            errs.push(
                "api_keys.header",
                "must not be one of the injected identity headers (headers.*)",
            );
        }
    }
    if k.reload_interval_seconds == 0 || k.reload_interval_seconds > 3600 {
        errs.push("api_keys.reload_interval_seconds", "must be between 1 and 3600");
    }
    ApiKeysConfig {
        file: PathBuf::from(&k.file),
        header,
        reload_interval: Duration::from_secs(k.reload_interval_seconds),
    }
}
