//! Verified JWT claims → [`Identity`]: which claim is the user, the groups
//! (array or space-separated string), and whether the token is a user token
//! (our audience) or an allowed client-credentials token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::config::ProviderConfig;
use crate::deny::Deny;
use crate::identity::{Identity, Source};

/// Bounds on what a token may make us inject as headers.
const MAX_VALUE_BYTES: usize = 1024;
const MAX_GROUPS: usize = 512;
/// Prefix of the virtual group given to client-credentials tokens.
pub const CLIENT_GROUP_PREFIX: &str = "client:";

pub fn to_identity(p: &ProviderConfig, claims: &Map<String, Value>) -> Result<Identity, Deny> {
    let sub = str_claim(claims, "sub")?;
    let exp = claims.get("exp").and_then(Value::as_f64).ok_or(Deny::InvalidClaims)?;
    if !exp.is_finite() || exp < 0.0 {
        return Err(Deny::InvalidClaims);
    }
    let expires_at = UNIX_EPOCH + Duration::from_secs_f64(exp.min(u32::MAX as f64));
    let mut groups = groups(claims.get(&p.groups_claim))?;
    let email = str_claim(claims, &p.email_claim)?;

    // `client:` groups are minted here for machine tokens only; a user token
    // must not be able to claim one.
    if let Some(g) = groups.as_mut() {
        g.retain(|g| !g.starts_with(CLIENT_GROUP_PREFIX));
    }
    let (source, user) = match audience_kind(p, claims.get("aud"), sub)? {
        Audience::Ours => {
            if p.require_groups && groups.is_none() {
                return Err(Deny::MissingGroups);
            }
            let user = str_claim(claims, &p.user_claim)?.ok_or(Deny::MissingUserClaim)?;
            (Source::OidcUser, user)
        }
        // A machine has no user claim; its client id is its name.
        Audience::Client(client) => {
            groups
                .get_or_insert_with(Vec::new)
                .push(format!("{CLIENT_GROUP_PREFIX}{client}"));
            (Source::OidcClient, client)
        }
    };
    let expires_at = expires_at.min(SystemTime::now() + Duration::from_secs(400 * 86400));
    Ok(
        Identity::new(source, p.issuer.clone(), sub.unwrap_or(user), user, expires_at)
            .with_provider(p.name.clone())
            .with_email(email)
            .with_groups(&groups.unwrap_or_default()),
    )
}

enum Audience<'a> {
    Ours,
    Client(&'a str),
}

/// `aud` names us → a user token. Otherwise, only if client credentials are
/// enabled, `aud` names an allowed client and `sub` is that same client —
/// stricter than skipping the audience check, so a token another client
/// obtained for a user (ROPC, code flow) is not a machine identity.
fn audience_kind<'a>(p: &ProviderConfig, aud: Option<&Value>, sub: Option<&'a str>) -> Result<Audience<'a>, Deny> {
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
        Some(allowed) => match sub {
            Some(sub) if allowed.iter().any(|c| c == sub) && auds.contains(&sub) => Ok(Audience::Client(sub)),
            _ => Err(Deny::ClientNotAllowed),
        },
    }
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
    // A `,` inside a name would forge extra entries in the groups header.
    if list.len() > MAX_GROUPS || list.iter().any(|g| !is_header_safe(g) || g.contains(',')) {
        return Err(Deny::InvalidClaims);
    }
    Ok(Some(list))
}

pub(crate) fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE_BYTES && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn user_tokens_cannot_claim_client_groups() {
        let id = to_identity(
            &provider(),
            &claims(json!({"email": "a@x.io", "groups": ["client:ci", "dev"]})),
        )
        .unwrap();
        assert_eq!(id.groups().collect::<Vec<_>>(), vec!["dev"]);
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
}
