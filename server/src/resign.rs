//! Online re-signing: when the server holds the timestamp (and snapshot) keys it keeps the
//! repository fresh on its own. Every interval it re-signs timestamp before it expires (within
//! half its lifetime), snapshot likewise, and both when CI published new targets without the
//! online keys or a key rotation left them unverifiable. The files are written atomically, so
//! clients (and nginx or a CDN serving the same directory) never see a half-written one.

use ota_core::keys::SigningKey;
use ota_core::tuf::repository::{PublishReport, RepoError, Repository};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One pass over the repository at `dir` with `keys`.
pub fn resign_once(dir: &Path, keys: &[SigningKey]) -> Result<PublishReport, RepoError> {
    let mut repo = Repository::open(dir)?;
    repo.refresh(keys, SystemTime::now(), false)
}

/// Runs [`resign_once`] every `interval` on a background thread, logging what it did and any
/// error (a failed pass is retried at the next interval; clients keep the previous files).
pub fn spawn(dir: PathBuf, keys: Vec<SigningKey>, interval: Duration) {
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        match resign_once(&dir, &keys) {
            Ok(report) => log(&report),
            Err(e) => crate::log_event(
                "resign_failed",
                &format!(
                    "re-signing failed: {e}; retrying in {} s",
                    interval.as_secs()
                ),
                serde_json::json!({"retry_in_secs": interval.as_secs()}),
            ),
        }
    });
}

/// Logs a pass that changed something.
pub fn log(report: &PublishReport) {
    if report.snapshot.is_some() || report.timestamp.is_some() {
        let part =
            |name: &str, v: Option<u64>| v.map(|v| format!(" {name} v{v}")).unwrap_or_default();
        crate::log_event(
            "resigned",
            &format!(
                "re-signed{}{}",
                part("snapshot", report.snapshot),
                part("timestamp", report.timestamp)
            ),
            serde_json::json!({"snapshot_version": report.snapshot, "timestamp_version": report.timestamp}),
        );
    }
}
