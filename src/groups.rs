//! Which of an identity provider's groups reach the identity (and so the
//! groups header, the rules and the session cookie): a provider's `groups:`
//! filter and its byte budget.
//!
//! Entra ID, and brokers pulling Google Workspace groups, send hundreds of
//! groups. Joined into one header they pass what upstream servers accept
//! for a header line (431), and sealed into a session cookie they pass the
//! browser's ~4 KB. The filter keeps the groups the operator names; the
//! budget bounds what is left, and says what happens beyond it: refuse (the
//! default: an identity silently missing groups could lose access, or be
//! judged differently by an upstream that reads the header) or drop the
//! last groups and count them.

use regex::Regex;
use serde::Deserialize;

use crate::deny::Deny;

/// What happens when the kept groups do not fit `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverBudget {
    /// Refuse the credential: 403 `groups_over_budget`.
    #[default]
    Deny,
    /// Keep the groups in the IdP's order while they fit; drop the rest.
    Drop,
}

/// A provider's compiled `groups:` block.
#[derive(Debug, Clone)]
pub struct GroupFilter {
    /// Exact names to keep.
    pub exact: Vec<String>,
    /// `keep` entries that ended in `*`, without it.
    pub prefixes: Vec<String>,
    /// `keep_regex`, anchored at both ends.
    pub regex: Option<Regex>,
    /// Bytes of the groups header value (names joined with `,`).
    pub max_bytes: usize,
    pub over_budget: OverBudget,
}

impl Default for GroupFilter {
    /// Every group kept, refused beyond [`DEFAULT_MAX_BYTES`].
    fn default() -> Self {
        Self {
            exact: Vec::new(),
            prefixes: Vec::new(),
            regex: None,
            max_bytes: DEFAULT_MAX_BYTES,
            over_budget: OverBudget::Deny,
        }
    }
}

/// The default budget: a session cookie (4000 bytes, sealed: base64 adds a
/// third) still holds 2048 bytes of groups beside a user, an email and a
/// subject of ordinary length; and it is a quarter of the 8 KiB that nginx
/// (`large_client_header_buffers`) and Tomcat (`maxHttpHeaderSize`, for all
/// headers) accept by default.
pub const DEFAULT_MAX_BYTES: usize = 2048;

/// The groups an identity gets, and how many were dropped to fit the budget
/// (for `portcullis_groups_dropped_total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub groups: Vec<String>,
    pub dropped: usize,
}

impl GroupFilter {
    /// Whether a group the IdP sent is kept: no `keep` and no `keep_regex`
    /// keeps every group.
    pub fn keeps(&self, group: &str) -> bool {
        if self.exact.is_empty() && self.prefixes.is_empty() && self.regex.is_none() {
            return true;
        }
        self.exact.iter().any(|k| k == group)
            || self.prefixes.iter().any(|p| group.starts_with(p.as_str()))
            || self.regex.as_ref().is_some_and(|r| r.is_match(group))
    }

    /// The IdP's `groups` filtered and fitted to the budget, followed by
    /// `own` (the `client:` group portcullis gives a machine token), which
    /// is never filtered or dropped but counts towards the budget.
    pub fn select(&self, groups: Vec<String>, own: Option<String>) -> Result<Selected, Deny> {
        let kept: Vec<String> = groups.into_iter().filter(|g| self.keeps(g)).collect();
        // Joined with `,`: each name costs its length plus one separator,
        // except the first.
        let cost = |g: &String, used: usize| g.len() + usize::from(used > 0);
        let mut used = own.as_ref().map_or(0, String::len);
        if used > self.max_bytes {
            return Err(Deny::GroupsOverBudget);
        }
        let mut fitting = 0;
        for g in &kept {
            let next = used + cost(g, used);
            if next > self.max_bytes {
                break;
            }
            used = next;
            fitting += 1;
        }
        let dropped = kept.len() - fitting;
        if dropped > 0 && self.over_budget == OverBudget::Deny {
            return Err(Deny::GroupsOverBudget);
        }
        let mut groups = kept;
        groups.truncate(fitting);
        groups.extend(own);
        Ok(Selected { groups, dropped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(exact: &[&str], prefixes: &[&str], regex: Option<&str>) -> GroupFilter {
        GroupFilter {
            exact: exact.iter().map(|s| s.to_string()).collect(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            regex: regex.map(|r| Regex::new(&format!("^(?:{r})$")).unwrap()),
            ..GroupFilter::default()
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn kept(f: &GroupFilter, v: &[&str]) -> Vec<String> {
        f.select(names(v), None).unwrap().groups
    }

    #[test]
    fn without_keep_every_group_is_kept_in_order() {
        let f = GroupFilter::default();
        assert_eq!(kept(&f, &["b", "a", "c"]), names(&["b", "a", "c"]));
    }

    #[test]
    fn exact_prefix_and_regex_each_keep_and_order_is_the_idps() {
        let f = filter(&["admins"], &["team-"], Some("app-[0-9]+"));
        let sent = [
            "app-7", "admins2", "team-a", "xadmins", "admins", "app-x", "team", "team-", "my-app-1",
        ];
        assert_eq!(kept(&f, &sent), names(&["app-7", "team-a", "admins", "team-"]));
        // The regex must match the whole name.
        let f = filter(&[], &[], Some("app"));
        assert_eq!(kept(&f, &["app", "apps", "webapp"]), names(&["app"]));
    }

    #[test]
    fn the_budget_is_the_joined_header_to_the_byte() {
        // "aaaa,bbbb,cc" is 12 bytes.
        let sent = names(&["aaaa", "bbbb", "cc"]);
        let mut f = GroupFilter {
            max_bytes: 12,
            ..GroupFilter::default()
        };
        assert_eq!(f.select(sent.clone(), None).unwrap().groups, sent);
        f.max_bytes = 11;
        assert_eq!(f.select(sent.clone(), None), Err(Deny::GroupsOverBudget));
        f.over_budget = OverBudget::Drop;
        assert_eq!(
            f.select(sent.clone(), None),
            Ok(Selected {
                groups: names(&["aaaa", "bbbb"]),
                dropped: 1
            })
        );
        // Dropping stops at the first group that does not fit: a later, shorter
        // one is dropped too (what survives depends only on the IdP's order).
        f.max_bytes = 6;
        assert_eq!(
            f.select(names(&["aaaa", "bbbb", "c"]), None),
            Ok(Selected {
                groups: names(&["aaaa"]),
                dropped: 2
            })
        );
        f.max_bytes = 3;
        assert_eq!(
            f.select(sent, None),
            Ok(Selected {
                groups: vec![],
                dropped: 3
            })
        );
    }

    #[test]
    fn filtered_groups_are_not_counted_as_dropped() {
        let mut f = filter(&["keep"], &[], None);
        f.over_budget = OverBudget::Drop;
        let s = f.select(names(&["x", "keep", "y"]), None).unwrap();
        assert_eq!((s.groups, s.dropped), (names(&["keep"]), 0));
    }

    #[test]
    fn a_machine_group_is_kept_first_and_counts() {
        let mut f = filter(&["dev"], &[], None);
        f.max_bytes = "client:ci".len() + ",dev".len();
        let s = f.select(names(&["dev", "ops"]), Some("client:ci".into())).unwrap();
        assert_eq!(s.groups, names(&["dev", "client:ci"]));
        f.max_bytes -= 1;
        assert_eq!(
            f.select(names(&["dev"]), Some("client:ci".into())),
            Err(Deny::GroupsOverBudget)
        );
        f.over_budget = OverBudget::Drop;
        let s = f.select(names(&["dev"]), Some("client:ci".into())).unwrap();
        assert_eq!((s.groups, s.dropped), (names(&["client:ci"]), 1));
        // Its own group alone over the budget: refused even when dropping.
        f.max_bytes = 3;
        assert_eq!(f.select(vec![], Some("client:ci".into())), Err(Deny::GroupsOverBudget));
    }
}
