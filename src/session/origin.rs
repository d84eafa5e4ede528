//! Where a cookie-authenticated request comes from. Browsers attach the
//! session cookie to requests other sites make them send (`SameSite=Lax`
//! still allows top-level POST navigations in some browsers, and every
//! subdomain is "same-site"), so a state-changing request needs a signal
//! that only our own pages produce.

use super::Sessions;
use crate::request::{RequestView, Single};

impl Sessions {
    /// `Sec-Fetch-Site: same-origin` or `none` (typed or bookmarked) when
    /// the browser sends Fetch metadata — it then decides alone; otherwise
    /// an `Origin` equal to the `public_url` origin of the session's login.
    /// Anything else (absent, repeated, another origin, `null`) is not ours.
    pub fn same_origin(&self, login: &str, view: &RequestView<'_>) -> bool {
        match view.single("sec-fetch-site") {
            Single::One(site) => return site == "same-origin" || site == "none",
            Single::Unusable => return false,
            Single::Absent => {}
        }
        let Some(provider) = self.provider(login) else {
            return false;
        };
        matches!(view.single("origin"), Single::One(origin) if origin == provider.config.public_origin)
    }
}
