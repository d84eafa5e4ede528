//! Verified JWT claims → [`Identity`]: which claim is the user, the groups
//! (array or space-separated string), and whether the token is a user token
//! (our audience) or an allowed client-credentials token.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::config::ProviderConfig;
use crate::deny::Deny;
use crate::identity::{Identity, Source};

/// Bounds on what a token may make us inject as headers.
const MAX_VALUE_BYTES: usize = 1024;
const MAX_GROUPS: usize = 512;
/// Prefix of the virtual group given to client-credentials tokens.
pub const CLIENT_GROUP_PREFIX: &str = "client:";

/// A token's identity, and how many of its groups were dropped to fit the
/// provider's `groups.max_bytes` (`over_budget: drop`).
#[derive(Debug)]
pub struct Mapped {
    pub identity: Identity,
    pub groups_dropped: usize,
}

pub fn map_claims(p: &ProviderConfig, claims: &Map<String, Value>) -> Result<Mapped, Deny> {
    let sub = str_claim(claims, "sub")?;
    let exp = claims.get("exp").and_then(Value::as_f64).ok_or(Deny::InvalidClaims)?;
    if !exp.is_finite() || exp < 0.0 {
        return Err(Deny::InvalidClaims);
    }
    let expires_at = UNIX_EPOCH + Duration::from_secs_f64(exp.min(u32::MAX as f64));
    let mut groups = groups(claims.get(&p.groups_claim))?;
    let verified = email_verified(claims)?;
    let email = match str_claim(claims, &p.email_claim)? {
        Some(e) => Some(identity_value(e)?),
        None => None,
    }
    .filter(|_| verified);

    // `client:` groups are minted here for machine tokens only; a user token
    // must not be able to claim one.
    if let Some(g) = groups.as_mut() {
        drop_client_groups(g);
    }
    let (source, user, own_group) = match audience_kind(p, claims.get("aud"), sub)? {
        Audience::Ours => {
            if p.require_groups && groups.is_none() {
                return Err(Deny::MissingGroups);
            }
            if !verified && names_email(&p.user_claim, &p.email_claim) {
                return Err(Deny::EmailUnverified);
            }
            let user = str_claim(claims, &p.user_claim)?.ok_or(Deny::MissingUserClaim)?;
            (Source::OidcUser, identity_value(user)?, None)
        }
        // A machine has no user claim; its client id is its name.
        Audience::Client(client) => {
            let client = identity_value(client)?;
            (
                Source::OidcClient,
                client,
                Some(format!("{CLIENT_GROUP_PREFIX}{client}")),
            )
        }
    };
    // Rules see only what the filter keeps: a group they name must be kept.
    let selected = p.groups.select(groups.unwrap_or_default(), own_group)?;
    Ok(Mapped {
        identity: Identity::new(source, p.issuer.clone(), sub.unwrap_or(user), user, expires_at)
            .with_provider(p.name.clone())
            .with_email(email)
            .with_groups(&selected.groups),
        groups_dropped: selected.dropped,
    })
}

enum Audience<'a> {
    Ours,
    Client(&'a str),
}

/// `aud` names us → a user token. Otherwise, only if client credentials are
/// enabled, `aud` names an allowed client and `sub` is that same client
/// (see [`is_client_subject`]) — stricter than skipping the audience check,
/// so a token another client obtained for a user (ROPC, code flow) is not a
/// machine identity.
fn audience_kind<'a>(p: &'a ProviderConfig, aud: Option<&Value>, sub: Option<&str>) -> Result<Audience<'a>, Deny> {
    let auds: Vec<&str> = match aud {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or(Deny::InvalidClaims))
            .collect::<Result<_, _>>()?,
        _ => return Err(Deny::WrongAudience),
    };
    if auds.iter().any(|a| p.audiences.iter().any(|ours| ours == a)) {
        return Ok(Audience::Ours);
    }
    match &p.client_credentials {
        None => Err(Deny::WrongAudience),
        Some(allowed) => sub
            .and_then(|sub| {
                allowed
                    .iter()
                    .find(|c| auds.contains(&c.as_str()) && is_client_subject(sub, c))
            })
            .map(|c| Audience::Client(c.as_str()))
            .ok_or(Deny::ClientNotAllowed),
    }
}

/// Whether `sub` names the client `client` itself: either the client id
/// (RFC 9068 §2.2, and most issuers), or Dex's subject for a
/// client-credentials token. Dex's `sub` is always the URL-safe base64 (no
/// padding) of a protobuf `{1: user_id, 2: connector_id}`; for the
/// client_credentials grant the user id is the client id and the connector
/// id is empty (so field 2 is absent). A Dex user always has a connector id
/// (Dex refuses connectors with an empty id), so this form is never a
/// user's subject.
fn is_client_subject(sub: &str, client: &str) -> bool {
    sub == client || sub == dex_client_subject(client)
}

/// Dex's `sub` for a client-credentials token of `client` (see
/// [`is_client_subject`]).
fn dex_client_subject(client: &str) -> String {
    use base64::Engine;
    let mut bytes = vec![0x0a]; // field 1, length-delimited
    let mut len = client.len();
    while len >= 0x80 {
        bytes.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(client.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A string claim that is safe to put in a header: absent is `None`, any
/// other type or unsafe content is an invalid token.
fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Deny> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_header_safe(s) => Ok(Some(s)),
        Some(_) => Err(Deny::InvalidClaims),
    }
}

pub(crate) fn groups(claim: Option<&Value>) -> Result<Option<Vec<String>>, Deny> {
    let list: Vec<String> = match claim {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(Deny::InvalidClaims))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Deny::InvalidClaims),
    };
    // A `,` inside a name would forge extra entries in the groups header,
    // and a reader that splits on `,` and trims would take `" admins"` for
    // `admins` (or `" client:ci"` for the machine group user tokens may not
    // carry): the same rule as a user value.
    if list.len() > MAX_GROUPS || list.iter().any(|g| identity_value(g).is_err()) {
        return Err(Deny::InvalidClaims);
    }
    Ok(Some(list))
}

/// A user or email value as it will be injected: besides being header-safe,
/// no surrounding whitespace (`" alice"` would be another user to an
/// upstream that trims, and the same to one that does not compare exactly)
/// and no `,` (which splits one value into two for any reader of a list
/// header, e.g. `alice,admin`).
pub(crate) fn identity_value(s: &str) -> Result<&str, Deny> {
    let edges_ok = !s.starts_with(char::is_whitespace) && !s.ends_with(char::is_whitespace);
    if is_header_safe(s) && edges_ok && !s.contains(',') {
        Ok(s)
    } else {
        Err(Deny::InvalidClaims)
    }
}

/// `email_verified` (OIDC Core §5.1): only an explicit `false` (or
/// `"false"`, as some userinfo endpoints send it) marks the email as
/// unverified; providers that omit the claim are taken at their word, as
/// they vouch for the email they send.
pub(crate) fn email_verified(claims: &Map<String, Value>) -> Result<bool, Deny> {
    match claims.get("email_verified") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Ok(true),
        Some(Value::Bool(false)) => Ok(false),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(Deny::InvalidClaims),
    }
}

/// Whether the user is named by the email claim, which `email_verified`
/// speaks for: an unverified address is then no proof of who the user is.
pub(crate) fn names_email(user_claim: &str, email_claim: &str) -> bool {
    user_claim == "email" || user_claim == email_claim
}

/// `client:` groups are given by portcullis to client-credentials tokens
/// only: a user's token or userinfo document must not claim one.
pub(crate) fn drop_client_groups(groups: &mut Vec<String>) {
    groups.retain(|g| !g.starts_with(CLIENT_GROUP_PREFIX));
}

pub(crate) fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE_BYTES && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::GroupFilter;
    use serde_json::json;

    fn to_identity(p: &ProviderConfig, claims: &Map<String, Value>) -> Result<Identity, Deny> {
        map_claims(p, claims).map(|m| m.identity)
    }

    fn provider() -> ProviderConfig {
        ProviderConfig {
            name: "dex".into(),
            issuer: "https://dex.test".into(),
            audiences: vec!["portcullis".into()],
            jwks_uri: None,
            user_claim: "email".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            require_groups: false,
            groups: GroupFilter::default(),
            algorithms: vec![],
            client_credentials: Some(vec!["ci".into()]),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        let mut base = json!({"sub": "u1", "exp": 4_000_000_000u64, "aud": "portcullis"});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            b.extend(extra.clone());
        }
        base.as_object().cloned().unwrap()
    }

    #[test]
    fn user_token_maps_user_email_and_groups() {
        let id = to_identity(
            &provider(),
            &claims(json!({"email": "a@x.io", "groups": ["dev", "ops"]})),
        )
        .unwrap();
        assert_eq!(
            (&*id.user, id.email.as_deref(), id.source),
            ("a@x.io", Some("a@x.io"), Source::OidcUser)
        );
        assert_eq!(id.groups().collect::<Vec<_>>(), vec!["dev", "ops"]);
        let spaced = to_identity(&provider(), &claims(json!({"email": "a@x.io", "groups": "dev  ops"}))).unwrap();
        assert_eq!(spaced.groups().collect::<Vec<_>>(), vec!["dev", "ops"]);
    }

    #[test]
    fn the_providers_group_filter_and_budget_decide_the_identitys_groups() {
        let mut p = provider();
        p.groups.exact = vec!["admins".into()];
        p.groups.prefixes = vec!["team-".into()];
        let c = claims(json!({"email": "a@x.io", "groups": ["x", "team-b", "admins", "team-a"]}));
        let m = map_claims(&p, &c).unwrap();
        assert_eq!(m.identity.groups_header(), "team-b,admins,team-a");
        p.groups.max_bytes = "team-b,admins".len();
        assert_eq!(map_claims(&p, &c).map(|_| ()), Err(Deny::GroupsOverBudget));
        p.groups.over_budget = crate::groups::OverBudget::Drop;
        let m = map_claims(&p, &c).unwrap();
        assert_eq!((m.identity.groups_header(), m.groups_dropped), ("team-b,admins", 1));
        // A machine token's own group passes any filter.
        let m = map_claims(&p, &claims(json!({"sub": "ci", "aud": "ci", "groups": ["x"]}))).unwrap();
        assert_eq!(m.identity.groups_header(), "client:ci");
    }

    #[test]
    fn user_tokens_cannot_claim_client_groups() {
        let id = to_identity(
            &provider(),
            &claims(json!({"email": "a@x.io", "groups": ["client:ci", "dev"]})),
        )
        .unwrap();
        assert_eq!(id.groups().collect::<Vec<_>>(), vec!["dev"]);
    }

    #[test]
    fn group_names_a_trimming_reader_would_change_are_refused() {
        for groups in [
            json!(["users", " client:ci"]),
            json!(["users", " admins"]),
            json!(["admins\u{2000}"]),
            json!(["admins\t"]),
            json!(["a,b"]),
        ] {
            let c = claims(json!({"email": "a@x.io", "groups": groups.clone()}));
            assert_eq!(
                to_identity(&provider(), &c).map(|_| ()),
                Err(Deny::InvalidClaims),
                "{groups}"
            );
        }
    }

    #[test]
    fn missing_sub_is_a_missing_user_claim_when_sub_is_the_user() {
        let mut p = provider();
        p.user_claim = "sub".into();
        let mut c = claims(json!({}));
        c.remove("sub");
        assert_eq!(to_identity(&p, &c), Err(Deny::MissingUserClaim));
    }

    #[test]
    fn missing_user_claim_and_required_groups() {
        assert_eq!(
            to_identity(&provider(), &claims(json!({}))),
            Err(Deny::MissingUserClaim)
        );
        let mut p = provider();
        p.require_groups = true;
        assert_eq!(
            to_identity(&p, &claims(json!({"email": "a@x.io"}))),
            Err(Deny::MissingGroups)
        );
        assert!(to_identity(&p, &claims(json!({"email": "a@x.io", "groups": []}))).is_ok());
    }

    #[test]
    fn unsafe_claim_values_are_rejected() {
        for bad in [
            json!({"email": "a@x.io\r\nx-user-id: root"}),
            json!({"email": "a@x.io", "groups": ["dev,admins"]}),
            json!({"email": "a@x.io", "groups": [1]}),
            json!({"email": 7}),
            json!({"email": "a@x.io", "groups": {"a": 1}}),
        ] {
            assert_eq!(
                to_identity(&provider(), &claims(bad.clone())),
                Err(Deny::InvalidClaims),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_unverified_email_is_not_injected_and_cannot_be_the_user() {
        let mut p = provider();
        p.user_claim = "sub".into();
        let id = to_identity(&p, &claims(json!({"email": "a@x.io", "email_verified": false}))).unwrap();
        assert_eq!((&*id.user, id.email.as_deref()), ("u1", None));
        let id = to_identity(&p, &claims(json!({"email": "a@x.io", "email_verified": "false"}))).unwrap();
        assert_eq!(id.email.as_deref(), None);
        for ok in [json!(true), json!("true"), Value::Null] {
            let id = to_identity(&p, &claims(json!({"email": "a@x.io", "email_verified": ok}))).unwrap();
            assert_eq!(id.email.as_deref(), Some("a@x.io"), "{ok}");
        }
        let id = to_identity(&p, &claims(json!({"email": "a@x.io"}))).unwrap();
        assert_eq!(id.email.as_deref(), Some("a@x.io"), "absent: the provider vouches");
        assert_eq!(
            to_identity(&p, &claims(json!({"email": "a@x.io", "email_verified": 0}))),
            Err(Deny::InvalidClaims)
        );
        // user_claim = email (the default of `provider()`): denied.
        assert_eq!(
            to_identity(
                &provider(),
                &claims(json!({"email": "a@x.io", "email_verified": false}))
            ),
            Err(Deny::EmailUnverified)
        );
        // A machine token has no user claim: the email is just not injected.
        let id = to_identity(
            &provider(),
            &claims(json!({"sub": "ci", "aud": "ci", "email": "ci@x.io", "email_verified": false})),
        )
        .unwrap();
        assert_eq!((&*id.user, id.email.as_deref()), ("ci", None));
    }

    #[test]
    fn users_and_emails_with_surrounding_spaces_or_commas_are_refused() {
        let mut p = provider();
        p.user_claim = "preferred_username".into();
        for bad in [
            json!({"preferred_username": " alice", "email": "a@x.io"}),
            json!({"preferred_username": "alice\u{2000}", "email": "a@x.io"}),
            json!({"preferred_username": "alice,admin", "email": "a@x.io"}),
            json!({"preferred_username": "alice", "email": "a@x.io "}),
            json!({"preferred_username": "alice", "email": "\u{00a0}a@x.io"}),
            json!({"preferred_username": "alice", "email": "a@x.io,b@x.io"}),
        ] {
            assert_eq!(to_identity(&p, &claims(bad.clone())), Err(Deny::InvalidClaims), "{bad}");
        }
        let id = to_identity(
            &p,
            &claims(json!({"preferred_username": "alice smith", "email": "a@x.io"})),
        )
        .unwrap();
        assert_eq!(&*id.user, "alice smith", "inner spaces are fine");
    }

    #[test]
    fn client_credentials_only_for_listed_clients_that_are_their_own_subject() {
        let id = to_identity(&provider(), &claims(json!({"sub": "ci", "aud": "ci"}))).unwrap();
        assert_eq!((&*id.user, id.source), ("ci", Source::OidcClient));
        assert_eq!(id.groups().collect::<Vec<_>>(), vec!["client:ci"]);
        assert_eq!(
            to_identity(&provider(), &claims(json!({"sub": "other", "aud": "other"}))),
            Err(Deny::ClientNotAllowed)
        );
        assert_eq!(
            to_identity(&provider(), &claims(json!({"sub": "alice", "aud": "ci"}))),
            Err(Deny::ClientNotAllowed)
        );
        let mut p = provider();
        p.client_credentials = None;
        assert_eq!(
            to_identity(&p, &claims(json!({"sub": "ci", "aud": "ci"}))),
            Err(Deny::WrongAudience)
        );
    }

    /// Subjects as Dex (master after v2.45.1, the client_credentials grant)
    /// issues them: `GenSubject(client.ID, "")`, and for a user of the
    /// `local` password connector `GenSubject(userID, "local")`.
    #[test]
    fn dex_client_credentials_subject_names_the_client() {
        let mut p = provider();
        p.client_credentials = Some(vec!["ci-pipeline".into()]);
        // base64url(0a 0b "ci-pipeline"), as Dex sends it.
        let dex_sub = "CgtjaS1waXBlbGluZQ";
        assert_eq!(dex_client_subject("ci-pipeline"), dex_sub);
        let id = to_identity(&p, &claims(json!({"sub": dex_sub, "aud": "ci-pipeline"}))).unwrap();
        assert_eq!(
            (&*id.user, &*id.subject, id.source),
            ("ci-pipeline", dex_sub, Source::OidcClient)
        );
        assert_eq!(id.groups().collect::<Vec<_>>(), vec!["client:ci-pipeline"]);
        // The same client's user: connector "local" (field 2) → not a machine.
        let user_sub = "CgtjaS1waXBlbGluZRIFbG9jYWw";
        assert_eq!(
            to_identity(&p, &claims(json!({"sub": user_sub, "aud": "ci-pipeline"}))),
            Err(Deny::ClientNotAllowed)
        );
        // Another client's Dex subject, or one for a client not allowed.
        p.client_credentials = Some(vec!["ci-pipeline".into(), "other".into()]);
        assert_eq!(
            to_identity(
                &p,
                &claims(json!({"sub": dex_client_subject("other"), "aud": "ci-pipeline"}))
            ),
            Err(Deny::ClientNotAllowed)
        );
        assert_eq!(
            to_identity(&p, &claims(json!({"sub": dex_client_subject("nope"), "aud": "nope"}))),
            Err(Deny::ClientNotAllowed)
        );
        // Long ids: a two-byte varint length.
        let long = "c".repeat(200);
        let decoded = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(dex_client_subject(&long))
                .unwrap()
        };
        assert_eq!(&decoded[..3], &[0x0a, 0xc8, 0x01]);
        assert_eq!(&decoded[3..], long.as_bytes());
    }
}
