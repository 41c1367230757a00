//! Exit codes of `ota-sign`: which code of the shared table ([`ota_core::exit`]) an error gets.
//! Documented in README.md, docs/bundle-format.md and docs/signing-in-ci.md. Scripts rely on
//! them: never renumber, only add (in the table).
//!
//! Bundle errors (4 signature, 5 corrupt, 6 unsupported, 7 wrong delta base, and 2/3) come
//! from `ErrorClass::exit_code`, shared with ota-update; clap's own usage errors exit with 2.

use ota_core::bundle::BundleError;
use ota_core::exit::{CORRUPT, FAILURE, IO, USAGE};
use ota_core::keys::KeyError;
use ota_core::tuf::repository::RepoError;

/// Picks the exit code for an error by the most specific typed cause in its chain.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<BundleError>() {
            if let BundleError::Key(key) = e {
                return key.exit_code();
            }
            return e.class().exit_code();
        }
        if let Some(e) = cause.downcast_ref::<KeyError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return match e {
                RepoError::Io { .. } => IO,
                RepoError::Usage(_) => USAGE,
                RepoError::Key(e) => e.exit_code(),
                // The repository's own metadata is unreadable: corrupt.
                _ => CORRUPT,
            };
        }
        if let Some(e) = cause.downcast_ref::<UsageError>() {
            let _ = e;
            return USAGE;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return IO;
        }
    }
    FAILURE
}

/// A verdict the command already printed in full (with `--json`, as its own JSON report), such
/// as `repo doctor` finding problems: the exit code says it; no JSON error line is added.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReportedFailure(pub String);

/// A mistake in how the command was called, found after argument parsing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
