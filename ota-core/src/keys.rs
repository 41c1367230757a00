//! ed25519 keys in the PEM encodings `openssl` uses: PKCS#8 private keys
//! (`-----BEGIN PRIVATE KEY-----`) and SPKI public keys (`-----BEGIN PUBLIC KEY-----`).
//!
//! A key is named by its [`KeyId`]: the SHA-256 of the raw 32-byte public key.

use crate::digest::Sha256Digest;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer;
use std::fmt;
use std::path::Path;

pub use ed25519_dalek::Signature;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not an ed25519 private key in PKCS#8 PEM.
    #[error("{origin}: not an ed25519 private key in PKCS#8 PEM (make one with `ota-sign keygen` or `openssl genpkey -algorithm ed25519`): {detail}")]
    BadPrivateKey {
        /// Where the text came from (a path or an environment variable).
        origin: String,
        /// The decoder's reason.
        detail: String,
    },
    /// The text is not an ed25519 public key in SPKI PEM.
    #[error("{origin}: not an ed25519 public key in PEM (make one with `ota-sign keygen` or `openssl pkey -pubout`): {detail}")]
    BadPublicKey {
        /// Where the text came from.
        origin: String,
        /// The decoder's reason.
        detail: String,
    },
}

/// Identifies a public key: SHA-256 over its raw 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(pub Sha256Digest);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A private key that signs bundle manifests.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// Makes a new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut rng = rand_core::OsRng;
        Self {
            inner: ed25519_dalek::SigningKey::generate(&mut rng),
        }
    }

    /// Parses a PKCS#8 PEM private key; `origin` names the source in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(|inner| Self { inner })
            .map_err(|e| KeyError::BadPrivateKey {
                origin: origin.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Reads and parses a PKCS#8 PEM private key file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// The PKCS#8 PEM encoding (what `openssl genpkey -algorithm ed25519` writes).
    pub fn to_pem(&self) -> String {
        // Encoding a valid in-memory key cannot fail; the only error is an allocation-free
        // encoder running out of room, which the pem encoder does not have.
        self.inner
            .to_pkcs8_pem(Default::default())
            .map(|z| z.as_str().to_owned())
            .unwrap_or_default()
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// Signs `message` (pure ed25519, no prehash).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.inner.sign(message)
    }
}

/// A public key that verifies bundle manifests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// Parses an SPKI PEM public key; `origin` names the source in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(|inner| Self { inner })
            .map_err(|e| KeyError::BadPublicKey {
                origin: origin.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Reads and parses an SPKI PEM public key file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// Builds a key from its raw 32 bytes (as carried in TUF metadata, for instance).
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|inner| Self { inner })
    }

    /// The SPKI PEM encoding (what `openssl pkey -pubout` writes).
    pub fn to_pem(&self) -> String {
        self.inner
            .to_public_key_pem(Default::default())
            .unwrap_or_default()
    }

    /// The raw 32-byte public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }

    /// SHA-256 of the raw public key.
    pub fn key_id(&self) -> KeyId {
        KeyId(Sha256Digest::of(self.inner.as_bytes()))
    }

    /// True when `signature` is a valid strict ed25519 signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        // verify_strict refuses small-order keys and malleable signatures.
        self.inner.verify_strict(message, signature).is_ok()
    }
}

fn read_key_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_sign() {
        let key = SigningKey::generate();
        let again = SigningKey::from_pem(&key.to_pem(), "test").unwrap();
        let public = VerifyingKey::from_pem(&key.verifying_key().to_pem(), "test").unwrap();
        assert_eq!(public, again.verifying_key());
        let sig = again.sign(b"manifest");
        assert!(public.verifies(b"manifest", &sig));
        assert!(!public.verifies(b"manifesT", &sig));
    }

    #[test]
    fn garbage_pem_is_refused_with_origin() {
        let err = SigningKey::from_pem("hello", "OTA_SIGNING_KEY")
            .err()
            .unwrap();
        assert!(err
            .to_string()
            .starts_with("OTA_SIGNING_KEY: not an ed25519 private key"));
        assert!(VerifyingKey::from_pem("hello", "x").is_err());
    }
}
