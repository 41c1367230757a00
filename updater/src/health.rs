//! Running the health check of a trial boot, with a timeout.

use crate::config::{Config, HealthCheck};
use crate::slot::SlotName;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the configured check; `Ok(())` when healthy, `Err(reason)` otherwise. The check gets
/// `OTA_SLOT`, `OTA_VERSION` and `OTA_SLOT_<IMAGE>` (the image's device) in its environment;
/// its output goes to `health.log` in the state directory, whose last line joins the reason.
pub fn run(
    config: &Config,
    check: &HealthCheck,
    slot: &SlotName,
    version: Option<&semver::Version>,
) -> Result<(), String> {
    let log_path = config.state_dir.join("health.log");
    let log =
        create_log(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(&check.command[0]);
    cmd.args(&check.command[1..])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .env("OTA_SLOT", slot.as_str())
        .env(
            "OTA_VERSION",
            version.map(|v| v.to_string()).unwrap_or_default(),
        );
    if let Some(images) = config.slots.get(slot) {
        for (image, device) in images {
            cmd.env(format!("OTA_SLOT_{}", env_suffix(image)), device);
        }
    }
    let shown = check.command.join(" ");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(check.timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` did not finish within {} s",
                    check.timeout_secs
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for `{shown}`: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let last_line = read_log(&log_path).and_then(|t| {
        t.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
    });
    let mut reason = format!("`{shown}` exited with {status}");
    if let Some(line) = last_line {
        reason.push_str(": ");
        reason.push_str(&line.chars().take(200).collect::<String>());
    }
    Err(reason)
}

/// The log's text (its last line joins the reason), read without following a link.
fn read_log(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    crate::state::open_no_follow(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Makes the log anew: the old one (or anything planted in its place, a symbolic link
/// included) is unlinked, and the new file is created exclusively, never through a link.
fn create_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// `rootfs` → `ROOTFS`, `boot.vfat` → `BOOT_VFAT`.
fn env_suffix(image: &str) -> String {
    image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
