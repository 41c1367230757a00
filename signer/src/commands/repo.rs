//! `ota-sign repo`: creates and maintains the TUF repository devices update from. The
//! metadata logic lives in `ota_core::tuf::repository`; this module reads keys and arguments.

use super::bundle::creation_time;
use super::load_trust;
use crate::cli::{
    RepoAddArgs, RepoCommand, RepoDelegateArgs, RepoDoctorArgs, RepoInitArgs, RepoListArgs,
    RepoRemoveArgs, RepoRotateArgs, RepoSignArgs, RoleKeyArgs,
};
use crate::exit::UsageError;
use anyhow::{Context, Result};
use ota_core::bundle::{read_unverified, BundleReader};
use ota_core::keys::{SigningKey, VerifyingKey};
use ota_core::release::ReleaseInfo;
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
        RepoCommand::Delegate(args) => delegate(args),
        RepoCommand::Publish(args) => publish(args, false),
        RepoCommand::RefreshTimestamp(args) => publish(args, true),
        RepoCommand::Rotate(args) => rotate(args),
        RepoCommand::List(args) => list(args),
        RepoCommand::Doctor(args) => doctor(args),
    }
}

/// The signing time: `SOURCE_DATE_EPOCH` when set (reproducible metadata), else now.
pub(super) fn now() -> Result<SystemTime> {
    Ok(UNIX_EPOCH + Duration::from_secs(creation_time()?))
}

/// With `SOURCE_DATE_EPOCH` set, the roles whose metadata signed now would already have
/// expired in real time (say why each is refused by devices the moment it is published).
fn expired_on_arrival(repo: &Repository, signing_time: SystemTime) -> Option<String> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok()?;
    let late = repo.expired_on_arrival(signing_time, SystemTime::now());
    if late.is_empty() {
        return None;
    }
    let roles: Vec<String> = late
        .iter()
        .map(|(role, expires)| format!("{role} (expires {expires})"))
        .collect();
    Some(format!(
        "SOURCE_DATE_EPOCH={} is the signing time: metadata it signs for {} is already expired, and devices refuse it; unset it or set it to the release time",
        epoch.trim(),
        roles.join(", ")
    ))
}

/// Prints [`expired_on_arrival`]'s warning on standard error, if any.
fn warn_expired_on_arrival(repo: &Repository, signing_time: SystemTime) {
    if let Some(warning) = expired_on_arrival(repo, signing_time) {
        eprintln!("ota-sign: warning: {warning}");
    }
}

/// A key file holding either a private key (usable for signing too) or a public one.
pub(super) fn load_key(path: &Path) -> Result<(VerifyingKey, Option<SigningKey>)> {
    if crate::keys::is_reference(path) {
        let sk = crate::keys::load_private_key(path)?;
        return Ok((sk.verifying_key(), Some(sk)));
    }
    match SigningKey::from_file(path) {
        Ok(_) => {
            let sk = crate::keys::load_private_key(path)?;
            Ok((sk.verifying_key(), Some(sk)))
        }
        Err(private_err) => match VerifyingKey::from_file(path) {
            Ok(vk) => Ok((vk, None)),
            Err(_) => Err(private_err.into()),
        },
    }
}

pub(super) fn load_private(paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
    paths
        .iter()
        .map(|p| crate::keys::load_private_key(p))
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
    let roles: String = report
        .roles
        .iter()
        .map(|(role, v)| format!("{role} v{v}, "))
        .collect();
    println!(
        "published: {roles}{}, {}, {}",
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
    warn_expired_on_arrival(&repo, now()?);
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
    if let Some(path) = &args.provenance {
        super::check_provenance(&manifest, path)?;
    }
    let mut repo = Repository::open(&args.repo)?;
    let role = args.role.as_deref().unwrap_or("targets");
    let mut release = ReleaseInfo::from_manifest(&manifest, &args.channel);
    if let Some(record) = &manifest.provenance {
        // The record the signed manifest carries, and where its document is published.
        let mut value = json!(record);
        if args.provenance.is_some() {
            value["target"] = json!(format!("{name}.provenance.json"));
        }
        release.extra.insert("provenance".into(), value);
    }
    if let Some(path) = &args.provenance {
        let document_name = format!("{name}.provenance.json");
        repo.add_target_to(role, &document_name, path, json!({"provenance_of": name}))?;
    }
    let entry = repo.add_target_to(role, &name, &args.bundle, release.to_custom())?;
    if args.json {
        println!("{}", json!({"name": name, "role": role, "target": entry}));
    } else {
        println!(
            "staged {name}{}: {} {} on channel {} ({} bytes); `ota-sign repo publish{}` signs it",
            role_suffix(role),
            manifest.product,
            manifest.version,
            args.channel,
            entry["length"],
            publish_option(role),
        );
    }
    if args.trusted.is_empty() {
        eprintln!(
            "ota-sign: warning: the bundle's signatures were not checked (no --trusted): pass --trusted BUNDLE_KEY.pub, the key devices trust, so that a bundle they would refuse is never published"
        );
    }
    Ok(())
}

/// ` in ROLE` for a delegated role, nothing for the top-level targets.
fn role_suffix(role: &str) -> String {
    if role == "targets" {
        String::new()
    } else {
        format!(" in {role}")
    }
}

/// ` --role ROLE --key <ROLE's key>` for a delegated role.
fn publish_option(role: &str) -> String {
    if role == "targets" {
        String::new()
    } else {
        format!(" --role {role} --key <a key of {role}>")
    }
}

fn remove(args: RepoRemoveArgs) -> Result<()> {
    let mut repo = Repository::open(&args.repo)?;
    let role = args.role.as_deref().unwrap_or("targets");
    repo.remove_target_from(role, &args.name)?;
    if args.json {
        println!("{}", json!({"removed": args.name, "role": role}));
        return Ok(());
    }
    println!(
        "staged removal of {}{}; `ota-sign repo publish{}` signs it",
        args.name,
        role_suffix(role),
        publish_option(role)
    );
    Ok(())
}

fn delegate(args: RepoDelegateArgs) -> Result<()> {
    let mut keys = Vec::new();
    for path in &args.keys {
        keys.push(load_key(path)?.0);
    }
    let spec = RoleSpec {
        keys,
        threshold: args.threshold,
    };
    let mut repo = Repository::open(&args.repo)?;
    repo.delegate(&args.name, &spec, &args.paths, args.terminating)?;
    if args.json {
        println!(
            "{}",
            json!({"delegated": args.name, "paths": args.paths, "keys": spec.keys.len(),
                "threshold": spec.threshold, "terminating": args.terminating})
        );
    } else {
        println!(
            "staged delegation of {} to '{}' ({} key(s), threshold {}{}); sign it with `ota-sign repo publish --key <targets key>`, then stage its targets with `ota-sign repo add --role {}` and sign them with `ota-sign repo publish --role {} --key <its key>`",
            args.paths.join(" "),
            args.name,
            spec.keys.len(),
            spec.threshold,
            if args.terminating { ", terminating" } else { "" },
            args.name,
            args.name
        );
    }
    Ok(())
}

fn publish(args: RepoSignArgs, timestamp_only: bool) -> Result<()> {
    let keys = load_private(&args.keys)?;
    let mut repo = Repository::open(&args.repo)?;
    let when = now()?;
    warn_expired_on_arrival(&repo, when);
    let report = match (&args.role, timestamp_only) {
        (Some(_), true) => {
            return Err(UsageError(
                "--role goes with `repo publish`, not `refresh-timestamp`".into(),
            )
            .into())
        }
        (None, true) => repo.refresh(&keys, when, false)?,
        (Some(role), false) => repo.publish_role(role, &keys, when)?,
        (None, false) => repo.publish(&keys, when)?,
    };
    if args.role.is_none() {
        warn_unrelated_keys(&repo, &keys, &report);
    }
    print_report(&report, args.json);
    Ok(())
}

/// Warns about each given key that this publish could not use: authorised for no top-level
/// role of the root (a wrong file, an old key), unless a delegated role was signed with it.
fn warn_unrelated_keys(repo: &Repository, keys: &[SigningKey], report: &PublishReport) {
    if !report.roles.is_empty() {
        return;
    }
    let root = repo.root();
    for key in keys {
        let tuf = ota_core::tuf::keys::TufKey::from_verifying_key(&key.verifying_key());
        let id = tuf.key_id();
        if !root
            .roles
            .values()
            .any(|role| role.keyids.iter().any(|k| k == id))
        {
            eprintln!(
                "ota-sign: warning: key {id} is authorised for no role of this repository's root: it signed nothing (a wrong key file?)"
            );
        }
    }
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
    let when = now()?;
    warn_expired_on_arrival(&repo, when);
    let version = repo.rotate(&specs, &signers, when)?;
    let next = rotation_next_steps(&args.repo, &specs);
    if args.json {
        println!("{}", json!({"root": version, "next": next}));
    } else {
        println!(
            "wrote root v{version} ({}); {}",
            specs.keys().cloned().collect::<Vec<_>>().join(", "),
            next.join("; ")
        );
    }
    Ok(())
}

/// What must be re-signed after a rotation of the roles in `specs`, as the commands that do
/// it: until then devices that fetched the new root refuse the old signatures.
fn rotation_next_steps(repo: &Path, specs: &BTreeMap<String, RoleSpec>) -> Vec<String> {
    let repo = repo.display();
    let mut steps = Vec::new();
    if specs.contains_key("targets") {
        steps.push(format!(
            "re-sign targets now with the new key: `ota-sign repo publish --repo {repo} --key <new targets key>` (add the snapshot and timestamp keys, or let the online keys list it)"
        ));
    }
    if specs.contains_key("snapshot") || specs.contains_key("timestamp") {
        steps.push(format!(
            "re-sign snapshot and timestamp now with the new keys: `ota-sign repo refresh-timestamp --repo {repo} --key <snapshot key> --key <timestamp key>` (or restart ota-server with them)"
        ));
    }
    if steps.is_empty() {
        steps.push(
            "the root keys sign only root: publish metadata/N.root.json, nothing else needs re-signing"
                .into(),
        );
    }
    steps.push(format!("then check: `ota-sign repo doctor --repo {repo}`"));
    steps
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

fn doctor(args: RepoDoctorArgs) -> Result<()> {
    let repo = Repository::open(&args.repo)?;
    let within = Duration::from_secs(args.days.saturating_mul(86_400));
    let mut report = repo.doctor(SystemTime::now(), within)?;
    if let Some(warning) = expired_on_arrival(&repo, now()?) {
        report.warnings.push(warning);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_doctor(&report, args.days);
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(crate::exit::ReportedFailure(format!(
            "{} problem(s): devices would refuse this repository",
            report.problems.len()
        ))
        .into())
    }
}

fn print_doctor(report: &ota_core::tuf::repository::doctor::DoctorReport, days: u64) {
    for role in &report.roles {
        let short: Vec<&str> = role
            .signed_by
            .iter()
            .map(|k| &k[..k.len().min(12)])
            .collect();
        println!(
            "{:<10} v{:<4} expires {}  signed by {} of {} key(s) (threshold {}): {}  {}",
            role.role,
            role.version,
            role.expires,
            role.signed_by.len(),
            role.authorised.len(),
            role.threshold,
            if short.is_empty() {
                "-".to_owned()
            } else {
                short.join(" ")
            },
            if role.ok { "ok" } else { "REFUSED" }
        );
    }
    if report.expiring.is_empty() {
        println!("nothing expires within {days} day(s)");
    }
    for line in &report.expiring {
        println!("expiring: {line}");
    }
    for line in &report.warnings {
        println!("warning: {line}");
    }
    for line in &report.problems {
        println!("problem: {line}");
    }
}
