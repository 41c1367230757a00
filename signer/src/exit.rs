//! Exit codes, documented in README.md and docs/bundle-format.md. Scripts rely on them: never
//! renumber, only add.

use ota_core::bundle::{BundleError, ErrorClass};
use ota_core::keys::KeyError;

/// Anything not covered below.
pub const FAILURE: u8 = 1;
/// Bad arguments or unusable inputs (clap also exits with 2).
pub const USAGE: u8 = 2;
/// A file could not be read or written.
pub const IO: u8 = 3;
/// Signatures invalid, missing or below the threshold.
pub const SIGNATURE: u8 = 4;
/// The bundle is corrupt or truncated (including any hash mismatch).
pub const CORRUPT: u8 = 5;
/// The bundle uses a format version or payload kind this build does not support.
pub const UNSUPPORTED: u8 = 6;
/// A delta's base image is not the one it was made from.
pub const WRONG_BASE: u8 = 7;

/// Picks the exit code for an error by the most specific typed cause in its chain.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<BundleError>() {
            return match e.class() {
                ErrorClass::Io => IO,
                ErrorClass::Signature => SIGNATURE,
                ErrorClass::Corrupt => CORRUPT,
                ErrorClass::Unsupported => UNSUPPORTED,
                ErrorClass::Usage => USAGE,
                ErrorClass::Incompatible => WRONG_BASE,
            };
        }
        if let Some(e) = cause.downcast_ref::<KeyError>() {
            return match e {
                KeyError::Read { .. } => IO,
                _ => USAGE,
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
