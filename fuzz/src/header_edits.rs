//! `header_edits`: `HeaderPolicy::edits` on arbitrary request header names.
//!
//! Input: byte 0 picks a header config, byte 1 what was proven (identity,
//! email, groups, warrant, credential headers to drop), the rest is header
//! names separated by `\n`.
//!
//! Invariants: no removal names an injected header (Envoy would drop the
//! injection); every spoofable request header (any case, `_` spelling) is
//! removed or overwritten; every spoofable exact name is removed or set even
//! when the request does not carry it; `is_spoofable` agrees with a model
//! built from the documented lists; the work grows linearly with the number
//! of names ([`scaling`]).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use portcullis::config::RawConfig;
use portcullis::headers::{HeaderPolicy, BUILTIN_STRIP};
use portcullis::identity::{Identity, Source};
use portcullis::verify::warrant::Grant;

use crate::ensure;

/// `(user, email, groups, strip)`: the default, `_` spellings, prefixes
/// that cover injected names, and a strip list that repeats a builtin.
pub const CONFIGS: &[(&str, &str, &str, &[&str])] = &[
    ("x-user-id", "x-auth-request-email", "x-auth-request-groups", &[]),
    (
        "x_remote_user",
        "x-remote-email",
        "x-remote-groups",
        &["x-tenant-id", "x-internal-*"],
    ),
    ("x-auth-request-user", "x-email", "x_groups", &["x-e*", "x_g*"]),
    (
        "x-user",
        "x-user-email",
        "x-user-groups",
        &["x-user*", "x_forwarded_user", "x-tenuo-*"],
    ),
];

pub struct Case {
    pub policy: HeaderPolicy,
    /// Normalized (lower-case, `-`) exact names and prefixes, from the documented lists.
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

static CASES: LazyLock<Vec<Case>> = LazyLock::new(|| CONFIGS.iter().map(|c| case(*c)).collect());

fn normalize(n: &str) -> String {
    n.to_ascii_lowercase().replace('_', "-")
}

/// The policy through the real config path, and the model of what it strips.
pub fn case((user, email, groups, strip): (&str, &str, &str, &[&str])) -> Case {
    let yaml = format!(
        "headers: {{user: {user}, email: {email}, groups: {groups}, strip: [{}]}}\n\
         oidc: {{providers: [{{issuer: 'https://idp.example.com', audiences: [a]}}]}}\n",
        strip.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
    );
    let config = RawConfig::from_yaml(&yaml)
        .and_then(|r| r.validate())
        .unwrap_or_else(|e| panic!("probe config must validate: {e}\n{yaml}"));
    let mut exact = Vec::new();
    let mut prefixes = Vec::new();
    for n in BUILTIN_STRIP
        .iter()
        .copied()
        .chain(strip.iter().copied())
        .chain([user, email, groups])
    {
        let n = normalize(n);
        match n.strip_suffix('*') {
            Some(p) => prefixes.push(p.to_string()),
            None => exact.push(n),
        }
    }
    Case {
        policy: config.headers,
        exact,
        prefixes,
    }
}

impl Case {
    pub fn spoofable(&self, name: &str) -> bool {
        let n = normalize(name);
        self.exact.contains(&n) || self.prefixes.iter().any(|p| n.starts_with(p.as_str()))
    }
}

fn identity(email: bool, groups: bool) -> Identity {
    let id = Identity::new(
        Source::OidcUser,
        "https://idp.example.com".into(),
        "alice",
        "alice",
        SystemTime::now() + Duration::from_secs(3600),
    );
    let id = if email {
        id.with_email(Some("alice@example.com"))
    } else {
        id
    };
    if groups {
        id.with_groups(&["dev", "ops"])
    } else {
        id
    }
}

fn grant() -> Grant {
    Grant {
        warrant_id: "tnu_wrt_1".into(),
        tool: Arc::from("deploy"),
        holder: "ab12".into(),
        root_issuer: "00ff".into(),
        expires_at: 0,
    }
}

pub fn check(data: &[u8]) -> Result<(), String> {
    static SCALING: LazyLock<Result<(), String>> = LazyLock::new(scaling);
    if !crate::waived("edits-quadratic") {
        SCALING.clone()?;
    }
    let (Some(&c), Some(&flags)) = (data.first(), data.get(1)) else {
        return Ok(());
    };
    let case = &CASES[usize::from(c) % CASES.len()];
    let names: Vec<String> = data[2..]
        .split(|&b| b == b'\n')
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    check_case(case, flags, &names)
}

pub fn check_case(case: &Case, flags: u8, names: &[String]) -> Result<(), String> {
    let id = (flags & 1 != 0).then(|| identity(flags & 2 != 0, flags & 4 != 0));
    let grant = (flags & 8 != 0).then(grant);
    let also: &[&str] = if flags & 16 != 0 {
        &["x-tenuo-warrant", "x-tenuo-pop"]
    } else {
        &[]
    };
    let e = case
        .policy
        .edits(id.as_ref(), grant.as_ref(), also, names.iter().map(String::as_str));
    // The names `set` overwrites, as the response carries them.
    let set_keys: Vec<&str> = e
        .set
        .iter()
        .filter_map(|h| h.header.as_ref().map(|h| h.key.as_str()))
        .collect();
    let set = |n: &str| set_keys.iter().any(|k| k.eq_ignore_ascii_case(n));
    let removed = |n: &str| e.remove.iter().any(|r| r.eq_ignore_ascii_case(n));
    for &k in &set_keys {
        ensure(!removed(k), || {
            format!("{k:?} is injected and removed (flags {flags:#x}): {e:?}")
        })?;
    }
    for n in names {
        let model = case.spoofable(n);
        ensure(case.policy.is_spoofable(n) == model, || {
            format!("is_spoofable({n:?}) = {}, the documented lists say {model}", !model)
        })?;
        if model {
            ensure(removed(n) || set(n), || {
                format!("spoofable request header {n:?} is neither removed nor overwritten (flags {flags:#x})")
            })?;
        }
    }
    for x in &case.exact {
        ensure(removed(x) || set(x), || {
            format!("strip-list name {x:?} is neither removed nor set")
        })?;
    }
    for a in also {
        ensure(removed(a), || format!("credential header {a:?} not removed"))?;
    }
    // Removals beyond the fixed lists come from request names, once each.
    let bound = case.exact.len() + 7 + also.len() + names.len();
    ensure(e.remove.len() <= bound, || {
        format!("{} removals for {} names", e.remove.len(), names.len())
    })
}

/// Distinct spoofable names (`x-auth-request-<i>`): the worst case for any
/// de-duplication of the removal list.
fn spoof_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("x-auth-request-{i}")).collect()
}

/// Fastest of three runs: noise on a shared machine only ever adds time.
fn time(f: &dyn Fn(&[String]), names: &[String]) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f(names);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Eight times the names must cost well under 64 times the time (quadratic);
/// linear work gives about 8. A threshold of 24 leaves room for noise, and a
/// measurement over it is taken again (up to three times): other work on a
/// shared machine can slow one run, while quadratic work fails every time.
pub fn scaling_of(f: &dyn Fn(&[String])) -> Result<(), String> {
    const SMALL: usize = 500;
    const LARGE: usize = 4000;
    let (small_names, large_names) = (spoof_names(SMALL), spoof_names(LARGE));
    let mut last = Ok(());
    for _ in 0..3 {
        let small = time(f, &small_names);
        let large = time(f, &large_names);
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        last = ensure(ratio < 24.0, || {
            format!("edits: {LARGE} spoofable names took {large:?}, {SMALL} took {small:?} (x{ratio:.0}): quadratic")
        });
        if last.is_ok() {
            break;
        }
    }
    last
}

/// `scaling_of` the real `edits`.
pub fn scaling() -> Result<(), String> {
    let policy = &CASES[0].policy;
    scaling_of(&|names: &[String]| {
        std::hint::black_box(policy.edits(None, None, &[], names.iter().map(String::as_str)));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_config_validates_and_the_model_matches_the_docs() {
        let c = &CASES[1];
        for n in [
            "x_remote_user",
            "X-Remote-User",
            "x-tenant-id",
            "x-internal-a",
            "x_auth_request_x",
            "x-user-id",
        ] {
            assert!(c.spoofable(n), "{n}");
        }
        for n in ["x-tenant-ids", "accept", "x-remote", "cookie"] {
            assert!(!c.spoofable(n), "{n}");
        }
        assert_eq!(CASES.len(), CONFIGS.len());
    }

    #[test]
    fn the_real_edits_pass_on_typical_requests() {
        let names: Vec<String> = [
            "x-user-id",
            "X_User_Id",
            "x-auth-request-foo",
            "accept",
            "x-remote-user",
            "x-tenuo-tool",
        ]
        .map(String::from)
        .to_vec();
        for case in CASES.iter() {
            for flags in 0..32 {
                assert_eq!(check_case(case, flags, &names), Ok(()), "flags {flags}");
            }
        }
    }

    #[test]
    fn a_header_left_in_place_or_an_injection_removed_is_caught() {
        // A policy that strips nothing but the builtins, checked against a
        // model that also expects `x-tenant-id` gone.
        let weak = case(CONFIGS[0]);
        let model = Case {
            policy: weak.policy,
            exact: [weak.exact, vec!["x-tenant-id".into()]].concat(),
            prefixes: weak.prefixes,
        };
        let err = check_case(&model, 1, &["x-tenant-id".into()]).expect_err("left in place");
        assert!(err.contains("is_spoofable"), "{err}");
        // Configured strip entry equal to the injected user header (after
        // normalization): the real policy must still not remove the injection.
        let c = case(("x-user-id", "x-e", "x-g", &["x_user_id"]));
        assert_eq!(check_case(&c, 7, &["x-user-id".into(), "x_user_id".into()]), Ok(()));
    }

    #[test]
    fn the_scaling_check_tells_quadratic_from_linear_work() {
        // Per-name work against per-pair work.
        let linear = |names: &[String]| {
            let hits: usize = names.iter().map(|n| n.to_ascii_lowercase().len()).sum();
            std::hint::black_box(hits);
        };
        let quadratic = |names: &[String]| {
            let hits: usize = names.iter().map(|a| names.iter().filter(|b| *b == a).count()).sum();
            std::hint::black_box(hits);
        };
        assert_eq!(scaling_of(&linear), Ok(()));
        let err = scaling_of(&quadratic).expect_err("quadratic");
        assert!(err.contains("quadratic"), "{err}");
    }
}
