//! Staged edits of targets roles and delegated roles: `.ota-repo/targets.json` for the
//! top-level targets, `.ota-repo/roles/ENCODED.json` for a delegated role (its name
//! percent-encoded, so any name stays one file of that directory). Each holds the unsigned
//! `signed` object, read and written through [`Targets`]: a staging file that does not read as
//! targets metadata is refused ([`RepoError::Staged`]) before anything is written.

use super::{io, sign_envelope, write_atomically, PublishReport, RepoError, Repository, RoleSpec};
use super::{TufKey, TOP_ROLES};
use crate::keys::SigningKey;
use crate::tuf::metadata::{
    encode_role_name, Common, DelegatedRole, Delegations, RoleKeys, TargetFile, Targets,
    SPEC_VERSION,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A target name as `repo add` takes it: `/`-separated segments, each non-empty, not hidden,
/// no backslash or control character. Stored as `targets/DIR/SHA256.NAME`.
fn check_target_name(name: &str) -> Result<(), RepoError> {
    let bad = name.is_empty()
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name
            .split('/')
            .any(|segment| segment.is_empty() || segment.starts_with('.'));
    if bad {
        return Err(RepoError::Usage(format!(
            "target name '{name}' must be '/'-separated plain names (none empty or hidden, no '\\\\')"
        )));
    }
    Ok(())
}

/// A delegated role name the writer accepts. The client reads any name; the writer also keeps
/// the published file `metadata/N.NAME.json` one plain file: no `/`, `\\`, control character
/// or leading `.`, and not a top-level role's name.
fn check_role_name(role: &str) -> Result<(), RepoError> {
    if role.is_empty()
        || TOP_ROLES.contains(&role)
        || role.contains('/')
        || role.contains('\\')
        || role.starts_with('.')
        || role.chars().any(char::is_control)
    {
        return Err(RepoError::Usage(format!(
            "'{role}' cannot be a delegated role name here: not empty nor a top-level role, no '/', '\\\\', control character or leading '.'"
        )));
    }
    Ok(())
}

impl Repository {
    fn staging_path(&self, role: &str) -> PathBuf {
        let work = Self::work_dir(&self.dir);
        if role == "targets" {
            work.join("targets.json")
        } else {
            work.join("roles")
                .join(format!("{}.json", encode_role_name(role)))
        }
    }

    /// The staging file of `role`, if there is one; refused when it is not targets metadata.
    fn read_staging(&self, role: &str) -> Result<Option<Targets>, RepoError> {
        let path = self.staging_path(role);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
        };
        let staged = |detail: String| RepoError::Staged {
            path: path.display().to_string(),
            detail,
        };
        let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| staged(e.to_string()))?;
        // `init` of earlier versions staged version 0; a staged version is never published.
        if let Some(v) = value.as_object_mut().and_then(|o| o.get_mut("version")) {
            if v == &json!(0) {
                *v = json!(1);
            }
        }
        Targets::from_signed(&value, role)
            .map(Some)
            .map_err(|e| staged(e.to_string()))
    }

    /// The staged edit of `role` (`targets` or a delegated role): its staging file, else its
    /// newest signed version, else (a delegated role never published) an empty role.
    pub fn staged_role(&self, role: &str) -> Result<Targets, RepoError> {
        if let Some(staged) = self.read_staging(role)? {
            return Ok(staged);
        }
        if role == "targets" {
            return self
                .newest_targets()?
                .ok_or_else(|| RepoError::Usage("no targets metadata staged or published".into()));
        }
        Ok(self
            .newest_delegated(role)?
            .unwrap_or_else(|| Targets::empty(1, UNIX_EPOCH)))
    }

    /// The staged top-level targets' `signed` object.
    pub fn staged_targets(&self) -> Result<Value, RepoError> {
        Ok(self.staged_role("targets")?.to_signed())
    }

    pub(super) fn save_staging(&self, role: &str, targets: &Targets) -> Result<(), RepoError> {
        let path = self.staging_path(role);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let bytes = serde_json::to_vec_pretty(&targets.to_signed())
            .map_err(|e| RepoError::Usage(format!("cannot encode JSON: {e}")))?;
        write_atomically(&path, &bytes)
    }

    /// Copies a file in as target `name` of the top-level targets (see
    /// [`Repository::add_target_to`]).
    pub fn add_target(
        &mut self,
        name: &str,
        file: &Path,
        custom: Value,
    ) -> Result<Value, RepoError> {
        self.add_target_to("targets", name, file, custom)
    }

    /// Copies a file in as target `name` of `role` (stored as `targets/DIR/SHA256.NAME`) and
    /// stages its entry with `custom`; returns the entry. A delegated role must be delegated
    /// (staged or signed) for a pattern covering `name`. The staging file is read before
    /// anything is written. Nothing is signed until `publish`.
    pub fn add_target_to(
        &mut self,
        role: &str,
        name: &str,
        file: &Path,
        custom: Value,
    ) -> Result<Value, RepoError> {
        check_target_name(name)?;
        let mut staged = self.staged_role(role)?;
        if role != "targets" {
            self.check_delegated_path(role, name)?;
        }
        let (length, digest) = self.store_target(name, file)?;
        let entry = TargetFile::new(length, &digest, Some(custom));
        let value = entry.to_value();
        staged.targets.insert(name.to_owned(), entry);
        self.save_staging(role, &staged)?;
        Ok(value)
    }

    /// Refuses a target of `role` that no pattern of its delegation covers: clients would
    /// never look for it there.
    fn check_delegated_path(&self, role: &str, name: &str) -> Result<(), RepoError> {
        let top = self.staged_role("targets")?;
        let delegation = top
            .delegations
            .as_ref()
            .and_then(|d| d.roles.iter().find(|r| r.name == role))
            .ok_or_else(|| {
                RepoError::Usage(format!(
                    "the targets role delegates to no role '{role}' (run `ota-sign repo delegate` first)"
                ))
            })?;
        if !delegation.is_trusted_for(name) {
            return Err(RepoError::Usage(format!(
                "target '{name}' is outside the paths delegated to '{role}' ({}): devices would never look for it there",
                delegation.paths.clone().unwrap_or_default().join(", ")
            )));
        }
        Ok(())
    }

    /// Copies `file` to `targets/DIR/SHA256.BASENAME`; returns its length and SHA-256.
    fn store_target(&self, name: &str, file: &Path) -> Result<(u64, String), RepoError> {
        let context = format!("cannot read {}", file.display());
        let mut input = std::fs::File::open(file).map_err(io(context.clone()))?;
        let (dir, base) = match name.rsplit_once('/') {
            Some((dir, base)) => (self.dir.join("targets").join(dir), base),
            None => (self.dir.join("targets"), name),
        };
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(io(format!("cannot create a file in {}", dir.display())))?;
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
        let stored = dir.join(format!("{digest}.{base}"));
        tmp.persist(&stored)
            .map_err(|e| e.error)
            .map_err(io(format!("cannot write {}", stored.display())))?;
        Ok((length, digest))
    }

    /// Stages the removal of top-level target `name` (its file stays: older snapshots still
    /// name it).
    pub fn remove_target(&mut self, name: &str) -> Result<(), RepoError> {
        self.remove_target_from("targets", name)
    }

    /// Stages the removal of target `name` from `role`.
    pub fn remove_target_from(&mut self, role: &str, name: &str) -> Result<(), RepoError> {
        let mut staged = self.staged_role(role)?;
        if staged.targets.remove(name).is_none() {
            return Err(RepoError::Usage(format!(
                "no target named '{name}' in {role}"
            )));
        }
        self.save_staging(role, &staged)
    }

    /// Stages a delegation from the top-level targets role to `role` (replacing one of the
    /// same name, else after the existing ones): its keys, threshold, path patterns,
    /// terminating flag. Signed by `publish`.
    pub fn delegate(
        &mut self,
        role: &str,
        spec: &RoleSpec,
        paths: &[String],
        terminating: bool,
    ) -> Result<(), RepoError> {
        check_role_name(role)?;
        if spec.keys.is_empty() || spec.threshold == 0 || spec.threshold > spec.keys.len() {
            return Err(RepoError::Usage(format!(
                "{role}: threshold {} with {} key(s) cannot be met",
                spec.threshold,
                spec.keys.len()
            )));
        }
        if paths.is_empty() || paths.iter().any(String::is_empty) {
            return Err(RepoError::Usage(format!(
                "{role}: give at least one non-empty path pattern"
            )));
        }
        let mut staged = self.staged_role("targets")?;
        let delegations = staged.delegations.get_or_insert_with(Delegations::default);
        let mut keyids = Vec::new();
        for key in &spec.keys {
            let tuf = TufKey::from_verifying_key(key);
            keyids.push(tuf.key_id().to_owned());
            delegations.keys.insert(tuf.key_id().to_owned(), tuf);
        }
        keyids.dedup();
        let entry = DelegatedRole {
            name: role.to_owned(),
            keys: RoleKeys {
                keyids,
                threshold: spec.threshold,
            },
            terminating,
            paths: Some(paths.to_vec()),
            path_hash_prefixes: None,
            unknown: Map::new(),
        };
        match delegations.roles.iter_mut().find(|r| r.name == role) {
            Some(existing) => *existing = entry,
            None => delegations.roles.push(entry),
        }
        // Keep exactly the keys some delegated role still uses.
        let used: std::collections::BTreeSet<String> = delegations
            .roles
            .iter()
            .flat_map(|r| r.keys.keyids.iter().cloned())
            .collect();
        delegations.keys.retain(|id, _| used.contains(id));
        Targets::from_signed(&staged.to_signed(), "targets")?;
        self.save_staging("targets", &staged)
    }

    /// The newest signed top-level targets, listed by a snapshot yet or not (a publish with
    /// the targets key only waits for the online keys to list it).
    pub(super) fn newest_targets(&self) -> Result<Option<Targets>, RepoError> {
        let Some(version) = self.newest_version("targets")? else {
            return Ok(None);
        };
        let path = self.metadata_path().join(format!("{version}.targets.json"));
        Ok(Some(Targets::from_signed(
            &Self::read_signed(&path, "targets")?,
            "targets",
        )?))
    }

    /// The delegated roles of the newest signed top-level targets.
    pub fn delegated_roles(&self) -> Result<Vec<String>, RepoError> {
        Ok(self
            .newest_targets()?
            .and_then(|t| t.delegations)
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

    fn newest_delegated(&self, role: &str) -> Result<Option<Targets>, RepoError> {
        self.delegated_targets(role)?
            .map(|signed| Targets::from_signed(&signed, role))
            .transpose()
            .map_err(Into::into)
    }

    /// The keys among `keys` that the newest signed targets authorise for delegated `role`,
    /// at least its threshold of them.
    fn delegated_signers<'a>(
        &self,
        role: &str,
        keys: &'a [SigningKey],
    ) -> Result<Vec<&'a SigningKey>, RepoError> {
        let top = self.newest_targets()?.ok_or_else(|| {
            RepoError::Usage(
                "no targets metadata published yet (run `ota-sign repo publish`)".into(),
            )
        })?;
        let delegation = top
            .delegations
            .as_ref()
            .and_then(|d| d.roles.iter().find(|r| r.name == role).map(|r| (d, r)));
        let Some((delegations, entry)) = delegation else {
            return Err(RepoError::Usage(format!(
                "the published targets delegate to no role '{role}' (`ota-sign repo delegate`, then `repo publish` with the targets key)"
            )));
        };
        let signers: Vec<&SigningKey> = keys
            .iter()
            .filter(|k| {
                let id = TufKey::from_verifying_key(&k.verifying_key())
                    .key_id()
                    .to_owned();
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
        Ok(signers)
    }

    /// Signs `targets` as the next version of delegated `role` (`N.ROLE.json`, the name as
    /// is) with the authorised keys among `keys`; returns the version.
    fn sign_delegated(
        &self,
        role: &str,
        targets: &Targets,
        keys: &[SigningKey],
        now: SystemTime,
    ) -> Result<u64, RepoError> {
        let signers = self.delegated_signers(role, keys)?;
        let version = self.newest_version(role)?.unwrap_or(0) + 1;
        let mut signed = targets.clone();
        signed.common = Common {
            version,
            expires: now + self.lifetimes.of(role),
        };
        signed.spec_version = SPEC_VERSION.to_owned();
        let value = signed.to_signed();
        Targets::from_signed(&value, role)?;
        let bytes = sign_envelope(&value, &signers)?;
        write_atomically(
            &self.metadata_path().join(format!("{version}.{role}.json")),
            &bytes,
        )?;
        Ok(version)
    }

    /// Signs a new version of delegated `role` listing `targets` (path → entry), with the keys
    /// among `keys` that the delegation in the newest targets authorises (at least its
    /// threshold). Written as `N.ROLE.json`; devices see it once snapshot and timestamp are
    /// re-signed ([`Repository::refresh`]). Returns the new version.
    pub fn publish_delegated(
        &self,
        role: &str,
        targets: Map<String, Value>,
        keys: &[SigningKey],
        now: SystemTime,
    ) -> Result<u64, RepoError> {
        let listed = json!({
            "_type": "targets",
            "spec_version": SPEC_VERSION,
            "version": 1,
            "expires": crate::tuf::metadata::format_time(now),
            "targets": targets,
        });
        let typed = Targets::from_signed(&listed, role)?;
        self.sign_delegated(role, &typed, keys, now)
    }

    /// `ota-sign repo publish --role ROLE`: signs the staged edit of delegated `role` when it
    /// differs from the newest signed version, that one expires within half its lifetime or no
    /// longer meets its delegation's keys; then, with online keys among `keys`, snapshot and
    /// timestamp. Every key is checked before anything is written.
    pub fn publish_role(
        &mut self,
        role: &str,
        keys: &[SigningKey],
        now: SystemTime,
    ) -> Result<PublishReport, RepoError> {
        if role == "targets" {
            return self.publish(keys, now);
        }
        let staged = self.staged_role(role)?;
        // The role's keys are checked before anything is written.
        self.delegated_signers(role, keys)?;
        let changed = match self.newest_delegated(role)? {
            None => true,
            Some(newest) => {
                newest.targets != staged.targets
                    || newest.delegations != staged.delegations
                    || self.expires_soon(newest.common.expires, role, now)
                    || !self.delegated_verifies(role)?
            }
        };
        let mut report = PublishReport::default();
        if changed {
            if self.has_online_keys(keys) {
                self.refresh_precheck(keys, now, true)?;
            }
            let version = self.sign_delegated(role, &staged, keys, now)?;
            let mut saved = staged;
            saved.common.version = version;
            self.save_staging(role, &saved)?;
            report.roles.insert(role.to_owned(), version);
        }
        if self.has_online_keys(keys) {
            let refresh = self.refresh(keys, now, changed)?;
            report.snapshot = refresh.snapshot;
            report.timestamp = refresh.timestamp;
        }
        Ok(report)
    }

    /// Whether the newest `N.ROLE.json` meets the threshold of its delegation in the newest
    /// targets (false after the delegation's keys changed).
    fn delegated_verifies(&self, role: &str) -> Result<bool, RepoError> {
        let Some(version) = self.newest_version(role)? else {
            return Ok(true);
        };
        let Some(top) = self.newest_targets()? else {
            return Ok(false);
        };
        let Some(delegations) = top.delegations else {
            return Ok(false);
        };
        let Some(entry) = delegations.roles.iter().find(|r| r.name == role) else {
            return Ok(false);
        };
        let path = self.metadata_path().join(format!("{version}.{role}.json"));
        let bytes = std::fs::read(&path).map_err(io(format!("cannot read {}", path.display())))?;
        let envelope = crate::tuf::envelope::Envelope::from_bytes(&bytes, role)?;
        Ok(envelope
            .verify_threshold(
                role,
                &delegations.keys,
                &entry.keys.keyids,
                entry.keys.threshold,
            )
            .is_ok())
    }
}
