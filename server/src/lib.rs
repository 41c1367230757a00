//! `ota-server`'s library: serves a static update repository over HTTP(S).
//!
//! - [`resolve`]: URL path → file inside the repository, refusing every way out of it.
//! - [`response`]: status, validators (ETag, Last-Modified), caching and byte ranges, decided
//!   from metadata and request headers alone.
//! - [`serve`]: the listener: connection limits and timeouts, TLS, graceful shutdown, access log.
//! - [`limits`]: the minimum send rate and the per-peer connection cap.
//! - [`small_files`]: small files (metadata) served from memory while their identity holds.
//! - [`resign`]: optional online re-signing of timestamp and snapshot with keys the server holds.
//!
//! Nothing served needs this server: it adds convenience (conditional GETs, ranges, cache
//! headers), never protocol, so the same directory works behind nginx or a CDN.

pub mod access_log;
pub mod limits;
pub mod resign;
pub mod resolve;
pub mod response;
pub mod serve;
pub mod small_files;

/// One line on stderr, prefixed `ota-server: `. Unlike `eprintln!` it never panics: a
/// supervisor that closed the server's stderr must not take serving or re-signing down.
pub fn log_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "ota-server: {line}");
}
