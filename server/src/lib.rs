//! `ota-server`'s library: serves a static update repository over HTTP(S).
//!
//! - [`resolve`]: URL path → file inside the repository, refusing every way out of it.
//! - [`response`]: status, validators (ETag, Last-Modified), caching and byte ranges, decided
//!   from metadata and request headers alone.
//! - [`serve`]: the listener: connection limits and timeouts, TLS, graceful shutdown, access log.
//!
//! Nothing served needs this server: it adds convenience (conditional GETs, ranges, cache
//! headers), never protocol, so the same directory works behind nginx or a CDN.

pub mod access_log;
pub mod resolve;
pub mod response;
pub mod serve;
