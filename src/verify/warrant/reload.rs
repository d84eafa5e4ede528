//! Trust set reloads without a restart: the config file (its `tenuo`
//! section) and the files it names are re-read every `reload_interval` and
//! on SIGHUP. A changed, valid set replaces the old one (and its caches); an
//! invalid one is refused and the old one kept, with a log line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use super::Trust;
use crate::check::Checker;
use crate::config::{self, Env};

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Timer,
    Sighup,
}

/// Runs forever; spawn it when a `tenuo` section is configured.
pub async fn watch(checker: Arc<Checker>, path: PathBuf, interval: std::time::Duration) {
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
        let result = reload(&checker, &path);
        let metrics = checker.metrics();
        match result {
            Ok(Some(trust)) => {
                tracing::info!(
                    event = "tenuo_reloaded",
                    trigger = ?trigger,
                    trusted_issuers = trust.0,
                    revocation_list_version = trust.1,
                );
                metrics.tenuo_reloaded(true, Some(trust.0));
                last_error.clear();
            }
            Ok(None) => {
                if matches!(trigger, Trigger::Sighup) {
                    tracing::info!(event = "tenuo_reload_unchanged", trigger = ?trigger);
                }
                last_error.clear();
            }
            Err(error) => {
                // Once per distinct problem, or on every explicit SIGHUP.
                if error != last_error || matches!(trigger, Trigger::Sighup) {
                    tracing::error!(event = "tenuo_reload_failed", trigger = ?trigger, error = %error, "kept the previous trust set");
                    metrics.tenuo_reloaded(false, None);
                }
                last_error = error;
            }
        }
    }
}

/// `Ok(Some((issuers, srl version)))` when a new trust set was installed,
/// `Ok(None)` when nothing changed.
fn reload(checker: &Checker, path: &Path) -> Result<Option<(usize, Option<u64>)>, String> {
    let Some(verifier) = checker.warrant() else {
        return Ok(None);
    };
    let config = config::read(path, &Env).map_err(|e| e.to_string())?;
    let Some(tenuo) = &config.tenuo else {
        return Err("the tenuo section was removed; a restart is needed to stop verifying warrants".into());
    };
    let trust = Trust::load(tenuo).map_err(|e| format!("{}: {e}", e.field()))?;
    let current = verifier.trust();
    if trust.fingerprint == current.fingerprint {
        return Ok(None);
    }
    if let (Some(old), Some(new)) = (current.srl_version, trust.srl_version) {
        if new < old {
            return Err(format!(
                "revocation list version {new} is older than the loaded {old} (rollback refused)"
            ));
        }
    }
    let summary = (trust.issuers, trust.srl_version);
    verifier.replace(trust);
    Ok(Some(summary))
}
