//! `ota-sign rollout`: the fleet admin's commands. Each one reads the newest rollout role
//! metadata, changes one entry, and signs a new version with the rollout key (or the targets
//! key); with the snapshot and timestamp keys among `--key` it re-signs those too, so devices
//! see the change at their next poll. Without them, the online keys (ota-server
//! `--snapshot-key/--timestamp-key`) or `ota-sign repo refresh-timestamp` do it.

use super::repo::{load_key, load_private, now};
use crate::cli::{
    RolloutCommand, RolloutInitArgs, RolloutReleaseArgs, RolloutStartArgs, RolloutStatusArgs,
};
use crate::exit::UsageError;
use anyhow::Result;
use ota_core::keys::SigningKey;
use ota_core::rollout::{
    format_share, format_waves, parse_waves, target_path, RolloutEntry, RolloutState, Wave,
    FULL_SHARE, ROLLOUT_PATHS, ROLLOUT_ROLE,
};
use ota_core::tuf::metadata::format_time;
use ota_core::tuf::repository::{PublishReport, Repository, RoleSpec};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SHA-256 of the empty string: a rollout entry is a zero-length target, only its `custom`
/// matters.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Runs a `rollout` subcommand.
pub fn run(command: RolloutCommand) -> Result<()> {
    match command {
        RolloutCommand::Init(args) => init(args),
        RolloutCommand::Start(args) => start(args),
        RolloutCommand::Pause(args) => change(args, "pause"),
        RolloutCommand::Resume(args) => change(args, "resume"),
        RolloutCommand::Pull(args) => change(args, "pull"),
        RolloutCommand::Status(args) => status(args),
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn time_text(secs: u64) -> String {
    format_time(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `rollout init`: the delegation from targets to the rollout role, for the rollout keys and
/// the targets key(s) given (either may sign rollout state), then a publish.
fn init(args: RolloutInitArgs) -> Result<()> {
    let mut keys: Vec<_> = Vec::new();
    for path in &args.rollout_keys {
        keys.push(load_key(path)?.0);
    }
    let signers = load_private(&args.keys)?;
    let mut repo = Repository::open(&args.repo)?;
    let targets_ids = repo
        .root()
        .role("targets")
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    for key in &signers {
        let id = ota_core::tuf::keys::TufKey::from_verifying_key(&key.verifying_key())
            .key_id()
            .to_owned();
        if targets_ids.contains(&id) {
            keys.push(key.verifying_key());
        }
    }
    let spec = RoleSpec {
        keys,
        threshold: args.threshold,
    };
    repo.delegate(ROLLOUT_ROLE, &spec, &[ROLLOUT_PATHS.to_owned()], true)?;
    let when = now()?;
    let mut report = repo.publish(&signers, when)?;
    if repo.delegated_targets(ROLLOUT_ROLE)?.is_none() {
        // An empty first version (signed by the targets key, which the delegation names too),
        // so the snapshot lists the role from the start.
        repo.publish_delegated(ROLLOUT_ROLE, Map::new(), &signers, when)?;
        match repo.refresh(&signers, when, false) {
            Ok(refreshed) => report = refreshed,
            Err(ota_core::tuf::repository::RepoError::Usage(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"delegated": ROLLOUT_ROLE, "published": report})
        );
    } else {
        println!(
            "rollout role delegated to {} key(s) (threshold {}): `ota-sign rollout start` can now stage releases{}",
            spec.keys.len(),
            spec.threshold,
            visibility_hint(&report, &args.repo.display().to_string())
        );
    }
    Ok(())
}

/// The rollout entries of the newest rollout metadata (target path → target entry).
fn current_entries(repo: &Repository) -> Result<Map<String, Value>> {
    Ok(repo
        .delegated_targets(ROLLOUT_ROLE)?
        .and_then(|signed| signed.get("targets").and_then(Value::as_object).cloned())
        .unwrap_or_default())
}

fn entry_of(targets: &Map<String, Value>, path: &str) -> Result<Option<RolloutEntry>> {
    match targets.get(path).and_then(|t| t.get("custom")) {
        None => Ok(None),
        Some(custom) => Ok(Some(RolloutEntry::from_custom(custom)?)),
    }
}

/// Refuses a rollout of a release the repository does not carry (published or staged).
fn check_release_exists(repo: &Repository, product: &str, version: &semver::Version) -> Result<()> {
    let mut found = false;
    for targets in [repo.published_targets()?, Some(repo.staged_targets()?)]
        .into_iter()
        .flatten()
    {
        found |= targets
            .get("targets")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .any(|(_, t)| {
                let custom = &t["custom"];
                custom["product"].as_str() == Some(product)
                    && custom["version"].as_str() == Some(version.to_string().as_str())
            });
    }
    if !found {
        return Err(UsageError(format!(
            "the repository carries no release {product} {version} (`ota-sign repo add` it first)"
        ))
        .into());
    }
    Ok(())
}

fn start(args: RolloutStartArgs) -> Result<()> {
    let waves = parse_waves(&args.waves).map_err(|e| UsageError(e.to_string()))?;
    let release = &args.release;
    let repo = Repository::open(&release.repo)?;
    check_release_exists(&repo, &release.product, &release.version)?;
    let entry = RolloutEntry {
        product: release.product.clone(),
        version: release.version.clone(),
        channel: release.channel.clone(),
        state: RolloutState::Active,
        start: secs(now()?),
        waves,
        paused_at: None,
    };
    sign_entry(&repo, release, entry, "started")
}

/// pause / resume / pull of one release's rollout. A release without a rollout entry gets one
/// (its schedule: the whole fleet at once, as it was offered before).
fn change(args: RolloutReleaseArgs, action: &str) -> Result<()> {
    let repo = Repository::open(&args.repo)?;
    check_release_exists(&repo, &args.product, &args.version)?;
    let now = secs(now()?);
    let path = target_path(&args.product, &args.channel, &args.version);
    let existing = entry_of(&current_entries(&repo)?, &path)?;
    let mut entry = existing.unwrap_or_else(|| RolloutEntry {
        product: args.product.clone(),
        version: args.version.clone(),
        channel: args.channel.clone(),
        state: RolloutState::Active,
        start: now,
        waves: vec![Wave {
            offset_secs: 0,
            share_bp: FULL_SHARE,
        }],
        paused_at: None,
    });
    let done = match (action, entry.state) {
        ("pause", RolloutState::Active) => {
            entry.state = RolloutState::Paused;
            entry.paused_at = Some(now);
            "paused"
        }
        ("resume", RolloutState::Paused) => {
            // The schedule's clock stood still while paused: the same devices are offered it
            // again, and the waves go on from there.
            let paused_for = entry.paused_at.map_or(0, |p| now.saturating_sub(p));
            entry.start = entry.start.saturating_add(paused_for);
            entry.state = RolloutState::Active;
            entry.paused_at = None;
            "resumed"
        }
        ("pull", RolloutState::Active | RolloutState::Paused) => {
            entry.state = RolloutState::Pulled;
            "pulled"
        }
        (_, state) => {
            return Err(UsageError(format!(
                "cannot {action} the rollout of {} {} on {}: it is {}{}",
                args.product,
                args.version,
                args.channel,
                state_name(state),
                if state == RolloutState::Pulled {
                    " (`ota-sign rollout start` offers it again)"
                } else {
                    ""
                }
            ))
            .into())
        }
    };
    sign_entry(&repo, &args, entry, done)
}

fn state_name(state: RolloutState) -> &'static str {
    match state {
        RolloutState::Active => "active",
        RolloutState::Paused => "paused",
        RolloutState::Pulled => "pulled",
    }
}

/// Writes `entry` into a new rollout metadata version, then re-signs snapshot and timestamp
/// when their keys were given.
fn sign_entry(
    repo: &Repository,
    args: &RolloutReleaseArgs,
    entry: RolloutEntry,
    done: &str,
) -> Result<()> {
    let keys: Vec<SigningKey> = load_private(&args.keys)?;
    let mut targets = current_entries(repo)?;
    targets.insert(
        entry.target_path(),
        json!({"length": 0, "hashes": {"sha256": EMPTY_SHA256}, "custom": entry.to_custom()}),
    );
    let when = now()?;
    let version = repo.publish_delegated(ROLLOUT_ROLE, targets, &keys, when)?;
    let mut repo = Repository::open(&args.repo)?;
    let online = repo.refresh(&keys, when, false);
    let report = match online {
        Ok(report) => report,
        // No snapshot/timestamp key given: the online keys will pick it up.
        Err(ota_core::tuf::repository::RepoError::Usage(_)) => PublishReport::default(),
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!(
            "{}",
            json!({
                "action": done, "product": entry.product, "version": entry.version.to_string(),
                "channel": entry.channel, "state": state_name(entry.state),
                "rollout_version": version, "published": report,
                "waves": format_waves(&entry.waves),
            })
        );
    } else {
        println!(
            "{done} the rollout of {} {} on {} (rollout metadata v{version}, schedule {}){}",
            entry.product,
            entry.version,
            entry.channel,
            format_waves(&entry.waves),
            visibility_hint(&report, &args.repo.display().to_string())
        );
    }
    Ok(())
}

fn visibility_hint(report: &PublishReport, repo: &str) -> String {
    match report.timestamp {
        Some(v) => format!("; snapshot and timestamp re-signed (timestamp v{v}): devices see it at their next poll"),
        None => format!(
            "; devices see it once snapshot and timestamp are re-signed: ota-server with --snapshot-key/--timestamp-key does it within its --resign-interval, otherwise run `ota-sign repo refresh-timestamp --repo {repo} --key SNAPSHOT_KEY --key TIMESTAMP_KEY`"
        ),
    }
}

/// `rollout status`: every entry, its share now, and the expiries that bound how long a
/// device may keep acting on it.
fn status(args: RolloutStatusArgs) -> Result<()> {
    let repo = Repository::open(&args.repo)?;
    let now = secs(now()?);
    let signed = repo.delegated_targets(ROLLOUT_ROLE)?;
    let expires = |value: Option<Value>| {
        value.and_then(|v| v.get("expires").and_then(Value::as_str).map(str::to_owned))
    };
    let mut rows = Vec::new();
    for (path, target) in current_entries(&repo)? {
        let Some(entry) = entry_of(&Map::from_iter([(path.clone(), target)]), &path)? else {
            continue;
        };
        rows.push(json!({
            "product": entry.product, "channel": entry.channel,
            "version": entry.version.to_string(), "state": state_name(entry.state),
            "start": time_text(entry.start), "waves": format_waves(&entry.waves),
            "share_now_bp": entry.share_now(now), "share_now": format_share(entry.share_now(now)),
        }));
    }
    let report = json!({
        "rollouts": rows,
        "rollout_version": signed.as_ref().and_then(|s| s.get("version").cloned()),
        "rollout_expires": expires(signed),
        "snapshot_expires": expires(repo.published_snapshot()?),
        "timestamp_expires": expires(repo.published_timestamp()?),
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    for row in report["rollouts"].as_array().into_iter().flatten() {
        println!(
            "{} {} on {}: {}, {} now, schedule {} from {}",
            row["product"].as_str().unwrap_or(""),
            row["version"].as_str().unwrap_or(""),
            row["channel"].as_str().unwrap_or(""),
            row["state"].as_str().unwrap_or(""),
            row["share_now"].as_str().unwrap_or(""),
            row["waves"].as_str().unwrap_or(""),
            row["start"].as_str().unwrap_or(""),
        );
    }
    for (what, key) in [
        ("rollout metadata", "rollout_expires"),
        ("snapshot", "snapshot_expires"),
        ("timestamp", "timestamp_expires"),
    ] {
        println!(
            "{what} expires {}",
            report[key].as_str().unwrap_or("(not published)")
        );
    }
    Ok(())
}
