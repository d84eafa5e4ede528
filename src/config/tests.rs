use super::*;
use crate::deny::Deny;
use crate::policy::Rule;
use std::collections::HashMap;

const MINIMAL: &str = "
oidc:
  providers:
    - issuer: https://dex.example.com/dex
      audiences: [portcullis]
";

fn errors(yaml: &str) -> Vec<FieldError> {
    match RawConfig::from_yaml(yaml).and_then(|r| r.validate()) {
        Err(ConfigError::Invalid(e)) => e,
        other => panic!("expected field errors, got {other:?}"),
    }
}

fn paths(yaml: &str) -> Vec<String> {
    errors(yaml).into_iter().map(|e| e.path).collect()
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = RawConfig::from_yaml(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9091");
    assert_eq!(c.headers.user, "x-user-id");
    assert_eq!(c.oidc.clock_skew, Duration::from_secs(60));
    assert_eq!(c.cache.max_entries, 100_000);
    assert_eq!(c.cache.max_bytes, 32 << 20);
    assert_eq!(c.oidc.providers[0].user_claim, "sub");
    assert!(c.oidc.providers[0].client_credentials.is_none());
}

#[test]
fn example_config_in_the_repository_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/portcullis.example.yaml")).unwrap();
    RawConfig::from_yaml(&text).unwrap().validate().unwrap();
}

/// `portcullis.example.yaml` with its commented-out `tenuo:` and `api_keys:` sections switched on.
fn example_with_tenuo() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/portcullis.example.yaml")).unwrap();
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with("tenuo:")
                    || rest.starts_with("api_keys:")
                    || rest.starts_with("  ") && !rest.trim_start().starts_with('#') =>
            {
                format!("{rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn example_tenuo_section_uncommented_is_valid() {
    let c = RawConfig::from_yaml(&example_with_tenuo()).unwrap().validate().unwrap();
    let t = c.tenuo.expect("the example's tenuo section");
    assert_eq!(t.max_warrant_bytes, 16384);
    assert_eq!(t.cache_max_bytes, 16 << 20);
    assert_eq!(c.policy.rule_for("/x").unwrap().require(), Require::Any);
}

/// The example documents every key with its default: a section of it read
/// without the keys it sets to something else (`not_defaults`) must equal
/// the same section with only its `required` keys, all the rest defaulted.
fn assert_example_shows_defaults<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    name: &str,
    section: &serde_norway::Value,
    not_defaults: &[&str],
    required: &[&str],
) {
    let keep = |wanted: &dyn Fn(&str) -> bool| {
        let mut m = section
            .as_mapping()
            .unwrap_or_else(|| panic!("{name} is a mapping"))
            .clone();
        m.retain(|k, _| wanted(k.as_str().unwrap_or_default()));
        serde_norway::from_value::<T>(serde_norway::Value::Mapping(m)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let documented = keep(&|k| !not_defaults.contains(&k));
    let defaulted = keep(&|k| required.contains(&k));
    assert_eq!(
        format!("{documented:?}"),
        format!("{defaulted:?}"),
        "{name}: portcullis.example.yaml and the Default impl disagree"
    );
}

#[test]
fn example_values_are_the_defaults() {
    let example: serde_norway::Value = serde_norway::from_str(&example_with_tenuo()).unwrap();
    let provider = &example["oidc"]["providers"][0];
    let oauth2 = &example["sessions"]["oauth2_providers"][0];
    let sections = [
        "headers", "oidc", "tenuo", "rules", "policies", "cache", "sessions", "api_keys", "tracing",
    ];
    assert_example_shows_defaults::<RawConfig>("top level", &example, &sections, &[]);
    assert_example_shows_defaults::<RawHeaders>("headers", &example["headers"], &["strip"], &[]);
    assert_example_shows_defaults::<RawOidc>("oidc", &example["oidc"], &["providers"], &[]);
    assert_example_shows_defaults::<RawProvider>(
        "oidc.providers[0]",
        provider,
        &["audiences", "client_credentials", "login"],
        &["issuer"],
    );
    assert_example_shows_defaults::<RawLogin>(
        "oidc.providers[0].login",
        &provider["login"],
        &["client_secret", "scopes", "post_logout_redirect"],
        &["name", "client_id"],
    );
    assert_example_shows_defaults::<RawTenuo>(
        "tenuo",
        &example["tenuo"],
        // clock_tolerance_seconds and debug override the gateway's settings: unset by default.
        &["trusted_issuers", "gateway_config", "clock_tolerance_seconds", "debug"],
        &[],
    );
    assert_example_shows_defaults::<RawCache>("cache", &example["cache"], &[], &[]);
    assert_example_shows_defaults::<RawTracing>("tracing", &example["tracing"], &[], &[]);
    assert_example_shows_defaults::<RawApiKeys>("api_keys", &example["api_keys"], &["file", "header"], &[]);
    assert_example_shows_defaults::<RawPolicy>(
        "policies.admins-only",
        &example["policies"]["admins-only"],
        &["allowed_groups"],
        &[],
    );
    assert_example_shows_defaults::<RawSessions>(
        "sessions",
        &example["sessions"],
        &["keys", "public_url", "oauth2_providers"],
        &[],
    );
    assert_example_shows_defaults::<sessions::RawOAuth2Provider>(
        "sessions.oauth2_providers[0]",
        oauth2,
        &[],
        &["userinfo_url", "login"],
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = RawConfig::from_yaml(&format!("{MINIMAL}\nlisten_addr: x\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_addr"), "{err}");
    let nested = "oidc:\n  providers:\n    - issuer: https://a.example\n      audiences: [x]\n      audience: y\n";
    assert!(RawConfig::from_yaml(nested)
        .unwrap_err()
        .to_string()
        .contains("audience"));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let yaml = "
listen: nope
headers:
  user: X-User
  strip: ['host']
oidc:
  providers:
    - issuer: http://dex.example.com
      audiences: []
      algorithms: [HS256, XX1]
      client_credentials: { enabled: true }
rules:
  - path_prefix: admin
";
    let p = paths(yaml);
    for want in [
        "listen",
        "headers.user",
        "headers.strip[0]",
        "oidc.providers[0].issuer",
        "oidc.providers[0].audiences",
        "oidc.providers[0].algorithms[0]",
        "oidc.providers[0].algorithms[1]",
        "oidc.providers[0].client_credentials.allowed_clients",
        "rules[0].path_prefix",
    ] {
        assert!(p.iter().any(|x| x == want), "missing {want} in {p:?}");
    }
}

#[test]
fn http_issuers_only_for_loopback_and_in_cluster_hosts() {
    for ok in [
        "http://127.0.0.1:5556/dex",
        "http://localhost:8080",
        "http://[::1]:1",
        "http://dex.auth.svc.cluster.local:5556",
        "http://dex.auth.svc",
    ] {
        let y = MINIMAL.replace("https://dex.example.com/dex", ok);
        assert!(RawConfig::from_yaml(&y).unwrap().validate().is_ok(), "{ok}");
    }
    for bad in ["http://dex.example.com", "http://10.0.0.1", "ftp://127.0.0.1"] {
        let y = MINIMAL.replace("https://dex.example.com/dex", bad);
        assert_eq!(paths(&y), vec!["oidc.providers[0].issuer"], "{bad}");
    }
}

#[test]
fn env_overrides_the_user_header() {
    let mut raw = RawConfig::from_yaml(MINIMAL).unwrap();
    raw.apply_env(&HashMap::from([(ENV_USER_HEADER, "x-auth-request-user")]));
    assert_eq!(raw.validate().unwrap().headers.user, "x-auth-request-user");
}

#[test]
fn client_ids_must_differ_from_audiences() {
    let y = "oidc:\n  providers:\n    - issuer: https://a.example\n      audiences: [portcullis]\n      client_credentials: {enabled: true, allowed_clients: [portcullis]}\n";
    assert_eq!(paths(y), vec!["oidc.providers[0].client_credentials.allowed_clients"]);
}

#[test]
fn cache_byte_budgets_have_a_floor() {
    let y = format!("{MINIMAL}cache:\n  max_bytes: 1000\n  max_entries: 500\n");
    assert_eq!(paths(&y), vec!["cache.max_bytes"]);
    let ok = format!("{MINIMAL}cache:\n  max_bytes: 65536\n  max_entries: 500\n");
    let c = RawConfig::from_yaml(&ok).unwrap().validate().unwrap();
    assert_eq!((c.cache.max_bytes, c.cache.max_entries), (65536, 500));
}

#[test]
fn durations_are_bounded() {
    let y = format!("{MINIMAL}shutdown_grace_seconds: 18446744073709551615\ncache:\n  max_ttl_seconds: 100000000\n");
    assert_eq!(paths(&y), vec!["shutdown_grace_seconds", "cache.max_ttl_seconds"]);
}

const KEY_A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const KEY_B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

fn tenuo_yaml(extra: &str) -> String {
    format!("tenuo:\n  trusted_issuers: [{KEY_A}]\n  gateway_config: /etc/portcullis/gateway.yaml\n{extra}")
}

#[test]
fn tenuo_alone_is_a_complete_config_and_any_means_tenuo() {
    let c = RawConfig::from_yaml(&tenuo_yaml("rules:\n  - path_prefix: /\n"))
        .unwrap()
        .validate()
        .unwrap();
    let t = c.tenuo.expect("tenuo");
    assert_eq!(t.trusted_issuers, [KEY_A]);
    assert_eq!(t.gateway, GatewaySource::File("/etc/portcullis/gateway.yaml".into()));
    assert_eq!(t.max_chain_length, 8);
    assert_eq!(c.policy.rule_for("/x").unwrap().require(), Require::Tenuo);
    assert!(
        paths("rules: []\n").contains(&"oidc.providers".to_string()),
        "nothing configured"
    );
}

#[test]
fn trusted_issuers_come_from_env_lists_as_tenuo_users_set_them() {
    let mut raw = RawConfig::from_yaml(&tenuo_yaml("")).unwrap();
    let env: HashMap<&str, &str> = HashMap::from([
        (
            ENV_TRUSTED_ISSUERS,
            " D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A , ",
        ),
        (ENV_TENUO_TRUSTED_KEYS, KEY_B),
        (ENV_DEBUG_MODE, "true"),
    ]);
    raw.apply_env(&env);
    let t = raw.validate().unwrap().tenuo.unwrap();
    assert_eq!(t.trusted_issuers, [KEY_A, KEY_B], "deduplicated, case-insensitive");
    assert_eq!(t.debug, Some(true));
}

#[test]
fn bad_tenuo_settings_are_reported_with_their_paths() {
    let yaml = format!(
        "{MINIMAL}tenuo:\n  trusted_issuers: [abc, {KEY_A}]\n  gateway_config: a.yaml\n  gateway: {{version: '1'}}\n  max_chain_length: 0\n  reload_interval_seconds: 0\n  cache_max_bytes: 10\n"
    );
    let p = paths(&yaml);
    for want in [
        "tenuo.trusted_issuers[0]",
        "tenuo",
        "tenuo.max_chain_length",
        "tenuo.cache_max_bytes",
        "tenuo.reload_interval_seconds",
    ] {
        assert!(p.contains(&want.to_string()), "{want} missing in {p:?}");
    }
    assert!(paths(&format!("{MINIMAL}tenuo:\n  trusted_issuers: [{KEY_A}]\n")).contains(&"tenuo.gateway_config".into()));
}

#[test]
fn require_is_resolved_against_what_is_configured() {
    // OIDC only: `tenuo`/`all` cannot be satisfied.
    let p = paths(&format!(
        "{MINIMAL}rules:\n  - path_prefix: /a\n    require: tenuo\n  - path_prefix: /b\n    require: all\n"
    ));
    assert_eq!(p, ["rules[0].require", "rules[1].require"]);
    // Users and groups are OIDC facts: `tenuo` or `any` with them is refused.
    let both = format!("{MINIMAL}{}", tenuo_yaml(""));
    let p = paths(&format!("{both}rules:\n  - path_prefix: /a\n    require: tenuo\n    allowed_groups: [x]\n  - path_prefix: /b\n    require: any\n    allowed_users: [y]\n"));
    assert_eq!(p, ["rules[0].require", "rules[1].require"]);
    let c = RawConfig::from_yaml(&format!(
        "{both}rules:\n  - path_prefix: /admin\n    allowed_groups: [admins]\n  - path_prefix: /\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(c.policy.rule_for("/admin").unwrap().require(), Require::Oidc);
    assert_eq!(c.policy.rule_for("/x").unwrap().require(), Require::Any);
}

/// A minimal config with sessions; the session tests build on it too.
pub(crate) const SESSIONS: &str = "
oidc:
  providers:
    - issuer: https://dex.example.com/dex
      audiences: [portcullis]
      login: {name: dex, client_id: web}
sessions:
  keys: [{file: /k}]
  public_url: https://app.example.com
rules:
  - path_prefix: /
    login: dex
";

#[test]
fn sessions_get_documented_defaults() {
    let c = RawConfig::from_yaml(SESSIONS).unwrap().validate().unwrap();
    let s = c.sessions.unwrap();
    assert_eq!(s.cookie_name, "__Host-portcullis");
    assert_eq!(s.max_age, Duration::from_secs(8 * 3600));
    assert_eq!(s.refresh_before, Some(Duration::from_secs(60)));
    let l = &s.logins[0];
    assert_eq!(
        (l.redirect_path.as_str(), l.logout_path.as_str()),
        ("/oauth2/callback", "/oauth2/logout")
    );
    assert_eq!(l.redirect_uri.as_str(), "https://app.example.com/oauth2/callback");
    assert_eq!(l.scopes, vec!["openid", "email", "profile"]);
    assert_eq!(c.policy.rule_for("/x").ok().and_then(|r| r.login()), Some("dex"));
}

#[test]
fn session_problems_are_reported_with_their_paths() {
    let p = paths(
        "
oidc:
  providers:
    - issuer: https://dex.example.com/dex
      audiences: [portcullis]
      login: {name: dex, client_id: '', scopes: [email], redirect_path: callback, post_logout_redirect: 'http://evil.example'}
sessions:
  cookie_name: 'bad name'
  keys: [{file: /k, env: K}]
  max_age_seconds: 1
rules:
  - path_prefix: /
    login: nope
",
    );
    for want in [
        "oidc.providers[0].login.client_id",
        "oidc.providers[0].login.scopes",
        "oidc.providers[0].login.redirect_path",
        "oidc.providers[0].login.post_logout_redirect",
        "oidc.providers[0].login.public_url",
        "sessions.cookie_name",
        "sessions.keys[0]",
        "sessions.max_age_seconds",
        "rules[0].login",
    ] {
        assert!(p.contains(&want.to_string()), "{want} missing in {p:?}");
    }
    // A login block without the sessions section; an inline secret is not even YAML we accept.
    let p = paths("oidc:\n  providers:\n    - issuer: https://a.example\n      audiences: [x]\n      login: {name: a, client_id: b}\n");
    assert_eq!(p, vec!["oidc.providers[0].login"]);
    assert!(RawConfig::from_yaml(&SESSIONS.replace("{file: /k}", "s3cret")).is_err());
}

#[test]
fn secrets_are_read_from_files_and_env_with_paths_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
    let yaml = SESSIONS
        .replace("{file: /k}", &format!("{{file: {}}}, {{env: OLD_KEY}}", key.display()))
        .replace("client_id: web}", "client_id: web, client_secret: {env: WEB_SECRET}}");
    let mut c = RawConfig::from_yaml(&yaml).unwrap().validate().unwrap();
    let env = HashMap::from([("OLD_KEY", "00".repeat(32).leak() as &str), ("WEB_SECRET", "hush\n")]);
    c.resolve_secrets(&env).unwrap();
    let s = c.sessions.as_ref().unwrap();
    assert_eq!(s.keys[0].value(), Some(&b"0123456789abcdef0123456789abcdef"[..]));
    assert_eq!(s.keys[1].value(), Some(&[0u8; 32][..]));
    assert_eq!(
        s.logins[0].client_secret.as_ref().and_then(|x| x.value()),
        Some(&b"hush"[..])
    );
    let mut c = RawConfig::from_yaml(&yaml).unwrap().validate().unwrap();
    let err = c
        .resolve_secrets(&HashMap::from([("OLD_KEY", "short")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sessions.keys[1]") && err.contains("oidc.providers[0].login.client_secret"),
        "{err}"
    );
}

#[test]
fn a_login_on_a_tenuo_only_rule_is_refused() {
    let yaml = format!(
        "{}  - path_prefix: /agents\n    login: dex\n    require: tenuo\n{}",
        SESSIONS,
        tenuo_yaml("")
    );
    assert_eq!(paths(&yaml), ["rules[1].login"]);
}

#[test]
fn rule_prefixes_must_be_in_the_one_form_a_judged_path_has() {
    let yaml = |prefix: &str| format!("{MINIMAL}rules:\n  - path_prefix: '{prefix}'\n");
    for bad in [
        "admin",
        "/admin/",
        "/admin;x",
        "/adm%69n",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/..",
        "/caf\u{e9}",
        "/a b",
        "/a\\b",
        "/a?b",
    ] {
        let e = errors(&yaml(bad));
        assert_eq!(
            e.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["rules[0].path_prefix"],
            "{bad:?}: {e:?}"
        );
    }
    for good in ["/", "/admin", "/api/v1.2/x-y_z~", "/.well-known"] {
        RawConfig::from_yaml(&yaml(good))
            .and_then(|r| r.validate())
            .unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
    // check-config names the offending character.
    let e = errors(&yaml("/admin;x"));
    assert!(e[0].message.contains("';'"), "{e:?}");
}

const TWO_PROVIDERS: &str = "
oidc:
  providers:
    - issuer: https://login.example.com/tenant/v2.0
      audiences: [api]
      login: {name: entra, client_id: web}
    - issuer: https://dex.example.com/dex
      name: dex
      audiences: [api]
sessions:
  keys: [{file: /k}]
  public_url: https://app.example.com
  oauth2_providers:
    - userinfo_url: https://api.github.com/user
      login:
        name: github
        client_id: gh
        authorization_endpoint: https://github.com/login/oauth/authorize
        token_endpoint: https://github.com/login/oauth/access_token
        redirect_path: /oauth2/github/callback
        logout_path: /oauth2/github/logout
";

fn rule_of(rules: &str, path: &str) -> Rule {
    let c = RawConfig::from_yaml(&format!("{TWO_PROVIDERS}rules:\n{rules}"))
        .and_then(|r| r.validate())
        .unwrap_or_else(|e| panic!("{rules}: {e}"));
    c.policy.rule_for(path).unwrap().clone()
}

fn id(provider: &str, source: crate::identity::Source) -> crate::identity::Identity {
    let mut i = crate::identity::Identity::test("alice").with_provider(provider.into());
    i.source = source;
    i
}

#[test]
fn rules_accept_the_providers_they_name_and_sessions_only_where_asked() {
    use crate::identity::Source::{OidcUser, Session};
    // With a login: that provider's tokens and sessions, nobody else's.
    let r = rule_of("  - path_prefix: /internal\n    login: entra\n", "/internal");
    assert!(r.accepts_sessions());
    assert_eq!(r.admits(Some(&id("entra", Session))), Ok(()));
    assert_eq!(r.admits(Some(&id("entra", OidcUser))), Ok(()));
    assert_eq!(r.admits(Some(&id("github", Session))), Err(Deny::ProviderNotAllowed));
    assert_eq!(r.admits(Some(&id("dex", OidcUser))), Err(Deny::ProviderNotAllowed));
    // Without: every OIDC provider's bearer tokens, and no session cookie.
    let r = rule_of("  - path_prefix: /api\n", "/api/x");
    assert!(!r.accepts_sessions());
    assert_eq!(r.admits(Some(&id("dex", OidcUser))), Ok(()));
    assert_eq!(r.admits(Some(&id("entra", OidcUser))), Ok(()));
    assert_eq!(r.admits(Some(&id("entra", Session))), Err(Deny::ProviderNotAllowed));
    // Named by name or by issuer; sessions by explicit opt-in.
    let r = rule_of(
        "  - path_prefix: /api\n    providers: ['https://login.example.com/tenant/v2.0', github]\n    accept_sessions: true\n",
        "/api",
    );
    assert_eq!(r.admits(Some(&id("entra", OidcUser))), Ok(()));
    assert_eq!(r.admits(Some(&id("github", Session))), Ok(()));
    assert_eq!(r.admits(Some(&id("entra", Session))), Ok(()));
    assert_eq!(r.admits(Some(&id("dex", OidcUser))), Err(Deny::ProviderNotAllowed));
}

#[test]
fn provider_mistakes_are_config_errors() {
    let errs = |rules: &str| paths(&format!("{TWO_PROVIDERS}rules:\n{rules}"));
    // Users of several providers must say whose users they are.
    assert_eq!(
        errs("  - path_prefix: /\n    allowed_users: [alice]\n"),
        ["rules[0].providers"]
    );
    assert_eq!(
        errs("  - path_prefix: /\n    providers: [nope]\n"),
        ["rules[0].providers[0]"]
    );
    assert_eq!(errs("  - path_prefix: /\n    providers: []\n"), ["rules[0].providers"]);
    assert_eq!(
        errs("  - path_prefix: /\n    login: entra\n    providers: [dex]\n"),
        ["rules[0].providers"]
    );
    assert_eq!(
        errs("  - path_prefix: /\n    login: entra\n    accept_sessions: false\n"),
        ["rules[0].accept_sessions"]
    );
    assert_eq!(
        errs("  - path_prefix: /\n    providers: [dex]\n    accept_sessions: true\n"),
        ["rules[0].accept_sessions"]
    );
    // One name per provider, across OIDC and OAuth2.
    let p = paths(&TWO_PROVIDERS.replace("name: dex", "name: github"));
    assert!(p.contains(&"sessions.oauth2_providers[0].name".to_string()), "{p:?}");
    let p = paths(&TWO_PROVIDERS.replace("login: {name: entra", "name: corp\n      login: {name: entra"));
    assert_eq!(p, ["oidc.providers[0].name"]);
    // Listed users with one named provider are fine.
    rule_of(
        "  - path_prefix: /\n    providers: [dex]\n    allowed_users: [alice]\n",
        "/",
    );
}

#[test]
fn named_policies_compile_like_rules() {
    use crate::identity::Source::{OidcUser, Session};
    let c = RawConfig::from_yaml(&format!(
        "{TWO_PROVIDERS}policies:\n  web:\n    login: entra\n  api:\n    providers: [dex]\n    allowed_groups: [deployers]\n"
    ))
    .and_then(|r| r.validate())
    .unwrap();
    let web = c.policy.named("web").unwrap();
    assert_eq!(web.login(), Some("entra"));
    assert_eq!(web.admits(Some(&id("entra", Session))), Ok(()));
    assert_eq!(web.admits(Some(&id("github", Session))), Err(Deny::ProviderNotAllowed));
    let api = c.policy.named("api").unwrap();
    assert!(!api.accepts_sessions());
    assert_eq!(api.require(), Require::Oidc);
    assert_eq!(api.admits(Some(&id("entra", OidcUser))), Err(Deny::ProviderNotAllowed));
    assert_eq!(api.admits(Some(&id("dex", OidcUser))), Err(Deny::GroupNotAllowed));
    assert!(c.policy.named("nope").is_none() && c.policy.named("").is_none());
    // Without rules, a config of policies alone still opens every path to any identity.
    assert!(c.policy.rule_for("/x").is_ok());
}

#[test]
fn named_policy_problems_are_reported_with_their_paths() {
    let errs = |policies: &str| paths(&format!("{TWO_PROVIDERS}policies:\n{policies}"));
    assert_eq!(
        errs("  admins:\n    allowed_groups: [admins]\n"),
        ["policies.admins.providers"],
        "groups of which provider?"
    );
    assert_eq!(
        errs("  admins:\n    providers: [dex]\n    allowed_groups: ['']\n"),
        ["policies.admins.allowed_groups[0]"]
    );
    assert_eq!(
        errs("  admins:\n    providers: [nope]\n"),
        ["policies.admins.providers[0]"]
    );
    assert_eq!(errs("  web:\n    login: nope\n"), ["policies.web.login"]);
    assert_eq!(errs("  tools:\n    require: tenuo\n"), ["policies.tools.require"]);
    let long = "x".repeat(65);
    for bad in ["'admins only'", "'admins/only'", "''", "café", long.as_str()] {
        let p = errs(&format!("  {bad}: {{}}\n"));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(p[0].starts_with("policies."), "{bad}: {p:?}");
    }
    errs_none(&format!(
        "{TWO_PROVIDERS}policies:\n  {}: {{}}\n  A-z_0.9: {{}}\n",
        "x".repeat(64)
    ));
    // A policy has no path: the key is refused by name, like any unknown key.
    let err = RawConfig::from_yaml(&format!("{TWO_PROVIDERS}policies:\n  x:\n    path_prefix: /x\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("path_prefix"), "{err}");
    // Two policies of one name: refused, not the last one silently kept.
    let twice = format!("{TWO_PROVIDERS}policies:\n  x: {{providers: [dex]}}\n  x: {{}}\n");
    let err = RawConfig::from_yaml(&twice).unwrap_err().to_string();
    assert!(err.contains("duplicate"), "{err}");
}

fn errs_none(yaml: &str) {
    if let Err(e) = RawConfig::from_yaml(yaml).and_then(|r| r.validate()) {
        panic!("{yaml}: {e}");
    }
}

#[test]
fn allowed_principals_are_exact_or_a_trailing_star_prefix_and_workload_needs_them() {
    let yaml = |rules: &str| format!("{MINIMAL}rules:\n{rules}");
    let ok = yaml(
        "  - {path_prefix: /hooks, require: workload, allowed_principals: [\"spiffe://td/ns/ci/sa/a\", \"spiffe://td/ns/b/*\"]}\n  - {path_prefix: /, allowed_principals: [\"spiffe://td/*\"]}\n",
    );
    let c = RawConfig::from_yaml(&ok).unwrap().validate().unwrap();
    let hooks = c.policy.rule_for("/hooks").unwrap();
    assert_eq!(hooks.require(), Require::Workload);
    assert_eq!(hooks.admits_principal(Some("spiffe://td/ns/b/sa/x")), Ok(()));
    assert_eq!(hooks.admits_principal(None), Err(Deny::MissingPrincipal));
    // Without `require`: the default (oidc here) and the principal.
    assert_eq!(c.policy.rule_for("/x").unwrap().require(), Require::Oidc);
    assert_eq!(
        paths(&yaml(
            "  - {path_prefix: /a, require: workload}\n  - {path_prefix: /b, allowed_principals: [\"\", \"*\", \"spiffe://*/x\", \"a*b*\", \"spiffe://td/\\u00e9\"]}\n  - {path_prefix: /c, require: workload, login: x, allowed_principals: [p]}\n  - {path_prefix: /d, require: workload, allowed_groups: [g], allowed_principals: [p]}\n"
        )),
        [
            "rules[0].allowed_principals",
            "rules[1].allowed_principals[0]",
            "rules[1].allowed_principals[1]",
            "rules[1].allowed_principals[2]",
            "rules[1].allowed_principals[3]",
            "rules[1].allowed_principals[4]",
            "rules[2].login",
            "rules[3].require",
            // The unknown login `x`, reported with the sessions.
            "rules[2].login",
        ]
    );
    // A SPIFFE prefix must cover the whole trust domain.
    assert_eq!(
        paths(&yaml(
            "  - {path_prefix: /, allowed_principals: [\"spiffe://prod*\", \"SPIFFE://prod.example*\"]}\n"
        )),
        ["rules[0].allowed_principals[0]", "rules[0].allowed_principals[1]"]
    );
    let policies =
        format!("{MINIMAL}policies:\n  ci: {{require: workload, allowed_principals: [\"spiffe://td/ci/*\"]}}\n");
    let c = RawConfig::from_yaml(&policies).unwrap().validate().unwrap();
    let ci = c.policy.named("ci").unwrap();
    assert_eq!(
        ci.admits_principal(Some("spiffe://td/cd/x")),
        Err(Deny::PrincipalNotAllowed)
    );
}

#[test]
fn a_mesh_config_of_workload_rules_alone_needs_no_credential_source() {
    let ci = "allowed_principals: [\"spiffe://td/ns/ci/*\"]";
    let c = RawConfig::from_yaml(&format!(
        "rules:\n  - {{path_prefix: /hooks, require: workload, {ci}}}\npolicies:\n  ci: {{require: workload, {ci}}}\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(c.policy.rule_for("/hooks/x").unwrap().require(), Require::Workload);
    assert_eq!(c.policy.rule_for("/other").err(), Some(Deny::NoMatchingRule));
    // Policies alone: a route that names none has no rule (no built-in one
    // that would wait for a credential).
    let c = RawConfig::from_yaml(&format!("policies:\n  ci: {{require: workload, {ci}}}\n"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(c.policy.rule_for("/").err(), Some(Deny::NoMatchingRule));
    assert_eq!(c.policy.named("ci").map(Rule::require), Some(Require::Workload));
    // Nothing to verify on a rule that does not say `workload`, or without rules.
    for yaml in [
        format!("rules:\n  - {{path_prefix: /hooks, require: workload, {ci}}}\n  - {{path_prefix: /, {ci}}}\n"),
        format!("policies:\n  ci: {{{ci}}}\n"),
        "rules: []\n".to_string(),
    ] {
        assert_eq!(paths(&yaml), ["oidc.providers"], "{yaml}");
    }
}

#[test]
fn the_principal_header_is_a_distinct_header_name() {
    let c = RawConfig::from_yaml(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(c.headers.principal, "x-portcullis-principal");
    for (name, path) in [
        ("x-user-id", "headers"),
        ("X-Spiffe", "headers.principal"),
        ("authorization", "headers.principal"),
        ("x_tenuo_tool", "headers.principal"),
    ] {
        let yaml = format!("{MINIMAL}headers: {{principal: {name}}}\n");
        assert_eq!(paths(&yaml), [path], "{name}");
    }
}

#[test]
fn api_keys_are_checked_and_accepted_only_where_a_rule_names_them() {
    let base = "oidc:\n  providers:\n    - issuer: https://dex.example.com/dex\n      audiences: [portcullis]\n";
    let c = RawConfig::from_yaml(&format!(
        "{base}api_keys: {{file: /k.yaml, header: X-Api-Key}}\nrules:\n  - path_prefix: /m\n    providers: [api-keys]\n    allowed_groups: [bots]\n  - path_prefix: /\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    let k = c.api_keys.expect("api_keys");
    assert_eq!(
        (k.header.as_deref(), k.reload_interval.as_secs()),
        (Some("x-api-key"), 10)
    );
    let errors = |yaml: &str| match RawConfig::from_yaml(yaml).unwrap().validate() {
        Err(ConfigError::Invalid(e)) => e.into_iter().map(|e| e.path).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        errors(&format!(
            "{base}api_keys: {{file: \"\", header: authorization, reload_interval_seconds: 0}}\n"
        )),
        ["api_keys.file", "api_keys.header", "api_keys.reload_interval_seconds"]
    );
    // Without the section, `api-keys` is no provider.
    assert_eq!(
        errors(&format!(
            "{base}rules:\n  - path_prefix: /\n    providers: [api-keys]\n"
        )),
        ["rules[0].providers[0]"]
    );
    // API keys alone are a configuration: their identities satisfy `require: oidc`.
    let c = RawConfig::from_yaml(
        "api_keys: {file: /k.yaml}\nrules:\n  - path_prefix: /\n    require: oidc\n    providers: [api-keys]\n",
    )
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(c.policy.rule_for("/x").unwrap().require(), Require::Oidc);
}

#[test]
fn the_api_key_header_must_not_be_an_injected_identity_header() {
    for name in ["x-user-id", "X_User_Id", "x-auth-request-groups"] {
        let yaml = format!("{MINIMAL}api_keys: {{file: /k, header: {name}}}\n");
        assert_eq!(paths(&yaml), ["api_keys.header"], "{name}");
    }
    let ok = format!("{MINIMAL}api_keys: {{file: /k, header: x-api-key}}\n");
    assert!(RawConfig::from_yaml(&ok).unwrap().validate().is_ok());
}
