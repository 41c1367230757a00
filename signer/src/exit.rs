//! Exit codes, documented in README.md and docs/bundle-format.md. Scripts rely on them: never
//! renumber, only add.

use ota_core::bundle::BundleError;
use ota_core::keys::KeyError;
use ota_core::tuf::repository::RepoError;

/// Anything not covered below.
pub const FAILURE: u8 = 1;
/// Bad arguments or unusable inputs (clap also exits with 2).
pub const USAGE: u8 = 2;
/// A file could not be read or written.
pub const IO: u8 = 3;
/// Corrupt input (a repository's own metadata here; bundles map through `ErrorClass`).
pub const CORRUPT: u8 = 5;
// Bundle errors (4 signature, 5 corrupt, 6 unsupported, 7 wrong delta base, and 2/3 above)
// come from `ErrorClass::exit_code`, shared with ota-update.

/// Picks the exit code for an error by the most specific typed cause in its chain.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<BundleError>() {
            return e.class().exit_code();
        }
        if let Some(e) = cause.downcast_ref::<KeyError>() {
            return match e {
                KeyError::Read { .. } => IO,
                _ => USAGE,
            };
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return match e {
                RepoError::Io { .. } => IO,
                RepoError::Usage(_) => USAGE,
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

/// A mistake in how the command was called, found after argument parsing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
