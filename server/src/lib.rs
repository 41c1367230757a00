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

static JSON_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`log_event`] write JSON lines (`serve --json`).
pub fn set_json_log(json: bool) {
    JSON_LOG.store(json, std::sync::atomic::Ordering::Relaxed);
}

/// One line on stderr about the server itself: `ota-server: MESSAGE`, or with `--json`
/// `{"time", "event", "message"}` plus `fields`. Unlike `eprintln!` it never panics: a
/// supervisor that closed the server's stderr must not take serving or re-signing down.
pub fn log_event(event: &str, message: &str, fields: serde_json::Value) {
    use std::io::Write;
    if !JSON_LOG.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = writeln!(std::io::stderr(), "ota-server: {message}");
        return;
    }
    let line = ota_core::progress::json_log_line(event, message, fields);
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// [`log_event`] with the event `log` and no fields.
pub fn log_line(message: &str) {
    log_event("log", message, serde_json::Value::Null);
}
