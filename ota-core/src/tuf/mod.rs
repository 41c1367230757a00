//! The Update Framework (TUF 1.0) metadata: the formats python-tuf reads and writes.
//!
//! - [`canonical`]: canonical JSON bytes, the input of every TUF signature.
//! - [`keys`]: TUF key objects, key ids, ed25519 signature checks and signing.
//! - [`envelope`]: the `signed` + `signatures` envelope and the signature threshold count.
//!
//! Nothing here touches the network or the clock: callers pass bytes in and get values out.

pub mod canonical;
pub mod envelope;
pub mod keys;
