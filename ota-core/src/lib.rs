//! Formats shared by the OTA signer, server and updater.
//!
//! - [`digest`]: SHA-256 digests as a type ([`Sha256Digest`]), hex on the wire.
//! - [`keys`]: ed25519 signing and verifying keys in PEM (PKCS#8 / SPKI), key ids, key generation.
//! - [`bundle`]: the signed, chunk-verified bundle format: manifest, signature block, payload;
//!   a builder for the signer and a streaming verifier for the updater.
//! - [`release`]: the release model of a repository target (`custom` metadata) and the rule
//!   that picks a delta or a full payload per image.
//! - [`rollout`]: fleet rollout state (waves, pause, pull) and the device's bucket arithmetic.
//! - [`tuf`]: TUF 1.0 metadata (canonical JSON so far), interoperable with python-tuf.
//! - [`exit`]: the exit codes of every OTA command, one table.
//!
//! Nothing here prints or reads configuration: the binaries own I/O policy, progress and errors.

pub mod bundle;
pub mod delta;
pub mod digest;
pub mod exit;
#[cfg(feature = "key-references")]
pub mod keyref;
pub mod keys;
pub mod progress;
pub mod provenance;
pub mod release;
pub mod rollout;
pub mod tuf;

pub use digest::Sha256Digest;
