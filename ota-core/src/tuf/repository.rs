//! A TUF repository directory as the vendor edits it and the server re-signs it.
//!
//! Layout (consistent snapshots, what python-tuf's `ngclient` expects):
//! - `metadata/N.root.json` for every root version, plus `metadata/root.json` (the newest, for
//!   bootstrapping devices and tools);
//! - `metadata/N.snapshot.json`, `metadata/N.targets.json`, `metadata/N.ROLE.json`: immutable
//!   once written, so caches and CDNs may keep them forever;
//! - `metadata/timestamp.json`: the only file that changes in place, written last;
//! - `targets/SHA256.NAME`: target files under hash-prefixed names, immutable.
//!
//! Edits of the top-level targets role are staged in `.ota-repo/targets.json` (unsigned) until
//! `publish` signs them, so the targets key is needed only once per release; a delegated
//! role's in `.ota-repo/roles/ENCODED.json` ([`staging`]). Staged and published metadata are
//! edited through the typed views the client reads ([`super::metadata`]), which keep the fields
//! they do not model. Role lifetimes are kept in `.ota-repo/settings.json`. Hidden names are
//! never served by `ota-server`. [`doctor`] reports on the published repository.

use super::canonical::CanonicalError;
use super::envelope::{Envelope, EnvelopeError};
use super::keys::{sign_role, TufKey};
use super::metadata::{
    format_time, Common, MetaFile, MetadataError, Root, Snapshot, Targets, Timestamp, SPEC_VERSION,
};
use crate::keys::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub mod doctor;
mod staging;

/// The four top-level roles.
pub const TOP_ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The repository's own metadata does not parse.
    #[error("repository metadata: {0}")]
    Metadata(#[from] MetadataError),
    /// The repository's own metadata envelope does not parse or verify.
    #[error("repository metadata: {0}")]
    Envelope(#[from] EnvelopeError),
    /// Metadata has no canonical form.
    #[error("repository metadata: {0}")]
    Canonical(#[from] CanonicalError),
    /// The operation cannot be done as asked (wrong key, not initialised, ...).
    #[error("{0}")]
    Usage(String),
    /// A key could not sign (an HSM or KMS refused or could not be reached).
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// A staging file (`.ota-repo/...`) is not valid targets metadata; nothing was written.
    #[error("malformed staging file {path}: {detail} (fix it, or delete it to start again from the newest signed targets)")]
    Staged {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RepoError {
    let context = context.into();
    move |source| RepoError::Io { context, source }
}

/// How long each role's metadata stays valid after it is signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetimes {
    /// Root lifetime in seconds.
    pub root: u64,
    /// Targets lifetime in seconds.
    pub targets: u64,
    /// Snapshot lifetime in seconds.
    pub snapshot: u64,
    /// Timestamp lifetime in seconds.
    pub timestamp: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            root: 365 * DAY,
            targets: 90 * DAY,
            snapshot: 7 * DAY,
            timestamp: DAY,
        }
    }
}

impl Lifetimes {
    /// The lifetime of `role`.
    pub fn of(&self, role: &str) -> Duration {
        Duration::from_secs(match role {
            "root" => self.root,
            "snapshot" => self.snapshot,
            "timestamp" => self.timestamp,
            _ => self.targets,
        })
    }
}

/// Keys and threshold for one top-level role, as given to `init` or `rotate`.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    /// Public keys authorised for the role.
    pub keys: Vec<VerifyingKey>,
    /// Signatures needed.
    pub threshold: usize,
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory):
/// a reader sees the old file or the new one, never a mix, even after a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io(format!("cannot create a file in {}", dir.display())))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io(format!("cannot write {}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(io(format!("cannot write {}", path.display())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", dir.display())))?;
    Ok(())
}

/// Signs `signed` with each key: the envelope bytes as published (compact JSON; signatures are
/// over the canonical form, so any JSON layout verifies). A key given twice signs once: key
/// ids must be unique among the signatures.
pub fn sign_envelope(signed: &Value, keys: &[&SigningKey]) -> Result<Vec<u8>, RepoError> {
    let mut signatures = Vec::with_capacity(keys.len());
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        let (keyid, sig) = sign_role(key, signed)?;
        if seen.insert(keyid.clone()) {
            signatures.push(json!({"keyid": keyid, "sig": sig}));
        }
    }
    let envelope = json!({"signatures": signatures, "signed": signed});
    serde_json::to_vec(&envelope).map_err(|e| RepoError::Usage(format!("cannot encode JSON: {e}")))
}

/// The keys among `available` that `role` authorises, at least its threshold of them.
fn signers_for<'a>(
    role_name: &str,
    root: &Root,
    available: &'a [SigningKey],
) -> Result<Vec<&'a SigningKey>, RepoError> {
    let role = root
        .role(role_name)
        .ok_or_else(|| RepoError::Usage(format!("root lists no {role_name} role")))?;
    let chosen: Vec<&SigningKey> = available
        .iter()
        .filter(|k| {
            let id = TufKey::from_verifying_key(&k.verifying_key())
                .key_id()
                .to_owned();
            role.keyids.contains(&id)
        })
        .collect();
    if chosen.len() < role.threshold {
        return Err(RepoError::Usage(format!(
            "{role_name}: {} of the given keys are authorised for this role, {} needed (pass the role's private key(s))",
            chosen.len(),
            role.threshold
        )));
    }
    Ok(chosen)
}

fn keys_and_role(spec: &RoleSpec) -> (Map<String, Value>, Value) {
    let mut keys = Map::new();
    let mut ids = Vec::new();
    for key in &spec.keys {
        let tuf = TufKey::from_verifying_key(key);
        ids.push(Value::String(tuf.key_id().to_owned()));
        keys.insert(tuf.key_id().to_owned(), tuf.to_value().clone());
    }
    (keys, json!({"keyids": ids, "threshold": spec.threshold}))
}

/// A repository directory: its newest published metadata, loaded for editing.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    root: Value,
    root_meta: Root,
    lifetimes: Lifetimes,
}

/// What `publish` changed.
#[derive(Debug, Default, Serialize)]
pub struct PublishReport {
    /// New targets version, if targets changed.
    pub targets: Option<u64>,
    /// New snapshot version, if re-signed.
    pub snapshot: Option<u64>,
    /// New timestamp version, if re-signed.
    pub timestamp: Option<u64>,
    /// Delegated roles signed, with their new versions.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, u64>,
}

impl Repository {
    fn metadata_dir(dir: &Path) -> PathBuf {
        dir.join("metadata")
    }

    fn work_dir(dir: &Path) -> PathBuf {
        dir.join(".ota-repo")
    }

    /// The metadata directory.
    pub fn metadata_path(&self) -> PathBuf {
        Self::metadata_dir(&self.dir)
    }

    /// The root currently published.
    pub fn root(&self) -> &Root {
        &self.root_meta
    }

    /// Role lifetimes.
    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    /// Creates a repository: root version 1 signed by `root_signers`, and empty targets,
    /// snapshot and timestamp (version 1) if their private keys are among `role_signers`
    /// (otherwise the first `publish` makes them).
    pub fn init(
        dir: &Path,
        roles: &BTreeMap<String, RoleSpec>,
        root_signers: &[SigningKey],
        role_signers: &[SigningKey],
        lifetimes: Lifetimes,
        now: SystemTime,
    ) -> Result<(Self, PublishReport), RepoError> {
        let meta_dir = Self::metadata_dir(dir);
        if meta_dir.join("1.root.json").exists() {
            return Err(RepoError::Usage(format!(
                "{} already holds a repository (metadata/1.root.json exists)",
                dir.display()
            )));
        }
        for sub in [meta_dir.clone(), dir.join("targets"), Self::work_dir(dir)] {
            std::fs::create_dir_all(&sub)
                .map_err(io(format!("cannot create {}", sub.display())))?;
        }
        let mut keys = Map::new();
        let mut role_values = Map::new();
        for name in TOP_ROLES {
            let spec = roles
                .get(name)
                .ok_or_else(|| RepoError::Usage(format!("no keys given for the {name} role")))?;
            if spec.keys.is_empty() || spec.threshold == 0 || spec.threshold > spec.keys.len() {
                return Err(RepoError::Usage(format!(
                    "{name}: threshold {} with {} key(s) cannot be met",
                    spec.threshold,
                    spec.keys.len()
                )));
            }
            let (k, r) = keys_and_role(spec);
            keys.extend(k);
            role_values.insert(name.to_owned(), r);
        }
        let root = json!({
            "_type": "root",
            "spec_version": SPEC_VERSION,
            "version": 1,
            "expires": format_time(now + lifetimes.of("root")),
            "consistent_snapshot": true,
            "keys": keys,
            "roles": role_values,
        });
        let root_meta = Root::from_signed(&root)?;
        let signers = signers_for("root", &root_meta, root_signers)?;
        let bytes = sign_envelope(&root, &signers)?;
        write_atomically(&meta_dir.join("1.root.json"), &bytes)?;
        write_atomically(&meta_dir.join("root.json"), &bytes)?;
        let settings = serde_json::to_vec_pretty(&lifetimes)
            .map_err(|e| RepoError::Usage(format!("cannot encode settings: {e}")))?;
        write_atomically(&Self::work_dir(dir).join("settings.json"), &settings)?;
        let mut repo = Self {
            dir: dir.to_owned(),
            root,
            root_meta,
            lifetimes,
        };
        repo.save_staging("targets", &Targets::empty(1, now))?;
        let can_publish = ["targets", "snapshot", "timestamp"]
            .iter()
            .all(|r| signers_for(r, &repo.root_meta, role_signers).is_ok());
        let report = if can_publish {
            repo.publish(role_signers, now)?
        } else {
            PublishReport::default()
        };
        Ok((repo, report))
    }

    /// Opens an existing repository at its newest root.
    pub fn open(dir: &Path) -> Result<Self, RepoError> {
        let meta_dir = Self::metadata_dir(dir);
        let mut newest = 0u64;
        let entries = std::fs::read_dir(&meta_dir).map_err(io(format!(
            "cannot read {} (run `ota-sign repo init` first)",
            meta_dir.display()
        )))?;
        for entry in entries {
            let name = entry.map_err(io("cannot list metadata"))?.file_name();
            if let Some(v) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".root.json"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                newest = newest.max(v);
            }
        }
        if newest == 0 {
            return Err(RepoError::Usage(format!(
                "{} has no N.root.json (run `ota-sign repo init` first)",
                meta_dir.display()
            )));
        }
        let root = Self::read_signed(&meta_dir.join(format!("{newest}.root.json")), "root")?;
        let root_meta = Root::from_signed(&root)?;
        let settings_path = Self::work_dir(dir).join("settings.json");
        let lifetimes = match std::fs::read(&settings_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| RepoError::Usage(format!("{}: {e}", settings_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lifetimes::default(),
            Err(e) => return Err(io(format!("cannot read {}", settings_path.display()))(e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            root,
            root_meta,
            lifetimes,
        })
    }

    fn read_signed(path: &Path, role: &str) -> Result<Value, RepoError> {
        let bytes = std::fs::read(path).map_err(io(format!("cannot read {}", path.display())))?;
        Ok(Envelope::from_bytes(&bytes, role)?.signed)
    }

    /// The published timestamp's `signed`, if any.
    pub fn published_timestamp(&self) -> Result<Option<Value>, RepoError> {
        let path = self.metadata_path().join("timestamp.json");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Self::read_signed(&path, "timestamp")?))
    }

    /// The published snapshot's `signed` (the one the timestamp names), if any.
    pub fn published_snapshot(&self) -> Result<Option<Value>, RepoError> {
        let Some(ts) = self.published_timestamp()? else {
            return Ok(None);
        };
        let v = Timestamp::from_signed(&ts)?.snapshot.version;
        let path = self.metadata_path().join(format!("{v}.snapshot.json"));
        Ok(Some(Self::read_signed(&path, "snapshot")?))
    }

    /// The published top-level targets' `signed` (the one the snapshot names), if any.
    pub fn published_targets(&self) -> Result<Option<Value>, RepoError> {
        let Some(snap) = self.published_snapshot()? else {
            return Ok(None);
        };
        let snapshot = Snapshot::from_signed(&snap)?;
        let Some(entry) = snapshot.meta.get("targets.json") else {
            return Ok(None);
        };
        let path = self
            .metadata_path()
            .join(format!("{}.targets.json", entry.version));
        Ok(Some(Self::read_signed(&path, "targets")?))
    }

    /// The snapshot's `meta` as it should be now: the newest targets and the newest version of
    /// every delegated role the published targets name.
    fn current_meta(&self) -> Result<BTreeMap<String, u64>, RepoError> {
        let mut meta = BTreeMap::new();
        if let Some(v) = self.newest_version("targets")? {
            meta.insert("targets.json".to_owned(), v);
        }
        for role in self.delegated_roles()? {
            if let Some(v) = self.newest_version(&role)? {
                meta.insert(format!("{role}.json"), v);
            }
        }
        Ok(meta)
    }

    /// Signs what changed: targets when the staged targets differ from the newest signed ones,
    /// those expire within half their lifetime, or they no longer verify under the current
    /// root (a rotated targets key); then snapshot and timestamp. Each role is signed with the
    /// authorised keys among `keys`, all checked before anything is written.
    pub fn publish(
        &mut self,
        keys: &[SigningKey],
        now: SystemTime,
    ) -> Result<PublishReport, RepoError> {
        let mut report = PublishReport::default();
        let staged = self.staged_role("targets")?;
        let newest = self.newest_targets()?;
        let changed = match &newest {
            None => true,
            Some(p) => {
                p.targets != staged.targets
                    || p.delegations != staged.delegations
                    || self.expires_soon(p.common.expires, "targets", now)
                    || !self.verifies_with_root("targets")?
            }
        };
        if changed {
            let signers = signers_for("targets", &self.root_meta, keys)?;
            let version = self.newest_version("targets")?.unwrap_or(0) + 1;
            let mut signed = staged;
            signed.common = Common {
                version,
                expires: now + self.lifetimes.of("targets"),
            };
            signed.spec_version = SPEC_VERSION.to_owned();
            let value = signed.to_signed();
            Targets::from_signed(&value, "targets")?;
            if self.has_online_keys(keys) {
                self.refresh_precheck(keys, now, true)?;
            }
            let bytes = sign_envelope(&value, &signers)?;
            write_atomically(
                &self.metadata_path().join(format!("{version}.targets.json")),
                &bytes,
            )?;
            self.save_staging("targets", &signed)?;
            report.targets = Some(version);
        }
        // Without snapshot/timestamp keys (they may live on the server) the new targets wait,
        // invisible to devices, until the online keys re-sign snapshot and timestamp.
        if self.has_online_keys(keys) {
            let refresh = self.refresh(keys, now, changed)?;
            report.snapshot = refresh.snapshot;
            report.timestamp = refresh.timestamp;
        }
        Ok(report)
    }

    fn has_online_keys(&self, keys: &[SigningKey]) -> bool {
        signers_for("snapshot", &self.root_meta, keys).is_ok()
            || signers_for("timestamp", &self.root_meta, keys).is_ok()
    }

    fn expires_soon(&self, expires: SystemTime, role: &str, now: SystemTime) -> bool {
        expires <= now + self.lifetimes.of(role) / 2
    }

    /// Re-signs snapshot when `force`, when it does not name the newest targets, or when it
    /// expires within half its lifetime (needs a snapshot key among `keys`); then re-signs
    /// timestamp when snapshot changed or it expires within half its lifetime. This is what the
    /// server's online keys do on a timer, and `ota-sign repo refresh-timestamp` by hand.
    pub fn refresh(
        &mut self,
        keys: &[SigningKey],
        now: SystemTime,
        force: bool,
    ) -> Result<PublishReport, RepoError> {
        let mut report = PublishReport::default();
        let meta_dir = self.metadata_path();
        let (snapshot, newest_targets, need_snapshot, need_timestamp) =
            self.refresh_precheck(keys, now, force)?;
        let mut snapshot_version = snapshot
            .as_ref()
            .map_or(0, |s| s.common.version)
            .max(self.newest_version("snapshot")?.unwrap_or(0));
        if need_snapshot {
            let Some(targets_version) = newest_targets else {
                return Err(RepoError::Usage(
                    "no targets metadata published yet (run `ota-sign repo publish`)".into(),
                ));
            };
            // Every file listed before stays listed (clients refuse a snapshot dropping one).
            let mut meta = snapshot.map(|s| s.meta).unwrap_or_default();
            meta.insert(
                "targets.json".to_owned(),
                MetaFile::version_only(targets_version),
            );
            for (file, version) in self.current_meta()? {
                meta.insert(file, MetaFile::version_only(version));
            }
            snapshot_version += 1;
            let signed = Snapshot {
                common: Common {
                    version: snapshot_version,
                    expires: now + self.lifetimes.of("snapshot"),
                },
                meta,
                unknown: Map::new(),
            };
            let signers = signers_for("snapshot", &self.root_meta, keys)?;
            let bytes = sign_envelope(&signed.to_signed(), &signers)?;
            write_atomically(
                &meta_dir.join(format!("{snapshot_version}.snapshot.json")),
                &bytes,
            )?;
            report.snapshot = Some(snapshot_version);
        }
        if need_timestamp {
            report.timestamp = Some(self.write_timestamp(keys, now, snapshot_version)?);
        }
        Ok(report)
    }

    /// Signs a timestamp naming `N.snapshot.json` (version, length, SHA-256), one version
    /// above the published one.
    fn write_timestamp(
        &self,
        keys: &[SigningKey],
        now: SystemTime,
        snapshot_version: u64,
    ) -> Result<u64, RepoError> {
        let meta_dir = self.metadata_path();
        let snapshot_path = meta_dir.join(format!("{snapshot_version}.snapshot.json"));
        let snapshot_bytes = std::fs::read(&snapshot_path)
            .map_err(io(format!("cannot read {}", snapshot_path.display())))?;
        let version = match self.published_timestamp()? {
            Some(t) => Timestamp::from_signed(&t)?.common.version + 1,
            None => 1,
        };
        let signed = Timestamp {
            common: Common {
                version,
                expires: now + self.lifetimes.of("timestamp"),
            },
            snapshot: MetaFile {
                version: snapshot_version,
                length: Some(snapshot_bytes.len() as u64),
                hashes: BTreeMap::from([(
                    "sha256".to_owned(),
                    hex::encode(Sha256::digest(&snapshot_bytes)),
                )]),
            },
            unknown: Map::new(),
        };
        let signers = signers_for("timestamp", &self.root_meta, keys)?;
        let bytes = sign_envelope(&signed.to_signed(), &signers)?;
        write_atomically(&meta_dir.join("timestamp.json"), &bytes)?;
        Ok(version)
    }

    /// What a refresh must re-sign (snapshot, timestamp), checked against the keys at hand
    /// before anything is written.
    #[allow(clippy::type_complexity)]
    fn refresh_precheck(
        &self,
        keys: &[SigningKey],
        now: SystemTime,
        force: bool,
    ) -> Result<(Option<Snapshot>, Option<u64>, bool, bool), RepoError> {
        let snapshot = self
            .published_snapshot()?
            .map(|s| Snapshot::from_signed(&s))
            .transpose()?;
        let newest_targets = self.newest_version("targets")?;
        let stale_snapshot = match &snapshot {
            None => true,
            Some(listed) => {
                let current = self.current_meta()?;
                let outdated = current
                    .iter()
                    .any(|(file, v)| listed.meta.get(file).map(|m| m.version) != Some(*v));
                outdated || self.expires_soon(listed.common.expires, "snapshot", now)
            }
        };
        // After a key rotation the published file may no longer verify under the new root.
        let need_snapshot = force || stale_snapshot || !self.verifies_with_root("snapshot")?;
        let need_timestamp = need_snapshot
            || !self.verifies_with_root("timestamp")?
            || match self.published_timestamp()? {
                None => true,
                Some(t) => {
                    self.expires_soon(Timestamp::from_signed(&t)?.common.expires, "timestamp", now)
                }
            };
        if need_snapshot {
            signers_for("snapshot", &self.root_meta, keys)?;
        }
        if need_timestamp {
            signers_for("timestamp", &self.root_meta, keys)?;
        }
        Ok((snapshot, newest_targets, need_snapshot, need_timestamp))
    }

    /// Whether the published `role` file (timestamp, the snapshot it names, or the newest
    /// targets) verifies under the current root; a missing file counts as verifying (nothing
    /// to re-sign for that reason).
    fn verifies_with_root(&self, role: &str) -> Result<bool, RepoError> {
        let path = if role == "timestamp" {
            self.metadata_path().join("timestamp.json")
        } else if role == "targets" {
            let Some(v) = self.newest_version("targets")? else {
                return Ok(true);
            };
            self.metadata_path().join(format!("{v}.targets.json"))
        } else {
            let Some(ts) = self.published_timestamp()? else {
                return Ok(true);
            };
            let v = Timestamp::from_signed(&ts)?.snapshot.version;
            self.metadata_path().join(format!("{v}.snapshot.json"))
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(true);
        };
        let envelope = Envelope::from_bytes(&bytes, role)?;
        let Some(keys) = self.root_meta.role(role) else {
            return Ok(false);
        };
        Ok(envelope
            .verify_threshold(role, &self.root_meta.keys, &keys.keyids, keys.threshold)
            .is_ok())
    }

    /// The highest N of `N.ROLE.json` present (the role name as is).
    pub fn newest_version(&self, role: &str) -> Result<Option<u64>, RepoError> {
        let suffix = format!(".{role}.json");
        let mut newest = None;
        let entries = std::fs::read_dir(self.metadata_path()).map_err(io(format!(
            "cannot read {}",
            self.metadata_path().display()
        )))?;
        for entry in entries {
            let name = entry.map_err(io("cannot list metadata"))?.file_name();
            if let Some(v) = name
                .to_str()
                .and_then(|n| n.strip_suffix(suffix.as_str()))
                .and_then(|n| n.parse::<u64>().ok())
            {
                newest = Some(newest.map_or(v, |n: u64| n.max(v)));
            }
        }
        Ok(newest)
    }

    /// Writes root version N+1 with the keys and thresholds in `changes` (roles not named keep
    /// theirs), signed by a threshold of the current root keys and of the new ones (both among
    /// `signers`). Returns the new version.
    pub fn rotate(
        &mut self,
        changes: &BTreeMap<String, RoleSpec>,
        signers: &[SigningKey],
        now: SystemTime,
    ) -> Result<u64, RepoError> {
        let mut root = self.root.clone();
        let version = self.root_meta.common.version + 1;
        let mut roles = root["roles"].as_object().cloned().unwrap_or_default();
        for (name, spec) in changes {
            if !TOP_ROLES.contains(&name.as_str()) {
                return Err(RepoError::Usage(format!("unknown role '{name}'")));
            }
            if spec.keys.is_empty() || spec.threshold == 0 || spec.threshold > spec.keys.len() {
                return Err(RepoError::Usage(format!(
                    "{name}: threshold {} with {} key(s) cannot be met",
                    spec.threshold,
                    spec.keys.len()
                )));
            }
            let (_, role) = keys_and_role(spec);
            roles.insert(name.clone(), role);
        }
        // Keep exactly the keys some role still uses.
        let mut keys = Map::new();
        let mut all_keys: BTreeMap<String, Value> = self
            .root
            .get("keys")
            .and_then(Value::as_object)
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        for spec in changes.values() {
            let (k, _) = keys_and_role(spec);
            all_keys.extend(k);
        }
        for role in roles.values() {
            for id in role["keyids"].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    if let Some(k) = all_keys.get(id) {
                        keys.insert(id.to_owned(), k.clone());
                    }
                }
            }
        }
        root["roles"] = Value::Object(roles);
        root["keys"] = Value::Object(keys);
        root["version"] = json!(version);
        root["expires"] = json!(format_time(now + self.lifetimes.of("root")));
        let new_meta = Root::from_signed(&root)?;
        let mut chosen = signers_for("root", &self.root_meta, signers)?;
        for key in signers_for("root", &new_meta, signers)? {
            if !chosen
                .iter()
                .any(|c| c.verifying_key() == key.verifying_key())
            {
                chosen.push(key);
            }
        }
        let bytes = sign_envelope(&root, &chosen)?;
        let meta_dir = self.metadata_path();
        write_atomically(&meta_dir.join(format!("{version}.root.json")), &bytes)?;
        write_atomically(&meta_dir.join("root.json"), &bytes)?;
        self.root = root;
        self.root_meta = new_meta;
        Ok(version)
    }
}
