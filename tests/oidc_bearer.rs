//! OIDC bearer tokens end to end: tokens minted by a real OIDC issuer
//! (oauth2-mock-server) are verified against its discovery document and
//! JWKS, identity headers are injected, and every way a token can be wrong
//! yields 401 with an RFC 6750 challenge and a stable reason. Also: key
//! rotation, JWKS outages, several issuers, path rules, client credentials.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------
// Accepted tokens and injected identity.

#[test]
fn rs256_es256_and_eddsa_tokens_are_accepted_with_identity_headers() {
    let s = Stack::start();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let user = format!("user-{}", alg.to_lowercase());
        let token = s.mint(alg, user_claims(&user, &["users", "devs"]));
        let echo = assert_allowed(&s.get_bearer("/data", &token));
        assert_eq!(echo.header_all("x-user-id"), vec![user.as_str()], "{alg}");
        assert_eq!(
            echo.header_all("x-auth-request-email"),
            vec![format!("{user}@example.com").as_str()],
            "{alg}"
        );
        assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs"], "{alg}");
        assert_eq!(echo.path, "/data");
    }
}

#[test]
fn groups_claim_as_space_separated_string_is_split() {
    let s = Stack::start();
    let token = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "groups": "users devs ops"}),
    );
    let echo = assert_allowed(&s.get_bearer("/", &token));
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["users,devs,ops"]);
}

#[test]
fn configured_user_email_and_groups_claims_are_used() {
    let s = Stack::builder()
        .provider0(|p| {
            p["user_claim"] = json!("preferred_username");
            p["email_claim"] = json!("mail");
            p["groups_claim"] = json!("roles");
        })
        .start();
    let token = s.mint(
        "ES256",
        json!({
            "sub": "0f8e-opaque-id",
            "preferred_username": "alice",
            "mail": "alice@corp.example",
            "email": "wrong@example.com",
            "roles": ["editor"],
            "groups": ["admins"],
            "aud": "portcullis",
        }),
    );
    let echo = assert_allowed(&s.get_bearer("/", &token));
    assert_eq!(echo.header_all("x-user-id"), vec!["alice"]);
    assert_eq!(echo.header_all("x-auth-request-email"), vec!["alice@corp.example"]);
    assert_eq!(echo.header_all("x-auth-request-groups"), vec!["editor"]);
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let s = Stack::start();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let token = s.token_for("alice", &["users"]);
        let r = s.get("/", &[("Authorization", &format!("{scheme} {token}"))]);
        let echo = assert_allowed(&r);
        assert_eq!(echo.header_all("x-user-id"), vec!["alice"], "{scheme}");
    }
}

#[test]
fn audience_list_containing_ours_is_accepted() {
    let s = Stack::start();
    let token = s.mint("RS256", json!({"sub": "alice", "aud": ["other-api", "portcullis"]}));
    assert_allowed(&s.get_bearer("/", &token));
}

#[test]
fn expiry_and_not_before_within_clock_skew_are_accepted() {
    let s = Stack::start();
    let t = now();
    let expired_recently = s.mint(
        "RS256",
        json!({"sub": "alice", "aud": "portcullis", "iat": t - 600, "exp": t - 20}),
    );
    assert_allowed(&s.get_bearer("/", &expired_recently));
    let almost_valid = s.mint("RS256", json!({"sub": "alice", "aud": "portcullis", "nbf": t + 20}));
    assert_allowed(&s.get_bearer("/", &almost_valid));
}

// ---------------------------------------------------------------------------
// Missing / malformed credentials.

#[test]
fn no_authorization_header_is_401_missing_credential() {
    let s = Stack::start();
    assert_denied(&s.get("/", &[]), 401, "missing_credential");
}

#[test]
fn non_bearer_scheme_is_401_missing_credential() {
    let s = Stack::start();
    let r = s.get("/", &[("Authorization", "Basic YWxpY2U6c2VjcmV0")]);
    assert_denied(&r, 401, "missing_credential");
}

#[test]
fn empty_bearer_is_401_malformed_token() {
    let s = Stack::start();
    for value in ["Bearer ", "Bearer", "Bearer    "] {
        let r = s.get("/", &[("Authorization", value)]);
        assert_denied(&r, 401, "malformed_token");
    }
}

#[test]
fn garbage_bearer_is_401_malformed_token() {
    let s = Stack::start();
    for token in [
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d.e",
        "e30.e30.e30",
        "!!!.???.###",
        "eyJhbGciOiJSUzI1NiJ9..",
    ] {
        let r = s.get_bearer("/", token);
        assert_denied(&r, 401, "malformed_token");
    }
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn two_authorization_headers_are_401_multiple_credentials() {
    let s = Stack::start();
    let a = s.token_for("alice", &["users"]);
    let b = s.token_for("bob", &["users"]);
    let r = s.send(&Req::get("/").bearer(&a).bearer(&b));
    assert_denied(&r, 401, "multiple_credentials");
    // Even the same valid token twice is ambiguous and refused.
    let r = s.send(&Req::get("/").bearer(&a).bearer(&a));
    assert_denied(&r, 401, "multiple_credentials");
    assert_eq!(s.echo_hits(), 0);
}

// ---------------------------------------------------------------------------
// Invalid tokens.

#[test]
fn expired_token_is_401_token_expired() {
    let s = Stack::start();
    let token = s.idp().mint_with(json!({
        "alg": "RS256",
        "expiresIn": -3600,
        "claims": {"sub": "alice", "aud": "portcullis", "iat": now() - 7200, "nbf": now() - 7200},
    }));
    assert_denied(&s.get_bearer("/", &token), 401, "token_expired");
}

#[test]
fn token_not_yet_valid_beyond_skew_is_401_token_not_yet_valid() {
    let s = Stack::start();
    let token = s.mint(
        "ES256",
        json!({"sub": "alice", "aud": "portcullis", "nbf": now() + 3600}),
    );
    assert_denied(&s.get_bearer("/", &token), 401, "token_not_yet_valid");
}

#[test]
fn wrong_audience_is_401_wrong_audience() {
    let s = Stack::start();
    for aud in [json!("another-api"), json!(["a", "b"]), json!("PORTCULLIS")] {
        let token = s.mint("RS256", json!({"sub": "alice", "aud": aud}));
        assert_denied(&s.get_bearer("/", &token), 401, "wrong_audience");
    }
    let no_aud = s.idp().mint_with(json!({
        "alg": "RS256", "claims": {"sub": "alice"}, "unset": ["aud"],
    }));
    assert_denied(&s.get_bearer("/", &no_aud), 401, "wrong_audience");
}

#[test]
fn token_of_an_unconfigured_issuer_is_401_unknown_issuer() {
    let s = Stack::start();
    // Genuinely signed by the configured IdP's key, but naming another issuer.
    for kind_claims in [
        json!({"kind": "wrong-issuer"}),
        json!({"kind": "wrong-issuer", "iss": format!("{}/", s.idp().issuer)}),
        json!({"kind": "wrong-issuer", "iss": s.idp().issuer.replace("127.0.0.1", "localhost")}),
    ] {
        let token = s.idp().attack_with(kind_claims).remove(0);
        assert_denied(&s.get_bearer("/", &token), 401, "unknown_issuer");
    }
    let no_iss = s.idp().mint_with(json!({
        "alg": "RS256", "claims": {"sub": "alice", "aud": "portcullis"}, "unset": ["iss"],
    }));
    // Without `iss` the token names no issuer at all: its claims are invalid.
    assert_denied(&s.get_bearer("/", &no_iss), 401, "invalid_claims");
}

#[test]
fn alg_none_is_rejected() {
    let s = Stack::start();
    for alg in ["none", "None", "NONE"] {
        let token = s.idp().attack_with(json!({"kind": "alg-none", "alg": alg})).remove(0);
        // No JOSE algorithm is called `none` to the decoder: the header does not parse.
        assert_denied(&s.get_bearer("/", &token), 401, "malformed_token");
    }
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let s = Stack::start();
    let tokens = s.attack("hs256-with-public-key");
    assert!(tokens.len() >= 3, "PEM and JWK variants expected");
    for token in tokens {
        // Refused for its algorithm, before any key is tried.
        assert_denied(&s.get_bearer("/", &token), 401, "disallowed_algorithm");
    }
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn bad_signature_is_401_invalid_signature() {
    let s = Stack::start();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let token = s
            .idp()
            .attack_with(json!({"kind": "bad-signature", "alg": alg}))
            .remove(0);
        assert_denied(&s.get_bearer("/", &token), 401, "invalid_signature");
    }
}

#[test]
fn unknown_kid_is_401_unknown_key() {
    let s = Stack::start();
    let token = s.attack("unknown-kid").remove(0);
    assert_denied(&s.get_bearer("/", &token), 401, "unknown_key");
}

#[test]
fn token_without_configured_user_claim_is_401_missing_user_claim() {
    let s = Stack::builder()
        .provider0(|p| p["user_claim"] = json!("preferred_username"))
        .start();
    let token = s.mint("RS256", json!({"sub": "x", "aud": "portcullis"}));
    assert_denied(&s.get_bearer("/", &token), 401, "missing_user_claim");
}

#[test]
fn token_without_sub_is_401_missing_user_claim() {
    let s = Stack::start();
    let token = s.mint("RS256", json!({"aud": "portcullis", "email": "x@example.com"}));
    assert_denied(&s.get_bearer("/", &token), 401, "missing_user_claim");
}

#[test]
fn mistyped_registered_claims_are_401_invalid_claims() {
    let s = Stack::start();
    let token = s.mint("RS256", json!({"sub": "alice", "aud": "portcullis", "exp": "tomorrow"}));
    assert_denied(&s.get_bearer("/", &token), 401, "invalid_claims");
    let token = s.mint("RS256", json!({"sub": 42, "aud": "portcullis"}));
    assert_denied(&s.get_bearer("/", &token), 401, "invalid_claims");
}

#[test]
fn algorithm_allowlist_rejects_other_algorithms() {
    let s = Stack::builder()
        .provider0(|p| p["algorithms"] = json!(["ES256"]))
        .start();
    let es = s.mint("ES256", user_claims("alice", &["users"]));
    assert_allowed(&s.get_bearer("/", &es));
    for alg in ["RS256", "EdDSA"] {
        let token = s.mint(alg, user_claims("alice", &["users"]));
        assert_denied(&s.get_bearer("/", &token), 401, "disallowed_algorithm");
    }
}

/// A decision cache must never keep a token alive past its `exp`.
#[test]
fn cached_decision_does_not_outlive_token_expiry() {
    let s = Stack::builder()
        .config(|c| c["oidc"]["clock_skew_seconds"] = json!(0))
        .start();
    let token = s.idp().mint_with(json!({
        "alg": "RS256", "expiresIn": 2, "claims": user_claims("alice", &["users"]),
    }));
    assert_allowed(&s.get_bearer("/", &token));
    let r = wait_until(
        "the cached token to expire",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let r = s.get_bearer("/", &token);
            if r.status == 200 {
                Err("still accepted".to_string())
            } else {
                Ok(r)
            }
        },
    );
    assert_denied(&r, 401, "token_expired");
}

// ---------------------------------------------------------------------------
// Keys: rotation and outages.

#[test]
fn rotated_key_published_after_start_is_accepted() {
    let s = Stack::builder()
        .config(|c| c["oidc"]["jwks_min_refetch_seconds"] = json!(1))
        .start();
    let old = s.token_for("alice", &["users"]);
    assert_allowed(&s.get_bearer("/", &old));
    for alg in ["RS256", "EdDSA"] {
        let kid = s.rotate(alg);
        let token = s.idp().mint_with(json!({
            "alg": alg, "kid": kid, "claims": user_claims("alice", &["users"]),
        }));
        // The first attempt may land inside the refetch interval; the key
        // must be picked up as soon as a refetch is allowed.
        let r = wait_until(
            "rotated key to be accepted",
            Duration::from_secs(10),
            Duration::from_millis(250),
            || {
                let r = s.get_bearer("/", &token);
                if r.status == 200 {
                    Ok(r)
                } else {
                    Err(r.summary())
                }
            },
        );
        assert_eq!(r.upstream().header_all("x-user-id"), vec!["alice"]);
    }
    // Tokens signed with the previous key stay valid while it is published.
    let prev_kid = s.idp().kids["RS256"].as_str().unwrap().to_string();
    let prev = s.idp().mint_with(json!({
        "alg": "RS256", "kid": prev_kid, "claims": user_claims("alice", &["users"]),
    }));
    assert_allowed(&s.get_bearer("/", &prev));
}

#[test]
fn jwks_outage_after_start_keeps_known_keys_working_and_stays_ready() {
    let s = Stack::builder()
        .config(|c| c["oidc"]["jwks_min_refetch_seconds"] = json!(1))
        .start();
    s.jwks_down();
    s.idp().reset_stats();
    // For a few seconds, keep provoking JWKS refetches with unknown kids
    // (each one fails: the IdP is unreachable). Known keys must keep working
    // and readiness must not flip.
    let until = std::time::Instant::now() + Duration::from_millis(3000);
    let mut rounds = 0;
    while std::time::Instant::now() < until {
        let unknown = s.attack("unknown-kid").remove(0);
        assert_denied(&s.get_bearer("/", &unknown), 401, "unknown_key");
        for alg in ["RS256", "ES256", "EdDSA"] {
            let token = s.mint(alg, user_claims("alice", &["users"]));
            let r = s.get_bearer("/", &token);
            assert_eq!(r.status, 200, "{alg} during JWKS outage: {}", r.summary());
        }
        assert_eq!(s.admin("/readyz").status, 200, "/readyz during JWKS outage");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(rounds >= 3);
    // The outage was real: no discovery/JWKS request got through.
    let stats = s.idp().stats();
    assert_eq!(stats["requests"], json!(0), "IdP served requests while down: {stats}");

    // Recovery: once the IdP is back, a newly rotated key is picked up.
    s.jwks_up();
    let kid = s.rotate("ES256");
    let token = s.idp().mint_with(json!({
        "alg": "ES256", "kid": kid, "claims": user_claims("alice", &["users"]),
    }));
    wait_until(
        "key rotated after the outage to be accepted",
        Duration::from_secs(10),
        Duration::from_millis(250),
        || {
            let r = s.get_bearer("/", &token);
            if r.status == 200 {
                Ok(())
            } else {
                Err(r.summary())
            }
        },
    );
}

#[test]
fn explicit_jwks_uri_is_used() {
    let s = Stack::builder()
        .config(|c| {
            let issuer = c["oidc"]["providers"][0]["issuer"].as_str().unwrap().to_string();
            c["oidc"]["providers"][0]["jwks_uri"] = json!(format!("{issuer}/jwks"));
        })
        .start();
    let token = s.mint("EdDSA", user_claims("alice", &["users"]));
    assert_allowed(&s.get_bearer("/", &token));
    assert!(s.idp().stats()["jwks_requests"].as_u64().unwrap() >= 1);
}

#[test]
fn several_issuers_are_accepted_and_iss_selects_the_provider() {
    let s = Stack::builder().idps(2).start();
    let (a, b) = (&s.idps[0], &s.idps[1]);
    let ta = a.mint("RS256", user_claims("alice", &["team-a"]));
    let tb = b.mint("ES256", user_claims("bob", &["team-b"]));
    let ea = assert_allowed(&s.get_bearer("/", &ta));
    assert_eq!(ea.header_all("x-user-id"), vec!["alice"]);
    assert_eq!(ea.header_all("x-auth-request-groups"), vec!["team-a"]);
    let eb = assert_allowed(&s.get_bearer("/", &tb));
    assert_eq!(eb.header_all("x-user-id"), vec!["bob"]);
    assert_eq!(eb.header_all("x-auth-request-groups"), vec!["team-b"]);

    // Signed by issuer B but claiming to be issuer A: A's keys must be used,
    // and none of them matches.
    let forged = b
        .attack_with(json!({"kind": "wrong-issuer", "iss": a.issuer}))
        .remove(0);
    assert_denied(&s.get_bearer("/", &forged), 401, "unknown_key");
}

#[test]
fn several_issuers_keep_their_own_audiences() {
    let s = Stack::builder()
        .idps(2)
        .config(|c| c["oidc"]["providers"][1]["audiences"] = json!(["api-b"]))
        .start();
    let (a, b) = (&s.idps[0], &s.idps[1]);
    let ok_b = b.mint("RS256", json!({"sub": "bob", "aud": "api-b"}));
    assert_allowed(&s.get_bearer("/", &ok_b));
    let wrong_b = b.mint("RS256", json!({"sub": "bob", "aud": "portcullis"}));
    assert_denied(&s.get_bearer("/", &wrong_b), 401, "wrong_audience");
    let wrong_a = a.mint("RS256", json!({"sub": "alice", "aud": "api-b"}));
    assert_denied(&s.get_bearer("/", &wrong_a), 401, "wrong_audience");
}

// ---------------------------------------------------------------------------
// Authorization rules.

fn admin_rules() -> serde_json::Value {
    json!([
        {"path_prefix": "/admin/public", "allowed_users": []},
        {"path_prefix": "/admin", "allowed_groups": ["admins"]},
        {"path_prefix": "/ops", "allowed_users": ["carol"]},
        {"path_prefix": "/", "allowed_users": []},
    ])
}

#[test]
fn group_rule_admits_members_and_denies_others_with_403() {
    let s = Stack::builder().rules(admin_rules()).start();
    let admin = s.token_for("ada", &["users", "admins"]);
    let user = s.token_for("bob", &["users"]);
    let echo = assert_allowed(&s.get_bearer("/admin/settings", &admin));
    assert_eq!(echo.path, "/admin/settings");
    let hits = s.echo_hits();
    assert_denied(&s.get_bearer("/admin/settings", &user), 403, "group_not_allowed");
    assert_denied(&s.get_bearer("/admin", &user), 403, "group_not_allowed");
    assert_eq!(s.echo_hits(), hits, "403 must not reach the upstream");
    // Group names are matched exactly.
    let lookalike = s.token_for("eve", &["Admins", "admin"]);
    assert_denied(&s.get_bearer("/admin", &lookalike), 403, "group_not_allowed");
    // `admins ` is `admins` to an upstream that trims: refused outright.
    let padded = s.token_for("eve", &["admins "]);
    assert_denied(&s.get_bearer("/admin", &padded), 401, "invalid_claims");
    // Other paths: any authenticated user.
    assert_allowed(&s.get_bearer("/reports", &user));
}

/// A decision (possibly cached) for one path never carries over to another.
#[test]
fn allow_on_one_path_does_not_carry_over_to_a_protected_path() {
    let s = Stack::builder().rules(admin_rules()).start();
    let user = s.token_for("bob", &["users"]);
    for _ in 0..3 {
        assert_allowed(&s.get_bearer("/reports", &user));
    }
    let hits = s.echo_hits();
    assert_denied(&s.get_bearer("/admin/settings", &user), 403, "group_not_allowed");
    assert_allowed(&s.get_bearer("/reports", &user));
    assert_denied(&s.get_bearer("/admin", &user), 403, "group_not_allowed");
    assert_eq!(s.echo_hits(), hits + 1);
}

#[test]
fn first_matching_rule_wins() {
    let s = Stack::builder().rules(admin_rules()).start();
    let user = s.token_for("bob", &["users"]);
    assert_allowed(&s.get_bearer("/admin/public/docs", &user));
    assert_denied(&s.get_bearer("/admin/private", &user), 403, "group_not_allowed");
}

#[test]
fn user_rule_admits_listed_users_only() {
    let s = Stack::builder().rules(admin_rules()).start();
    let carol = s.token_for("carol", &[]);
    let dave = s.token_for("dave", &["admins"]);
    let echo = assert_allowed(&s.get_bearer("/ops/deploy", &carol));
    assert_eq!(echo.header_all("x-user-id"), vec!["carol"]);
    assert_denied(&s.get_bearer("/ops/deploy", &dave), 403, "user_not_allowed");
}

#[test]
fn rules_still_require_authentication() {
    let s = Stack::builder().rules(admin_rules()).start();
    assert_denied(&s.get("/admin/public/docs", &[]), 401, "missing_credential");
    assert_denied(&s.get("/reports", &[]), 401, "missing_credential");
}

#[test]
fn require_groups_denies_tokens_without_groups_claim_with_403() {
    let s = Stack::builder()
        .provider0(|p| p["require_groups"] = json!(true))
        .start();
    let without = s.mint("RS256", json!({"sub": "alice", "aud": "portcullis"}));
    assert_denied(&s.get_bearer("/", &without), 403, "missing_groups");
    let with = s.token_for("alice", &["users"]);
    assert_allowed(&s.get_bearer("/", &with));
}

// ---------------------------------------------------------------------------
// Client credentials.

fn client_credentials_stack() -> Stack {
    Stack::builder()
        .provider0(|p| p["client_credentials"] = json!({"enabled": true, "allowed_clients": ["ci-pipeline"]}))
        .rules(json!([
            {"path_prefix": "/deploy", "allowed_groups": ["client:ci-pipeline"]},
            {"path_prefix": "/", "allowed_users": []},
        ]))
        .start()
}

#[test]
fn allowed_client_credentials_token_gets_client_group() {
    let s = client_credentials_stack();
    let token = s.mint(
        "RS256",
        json!({"sub": "ci-pipeline", "aud": "ci-pipeline", "azp": "ci-pipeline"}),
    );
    let echo = assert_allowed(&s.get_bearer("/deploy/prod", &token));
    assert_eq!(echo.header_all("x-user-id"), vec!["ci-pipeline"]);
    let groups = echo.header_all("x-auth-request-groups");
    assert_eq!(groups.len(), 1, "{:?}", echo.headers);
    assert!(
        groups[0].split(',').any(|g| g == "client:ci-pipeline"),
        "groups header {groups:?} must contain client:ci-pipeline"
    );
}

#[test]
fn human_user_does_not_pass_a_client_group_rule() {
    let s = client_credentials_stack();
    let human = s.token_for("alice", &["users"]);
    assert_denied(&s.get_bearer("/deploy/prod", &human), 403, "group_not_allowed");
    assert_allowed(&s.get_bearer("/other", &human));
}

#[test]
fn client_not_in_allowed_clients_is_rejected() {
    let s = client_credentials_stack();
    let rogue = s.mint("RS256", json!({"sub": "rogue", "aud": "rogue"}));
    let r = s.get_bearer("/deploy/prod", &rogue);
    assert_denied(&r, 401, "client_not_allowed");
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn client_token_whose_sub_differs_from_the_client_id_is_rejected() {
    let s = client_credentials_stack();
    let token = s.mint("RS256", json!({"sub": "mallory", "aud": "ci-pipeline"}));
    let r = s.get_bearer("/deploy/prod", &token);
    assert_denied(&r, 401, "client_not_allowed");
    assert_eq!(s.echo_hits(), 0);
}

#[test]
fn client_credentials_disabled_rejects_client_audience() {
    let s = Stack::start();
    let token = s.mint("RS256", json!({"sub": "ci-pipeline", "aud": "ci-pipeline"}));
    assert_denied(&s.get_bearer("/", &token), 401, "wrong_audience");
}

/// `client:<id>` is portcullis' virtual group for client-credentials
/// tokens; a user token whose own `groups` claim happens to contain a
/// `client:` name must not be able to pass a rule meant for a client.
#[test]
fn user_token_with_a_client_named_group_does_not_pass_a_client_rule() {
    let s = client_credentials_stack();
    let token = s.token_for("alice", &["client:ci-pipeline"]);
    let r = s.get_bearer("/deploy/prod", &token);
    assert_denied(&r, 403, "group_not_allowed");
    assert_eq!(s.echo_hits(), 0);
}
