//! The Update Framework (TUF 1.0) metadata: the formats python-tuf reads and writes, and the
//! client-side checks.
//!
//! - [`canonical`]: canonical JSON bytes, the input of every TUF signature.
//! - [`keys`]: TUF key objects, key ids, signature checks (ed25519, ECDSA P-256, RSA-PSS) and
//!   ed25519 signing.
//! - [`envelope`]: the `signed` + `signatures` envelope and the signature threshold count.
//! - [`metadata`]: typed views of root, targets (with delegations), snapshot and timestamp.
//! - [`trusted`]: the trusted metadata set: the client workflow's checks (spec §5), no I/O.
//! - [`repository`]: writing and re-signing a repository directory (consistent snapshots).
//!
//! Nothing here touches the network or the clock: callers pass bytes and the time in.

pub mod canonical;
pub mod envelope;
pub mod keys;
pub mod metadata;
pub mod repository;
pub mod trusted;
