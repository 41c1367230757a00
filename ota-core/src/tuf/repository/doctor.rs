//! `ota-sign repo doctor`: the published repository as a device would check it now, under the
//! current (newest) root: every role's version, expiry and signing keys, what expires soon,
//! and what a device would refuse, each with the command that fixes it. It catches the
//! rotation trap (a key rotated in root, the role it signs not re-signed yet) before devices
//! do. It only reads.

use super::{RepoError, Repository};
use crate::tuf::canonical::to_canonical_bytes;
use crate::tuf::envelope::Envelope;
use crate::tuf::keys::TufKey;
use crate::tuf::metadata::{
    format_time, parse_time, MetaFile, RoleKeys, Snapshot, Targets, Timestamp,
};
use crate::tuf::trusted::check_length_and_hashes;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

/// One published metadata file.
#[derive(Clone, Debug, Serialize)]
pub struct RoleStatus {
    /// The role.
    pub role: String,
    /// Its file, relative to the repository.
    pub file: String,
    /// Its version.
    pub version: u64,
    /// Its expiry.
    pub expires: String,
    /// The authorised keys (ids) whose signature verifies, one per distinct key.
    pub signed_by: Vec<String>,
    /// The keys authorised for it (by root, or by its delegator).
    pub authorised: Vec<String>,
    /// How many of them must sign.
    pub threshold: usize,
    /// Whether a device would accept it now.
    pub ok: bool,
}

/// What `doctor` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DoctorReport {
    /// The current root's version.
    pub root_version: u64,
    /// Every published role file a device would fetch, in the order it would.
    pub roles: Vec<RoleStatus>,
    /// Roles that expire within the period asked for (not expired yet).
    pub expiring: Vec<String>,
    /// What devices would refuse now, each with the command that fixes it.
    pub problems: Vec<String>,
    /// Everything else worth knowing (staged changes, roles skipped by devices, ...).
    pub warnings: Vec<String>,
}

/// One file to check: who authorises it and how it is listed.
struct Check<'a> {
    role: &'a str,
    file: String,
    keys: &'a HashMap<String, TufKey>,
    role_keys: &'a RoleKeys,
    /// The entry of the referencing role (timestamp for snapshot, snapshot for targets).
    listed: Option<(&'a str, &'a MetaFile)>,
    /// The command that re-signs it.
    fix: String,
}

/// The authorised key ids whose signature over `envelope` verifies, one per distinct key.
fn signed_by(
    envelope: &Envelope,
    keys: &HashMap<String, TufKey>,
    authorised: &[String],
) -> Vec<String> {
    let Ok(bytes) = to_canonical_bytes(&envelope.signed) else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (keyid, sig) in &envelope.signatures {
        let Some(key) = keys.get(keyid).filter(|_| authorised.contains(keyid)) else {
            continue;
        };
        let identity = key
            .identity()
            .map_or_else(|| keyid.as_bytes().to_vec(), <[u8]>::to_vec);
        if key.verifies(&bytes, sig) && seen.insert(identity) {
            out.push(keyid.clone());
        }
    }
    out
}

/// Records an expired (a problem) or soon-expiring role; false when devices refuse it now.
fn record_expiry(
    report: &mut DoctorReport,
    check: &Check,
    version: u64,
    expires: Option<SystemTime>,
    now: SystemTime,
    within: Duration,
) -> bool {
    let role = check.role;
    match expires {
        None => {
            report.problems.push(format!("{role}: unreadable expiry"));
            false
        }
        Some(t) if t <= now => {
            report.problems.push(format!(
                "{role} v{version} expired at {}: devices refuse it; {}",
                format_time(t),
                check.fix
            ));
            false
        }
        Some(t) => {
            if t <= now + within {
                let secs = t.duration_since(now).map_or(0, |d| d.as_secs());
                let left = if secs < 2 * 86_400 {
                    format!("{} hour(s)", secs / 3600)
                } else {
                    format!("{} days", secs / 86_400)
                };
                report.expiring.push(format!(
                    "{role} v{version} expires {} (in {left})",
                    format_time(t)
                ));
            }
            true
        }
    }
}

impl Repository {
    /// Checks the published repository at `now` (the real time, not the signing time), and
    /// lists what expires within `within`.
    pub fn doctor(&self, now: SystemTime, within: Duration) -> Result<DoctorReport, RepoError> {
        let mut report = DoctorReport {
            root_version: self.root_meta.common.version,
            ..Default::default()
        };
        let repo = self.dir.display().to_string();
        let root = &self.root_meta;
        let no_role = |name: &str| RepoError::Usage(format!("root lists no {name} role"));
        let root_file = format!("metadata/{}.root.json", root.common.version);
        let root_fix = format!(
            "renew it: ota-sign repo rotate --repo {repo} --root-key <each root key> --key <a threshold of root keys>"
        );
        let check = Check {
            role: "root",
            file: root_file,
            keys: &root.keys,
            role_keys: root.role("root").ok_or_else(|| no_role("root"))?,
            listed: None,
            fix: root_fix,
        };
        self.check_file(&mut report, &check, now, within);
        let online_fix = format!(
            "ota-sign repo refresh-timestamp --repo {repo} --key <snapshot key> --key <timestamp key> (or ota-server --snapshot-key/--timestamp-key)"
        );
        let check = Check {
            role: "timestamp",
            file: "metadata/timestamp.json".into(),
            keys: &root.keys,
            role_keys: root.role("timestamp").ok_or_else(|| no_role("timestamp"))?,
            listed: None,
            fix: online_fix.clone(),
        };
        let Some(timestamp) = self.check_file(&mut report, &check, now, within) else {
            return Ok(report);
        };
        let Ok(timestamp) = Timestamp::from_signed(&timestamp) else {
            return Ok(report);
        };
        let check = Check {
            role: "snapshot",
            file: format!("metadata/{}.snapshot.json", timestamp.snapshot.version),
            keys: &root.keys,
            role_keys: root.role("snapshot").ok_or_else(|| no_role("snapshot"))?,
            listed: Some(("timestamp", &timestamp.snapshot)),
            fix: online_fix,
        };
        let Some(snapshot) = self.check_file(&mut report, &check, now, within) else {
            return Ok(report);
        };
        let Ok(snapshot) = Snapshot::from_signed(&snapshot) else {
            return Ok(report);
        };
        self.check_targets(&mut report, &snapshot, now, within)?;
        self.check_staged(&mut report);
        Ok(report)
    }

    /// Top-level targets as the snapshot lists it, then every delegated role it reaches.
    fn check_targets(
        &self,
        report: &mut DoctorReport,
        snapshot: &Snapshot,
        now: SystemTime,
        within: Duration,
    ) -> Result<(), RepoError> {
        let repo = self.dir.display().to_string();
        let Some(listed) = snapshot.meta.get("targets.json") else {
            report.problems.push(format!(
                "the snapshot lists no targets.json: run ota-sign repo publish --repo {repo} --key <targets key> with the online keys"
            ));
            return Ok(());
        };
        if let Some(newest) = self.newest_version("targets")? {
            if newest > listed.version {
                report.warnings.push(format!(
                    "targets v{newest} is signed but the snapshot still lists v{}: devices see it once the online keys re-sign snapshot and timestamp (ota-sign repo refresh-timestamp --repo {repo} ...)",
                    listed.version
                ));
            }
        }
        let targets_keys = self
            .root_meta
            .role("targets")
            .ok_or_else(|| RepoError::Usage("root lists no targets role".into()))?;
        let check = Check {
            role: "targets",
            file: format!("metadata/{}.targets.json", listed.version),
            keys: &self.root_meta.keys,
            role_keys: targets_keys,
            listed: Some(("snapshot", listed)),
            fix: format!("re-sign it: ota-sign repo publish --repo {repo} --key <targets key>"),
        };
        let Some(top) = self.check_file(report, &check, now, within) else {
            return Ok(());
        };
        let Ok(top) = Targets::from_signed(&top, "targets") else {
            return Ok(());
        };
        self.check_delegations(report, snapshot, top, now, within);
        Ok(())
    }

    /// Every delegated role reachable from `top` (each once, at most 32), checked against the
    /// keys its delegator names and the snapshot's listing.
    fn check_delegations(
        &self,
        report: &mut DoctorReport,
        snapshot: &Snapshot,
        top: Targets,
        now: SystemTime,
        within: Duration,
    ) {
        let repo = self.dir.display().to_string();
        let mut queue = VecDeque::from([("targets".to_owned(), top)]);
        let mut seen = BTreeSet::from(["targets".to_owned()]);
        while let Some((delegator, targets)) = queue.pop_front() {
            let Some(delegations) = &targets.delegations else {
                continue;
            };
            for role in &delegations.roles {
                if seen.len() >= crate::tuf::trusted::MAX_DELEGATIONS
                    || !seen.insert(role.name.clone())
                {
                    continue;
                }
                let name = &role.name;
                let fix = format!(
                    "sign it: ota-sign repo publish --repo {repo} --role '{name}' --key <a key of {name}>"
                );
                let Some(listed) = snapshot.meta.get(&format!("{name}.json")) else {
                    let unlisted = format!(
                        "{delegator} delegates to '{name}' but the snapshot does not list {name}.json"
                    );
                    if name == crate::rollout::ROLLOUT_ROLE {
                        report.problems.push(format!(
                            "{unlisted}: device checks fail until it is published ({fix}, with the online keys)"
                        ));
                    } else {
                        report.warnings.push(format!(
                            "{unlisted}: devices skip the targets behind it ({fix}, with the online keys)"
                        ));
                    }
                    continue;
                };
                let check = Check {
                    role: name,
                    file: format!("metadata/{}.{name}.json", listed.version),
                    keys: &delegations.keys,
                    role_keys: &role.keys,
                    listed: Some(("snapshot", listed)),
                    fix,
                };
                if let Some(signed) = self.check_file(report, &check, now, within) {
                    if let Ok(child) = Targets::from_signed(&signed, name) {
                        queue.push_back((name.clone(), child));
                    }
                }
            }
        }
    }

    /// Staged edits not signed yet, or a staging file devices never see but `publish` refuses.
    fn check_staged(&self, report: &mut DoctorReport) {
        let repo = self.dir.display().to_string();
        match (self.staged_role("targets"), self.newest_targets()) {
            (Err(e @ RepoError::Staged { .. }), _) => report.problems.push(format!(
                "{e}: `ota-sign repo add/remove/publish` refuse to run until then"
            )),
            (Ok(staged), Ok(Some(newest)))
                if staged.targets != newest.targets || staged.delegations != newest.delegations =>
            {
                report.warnings.push(format!(
                    "staged changes to targets are not signed yet: ota-sign repo publish --repo {repo} --key <targets key>"
                ));
            }
            _ => {}
        }
    }

    /// Checks one file as a device would (signatures by the authorised keys, the version and
    /// hashes its referencing role lists, expiry), records it and its problems; returns its
    /// `signed` object when it could be read.
    fn check_file(
        &self,
        report: &mut DoctorReport,
        check: &Check,
        now: SystemTime,
        within: Duration,
    ) -> Option<Value> {
        let role = check.role;
        let path = self.dir.join(&check.file);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.problems.push(format!(
                    "{role}: cannot read {}: {e}: devices cannot update ({})",
                    check.file, check.fix
                ));
                return None;
            }
        };
        let envelope = match Envelope::from_bytes(&bytes, role) {
            Ok(envelope) => envelope,
            Err(e) => {
                report
                    .problems
                    .push(format!("{}: {e} ({})", check.file, check.fix));
                return None;
            }
        };
        let version = envelope
            .signed
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let expires = envelope
            .signed
            .get("expires")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let mut ok = true;
        let root_version = self.root_meta.common.version;
        let (keyids, threshold) = (&check.role_keys.keyids, check.role_keys.threshold);
        if let Err(e) = envelope.verify_threshold(role, check.keys, keyids, threshold) {
            ok = false;
            let under = if role == "root" || ["timestamp", "snapshot", "targets"].contains(&role) {
                format!("under root v{root_version}")
            } else {
                "under its delegation's keys".to_owned()
            };
            report.problems.push(format!(
                "{role} v{version} does not verify {under} ({e}): devices refuse it; {}",
                check.fix
            ));
        }
        if let Some((by, listed)) = check.listed {
            let mismatch = check_length_and_hashes(role, &bytes, listed).err();
            if listed.version != version || mismatch.is_some() {
                ok = false;
                report.problems.push(format!(
                    "{} is not what {by} lists (version {}{}): devices refuse it; {}",
                    check.file,
                    listed.version,
                    mismatch.map(|e| format!(", {e}")).unwrap_or_default(),
                    check.fix
                ));
            }
        }
        ok &= record_expiry(report, check, version, expires, now, within);
        report.roles.push(RoleStatus {
            role: role.to_owned(),
            file: check.file.clone(),
            version,
            expires: expires.map(format_time).unwrap_or_default(),
            signed_by: signed_by(&envelope, check.keys, keyids),
            authorised: keyids.clone(),
            threshold,
            ok,
        });
        Some(envelope.signed)
    }

    /// Roles whose metadata signed at `signing_time` (say `SOURCE_DATE_EPOCH`) would already
    /// have expired at `now`, with that expiry.
    pub fn expired_on_arrival(
        &self,
        signing_time: SystemTime,
        now: SystemTime,
    ) -> Vec<(String, String)> {
        let mut roles: Vec<String> = ["root", "targets", "snapshot", "timestamp"]
            .iter()
            .map(|r| (*r).to_owned())
            .collect();
        roles.extend(self.delegated_roles().unwrap_or_default());
        roles
            .into_iter()
            .filter_map(|role| {
                let expires = signing_time + self.lifetimes.of(&role);
                (expires <= now).then(|| (role, format_time(expires)))
            })
            .collect()
    }
}
