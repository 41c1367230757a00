//! The clock policy for metadata expiry. Devices often boot with a wrong clock (no RTC
//! battery: 1970 until NTP answers), and a clock set back is exactly what a freeze attack
//! wants: every expired timestamp looks fresh again.
//!
//! The time used for expiry checks is the latest of
//! - the system clock,
//! - the build time of this updater (`OTA_BUILD_EPOCH`, from `SOURCE_DATE_EPOCH` when set): the
//!   device cannot be running software built in its future,
//! - the floor recorded in the metadata cache (`clock-floor`): the reference time of the last
//!   successful refresh. It only moves forward, so once a device has seen a time, a replayed
//!   older timestamp that expired before it is refused even if the clock falls back to 1970.
//!
//! A device whose clock runs *ahead* refuses metadata early (a fail-safe outage, fixed by the
//! repository's timestamp refresh once the clock is right); one whose clock is behind is
//! bounded by the floor.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Build time of this binary, seconds since the epoch.
pub const BUILD_EPOCH: u64 = match u64::from_str_radix(env!("OTA_BUILD_EPOCH"), 10) {
    Ok(v) => v,
    Err(_) => 0,
};

const FLOOR_FILE: &str = "clock-floor";

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The reference time and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ReferenceTime {
    /// The time to check expiry against.
    pub now: SystemTime,
    /// True when the system clock was behind the floor or build time and was not used.
    pub clock_behind: bool,
}

/// The time to check expiry against, for the metadata cache in `dir`.
pub fn reference_time(dir: &Path) -> ReferenceTime {
    let system = SystemTime::now();
    let floor = std::fs::read_to_string(dir.join(FLOOR_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .max(BUILD_EPOCH);
    if secs(system) >= floor {
        ReferenceTime {
            now: system,
            clock_behind: false,
        }
    } else {
        ReferenceTime {
            now: UNIX_EPOCH + Duration::from_secs(floor),
            clock_behind: true,
        }
    }
}

/// Records `now` as the floor after a successful refresh (never moves it back).
pub fn advance_floor(dir: &Path, now: SystemTime) -> std::io::Result<()> {
    let old = std::fs::read_to_string(dir.join(FLOOR_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let new = secs(now);
    if new > old {
        crate::fsutil::atomic_write(&dir.join(FLOOR_FILE), format!("{new}\n").as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_holds_a_clock_that_fell_back() {
        let dir = tempfile::tempdir().unwrap();
        let ahead = SystemTime::now() + Duration::from_secs(86_400 * 365);
        advance_floor(dir.path(), ahead).unwrap();
        let t = reference_time(dir.path());
        assert!(t.clock_behind);
        assert_eq!(secs(t.now), secs(ahead));
        // Never moves back.
        advance_floor(dir.path(), UNIX_EPOCH).unwrap();
        assert_eq!(secs(reference_time(dir.path()).now), secs(ahead));
    }

    #[test]
    fn build_time_is_a_floor() {
        let dir = tempfile::tempdir().unwrap();
        assert!(secs(reference_time(dir.path()).now) >= BUILD_EPOCH);
        let build_epoch = BUILD_EPOCH;
        assert!(build_epoch > 1_700_000_000, "build time not recorded");
    }
}
