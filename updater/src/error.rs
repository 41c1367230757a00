//! Errors of the updater, each with a class that maps to a documented exit code.

use ota_core::bundle::BundleError;
use std::io;

/// Everything the updater can refuse or fail at. Messages are one line, say what was wrong
/// and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The configuration file is missing, unreadable or invalid.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, with line and column where known.
        reason: String,
    },
    /// The bundle failed verification.
    #[error("{0}")]
    Bundle(BundleError),
    /// The bundle is valid but not for this device.
    #[error("incompatible bundle: {0}")]
    Incompatible(String),
    /// The bundle's version is not newer than the booted one.
    #[error("downgrade refused: bundle version {bundle} is not newer than the booted version {booted} (use --allow-downgrade to install it anyway; its signature is still required)")]
    Downgrade {
        /// The bundle's version.
        bundle: String,
        /// The booted slot's version.
        booted: String,
    },
    /// Another updater process holds the lock.
    #[error(
        "another ota-update process is running (lock {0} is held); try again when it has finished"
    )]
    Busy(String),
    /// The request is not possible in the device's current state.
    #[error("refused: {0}")]
    Refused(String),
    /// The health check failed; the device falls back to the other slot.
    #[error("health check failed: {0}")]
    HealthCheck(String),
    /// The bootloader environment could not be read or written.
    #[error("bootloader: {0}")]
    Bootloader(String),
    /// A slot could not be read or written.
    #[error("slot {slot}: {reason}")]
    Slot {
        /// The slot.
        slot: String,
        /// What failed.
        reason: String,
    },
    /// The repository's TUF metadata was refused, or the TUF client failed.
    #[error("{0}")]
    Tuf(crate::tuf_client::TufError),
    /// A download failed (network, server, or an endless-data / slow-retrieval defence).
    #[error("download: {0}")]
    Fetch(crate::fetch::FetchError),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// Exit codes of `ota-update`: the table shared by every OTA command, documented for
/// `ota-update` in docs/updater.md. Never renumber, only add.
pub use ota_core::exit;

impl UpdateError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            UpdateError::Config { .. } => exit::USAGE,
            UpdateError::Bundle(e) => e.class().exit_code(),
            UpdateError::Fetch(e) => fetch_exit_code(e),
            UpdateError::Tuf(e) => tuf_exit_code(e),
            UpdateError::Incompatible(_) => exit::INCOMPATIBLE,
            UpdateError::Downgrade { .. } => exit::DOWNGRADE,
            UpdateError::Busy(_) => exit::BUSY,
            UpdateError::Refused(_) => exit::REFUSED,
            UpdateError::HealthCheck(_) => exit::HEALTH_CHECK,
            UpdateError::Bootloader(_) | UpdateError::Io { .. } => exit::IO,
            UpdateError::Slot { .. } => exit::IO,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> UpdateError {
        let context = context.into();
        move |source| UpdateError::Io { context, source }
    }
}

impl From<BundleError> for UpdateError {
    /// A bundle read from the network fails with the download's error, not as an I/O error
    /// of the bundle.
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::Io(io)
                if io
                    .get_ref()
                    .is_some_and(|i| i.is::<crate::fetch::FetchError>()) =>
            {
                match io
                    .into_inner()
                    .map(|i| i.downcast::<crate::fetch::FetchError>())
                {
                    Some(Ok(fetch)) => UpdateError::Fetch(*fetch),
                    Some(Err(other)) => {
                        UpdateError::Bundle(BundleError::Io(io::Error::other(other)))
                    }
                    None => UpdateError::Bundle(BundleError::Io(io::Error::other("I/O error"))),
                }
            }
            other => UpdateError::Bundle(other),
        }
    }
}

fn fetch_exit_code(e: &crate::fetch::FetchError) -> u8 {
    match e {
        crate::fetch::FetchError::Unverified { .. } => exit::CORRUPT,
        _ => exit::NETWORK,
    }
}

fn tuf_exit_code(e: &crate::tuf_client::TufError) -> u8 {
    use crate::tuf_client::TufError;
    use ota_core::tuf::trusted::TrustError;
    match e {
        TufError::Trust(TrustError::Signature(_)) => exit::SIGNATURE,
        TufError::Trust(TrustError::Expired { .. }) => exit::EXPIRED,
        TufError::Trust(TrustError::Metadata(_)) => exit::CORRUPT,
        TufError::Trust(_) => exit::METADATA,
        TufError::Fetch(f) => fetch_exit_code(f),
        TufError::Cache { .. } => exit::IO,
        TufError::NoRoot(_) => exit::USAGE,
        TufError::UnknownTarget(_) => exit::FAILURE,
    }
}

impl From<crate::tuf_client::TufError> for UpdateError {
    fn from(e: crate::tuf_client::TufError) -> Self {
        UpdateError::Tuf(e)
    }
}

/// Result with [`UpdateError`].
pub type Result<T> = std::result::Result<T, UpdateError>;
