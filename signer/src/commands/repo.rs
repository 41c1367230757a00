//! `ota-sign repo`: creates and maintains the TUF repository devices update from. The
//! metadata logic lives in `ota_core::tuf::repository`; this module reads keys and arguments.

use super::bundle::creation_time;
use super::load_trust;
use crate::cli::{
    RepoAddArgs, RepoCommand, RepoInitArgs, RepoListArgs, RepoRemoveArgs, RepoRotateArgs,
    RepoSignArgs, RoleKeyArgs,
};
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::bundle::{read_unverified, BundleReader};
use ota_core::release::ReleaseInfo;
use ota_core::keys::{SigningKey, VerifyingKey};
use ota_core::tuf::repository::{Lifetimes, PublishReport, Repository, RoleSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs a `repo` subcommand.
pub fn run(command: RepoCommand) -> Result<()> {
    match command {
        RepoCommand::Init(args) => init(args),
        RepoCommand::Add(args) => add(args),
        RepoCommand::Remove(args) => remove(args),
        RepoCommand::Publish(args) => publish(args, false),
        RepoCommand::RefreshTimestamp(args) => publish(args, true),
        RepoCommand::Rotate(args) => rotate(args),
        RepoCommand::List(args) => list(args),
    }
}

/// The signing time: `SOURCE_DATE_EPOCH` when set (reproducible metadata), else now.
pub(super) fn now() -> Result<SystemTime> {
    Ok(UNIX_EPOCH + Duration::from_secs(creation_time()?))
}

/// A key file holding either a private key (usable for signing too) or a public one.
pub(super) fn load_key(path: &Path) -> Result<(VerifyingKey, Option<SigningKey>)> {
    match SigningKey::from_file(path) {
        Ok(sk) => Ok((sk.verifying_key(), Some(sk))),
        Err(private_err) => match VerifyingKey::from_file(path) {
            Ok(vk) => Ok((vk, None)),
            Err(_) => Err(private_err.into()),
        },
    }
}

pub(super) fn load_private(paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
    paths
        .iter()
        .map(|p| SigningKey::from_file(p).map_err(Into::into))
        .collect()
}

/// Role specs from the `--ROLE-key` flags (only roles given), plus every private key seen.
fn role_specs(
    args: &RoleKeyArgs,
    default_threshold: impl Fn(&str) -> usize,
) -> Result<(BTreeMap<String, RoleSpec>, Vec<SigningKey>)> {
    let mut specs = BTreeMap::new();
    let mut private = Vec::new();
    for (role, paths, threshold) in [
        ("root", &args.root, args.root_threshold),
        ("targets", &args.targets, args.targets_threshold),
        ("snapshot", &args.snapshot, args.snapshot_threshold),
        ("timestamp", &args.timestamp, args.timestamp_threshold),
    ] {
        if paths.is_empty() {
            if threshold.is_some() {
                return Err(
                    UsageError(format!("--{role}-threshold given without --{role}-key")).into(),
                );
            }
            continue;
        }
        let mut keys = Vec::new();
        for path in paths {
            let (vk, sk) = load_key(path)?;
            keys.push(vk);
            private.extend(sk);
        }
        specs.insert(
            role.to_owned(),
            RoleSpec {
                keys,
                threshold: threshold.unwrap_or_else(|| default_threshold(role)),
            },
        );
    }
    Ok((specs, private))
}

fn parse_lifetimes(specs: &[String]) -> Result<Lifetimes> {
    let mut lifetimes = Lifetimes::default();
    for spec in specs {
        let (role, text) = spec
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--expires expects ROLE=DURATION, got {spec:?}")))?;
        let secs = humantime::parse_duration(text)
            .map_err(|e| UsageError(format!("--expires {spec}: {e}")))?
            .as_secs();
        if secs == 0 {
            return Err(UsageError(format!("--expires {spec}: must be at least 1s")).into());
        }
        match role {
            "root" => lifetimes.root = secs,
            "targets" => lifetimes.targets = secs,
            "snapshot" => lifetimes.snapshot = secs,
            "timestamp" => lifetimes.timestamp = secs,
            other => {
                return Err(UsageError(format!(
                    "--expires: unknown role '{other}' (root, targets, snapshot, timestamp)"
                ))
                .into())
            }
        }
    }
    Ok(lifetimes)
}

fn print_report(report: &PublishReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    let part = |name: &str, v: Option<u64>| match v {
        Some(v) => format!("{name} v{v}"),
        None => format!("{name} unchanged"),
    };
    println!(
        "published: {}, {}, {}",
        part("targets", report.targets),
        part("snapshot", report.snapshot),
        part("timestamp", report.timestamp)
    );
}

fn init(args: RepoInitArgs) -> Result<()> {
    let (specs, private) = role_specs(&args.roles, |_| 1)?;
    let lifetimes = parse_lifetimes(&args.expires)?;
    let (repo, report) =
        Repository::init(&args.repo, &specs, &private, &private, lifetimes, now()?)
            .with_context(|| format!("cannot create the repository in {}", args.repo.display()))?;
    if args.json {
        println!(
            "{}",
            json!({"root": repo.root().common.version, "published": report})
        );
    } else {
        println!("created repository {} with root v1", args.repo.display());
        if report.timestamp.is_some() {
            print_report(&report, false);
        } else {
            println!("targets/snapshot/timestamp not signed yet: `ota-sign repo publish` with their keys makes them");
        }
    }
    Ok(())
}

fn add(args: RepoAddArgs) -> Result<()> {
    if args.channel.is_empty()
        || args
            .channel
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(
            UsageError(format!("--channel {:?} must be a plain word", args.channel)).into(),
        );
    }
    let file = std::fs::File::open(&args.bundle)
        .with_context(|| format!("cannot open bundle {}", args.bundle.display()))?;
    let manifest = if args.trusted.is_empty() {
        read_unverified(std::io::BufReader::new(file))?.0
    } else {
        let trust = load_trust(&args.trusted, 1)?;
        BundleReader::open(std::io::BufReader::new(file), &trust)?
            .manifest()
            .clone()
    };
    let name = match args.name {
        Some(n) => n,
        None => args
            .bundle
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| UsageError("the bundle path has no file name; pass --name".into()))?,
    };
    let mut repo = Repository::open(&args.repo)?;
    let entry = repo.add_target(
        &name,
        &args.bundle,
        ReleaseInfo::from_manifest(&manifest, &args.channel).to_custom(),
    )?;
    if args.json {
        println!("{}", json!({"name": name, "target": entry}));
    } else {
        println!(
            "staged {name}: {} {} on channel {} ({} bytes); `ota-sign repo publish` signs it",
            manifest.product, manifest.version, args.channel, entry["length"]
        );
    }
    Ok(())
}

fn remove(args: RepoRemoveArgs) -> Result<()> {
    let mut repo = Repository::open(&args.repo)?;
    repo.remove_target(&args.name)?;
    println!(
        "staged removal of {}; `ota-sign repo publish` signs it",
        args.name
    );
    Ok(())
}

fn publish(args: RepoSignArgs, timestamp_only: bool) -> Result<()> {
    let keys = load_private(&args.keys)?;
    let mut repo = Repository::open(&args.repo)?;
    let report = if timestamp_only {
        repo.refresh(&keys, now()?, false)?
    } else {
        repo.publish(&keys, now()?)?
    };
    print_report(&report, args.json);
    Ok(())
}

fn rotate(args: RepoRotateArgs) -> Result<()> {
    let mut repo = Repository::open(&args.repo)?;
    let current = repo.root().clone();
    let (specs, _) = role_specs(&args.roles, |role| {
        current.role(role).map(|r| r.threshold).unwrap_or(1)
    })?;
    if specs.is_empty() {
        return Err(UsageError(
            "rotate needs new keys for at least one role (--root-key, --targets-key, ...)".into(),
        )
        .into());
    }
    let signers = load_private(&args.keys)?;
    let version = repo.rotate(&specs, &signers, now()?)?;
    if args.json {
        println!("{}", json!({"root": version}));
    } else {
        println!(
            "wrote root v{version} ({}); re-sign what the rotated roles sign with `ota-sign repo publish`",
            specs.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

fn list(args: RepoListArgs) -> Result<()> {
    let repo = Repository::open(&args.repo)?;
    let published = repo
        .published_targets()?
        .unwrap_or_else(|| json!({"targets": {}}));
    let staged = repo.staged_targets()?;
    if args.json {
        println!(
            "{}",
            json!({"published": published["targets"], "staged": staged["targets"]})
        );
        return Ok(());
    }
    let empty = serde_json::Map::new();
    let pub_map = published["targets"].as_object().unwrap_or(&empty);
    let staged_map = staged["targets"].as_object().unwrap_or(&empty);
    let mut names: Vec<&String> = pub_map.keys().chain(staged_map.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let entry = staged_map.get(name).or_else(|| pub_map.get(name));
        let state = match (pub_map.contains_key(name), staged_map.contains_key(name)) {
            (true, true) => "published",
            (false, true) => "staged",
            _ => "removal staged",
        };
        let custom = entry.map(|e| &e["custom"]);
        println!(
            "{name}: {} {} channel {} ({state})",
            custom
                .map(|c| c["product"].as_str().unwrap_or("?"))
                .unwrap_or("?"),
            custom
                .map(|c| c["version"].as_str().unwrap_or("?"))
                .unwrap_or("?"),
            custom
                .map(|c| c["channel"].as_str().unwrap_or("?"))
                .unwrap_or("?"),
        );
    }
    Ok(())
}
