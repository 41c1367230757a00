//! Test-only fault injection, to prove power-loss safety. Compiled only with the cargo feature
//! `fault-injection` (the power-loss tests and the QEMU guest's updater); the release binary
//! has none of it: there [`point`] is empty and no variable below is ever read.
//!
//! Every durable step of the updater (a slot write, an fsync, a state or bootloader write) calls
//! [`point`]. With `OTA_FAULT_AT=N` in the environment the process aborts at the N-th point,
//! as abruptly as a power cut or SIGKILL: no destructor, no flush. With `OTA_FAULT_LOG=FILE`
//! each point appends its label to FILE, so a test can count the points of a whole run.
//! With `OTA_FAULT_HOLD=LABEL` (or `LABEL#K` for the K-th time that label is reached) the
//! process says so on stderr and stops there for good, so that a test harness outside a virtual
//! machine can cut its power at exactly that step, losing whatever the guest kernel had not yet
//! written (the QEMU tests in `qemu/`).
//! In such a build without these variables a point costs one relaxed atomic increment.

/// Whether this build has fault injection (the `fault-injection` feature).
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Marks a durable step. Without the `fault-injection` feature: nothing at all.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_label: &str) {}

#[cfg(feature = "fault-injection")]
pub use injection::point;

/// One file-system operation that matters after a power cut, for the crash-state enumeration
/// (`OTA_IO_LOG=FILE`: each is appended to FILE as a JSON line after it succeeded).
#[derive(Debug, Clone, Copy)]
pub enum Io<'a> {
    /// A new, empty file.
    Create(&'a std::path::Path),
    /// `data` written at `offset` (not yet durable).
    Write(&'a std::path::Path, u64, &'a [u8]),
    /// fsync / fdatasync of the file: its data is durable.
    Sync(&'a std::path::Path),
    /// A rename (the directory entries change; durable once the directory is fsynced).
    Rename(&'a std::path::Path, &'a std::path::Path),
    /// An unlink (durable once the directory is fsynced).
    Remove(&'a std::path::Path),
    /// fsync of a directory: its entries are durable.
    SyncDir(&'a std::path::Path),
}

/// Records `op` when `OTA_IO_LOG` is set. Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn io(_op: Io<'_>) {}

#[cfg(feature = "fault-injection")]
pub use injection::io;

#[cfg(feature = "fault-injection")]
mod injection {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static COUNT: AtomicU64 = AtomicU64::new(0);

    struct Settings {
        abort_at: Option<u64>,
        log: Option<std::path::PathBuf>,
        hold: Option<(String, u64)>,
    }

    /// `LABEL` or `LABEL#K` → (label, K); K defaults to 1.
    pub(super) fn parse_hold(spec: &str) -> (String, u64) {
        match spec.rsplit_once('#') {
            Some((label, k)) if k.parse::<u64>().is_ok_and(|k| k > 0) => {
                (label.to_owned(), k.parse().unwrap_or(1))
            }
            _ => (spec.to_owned(), 1),
        }
    }

    fn settings() -> &'static Settings {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        SETTINGS.get_or_init(|| Settings {
            abort_at: std::env::var("OTA_FAULT_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
            log: std::env::var_os("OTA_FAULT_LOG").map(Into::into),
            hold: std::env::var("OTA_FAULT_HOLD").ok().map(|v| parse_hold(&v)),
        })
    }

    /// Appends `op` to `OTA_IO_LOG` as one JSON line (data in hex).
    pub fn io(op: super::Io<'_>) {
        use super::Io;
        static LOG: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
        let Some(path) = LOG.get_or_init(|| std::env::var_os("OTA_IO_LOG").map(Into::into)) else {
            return;
        };
        let p = |path: &std::path::Path| path.display().to_string();
        let line = match op {
            Io::Create(f) => serde_json::json!({"op": "create", "path": p(f)}),
            Io::Write(f, offset, data) => serde_json::json!({
                "op": "write", "path": p(f), "offset": offset, "data": hex::encode(data)
            }),
            Io::Sync(f) => serde_json::json!({"op": "sync", "path": p(f)}),
            Io::Rename(from, to) => {
                serde_json::json!({"op": "rename", "path": p(from), "to": p(to)})
            }
            Io::Remove(f) => serde_json::json!({"op": "remove", "path": p(f)}),
            Io::SyncDir(d) => serde_json::json!({"op": "sync_dir", "path": p(d)}),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
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
        if let Some((hold_label, k)) = &s.hold {
            if hold_label == label {
                static SEEN: AtomicU64 = AtomicU64::new(0);
                let seen = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
                if seen == *k {
                    eprintln!("ota-fault: holding at '{label}' #{seen}");
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
            }
        }
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::injection::parse_hold;

    #[test]
    fn hold_spec_names_a_label_and_an_occurrence() {
        assert_eq!(parse_hold("slot: synced"), ("slot: synced".into(), 1));
        assert_eq!(
            parse_hold("slot: piece written#12"),
            ("slot: piece written".into(), 12)
        );
        // Not a count: part of the label.
        assert_eq!(parse_hold("a#b"), ("a#b".into(), 1));
        assert_eq!(parse_hold("a#0"), ("a#0".into(), 1));
    }
}

#[cfg(all(test, not(feature = "fault-injection")))]
mod release_tests {
    /// The build without the feature has no fault injection: `point` is empty and the
    /// `OTA_FAULT_*` variables are never read (scripts/test.sh also checks that the release
    /// binary holds no `OTA_FAULT_` string).
    #[test]
    // The constant is the point: it says what this build compiled.
    #[allow(clippy::assertions_on_constants)]
    fn without_the_feature_there_is_no_fault_injection() {
        assert!(!super::ENABLED);
    }
}
