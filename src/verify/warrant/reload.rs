//! Trust set reloads without a restart: the config file's `tenuo` section
//! and the files it names are re-read every `reload_interval` and on
//! SIGHUP. A changed, valid set replaces the old one (and its caches); an
//! invalid one is refused and the old one kept, with a log line that names
//! what was wrong. The rest of the config file is not read: it takes effect
//! only at start-up, so its problems are not the reload's.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use super::{LoadError, Trust, WarrantVerifier};
use crate::config::{self, ConfigError, Env};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Timer,
    Sighup,
}

/// Why a reload was refused; each message starts with what failed (the
/// config file, or the `tenuo` field whose file or value is wrong).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{path}: {source}")]
    Config { path: String, source: ConfigError },
    #[error("{path}: the tenuo section was removed; a restart is needed to stop verifying warrants")]
    Removed { path: String },
    #[error("{}: {source}", source.field())]
    Load {
        #[from]
        source: LoadError,
    },
    #[error("tenuo.revocation_list: version {new} is older than the loaded {old} (rollback refused)")]
    Rollback { new: u64, old: u64 },
}

/// A trust set installed by a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    pub issuers: usize,
    pub srl_version: Option<u64>,
}

/// What a reload touches: the verifier whose trust set it replaces, the
/// reload metrics, and the config file it reads the `tenuo` section from.
pub struct Reloader {
    verifier: Arc<WarrantVerifier>,
    metrics: Arc<Metrics>,
    source: PathBuf,
}

impl Reloader {
    pub fn new(verifier: Arc<WarrantVerifier>, metrics: Arc<Metrics>, source: PathBuf) -> Self {
        Self {
            verifier,
            metrics,
            source,
        }
    }

    /// Runs forever; spawn it when a `tenuo` section is configured.
    pub async fn watch(self, interval: std::time::Duration) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(event = "tenuo_reload", error = %e, "cannot listen for SIGHUP; reloading on the timer only");
                None
            }
        };
        let mut last_error = String::new();
        loop {
            let trigger = tokio::select! {
                _ = tokio::time::sleep(interval) => Trigger::Timer,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Sighup,
            };
            match self.reload() {
                Ok(Some(trust)) => {
                    tracing::info!(
                        event = "tenuo_reloaded",
                        trigger = ?trigger,
                        trusted_issuers = trust.issuers,
                        revocation_list_version = trust.srl_version,
                    );
                    self.metrics.tenuo_reloaded(true, Some(trust.issuers));
                    last_error.clear();
                }
                Ok(None) => {
                    if matches!(trigger, Trigger::Sighup) {
                        tracing::info!(event = "tenuo_reload_unchanged", trigger = ?trigger);
                    }
                    last_error.clear();
                }
                Err(error) => {
                    let error = error.to_string();
                    // Once per distinct problem, or on every explicit SIGHUP.
                    if error != last_error || matches!(trigger, Trigger::Sighup) {
                        tracing::error!(event = "tenuo_reload_failed", trigger = ?trigger, error = %error, "kept the previous trust set");
                        self.metrics.tenuo_reloaded(false, None);
                    }
                    last_error = error;
                }
            }
        }
    }

    /// `Ok(Some(_))` when a new trust set was installed, `Ok(None)` when
    /// nothing changed.
    pub fn reload(&self) -> Result<Option<Reloaded>, ReloadError> {
        let path = || self.source.display().to_string();
        let tenuo = config::read_tenuo(&self.source, &Env)
            .map_err(|source| ReloadError::Config { path: path(), source })?
            .ok_or_else(|| ReloadError::Removed { path: path() })?;
        let trust = Trust::load(&tenuo)?;
        let current = self.verifier.trust();
        if trust.fingerprint == current.fingerprint {
            return Ok(None);
        }
        if let (Some(old), Some(new)) = (current.srl_version, trust.srl_version) {
            if new < old {
                return Err(ReloadError::Rollback { new, old });
            }
        }
        let reloaded = Reloaded {
            issuers: trust.issuers,
            srl_version: trust.srl_version,
        };
        self.verifier.replace(trust);
        Ok(Some(reloaded))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tenuo::SigningKey;

    use super::*;

    const GATEWAY: &str = "      version: \"1\"\n      settings: {}\n      tools:\n        t: {description: A tool, constraints: {}}\n      routes:\n        - {pattern: /t, method: [GET], tool: t}\n";

    fn hex_key() -> String {
        hex::encode(SigningKey::generate().public_key().to_bytes())
    }

    /// A whole config: the `tenuo` section trusting `issuers`, and browser
    /// sessions whose key file `key` may be missing.
    fn write_config(path: &Path, issuers: &[&str], key: &Path) {
        let yaml = format!(
            "oidc:\n  providers:\n    - issuer: https://dex.example.com/dex\n      audiences: [portcullis]\n      login: {{name: dex, client_id: web}}\n\
             sessions:\n  keys: [{{file: {key}}}]\n  public_url: https://app.example.com\n\
             rules:\n  - path_prefix: /\n    login: dex\n\
             tenuo:\n  trusted_issuers: [{issuers}]\n  gateway:\n{GATEWAY}",
            key = key.display(),
            issuers = issuers.join(", "),
        );
        std::fs::write(path, yaml).expect("write config");
    }

    fn reloader(path: &Path) -> Reloader {
        let tenuo = config::read_tenuo(path, &Env).expect("read").expect("tenuo section");
        let verifier = Arc::new(WarrantVerifier::new(Trust::load(&tenuo).expect("trust")));
        Reloader::new(verifier, Arc::new(Metrics::new()), path.to_path_buf())
    }

    /// A session key file that has gone away breaks the config as a whole
    /// (start-up would refuse it) but not the trust reload, which reads
    /// only the `tenuo` section.
    #[test]
    fn a_problem_outside_the_tenuo_section_does_not_refuse_a_trust_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, key) = (dir.path().join("portcullis.yaml"), dir.path().join("session-key"));
        let (a, b) = (hex_key(), hex_key());
        write_config(&path, &[&a], &key);
        let reloader = reloader(&path);
        match config::read(&path, &Env) {
            Err(ConfigError::Invalid(errors)) => assert_eq!(
                errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
                ["sessions.keys[0]"],
                "the whole config is refused for its session key alone"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(reloader.reload().expect("reload"), None, "nothing changed");

        write_config(&path, &[&a, &b], &key);
        let reloaded = reloader.reload().expect("reload");
        assert_eq!(
            reloaded,
            Some(Reloaded {
                issuers: 2,
                srl_version: None
            })
        );
        assert_eq!(reloader.verifier.trust().issuers, 2);
    }

    /// A refused reload says what failed, and keeps the trust set.
    #[test]
    fn a_refused_reload_names_what_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, key) = (dir.path().join("portcullis.yaml"), dir.path().join("session-key"));
        write_config(&path, &[&hex_key()], &key);
        let reloader = reloader(&path);
        let at = path.display().to_string();

        write_config(&path, &["zz"], &key);
        let error = reloader.reload().expect_err("a bad key").to_string();
        assert!(
            error.starts_with(&format!("{at}: invalid configuration:"))
                && error.contains("tenuo.trusted_issuers[0]: must be a 32-byte Ed25519 public key"),
            "{error}"
        );

        std::fs::write(&path, "tenuo: [broken").expect("write");
        let error = reloader.reload().expect_err("broken YAML").to_string();
        assert!(error.starts_with(&format!("{at}: ")), "{error}");

        std::fs::write(&path, "listen: 127.0.0.1:0\n").expect("write");
        let error = reloader.reload().expect_err("section removed").to_string();
        assert_eq!(
            error,
            format!("{at}: the tenuo section was removed; a restart is needed to stop verifying warrants")
        );

        let gateway = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            format!(
                "tenuo:\n  trusted_issuers: [{}]\n  gateway_config: {}\n",
                hex_key(),
                gateway.display()
            ),
        )
        .expect("write");
        let error = reloader.reload().expect_err("gateway file missing").to_string();
        assert!(
            error.starts_with(&format!("tenuo.gateway_config: cannot read {}", gateway.display())),
            "{error}"
        );
        assert_eq!(reloader.verifier.trust().issuers, 1, "the old set stays");
    }
}
