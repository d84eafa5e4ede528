//! A minimal browser for the login flow: a cookie jar fed by `Set-Cookie`,
//! top-level navigations (`Accept: text/html`), and the hops between the
//! app (Envoy, reached as [`PUBLIC_URL`]) and the IdP's `/authorize`.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tempfile::TempDir;
use url::Url;

use super::http::{self, Req, Resp};
use super::Stack;

/// The `public_url` the tests configure; requests to it go to Envoy.
pub const PUBLIC_URL: &str = "https://app.example.test";
pub const CLIENT_ID: &str = "portcullis-web";
pub const CLIENT_SECRET: &str = "s3cret-from-a-file";
pub const COOKIE: &str = "__Host-portcullis";
pub const POST_LOGOUT: &str = "https://app.example.test/bye";

#[derive(Default, Clone, Debug)]
pub struct Browser {
    pub jar: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.jar.retain(|(n, _)| n != name);
        self.jar.push((name.to_string(), value.to_string()));
    }

    /// Applies every `Set-Cookie` of a response (`Max-Age=0` deletes).
    pub fn absorb(&mut self, resp: &Resp) {
        for sc in resp.header_all("set-cookie") {
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').expect("cookie pair");
            if attrs.contains("Max-Age=0") {
                self.jar.retain(|(n, _)| n != name.trim());
            } else {
                self.set(name.trim(), value.trim());
            }
        }
    }

    /// The login-state cookie `start_login` set: (name, value).
    pub fn login_state(&self) -> (String, String) {
        self.jar
            .iter()
            .find(|(n, _)| n.contains("-login-"))
            .cloned()
            .expect("a login-state cookie")
    }

    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// A top-level navigation to `path` with the jar's cookies.
    pub fn nav(&self, path: &str) -> Req {
        let mut r = Req::get(path).header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        if let Some(c) = self.cookie_header() {
            r = r.header("Cookie", &c);
        }
        r
    }

    /// Navigates through Envoy and keeps the cookies it sets.
    pub fn get(&mut self, s: &Stack, path: &str) -> Resp {
        let r = s.send(&self.nav(path));
        self.absorb(&r);
        r
    }

    /// Navigates to a login route without a session: the authorization URL.
    pub fn start_login(&mut self, s: &Stack, path: &str) -> Url {
        let r = self.get(s, path);
        assert_eq!(r.status, 302, "expected a login redirect; {}", r.summary());
        Url::parse(r.header("location").expect("location")).expect("authorize URL")
    }

    /// Follows the authorization URL at the IdP: the callback path (with
    /// query) on the app, as the IdP redirects to it.
    pub fn authorize(&self, s: &Stack, authorize: &Url) -> String {
        let idp = s
            .idps
            .iter()
            .find(|i| i.port == authorize.port().unwrap_or(0))
            .expect("authorize URL points at a test IdP");
        let target = format!("{}?{}", authorize.path(), authorize.query().unwrap_or(""));
        let r = http::send(idp.addr(), &Req::get(&target)).expect("IdP /authorize");
        assert_eq!(r.status, 302, "IdP /authorize: {} {}", r.status, r.text());
        app_path(r.header("location").expect("IdP redirect"))
    }

    /// The whole login: start, IdP, callback. Returns the callback response
    /// (a redirect back to `path`), the session cookie now in the jar.
    pub fn login(&mut self, s: &Stack, path: &str) -> Resp {
        let authorize = self.start_login(s, path);
        let callback = self.authorize(s, &authorize);
        let r = self.get(s, &callback);
        assert_eq!(r.status, 302, "callback should redirect back; {}", r.summary());
        assert!(self.cookie(COOKIE).is_some(), "no session cookie after the callback");
        r
    }
}

/// The path (and query) of a URL on [`PUBLIC_URL`]; panics for any other origin.
pub fn app_path(location: &str) -> String {
    let rest = location
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{location:?} is not on {PUBLIC_URL}"));
    assert!(rest.starts_with('/'), "{location:?}");
    rest.to_string()
}

pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Writes a secret file and returns its path.
pub fn write_secret(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write secret");
    p
}

/// A fresh random session key.
pub fn new_key() -> [u8; 32] {
    rand::random()
}

/// Writes a session key file (base64url, as operators write them).
pub fn write_key(dir: &Path, name: &str, key: &[u8; 32]) -> PathBuf {
    write_secret(dir, name, URL_SAFE_NO_PAD.encode(key).as_bytes())
}

/// The secret files of a stack with browser sessions: a fresh session key
/// and the client secret, with the trailing newline a mounted Secret often
/// has. `dir` must outlive the stack (portcullis reads the files at start).
pub struct SessionFiles {
    pub dir: TempDir,
    pub key: PathBuf,
    pub client_secret: PathBuf,
}

impl SessionFiles {
    pub fn new() -> Self {
        let dir = TempDir::new().expect("tempdir");
        let key = write_key(dir.path(), "key", &new_key());
        let client_secret = write_secret(dir.path(), "client-secret", format!("{CLIENT_SECRET}\n").as_bytes());
        Self {
            dir,
            key,
            client_secret,
        }
    }

    /// `sessions:` with this key.
    pub fn sessions(&self) -> Value {
        sessions_section(&[&self.key])
    }

    /// A provider's `login:` block named `name`, with this client secret.
    pub fn login(&self, name: &str) -> Value {
        login_block(name, &self.client_secret)
    }
}

/// The `login:` block of the first provider, as the tests use it.
pub fn login_block(name: &str, secret_file: &Path) -> Value {
    json!({
        "name": name,
        "client_id": CLIENT_ID,
        "client_secret": {"file": secret_file.display().to_string()},
        "scopes": ["openid", "email", "profile", "offline_access"],
        "post_logout_redirect": POST_LOGOUT,
    })
}

/// `sessions:` with the given key files (first encrypts).
pub fn sessions_section(key_files: &[&Path]) -> Value {
    json!({
        "keys": key_files.iter().map(|p| json!({"file": p.display().to_string()})).collect::<Vec<_>>(),
        "public_url": PUBLIC_URL,
        "max_age_seconds": 3600,
        "login_timeout_seconds": 600,
        "refresh": {"enabled": true, "before_expiry_seconds": 60},
    })
}
