use super::*;
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
    assert_eq!(c.oidc.providers[0].user_claim, "sub");
    assert!(c.oidc.providers[0].client_credentials.is_none());
}

#[test]
fn example_config_in_the_repository_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/portcullis.example.yaml")).unwrap();
    RawConfig::from_yaml(&text).unwrap().validate().unwrap();
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
fn durations_are_bounded() {
    let y = format!("{MINIMAL}shutdown_grace_seconds: 18446744073709551615\ncache:\n  max_ttl_seconds: 100000000\n");
    assert_eq!(paths(&y), vec!["shutdown_grace_seconds", "cache.max_ttl_seconds"]);
}

const SESSIONS: &str = "
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
    assert_eq!(c.policy.rule_for("/x").and_then(|r| r.login()), Some("dex"));
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
