//! The `groups:` block of an OIDC provider and of a plain OAuth2 provider:
//! which groups are kept, and the byte budget of what is left (see
//! `crate::groups`, which it compiles into).

use regex::RegexBuilder;
use serde::Deserialize;

use super::Errors;
use crate::groups::{GroupFilter, OverBudget, DEFAULT_MAX_BYTES};

/// A `keep_regex` compiles to at most this much: a pattern is config, but
/// it is matched against every group of every token.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Envoy's default limit on all of a request's headers (60 KiB): a groups
/// header beyond it can never reach an upstream.
const MAX_BUDGET: usize = 60 * 1024;
/// One group name may be 1024 bytes (`claims.rs`); a budget below a typical
/// name only ever refuses or drops everything.
const MIN_BUDGET: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawGroups {
    /// Names to keep; a trailing `*` keeps every name with that prefix.
    pub keep: Vec<String>,
    /// Keeps the names it matches whole (anchored at both ends).
    pub keep_regex: Option<String>,
    pub max_bytes: usize,
    pub over_budget: OverBudget,
}

impl Default for RawGroups {
    fn default() -> Self {
        Self {
            keep: Vec::new(),
            keep_regex: None,
            max_bytes: DEFAULT_MAX_BYTES,
            over_budget: OverBudget::Deny,
        }
    }
}

pub(super) fn validate(path: &str, g: &RawGroups, errs: &mut Errors) -> GroupFilter {
    let mut filter = GroupFilter {
        max_bytes: g.max_bytes,
        over_budget: g.over_budget,
        ..GroupFilter::default()
    };
    for (i, k) in g.keep.iter().enumerate() {
        let (name, prefix) = match k.strip_suffix('*') {
            Some(p) => (p, true),
            None => (k.as_str(), false),
        };
        // The same rules as a group name a token may carry (claims.rs):
        // anything else could never match.
        let edges_ok = !name.starts_with(char::is_whitespace) && !name.ends_with(char::is_whitespace);
        if (name.is_empty() && !prefix) || name.contains([',', '*']) || name.chars().any(char::is_control) || !edges_ok
        {
            errs.push(
                format!("{path}.keep[{i}]"),
                "a group name (no ',', no surrounding spaces), or a prefix ending in a single '*'",
            );
        } else if prefix {
            filter.prefixes.push(name.to_string());
        } else {
            filter.exact.push(name.to_string());
        }
    }
    if let Some(re) = &g.keep_regex {
        // Anchored: `app-` must not keep `my-app-admins`.
        match RegexBuilder::new(&format!("^(?:{re})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) if !re.is_empty() => filter.regex = Some(r),
            Ok(_) => errs.push(format!("{path}.keep_regex"), "must not be empty (omit it instead)"),
            Err(e) => errs.push(format!("{path}.keep_regex"), format!("not a valid regex: {e}")),
        }
    }
    if !(MIN_BUDGET..=MAX_BUDGET).contains(&g.max_bytes) {
        errs.push(
            format!("{path}.max_bytes"),
            format!("must be between {MIN_BUDGET} and {MAX_BUDGET} (Envoy's default limit on all request headers)"),
        );
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, RawConfig};

    fn errors(groups: &str) -> Vec<String> {
        let yaml = format!(
            "oidc:\n  providers:\n    - issuer: https://dex.example.com\n      audiences: [p]\n      groups: {groups}\n"
        );
        match RawConfig::from_yaml(&yaml).and_then(|r| r.validate()) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(e)) => e.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn a_valid_block_compiles() {
        assert_eq!(
            errors("{keep: [admins, \"team-*\"], keep_regex: \"app-.*\", max_bytes: 4096, over_budget: drop}"),
            Vec::<String>::new()
        );
        let yaml = "oidc:\n  providers:\n    - issuer: https://dex.example.com\n      audiences: [p]\n      \
                    groups: {keep: [admins, \"team-*\"], keep_regex: \"app-.*\", over_budget: drop}\n";
        let c = RawConfig::from_yaml(yaml).unwrap().validate().unwrap();
        let g = &c.oidc.providers[0].groups;
        assert_eq!(
            (&g.exact[..], &g.prefixes[..]),
            (&["admins".to_string()][..], &["team-".to_string()][..])
        );
        assert_eq!((g.max_bytes, g.over_budget), (DEFAULT_MAX_BYTES, OverBudget::Drop));
        assert!(g.keeps("app-x") && !g.keeps("my-app-x"), "anchored");
    }

    #[test]
    fn bad_blocks_are_refused_with_their_path() {
        let p = "oidc.providers[0].groups";
        for (block, path) in [
            ("{keep: [\"a,b\"]}", format!("{p}.keep[0]")),
            ("{keep: [ok, \"a*b*\"]}", format!("{p}.keep[1]")),
            ("{keep: [\"\"]}", format!("{p}.keep[0]")),
            ("{keep: [\" admins\"]}", format!("{p}.keep[0]")),
            ("{keep_regex: \"app-(\"}", format!("{p}.keep_regex")),
            ("{keep_regex: \"\"}", format!("{p}.keep_regex")),
            ("{keep_regex: \"(a{1000}){1000}\"}", format!("{p}.keep_regex")),
            ("{max_bytes: 10}", format!("{p}.max_bytes")),
            ("{max_bytes: 70000}", format!("{p}.max_bytes")),
        ] {
            let errs = errors(block);
            assert!(
                errs.len() == 1 && errs[0].starts_with(&format!("{path}:")),
                "{block}: {errs:?}"
            );
        }
        let errs = errors("{over_budget: truncate}");
        assert!(errs.len() == 1 && errs[0].contains("truncate"), "{errs:?}");
    }
}
