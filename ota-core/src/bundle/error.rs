//! Errors from building and reading bundles, each with a class that maps to an exit code.

use std::io;

/// What went wrong with a bundle. Messages are one line and say what to do where that helps.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing failed for a reason outside the bundle's content.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The first bytes are not the bundle magic.
    #[error("not an OTA bundle (bad magic bytes)")]
    NotABundle,
    /// The header names a format version this reader does not know.
    #[error("bundle format version {found} is not supported (this reader understands version {}); update the OTA tools", super::FORMAT_VERSION)]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
    },
    /// The bundle ended early.
    #[error("bundle is truncated: it ends inside the {what}")]
    Truncated {
        /// Which part was being read.
        what: &'static str,
    },
    /// The bytes do not follow the format.
    #[error("bundle is corrupt: {0}")]
    Corrupt(String),
    /// Not enough valid signatures from trusted keys.
    #[error("signature check failed: {valid} valid signature(s) from trusted keys, {required} required ({present} present in the bundle)")]
    ThresholdNotMet {
        /// Distinct trusted keys whose signature verified.
        valid: usize,
        /// The threshold.
        required: usize,
        /// Signatures carried by the bundle, trusted or not.
        present: usize,
    },
    /// A payload chunk's bytes do not hash to the manifest's value.
    #[error("bundle is corrupt: chunk {index} of image '{image}' (payload offset {payload_offset}) does not match its signed SHA-256")]
    ChunkHashMismatch {
        /// Image name.
        image: String,
        /// Chunk index within the image.
        index: usize,
        /// Where the chunk starts in the payload.
        payload_offset: u64,
    },
    /// A delta operation's data does not hash to its signed value.
    #[error("bundle is corrupt: the data of operation {index} of delta image '{image}' does not match its signed SHA-256")]
    OpHashMismatch {
        /// Image name.
        image: String,
        /// Operation index.
        index: usize,
    },
    /// The assembled image does not hash to the manifest's value.
    #[error("bundle is corrupt: image '{image}' hashes to {actual}, the signed manifest says {expected}")]
    ImageHashMismatch {
        /// Image name.
        image: String,
        /// The manifest's digest.
        expected: String,
        /// What the written bytes hash to.
        actual: String,
    },
    /// The manifest uses a payload kind this reader cannot apply.
    #[error("image '{image}' uses payload kind '{kind}', which this reader does not support; update the OTA tools")]
    UnsupportedPayload {
        /// Image name.
        image: String,
        /// The kind.
        kind: String,
    },
    /// The caller's sink for an image failed.
    #[error("cannot write image '{image}': {source}")]
    Sink {
        /// Image name.
        image: String,
        /// The sink's error.
        source: io::Error,
    },
    /// A delta's base is not the image it was made from.
    #[error("wrong base for delta image '{image}': {reason}")]
    WrongBase {
        /// Image name.
        image: String,
        /// What differs.
        reason: String,
    },
    /// Bad input when building (a name, a size, an option).
    #[error("{0}")]
    InvalidInput(String),
    /// A signing key failed to sign (an HSM or KMS refused or could not be reached).
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

/// Coarse classes of [`BundleError`], one exit code each in the CLIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// I/O outside the bundle's content (unreadable file, full disk).
    Io,
    /// Signatures missing, invalid, or below threshold.
    Signature,
    /// Truncated, malformed or hash-mismatching content.
    Corrupt,
    /// A format version or payload kind this code does not know.
    Unsupported,
    /// Bad arguments or inputs from the caller.
    Usage,
    /// The bundle does not fit what it is applied to (a delta's base differs).
    Incompatible,
}

impl ErrorClass {
    /// The exit code every OTA command uses for this class, from the one table in
    /// [`crate::exit`].
    pub fn exit_code(self) -> u8 {
        use crate::exit;
        match self {
            ErrorClass::Usage => exit::USAGE,
            ErrorClass::Io => exit::IO,
            ErrorClass::Signature => exit::SIGNATURE,
            ErrorClass::Corrupt => exit::CORRUPT,
            ErrorClass::Unsupported => exit::UNSUPPORTED,
            ErrorClass::Incompatible => exit::INCOMPATIBLE,
        }
    }
}

impl BundleError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            BundleError::Io(_) | BundleError::Sink { .. } => ErrorClass::Io,
            BundleError::Key(e) if e.exit_code() == crate::exit::IO => ErrorClass::Io,
            BundleError::Key(_) => ErrorClass::Usage,
            BundleError::ThresholdNotMet { .. } => ErrorClass::Signature,
            BundleError::NotABundle
            | BundleError::Truncated { .. }
            | BundleError::Corrupt(_)
            | BundleError::ChunkHashMismatch { .. }
            | BundleError::OpHashMismatch { .. }
            | BundleError::ImageHashMismatch { .. } => ErrorClass::Corrupt,
            BundleError::UnsupportedVersion { .. } | BundleError::UnsupportedPayload { .. } => {
                ErrorClass::Unsupported
            }
            BundleError::InvalidInput(_) => ErrorClass::Usage,
            BundleError::WrongBase { .. } => ErrorClass::Incompatible,
        }
    }
}
