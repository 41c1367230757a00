//! Test-only fault injection, to prove power-loss safety.
//!
//! Every durable step of the updater (a slot write, an fsync, a state or bootloader write) calls
//! [`point`]. With `OTA_FAULT_AT=N` in the environment the process aborts at the N-th point,
//! as abruptly as a power cut or SIGKILL: no destructor, no flush. With `OTA_FAULT_LOG=FILE`
//! each point appends its label to FILE, so a test can count the points of a whole run.
//! Without these variables a point costs one relaxed atomic increment.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNT: AtomicU64 = AtomicU64::new(0);

struct Settings {
    abort_at: Option<u64>,
    log: Option<std::path::PathBuf>,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        abort_at: std::env::var("OTA_FAULT_AT")
            .ok()
            .and_then(|v| v.parse().ok()),
        log: std::env::var_os("OTA_FAULT_LOG").map(Into::into),
    })
}

/// Marks a durable step. `label` names it in the log.
pub fn point(label: &str) {
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    let s = settings();
    if let Some(path) = &s.log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{n} {label}");
        }
    }
    if s.abort_at == Some(n) {
        std::process::abort();
    }
}
