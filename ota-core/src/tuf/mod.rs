//! The Update Framework (TUF 1.0) metadata: the formats python-tuf reads and writes.
//!
//! - [`canonical`]: canonical JSON bytes, the input of every TUF signature.
//!
//! Nothing here touches the network or the clock: callers pass bytes in and get values out.

pub mod canonical;
