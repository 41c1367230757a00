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
//! `publish` signs them, so the targets key is needed only once per release. Role lifetimes are
//! kept in `.ota-repo/settings.json`. Hidden names are never served by `ota-server`.

use super::canonical::CanonicalError;
use super::envelope::{Envelope, EnvelopeError};
use super::keys::{sign_ed25519, TufKey};
use super::metadata::{
    format_time, MetadataError, Root, Snapshot, Targets, Timestamp, SPEC_VERSION,
};
use crate::keys::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
        let (keyid, sig) = sign_ed25519(key, signed)?;
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
            let id = TufKey::from_ed25519(&k.verifying_key()).key_id().to_owned();
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
        let tuf = TufKey::from_ed25519(key);
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
        repo.save_staged(&json!({
            "_type": "targets",
            "spec_version": SPEC_VERSION,
            "version": 0,
            "expires": format_time(now),
            "targets": {},
        }))?;
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

    /// The staged (unsigned, edited) top-level targets.
    pub fn staged_targets(&self) -> Result<Value, RepoError> {
        let path = Self::work_dir(&self.dir).join("targets.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| RepoError::Usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self
                .published_targets()?
                .ok_or_else(|| RepoError::Usage("no targets metadata staged or published".into())),
            Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
        }
    }

    fn save_staged(&mut self, targets: &Value) -> Result<(), RepoError> {
        let dir = Self::work_dir(&self.dir);
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let bytes = serde_json::to_vec_pretty(targets)
            .map_err(|e| RepoError::Usage(format!("cannot encode JSON: {e}")))?;
        write_atomically(&dir.join("targets.json"), &bytes)
    }

    /// Copies a file in as target `name` (stored as `targets/SHA256.NAME`) and stages its
    /// entry with `custom`. Returns the entry. Nothing is signed until `publish`.
    pub fn add_target(
        &mut self,
        name: &str,
        file: &Path,
        custom: Value,
    ) -> Result<Value, RepoError> {
        if name.is_empty()
            || name.contains('/')
            || name.contains('\\')
            || name.starts_with('.')
            || name.chars().any(char::is_control)
        {
            return Err(RepoError::Usage(format!(
                "target name '{name}' must be a plain file name (no '/', not hidden)"
            )));
        }
        let context = format!("cannot read {}", file.display());
        let mut input = std::fs::File::open(file).map_err(io(context.clone()))?;
        let targets_dir = self.dir.join("targets");
        std::fs::create_dir_all(&targets_dir)
            .map_err(io(format!("cannot create {}", targets_dir.display())))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&targets_dir).map_err(io(format!(
            "cannot create a file in {}",
            targets_dir.display()
        )))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut length = 0u64;
        loop {
            let n = std::io::Read::read(&mut input, &mut buf).map_err(io(context.clone()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(io("cannot write into targets/"))?;
            length += n as u64;
        }
        tmp.as_file()
            .sync_all()
            .map_err(io("cannot write into targets/"))?;
        let digest = hex::encode(hasher.finalize());
        let stored = targets_dir.join(format!("{digest}.{name}"));
        tmp.persist(&stored)
            .map_err(|e| e.error)
            .map_err(io(format!("cannot write {}", stored.display())))?;
        let entry = json!({"length": length, "hashes": {"sha256": digest}, "custom": custom});
        let mut staged = self.staged_targets()?;
        staged["targets"][name] = entry.clone();
        self.save_staged(&staged)?;
        Ok(entry)
    }

    /// Stages the removal of target `name` (its file stays: older snapshots still name it).
    pub fn remove_target(&mut self, name: &str) -> Result<(), RepoError> {
        let mut staged = self.staged_targets()?;
        let removed = staged
            .get_mut("targets")
            .and_then(Value::as_object_mut)
            .and_then(|t| t.remove(name));
        if removed.is_none() {
            return Err(RepoError::Usage(format!("no target named '{name}'")));
        }
        self.save_staged(&staged)
    }

    /// Stages a delegation from the top-level targets role to `role` (replacing one of the same
    /// name): its keys, threshold, path patterns, terminating flag. Signed by `publish`.
    pub fn delegate(
        &mut self,
        role: &str,
        spec: &RoleSpec,
        paths: &[String],
        terminating: bool,
    ) -> Result<(), RepoError> {
        if TOP_ROLES.contains(&role) || role.is_empty() || role.contains('/') {
            return Err(RepoError::Usage(format!(
                "'{role}' cannot be a delegated role name"
            )));
        }
        if spec.keys.is_empty() || spec.threshold == 0 || spec.threshold > spec.keys.len() {
            return Err(RepoError::Usage(format!(
                "{role}: threshold {} with {} key(s) cannot be met",
                spec.threshold,
                spec.keys.len()
            )));
        }
        let mut staged = self.staged_targets()?;
        let (keys, mut entry) = keys_and_role(spec);
        entry["name"] = json!(role);
        entry["paths"] = json!(paths);
        entry["terminating"] = json!(terminating);
        let delegations = staged
            .as_object_mut()
            .ok_or_else(|| RepoError::Usage("the staged targets are not a JSON object".into()))?
            .entry("delegations")
            .or_insert_with(|| json!({"keys": {}, "roles": []}));
        let mut all_keys = delegations
            .get("keys")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        all_keys.extend(keys);
        let mut roles: Vec<Value> = delegations
            .get("roles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        roles.retain(|r| r.get("name").and_then(Value::as_str) != Some(role));
        roles.push(entry);
        // Keep exactly the keys some delegated role still uses.
        let used: std::collections::BTreeSet<String> = roles
            .iter()
            .flat_map(|r| r["keyids"].as_array().cloned().unwrap_or_default())
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        all_keys.retain(|id, _| used.contains(id));
        *delegations = json!({"keys": all_keys, "roles": roles});
        Targets::from_signed(&staged, "targets")?;
        self.save_staged(&staged)
    }

    /// The newest signed top-level targets (`signed`), listed by a snapshot yet or not (a
    /// publish with the targets key only waits for the online keys to list it).
    fn newest_targets(&self) -> Result<Option<Value>, RepoError> {
        let Some(version) = self.newest_version("targets")? else {
            return Ok(None);
        };
        let path = self.metadata_path().join(format!("{version}.targets.json"));
        Ok(Some(Self::read_signed(&path, "targets")?))
    }

    /// The delegated roles of the newest signed top-level targets.
    pub fn delegated_roles(&self) -> Result<Vec<String>, RepoError> {
        let Some(published) = self.newest_targets()? else {
            return Ok(Vec::new());
        };
        let targets = Targets::from_signed(&published, "targets")?;
        Ok(targets
            .delegations
            .map(|d| d.roles.into_iter().map(|r| r.name).collect())
            .unwrap_or_default())
    }

    /// The newest published metadata of delegated `role` (`signed`), if any.
    pub fn delegated_targets(&self, role: &str) -> Result<Option<Value>, RepoError> {
        let Some(version) = self.newest_version(role)? else {
            return Ok(None);
        };
        let path = self.metadata_path().join(format!("{version}.{role}.json"));
        Ok(Some(Self::read_signed(&path, role)?))
    }

    /// Signs a new version of delegated `role` listing `targets` (path → entry), with the keys
    /// among `keys` that the delegation in the newest targets authorises (at least its threshold). Written
    /// as `N.ROLE.json`; devices see it once snapshot and timestamp are re-signed
    /// ([`Repository::refresh`]). Returns the new version.
    pub fn publish_delegated(
        &self,
        role: &str,
        targets: Map<String, Value>,
        keys: &[SigningKey],
        now: SystemTime,
    ) -> Result<u64, RepoError> {
        let published = self.newest_targets()?.ok_or_else(|| {
            RepoError::Usage(
                "no targets metadata published yet (run `ota-sign repo publish`)".into(),
            )
        })?;
        let top = Targets::from_signed(&published, "targets")?;
        let delegation = top
            .delegations
            .as_ref()
            .and_then(|d| d.roles.iter().find(|r| r.name == role).map(|r| (d, r)));
        let Some((delegations, entry)) = delegation else {
            return Err(RepoError::Usage(format!(
                "the published targets delegate to no role '{role}'"
            )));
        };
        let signers: Vec<&SigningKey> = keys
            .iter()
            .filter(|k| {
                let id = TufKey::from_ed25519(&k.verifying_key()).key_id().to_owned();
                entry.keys.keyids.contains(&id) && delegations.keys.contains_key(&id)
            })
            .collect();
        if signers.len() < entry.keys.threshold {
            return Err(RepoError::Usage(format!(
                "{role}: {} of the given keys are authorised for this role, {} needed (pass the role's private key(s))",
                signers.len(),
                entry.keys.threshold
            )));
        }
        let version = self.newest_version(role)?.unwrap_or(0) + 1;
        let signed = json!({
            "_type": "targets",
            "spec_version": SPEC_VERSION,
            "version": version,
            "expires": format_time(now + self.lifetimes.of(role)),
            "targets": targets,
        });
        Targets::from_signed(&signed, role)?;
        let bytes = sign_envelope(&signed, &signers)?;
        write_atomically(
            &self.metadata_path().join(format!("{version}.{role}.json")),
            &bytes,
        )?;
        Ok(version)
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

    /// Signs what changed: targets (if the staged targets differ from the published ones, or
    /// expire within half their lifetime), then snapshot and timestamp. Each role is signed
    /// with the authorised keys among `keys`.
    pub fn publish(
        &mut self,
        keys: &[SigningKey],
        now: SystemTime,
    ) -> Result<PublishReport, RepoError> {
        let mut report = PublishReport::default();
        let staged = self.staged_targets()?;
        let published = self.published_targets()?;
        let changed = match &published {
            None => true,
            Some(p) => {
                p.get("targets") != staged.get("targets")
                    || p.get("delegations") != staged.get("delegations")
                    || self.expires_soon(p, "targets", now)?
            }
        };
        if changed {
            // Check every key before writing anything: a publish either happens or not.
            let signers = signers_for("targets", &self.root_meta, keys)?;
            let version = published
                .as_ref()
                .and_then(|p| p.get("version"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .max(self.newest_version("targets")?.unwrap_or(0))
                + 1;
            let mut signed = staged.clone();
            signed["version"] = json!(version);
            signed["spec_version"] = json!(SPEC_VERSION);
            signed["expires"] = json!(format_time(now + self.lifetimes.of("targets")));
            Targets::from_signed(&signed, "targets")?;
            if self.has_online_keys(keys) {
                self.refresh_precheck(keys, now, true)?;
            }
            let bytes = sign_envelope(&signed, &signers)?;
            write_atomically(
                &self.metadata_path().join(format!("{version}.targets.json")),
                &bytes,
            )?;
            self.save_staged(&signed)?;
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

    fn expires_soon(&self, signed: &Value, role: &str, now: SystemTime) -> Result<bool, RepoError> {
        let expires = signed
            .get("expires")
            .and_then(Value::as_str)
            .and_then(super::metadata::parse_time)
            .ok_or_else(|| RepoError::Usage(format!("{role}: unreadable expiry")))?;
        Ok(expires <= now + self.lifetimes.of(role) / 2)
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
            .and_then(|s| s.get("version"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .max(self.newest_version("snapshot")?.unwrap_or(0));
        if need_snapshot {
            let Some(targets_version) = newest_targets else {
                return Err(RepoError::Usage(
                    "no targets metadata published yet (run `ota-sign repo publish`)".into(),
                ));
            };
            let mut meta = snapshot
                .as_ref()
                .and_then(|s| s.get("meta").cloned())
                .unwrap_or_else(|| json!({}));
            meta["targets.json"] = json!({"version": targets_version});
            for (file, version) in self.current_meta()? {
                meta[file.as_str()] = json!({"version": version});
            }
            snapshot_version += 1;
            let signed = json!({
                "_type": "snapshot",
                "spec_version": SPEC_VERSION,
                "version": snapshot_version,
                "expires": format_time(now + self.lifetimes.of("snapshot")),
                "meta": meta,
            });
            let signers = signers_for("snapshot", &self.root_meta, keys)?;
            let bytes = sign_envelope(&signed, &signers)?;
            write_atomically(
                &meta_dir.join(format!("{snapshot_version}.snapshot.json")),
                &bytes,
            )?;
            report.snapshot = Some(snapshot_version);
        }
        let timestamp = self.published_timestamp()?;
        if need_timestamp {
            let snapshot_path = meta_dir.join(format!("{snapshot_version}.snapshot.json"));
            let snapshot_bytes = std::fs::read(&snapshot_path)
                .map_err(io(format!("cannot read {}", snapshot_path.display())))?;
            let version = timestamp
                .as_ref()
                .and_then(|t| t.get("version"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + 1;
            let signed = json!({
                "_type": "timestamp",
                "spec_version": SPEC_VERSION,
                "version": version,
                "expires": format_time(now + self.lifetimes.of("timestamp")),
                "meta": {"snapshot.json": {
                    "version": snapshot_version,
                    "length": snapshot_bytes.len(),
                    "hashes": {"sha256": hex::encode(Sha256::digest(&snapshot_bytes))},
                }},
            });
            let signers = signers_for("timestamp", &self.root_meta, keys)?;
            let bytes = sign_envelope(&signed, &signers)?;
            write_atomically(&meta_dir.join("timestamp.json"), &bytes)?;
            report.timestamp = Some(version);
        }
        Ok(report)
    }

    /// What a refresh must re-sign (snapshot, timestamp), checked against the keys at hand
    /// before anything is written.
    #[allow(clippy::type_complexity)]
    fn refresh_precheck(
        &self,
        keys: &[SigningKey],
        now: SystemTime,
        force: bool,
    ) -> Result<(Option<Value>, Option<u64>, bool, bool), RepoError> {
        let snapshot = self.published_snapshot()?;
        let newest_targets = self.newest_version("targets")?;
        let stale_snapshot = match &snapshot {
            None => true,
            Some(s) => {
                let listed = Snapshot::from_signed(s)?;
                let current = self.current_meta()?;
                let outdated = current
                    .iter()
                    .any(|(file, v)| listed.meta.get(file).map(|m| m.version) != Some(*v));
                outdated || self.expires_soon(s, "snapshot", now)?
            }
        };
        // After a key rotation the published file may no longer verify under the new root.
        let need_snapshot = force || stale_snapshot || !self.verifies_with_root("snapshot")?;
        let need_timestamp = need_snapshot
            || !self.verifies_with_root("timestamp")?
            || match self.published_timestamp()? {
                None => true,
                Some(t) => self.expires_soon(&t, "timestamp", now)?,
            };
        if need_snapshot {
            signers_for("snapshot", &self.root_meta, keys)?;
        }
        if need_timestamp {
            signers_for("timestamp", &self.root_meta, keys)?;
        }
        Ok((snapshot, newest_targets, need_snapshot, need_timestamp))
    }

    /// Whether the published `role` file (snapshot or timestamp) verifies under the current
    /// root; a missing file counts as verifying (nothing to re-sign for that reason).
    fn verifies_with_root(&self, role: &str) -> Result<bool, RepoError> {
        let path = if role == "timestamp" {
            self.metadata_path().join("timestamp.json")
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

    /// The highest N of `N.ROLE.json` present.
    fn newest_version(&self, role: &str) -> Result<Option<u64>, RepoError> {
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
                .any(|c| c.verifying_key().as_bytes() == key.verifying_key().as_bytes())
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
