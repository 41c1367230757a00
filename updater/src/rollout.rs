//! The device's side of fleet rollouts: reads the signed rollout entries (targets
//! `rollout/PRODUCT/CHANNEL/VERSION` of the delegated `rollout` role, already verified by the
//! TUF client) and decides, for this device and the reference time, whether a release is
//! offered: unrestricted (no entry), inside the schedule's share (its bucket below it), paused
//! or pulled. A pulled release that this device runs authorises the move back to an older one.

use crate::config::Config;
use crate::updates::Skipped;
use ota_core::rollout::{bucket, bucket_bp, eligible, format_share, RolloutEntry, RolloutState};
use ota_core::tuf::metadata::TargetFile;
use serde::Serialize;
use std::collections::BTreeMap;

/// Prefix of rollout entries' target paths.
const PREFIX: &str = "rollout/";

/// The verified rollout entries of the repository.
#[derive(Debug, Default)]
pub struct Rollouts {
    entries: BTreeMap<(String, String, semver::Version), RolloutEntry>,
    /// Version of the rollout metadata they came from (the authority a downgrade cites).
    pub metadata_version: Option<u64>,
}

/// Why this device is or is not offered one release now (`check --json` → `rollout`).
#[derive(Debug, Clone, Serialize)]
pub struct RolloutDecision {
    /// The release.
    pub version: semver::Version,
    /// `unrestricted` (no rollout entry), `active`, `paused` or `pulled`.
    pub state: &'static str,
    /// The share of the fleet offered the release now, in basis points.
    pub share_now_bp: u32,
    /// The same as a percentage.
    pub share_now: String,
    /// This device's place in the release's rollout, in basis points (present when a
    /// schedule applies).
    pub bucket_bp: Option<u32>,
    /// Whether this device is offered the release now.
    pub eligible: bool,
    /// The rollout metadata version decided by, if any.
    pub metadata_version: Option<u64>,
}

impl RolloutDecision {
    /// One line for `check`'s skipped list.
    pub fn reason(&self) -> String {
        let by = self
            .metadata_version
            .map(|v| format!(" (rollout metadata v{v})"))
            .unwrap_or_default();
        match self.state {
            "pulled" => format!("{} was pulled by the fleet admin{by}", self.version),
            "paused" => format!("the rollout of {} is paused{by}", self.version),
            _ => format!(
                "not offered to this device yet: the rollout of {} reaches {} of the fleet now, this device is at {}{by}",
                self.version,
                self.share_now,
                format_share(self.bucket_bp.unwrap_or(u32::MAX)),
            ),
        }
    }
}

impl Rollouts {
    /// Takes the rollout entries out of `targets` (what remains are releases). An entry that
    /// does not parse is listed as skipped and ignored.
    pub fn take_from(
        targets: &mut Vec<(String, TargetFile)>,
        metadata_version: Option<u64>,
        skipped: &mut Vec<Skipped>,
    ) -> Self {
        let mut rollouts = Rollouts {
            entries: BTreeMap::new(),
            metadata_version,
        };
        targets.retain(|(name, target)| {
            if !name.starts_with(PREFIX) {
                return true;
            }
            let parsed = target
                .custom
                .as_ref()
                .ok_or_else(|| "no custom metadata".to_owned())
                .and_then(|c| RolloutEntry::from_custom(c).map_err(|e| e.to_string()));
            match parsed {
                // The entry must sit at its own path: a signed entry cannot speak for another
                // release than the one its path names.
                Ok(entry) if entry.target_path() == *name => {
                    let key = (
                        entry.product.clone(),
                        entry.channel.clone(),
                        entry.version.clone(),
                    );
                    rollouts.entries.insert(key, entry);
                }
                Ok(_) => skipped.push(Skipped {
                    name: name.clone(),
                    reason: "rollout entry listed under another release's path".into(),
                }),
                Err(reason) => skipped.push(Skipped {
                    name: name.clone(),
                    reason,
                }),
            }
            false
        });
        rollouts
    }

    fn entry(
        &self,
        product: &str,
        channel: &str,
        version: &semver::Version,
    ) -> Option<&RolloutEntry> {
        self.entries
            .get(&(product.to_owned(), channel.to_owned(), version.clone()))
    }

    /// Whether a rollout entry offers `version` of `product` on `channel` (channel promotion:
    /// a release added under another channel).
    pub fn offers_on(&self, product: &str, channel: &str, version: &semver::Version) -> bool {
        self.entry(product, channel, version).is_some()
    }

    /// Whether `version` was pulled on `channel`.
    pub fn pulled(&self, product: &str, channel: &str, version: &semver::Version) -> bool {
        self.entry(product, channel, version)
            .is_some_and(|e| e.state == RolloutState::Pulled)
    }

    /// Whether this device is offered `version` now (`now`: the reference time of the
    /// metadata refresh, seconds since the epoch).
    pub fn decide(
        &self,
        config: &Config,
        channel: &str,
        version: &semver::Version,
        now: u64,
    ) -> RolloutDecision {
        let Some(entry) = self.entry(&config.product, channel, version) else {
            return RolloutDecision {
                version: version.clone(),
                state: "unrestricted",
                share_now_bp: ota_core::rollout::FULL_SHARE,
                share_now: "100%".into(),
                bucket_bp: None,
                eligible: true,
                metadata_version: None,
            };
        };
        let share = entry.share_now(now);
        // Without an id the device comes last: it gets a release when the whole fleet does.
        let place = config
            .device_id
            .as_deref()
            .map_or(u64::MAX, |id| bucket(id, &config.product, channel, version));
        let fully_out = share >= ota_core::rollout::FULL_SHARE;
        RolloutDecision {
            version: version.clone(),
            state: match entry.state {
                RolloutState::Active => "active",
                RolloutState::Paused => "paused",
                RolloutState::Pulled => "pulled",
            },
            share_now_bp: share,
            share_now: format_share(share),
            bucket_bp: Some(bucket_bp(place)),
            eligible: entry.state == RolloutState::Active && (fully_out || eligible(place, share)),
            metadata_version: self.metadata_version,
        }
    }
}
