//! Fleet rollout state: what a fleet admin signs (with the rollout key, in the delegated TUF
//! role [`ROLLOUT_ROLE`]) to stage, pause, resume and pull one release on one channel, and the
//! device-side arithmetic that turns it into "this device, now: yes or no".
//!
//! One entry per (product, channel, version), stored as a TUF target `rollout/PRODUCT/CHANNEL/
//! VERSION` of the `rollout` role, its state in the entry's `custom` ([`RolloutEntry`]). The
//! schedule is a list of points (time after the start, share of the fleet); between points the
//! share grows linearly. A device is eligible when its bucket — a stable number from its device
//! id and the release's identity ([`bucket`]) — lies below the share: the same device stays
//! eligible as the share grows, and different releases reach the fleet in different orders.
//! Shares are integers in basis points (1 % = 100): TUF's canonical JSON has no floats.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The delegated targets role that holds rollout state.
pub const ROLLOUT_ROLE: &str = "rollout";
/// The delegation's path pattern: `rollout/PRODUCT/CHANNEL/VERSION`.
pub const ROLLOUT_PATHS: &str = "rollout/*/*/*";
/// The whole fleet, in basis points.
pub const FULL_SHARE: u32 = 10_000;
/// Most points in a schedule.
pub const MAX_WAVES: usize = 64;

/// Why a schedule or an entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// A `--waves` specification that does not parse or is not monotonic.
    #[error("waves {spec:?}: {reason}")]
    Waves {
        /// The specification.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A rollout entry that does not parse.
    #[error("rollout entry: {0}")]
    Malformed(String),
}

/// One point of a schedule: `offset_secs` after the start, `share_bp` of the fleet is eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// Seconds after the start.
    pub offset_secs: u64,
    /// Eligible share in basis points (0..=10000).
    pub share_bp: u32,
}

/// What the admin decided for the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// Offered by the schedule.
    Active,
    /// Offered to no device until resumed.
    Paused,
    /// Offered to nobody; devices running it move back to the newest release they may run.
    Pulled,
}

/// The signed rollout state of one release on one channel (a rollout target's `custom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutEntry {
    /// Product.
    pub product: String,
    /// Release version.
    pub version: semver::Version,
    /// The channel this entry offers the release on (may differ from the channel the
    /// release was added under: channel promotion without a second copy).
    pub channel: String,
    /// Active, paused or pulled.
    pub state: RolloutState,
    /// When the schedule started (seconds since the epoch).
    pub start: u64,
    /// The schedule, sorted by offset.
    pub waves: Vec<Wave>,
    /// When it was paused (the schedule's clock stops; `resume` shifts `start` by the pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<u64>,
}

/// Parses `OFFSET=PERCENT,...` (`0s=1%,4h=5%,1d=25%,3d=100%`; units s, m, h, d; percents
/// with up to two decimals). Offsets must increase and shares must not decrease, so a device
/// once eligible stays eligible while the rollout is active.
pub fn parse_waves(spec: &str) -> Result<Vec<Wave>, RolloutError> {
    let bad = |reason: String| RolloutError::Waves {
        spec: spec.to_owned(),
        reason,
    };
    let mut waves: Vec<Wave> = Vec::new();
    for point in spec.split(',').map(str::trim) {
        let (offset, share) = point
            .split_once('=')
            .ok_or_else(|| bad(format!("{point:?} is not OFFSET=PERCENT (e.g. 4h=5%)")))?;
        let wave = Wave {
            offset_secs: parse_offset(offset.trim()).ok_or_else(|| {
                bad(format!(
                    "offset {offset:?}: a number with s, m, h or d (4h, 1d)"
                ))
            })?,
            share_bp: parse_percent(share.trim())
                .ok_or_else(|| bad(format!("share {share:?}: a percentage 0%..100% (5%, 0.5%)")))?,
        };
        if let Some(last) = waves.last() {
            if wave.offset_secs <= last.offset_secs {
                return Err(bad("offsets must increase".into()));
            }
            if wave.share_bp < last.share_bp {
                return Err(bad("shares must not decrease".into()));
            }
        }
        waves.push(wave);
    }
    if waves.len() > MAX_WAVES {
        return Err(bad(format!("more than {MAX_WAVES} points")));
    }
    Ok(waves)
}

fn parse_offset(text: &str) -> Option<u64> {
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

fn parse_percent(text: &str) -> Option<u32> {
    let number = text.strip_suffix('%')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 2 || whole.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let fraction: u32 = format!("{fraction:0<2}").parse().ok()?;
    let bp = whole.checked_mul(100)?.checked_add(fraction)?;
    (bp <= FULL_SHARE).then_some(bp)
}

/// Formats a schedule back as a specification (`0s=1%,4h=5%`).
pub fn format_waves(waves: &[Wave]) -> String {
    waves
        .iter()
        .map(|w| {
            let offset = match w.offset_secs {
                s if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
                s if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
                s if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
                s => format!("{s}s"),
            };
            format!("{offset}={}", format_share(w.share_bp))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `1234` → `12.34%`.
pub fn format_share(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        format!("{}%", bp / 100)
    } else {
        format!("{}.{:02}%", bp / 100, bp % 100)
    }
}

/// The eligible share `elapsed` seconds after the start: 0 before it, linear from 0 at the
/// start to the first point and between points, the last point's share after it.
pub fn share_at(waves: &[Wave], elapsed: i64) -> u32 {
    let Ok(elapsed) = u64::try_from(elapsed) else {
        return 0;
    };
    let mut previous = Wave {
        offset_secs: 0,
        share_bp: 0,
    };
    for wave in waves {
        if elapsed < wave.offset_secs {
            let span = u128::from(wave.offset_secs - previous.offset_secs);
            let done = u128::from(elapsed - previous.offset_secs);
            let rise = u128::from(wave.share_bp - previous.share_bp.min(wave.share_bp));
            // Rounded down: a device becomes eligible at its point of the line, never before.
            let extra = u32::try_from(rise * done / span.max(1)).unwrap_or(0);
            return previous.share_bp + extra;
        }
        previous = *wave;
    }
    previous.share_bp
}

impl RolloutEntry {
    /// The TUF target path of this entry.
    pub fn target_path(&self) -> String {
        target_path(&self.product, &self.channel, &self.version)
    }

    /// The share of the fleet offered the release at `now` (seconds since the epoch): the
    /// schedule's while active, 0 while paused or pulled.
    pub fn share_now(&self, now: u64) -> u32 {
        match self.state {
            RolloutState::Active => share_at(&self.waves, clock_diff(now, self.start)),
            RolloutState::Paused | RolloutState::Pulled => 0,
        }
    }

    /// Reads an entry from a rollout target's `custom`.
    pub fn from_custom(custom: &serde_json::Value) -> Result<Self, RolloutError> {
        let entry: RolloutEntry = serde_json::from_value(custom.clone())
            .map_err(|e| RolloutError::Malformed(e.to_string()))?;
        let spec = format_waves(&entry.waves);
        // The same rules as the admin's specification: a signed entry cannot do what the CLI
        // refuses.
        if entry.waves.len() > MAX_WAVES
            || entry.waves.iter().any(|w| w.share_bp > FULL_SHARE)
            || entry
                .waves
                .windows(2)
                .any(|w| w[1].offset_secs <= w[0].offset_secs || w[1].share_bp < w[0].share_bp)
        {
            return Err(RolloutError::Malformed(format!(
                "schedule {spec} is not increasing or exceeds 100%"
            )));
        }
        Ok(entry)
    }

    /// The `custom` object of the entry's target.
    pub fn to_custom(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn clock_diff(now: u64, start: u64) -> i64 {
    i64::try_from(i128::from(now) - i128::from(start)).unwrap_or(i64::MIN)
}

/// `rollout/PRODUCT/CHANNEL/VERSION`.
pub fn target_path(product: &str, channel: &str, version: &semver::Version) -> String {
    format!("rollout/{product}/{channel}/{version}")
}

/// A device's place in the rollout of one release, uniform in `0..2^64`: SHA-256 over the
/// device id and the release's identity, so a device's place is stable for one release and
/// unrelated between releases (the same devices are not always first).
pub fn bucket(device_id: &str, product: &str, channel: &str, version: &semver::Version) -> u64 {
    let mut hasher = Sha256::new();
    for part in [
        "ota-rollout-v1",
        device_id,
        product,
        channel,
        &version.to_string(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Whether a device in `bucket` is inside `share_bp`: bucket / 2^64 < share / 10000.
pub fn eligible(bucket: u64, share_bp: u32) -> bool {
    u128::from(bucket) * u128::from(FULL_SHARE) < u128::from(share_bp.min(FULL_SHARE)) << 64
}

/// A bucket as a fraction of the fleet, in basis points (for reports).
pub fn bucket_bp(bucket: u64) -> u32 {
    u32::try_from((u128::from(bucket) * u128::from(FULL_SHARE)) >> 64).unwrap_or(FULL_SHARE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn waves_parse_with_units_and_decimals() {
        let waves = parse_waves("0s=1%,4h=5%,1d=25.5%,3d=100%").unwrap();
        assert_eq!(
            waves,
            vec![
                Wave {
                    offset_secs: 0,
                    share_bp: 100
                },
                Wave {
                    offset_secs: 4 * 3600,
                    share_bp: 500
                },
                Wave {
                    offset_secs: 86_400,
                    share_bp: 2550
                },
                Wave {
                    offset_secs: 3 * 86_400,
                    share_bp: 10_000
                },
            ]
        );
        assert_eq!(format_waves(&waves), "0s=1%,4h=5%,1d=25.50%,3d=100%");
        for bad in [
            "",
            "4h",
            "4x=5%",
            "1h=5%,1h=6%",
            "1h=5%,2h=4%",
            "0s=101%",
            "0s=1.234%",
            "1h=-1%",
        ] {
            assert!(parse_waves(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn share_is_linear_between_points_and_zero_before_the_start() {
        let waves = parse_waves("0s=10%,100s=50%,200s=100%").unwrap();
        assert_eq!(share_at(&waves, -1), 0);
        assert_eq!(share_at(&waves, 0), 1000);
        assert_eq!(share_at(&waves, 50), 3000);
        assert_eq!(share_at(&waves, 150), 7500);
        assert_eq!(share_at(&waves, 10_000), 10_000);
        let late = parse_waves("100s=40%").unwrap();
        assert_eq!(share_at(&late, 50), 2000);
    }

    #[test]
    fn buckets_differ_per_release_and_eligibility_follows_the_share() {
        let v1 = semver::Version::new(1, 0, 0);
        let v2 = semver::Version::new(2, 0, 0);
        assert_eq!(
            bucket("dev", "p", "stable", &v1),
            bucket("dev", "p", "stable", &v1)
        );
        assert_ne!(
            bucket("dev", "p", "stable", &v1),
            bucket("dev", "p", "stable", &v2)
        );
        assert!(eligible(0, 1));
        assert!(!eligible(u64::MAX, 9_999));
        assert!(eligible(u64::MAX, 10_000));
        assert!(!eligible(0, 0));
        assert!(!eligible(1 << 63, 5_000));
        assert!(eligible((1 << 63) - 1, 5_000));
    }

    /// The wave math over a fleet of 100,000 device ids: the share offered at each point and
    /// midway between points is the schedule's within ±0.5 %, no device goes from eligible to
    /// not while the share grows, and two releases reach the fleet in different orders.
    #[test]
    fn a_fleet_of_100000_follows_the_schedule() {
        let waves = parse_waves("0s=1%,4h=5%,1d=25%,3d=100%").unwrap();
        let v1 = semver::Version::new(3, 0, 0);
        let v2 = semver::Version::new(3, 1, 0);
        let ids: Vec<String> = (0..100_000).map(|i| format!("machine-{i:08x}")).collect();
        let buckets: Vec<u64> = ids
            .iter()
            .map(|id| bucket(id, "acme", "stable", &v1))
            .collect();
        let mut times: Vec<i64> = vec![0];
        for pair in waves.windows(2) {
            let (a, b) = (pair[0].offset_secs as i64, pair[1].offset_secs as i64);
            times.extend([(a + b) / 2, b]);
        }
        times.push(10 * 86_400);
        let mut was_eligible = vec![false; ids.len()];
        for t in times {
            let share = share_at(&waves, t);
            let mut count = 0usize;
            for (i, b) in buckets.iter().enumerate() {
                let now = eligible(*b, share);
                assert!(
                    !was_eligible[i] || now,
                    "device {i} lost eligibility at {t}"
                );
                was_eligible[i] = now;
                count += usize::from(now);
            }
            let measured = count as f64 / ids.len() as f64;
            let expected = f64::from(share) / f64::from(FULL_SHARE);
            assert!(
                (measured - expected).abs() <= 0.005,
                "at {t} s: {measured:.4} of the fleet, schedule says {expected:.4}"
            );
        }
        // The first 5 % of the fleet for another release is mostly other devices.
        let first = |v: &semver::Version| -> std::collections::HashSet<&String> {
            ids.iter()
                .filter(|id| eligible(bucket(id, "acme", "stable", v), 500))
                .collect()
        };
        let (a, b) = (first(&v1), first(&v2));
        let both = a.intersection(&b).count();
        assert!(
            both * 10 < a.len(),
            "{both} of {} devices are first for both releases",
            a.len()
        );
    }
}
