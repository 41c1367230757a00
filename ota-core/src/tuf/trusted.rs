//! The trusted metadata set: the TUF client workflow's checks (specification §5.3–5.6), with
//! no I/O. The caller fetches bytes and offers them in order — root chain, timestamp, snapshot,
//! targets, delegated targets — and each `update_*` either accepts them or says why not,
//! leaving what was trusted before unchanged.
//!
//! Checks, in the spec's order: signatures by a threshold of the delegating role's keys before
//! anything in `signed` is believed; versions never go back (per role, and per targets file
//! listed in snapshot); a file referenced with a length or hashes must match them; snapshot and
//! targets versions must be exactly the ones referenced (mix-and-match); nothing is trusted
//! past its expiry at the reference time `now`.

use super::envelope::{Envelope, EnvelopeError};
use super::keys::TufKey;
use super::metadata::{
    format_time, MetaFile, MetadataError, RoleKeys, Root, Snapshot, Targets, Timestamp,
};
use sha2::{Digest, Sha256, Sha512};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

/// Why metadata was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Signatures missing, invalid or below threshold, or the envelope is unreadable.
    #[error(transparent)]
    Signature(#[from] EnvelopeError),
    /// The signed content is malformed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The metadata expired (a freeze attack, or a repository nobody refreshes).
    #[error("{role} metadata expired at {expires}: refusing it (freeze attack or stale repository; the repository must refresh it)")]
    Expired {
        /// The role.
        role: String,
        /// Its expiry.
        expires: String,
    },
    /// A version lower than one already trusted (rollback attack).
    #[error(
        "{role}: version {offered} is older than the trusted version {trusted} (rollback attack?)"
    )]
    Rollback {
        /// The role or file.
        role: String,
        /// Version already trusted.
        trusted: u64,
        /// Version offered.
        offered: u64,
    },
    /// The offered timestamp is the one already trusted: nothing new.
    #[error("timestamp version {0} is already trusted")]
    EqualTimestamp(u64),
    /// A version different from the one the referencing role names (mix-and-match).
    #[error(
        "{role}: version {found} does not match version {expected} listed by {by} (mix-and-match?)"
    )]
    VersionMismatch {
        /// The role.
        role: String,
        /// The referencing role.
        by: String,
        /// Version listed.
        expected: u64,
        /// Version found.
        found: u64,
    },
    /// Length or hash differs from what the referencing role lists.
    #[error("{role}: {detail}")]
    Mismatch {
        /// The role or file.
        role: String,
        /// What differed.
        detail: String,
    },
    /// A new root must be exactly one version newer.
    #[error("root: version {found} offered where version {expected} was expected")]
    RootVersion {
        /// trusted + 1.
        expected: u64,
        /// Offered.
        found: u64,
    },
    /// Snapshot does not list a role it listed before, or does not list one at all.
    #[error("snapshot does not list {0}")]
    NotListed(String),
    /// Metadata offered out of the workflow's order.
    #[error("{0}")]
    Order(String),
    /// A delegated role that already failed to load through this delegator in this run (it
    /// is not fetched again).
    #[error("delegated role {role:?} (delegated by {delegator:?}) is unavailable: {reason}")]
    Unavailable {
        /// The delegated role.
        role: String,
        /// The delegator on the search path that reached it.
        delegator: String,
        /// Why it failed the first time.
        reason: String,
    },
}

/// A verified role together with the bytes it was read from (what the cache stores).
#[derive(Clone, Debug)]
pub struct Verified<T> {
    /// The typed view.
    pub meta: T,
    /// The exact bytes that verified.
    pub bytes: Vec<u8>,
}

/// A targets role trusted so far, with the delegators whose keys and threshold it met.
#[derive(Debug)]
struct LoadedTargets {
    verified: Verified<Targets>,
    envelope: Envelope,
    /// `root` for the top-level targets, else the delegating roles checked so far: a role
    /// delegated by several roles is trusted through a delegator only once it met that
    /// delegator's keys and threshold.
    verified_by: BTreeSet<String>,
}

/// Root, timestamp, snapshot and targets (top-level and delegated) trusted so far.
#[derive(Debug)]
pub struct TrustedSet {
    root: Verified<Root>,
    timestamp: Option<Verified<Timestamp>>,
    snapshot: Option<Verified<Snapshot>>,
    targets: HashMap<String, LoadedTargets>,
    /// (role, delegator) pairs that failed to load in this run, with the reason.
    unavailable: HashMap<(String, String), String>,
    now: SystemTime,
}

/// A part of the delegation graph a listing of every target could not use, and why (see
/// [`TrustedSet::all_targets`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unavailable {
    /// `role NAME` for a delegated role that could not be loaded, or a target path whose search
    /// reached such a role before finding an entry.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// What [`TrustedSet::all_targets`] found.
#[derive(Clone, Debug, Default)]
pub struct AllTargets {
    /// Every target path resolved through the delegations, with its entry.
    pub found: Vec<(String, super::metadata::TargetFile)>,
    /// Branches left out: roles that failed to load and paths their failure leaves unresolved.
    pub unavailable: Vec<Unavailable>,
}

fn verify_envelope(
    bytes: &[u8],
    role: &str,
    keys: &HashMap<String, TufKey>,
    role_keys: &RoleKeys,
) -> Result<Envelope, TrustError> {
    let envelope = Envelope::from_bytes(bytes, role)?;
    envelope.verify_threshold(role, keys, &role_keys.keyids, role_keys.threshold)?;
    Ok(envelope)
}

/// Checks `bytes` against a listed length and hashes (unknown hash algorithms are refused:
/// skipping them would let a listing with only an unknown algorithm match anything).
pub fn check_length_and_hashes(
    role: &str,
    bytes: &[u8],
    meta: &MetaFile,
) -> Result<(), TrustError> {
    let mismatch = |detail: String| TrustError::Mismatch {
        role: role.to_owned(),
        detail,
    };
    if let Some(length) = meta.length {
        if bytes.len() as u64 != length {
            return Err(mismatch(format!(
                "length {} differs from the listed {length}",
                bytes.len()
            )));
        }
    }
    for (alg, expected) in &meta.hashes {
        let actual = match alg.as_str() {
            "sha256" => hex::encode(Sha256::digest(bytes)),
            "sha512" => hex::encode(Sha512::digest(bytes)),
            other => return Err(mismatch(format!("unsupported hash algorithm '{other}'"))),
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(mismatch(format!("{alg} differs from the listed value")));
        }
    }
    Ok(())
}

impl TrustedSet {
    /// Starts from a root trusted out of band (shipped on the device or in the cache). It must
    /// be signed by its own root threshold; its expiry is checked only after the root chain
    /// was walked ([`TrustedSet::check_root_fresh`]), as the spec says.
    pub fn new(root_bytes: &[u8], now: SystemTime) -> Result<Self, TrustError> {
        let envelope = Envelope::from_bytes(root_bytes, "root")?;
        let root = Root::from_signed(&envelope.signed)?;
        let role = root
            .role("root")
            .ok_or_else(|| TrustError::Order("root lists no root role".into()))?;
        envelope.verify_threshold("root", &root.keys, &role.keyids, role.threshold)?;
        Ok(Self {
            root: Verified {
                meta: root,
                bytes: root_bytes.to_vec(),
            },
            timestamp: None,
            snapshot: None,
            targets: HashMap::new(),
            unavailable: HashMap::new(),
            now,
        })
    }

    /// The reference time for expiry checks.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The trusted root.
    pub fn root(&self) -> &Verified<Root> {
        &self.root
    }

    /// The trusted timestamp, if loaded.
    pub fn timestamp(&self) -> Option<&Verified<Timestamp>> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot, if loaded.
    pub fn snapshot(&self) -> Option<&Verified<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// Every targets role loaded and verified so far, by name.
    pub fn loaded_targets(&self) -> impl Iterator<Item = (&String, &Verified<Targets>)> {
        self.targets.iter().map(|(name, t)| (name, &t.verified))
    }

    /// A trusted targets role (`targets` or a delegated role), if loaded.
    pub fn targets(&self, role: &str) -> Option<&Verified<Targets>> {
        self.targets.get(role).map(|t| &t.verified)
    }

    fn check_expiry(&self, role: &str, expires: SystemTime) -> Result<(), TrustError> {
        if expires <= self.now {
            return Err(TrustError::Expired {
                role: role.to_owned(),
                expires: format_time(expires),
            });
        }
        Ok(())
    }

    /// Accepts the next root of the chain: version trusted+1, signed by a threshold of the
    /// trusted root's root keys *and* of its own (so a rotation needs both old and new keys).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        if self.timestamp.is_some() {
            return Err(TrustError::Order(
                "root cannot change after timestamp was loaded".into(),
            ));
        }
        let old_role = self
            .root
            .meta
            .role("root")
            .cloned()
            .ok_or_else(|| TrustError::Order("root lists no root role".into()))?;
        let envelope = verify_envelope(bytes, "root", &self.root.meta.keys, &old_role)?;
        let new_root = Root::from_signed(&envelope.signed)?;
        let expected = self.root.meta.common.version + 1;
        if new_root.common.version != expected {
            return Err(TrustError::RootVersion {
                expected,
                found: new_root.common.version,
            });
        }
        let new_role = new_root
            .role("root")
            .ok_or_else(|| TrustError::Order("root lists no root role".into()))?;
        envelope.verify_threshold("root", &new_root.keys, &new_role.keyids, new_role.threshold)?;
        self.root = Verified {
            meta: new_root,
            bytes: bytes.to_vec(),
        };
        Ok(())
    }

    /// After the root chain: the final root must not have expired.
    pub fn check_root_fresh(&self) -> Result<(), TrustError> {
        self.check_expiry("root", self.root.meta.common.expires)
    }

    fn top_role(&self, name: &str) -> Result<RoleKeys, TrustError> {
        self.root
            .meta
            .role(name)
            .cloned()
            .ok_or_else(|| TrustError::Order(format!("root lists no {name} role")))
    }

    /// Accepts a timestamp: signed by the root's timestamp keys, not older than the trusted
    /// one (equal gives [`TrustError::EqualTimestamp`]), not pointing at an older snapshot, not
    /// expired. With `from_cache` (the copy stored by a previous run) an expired timestamp is
    /// still kept as the baseline for the rollback checks of the next one, and the expiry is
    /// reported as the error.
    pub fn update_timestamp(&mut self, bytes: &[u8], from_cache: bool) -> Result<(), TrustError> {
        if self.snapshot.is_some() {
            return Err(TrustError::Order(
                "timestamp cannot change after snapshot was loaded".into(),
            ));
        }
        self.check_root_fresh()?;
        let role = self.top_role("timestamp")?;
        let envelope = verify_envelope(bytes, "timestamp", &self.root.meta.keys, &role)?;
        let new = Timestamp::from_signed(&envelope.signed)?;
        if let Some(old) = &self.timestamp {
            let (old_v, new_v) = (old.meta.common.version, new.common.version);
            if new_v < old_v {
                return Err(TrustError::Rollback {
                    role: "timestamp".into(),
                    trusted: old_v,
                    offered: new_v,
                });
            }
            if new_v == old_v {
                return Err(TrustError::EqualTimestamp(new_v));
            }
            if new.snapshot.version < old.meta.snapshot.version {
                return Err(TrustError::Rollback {
                    role: "snapshot (as listed by timestamp)".into(),
                    trusted: old.meta.snapshot.version,
                    offered: new.snapshot.version,
                });
            }
        }
        let expiry = self.check_expiry("timestamp", new.common.expires);
        if expiry.is_ok() || from_cache {
            self.timestamp = Some(Verified {
                meta: new,
                bytes: bytes.to_vec(),
            });
        }
        expiry
    }

    /// The timestamp is still checked against `now` when later roles load: a set built from a
    /// cache must not outlive it.
    fn fresh_timestamp(&self) -> Result<&Verified<Timestamp>, TrustError> {
        let ts = self
            .timestamp
            .as_ref()
            .ok_or_else(|| TrustError::Order("snapshot offered before timestamp".into()))?;
        self.check_expiry("timestamp", ts.meta.common.expires)?;
        Ok(ts)
    }

    /// Accepts a snapshot: length and hashes as the timestamp lists them, signed by the
    /// root's snapshot keys, no targets file older than in the snapshot trusted before or
    /// missing from it, the exact version the timestamp lists, not expired. With `from_cache`
    /// (the copy stored by a previous run) the length/hash check is skipped and the snapshot is
    /// kept as the rollback baseline even when it is no longer the current one; the version or
    /// expiry failure is still returned, so the caller fetches the current one.
    pub fn update_snapshot(&mut self, bytes: &[u8], from_cache: bool) -> Result<(), TrustError> {
        if !self.targets.is_empty() {
            return Err(TrustError::Order(
                "snapshot cannot change after targets were loaded".into(),
            ));
        }
        let listed = self.fresh_timestamp()?.meta.snapshot.clone();
        if !from_cache {
            check_length_and_hashes("snapshot", bytes, &listed)?;
        }
        let role = self.top_role("snapshot")?;
        let envelope = verify_envelope(bytes, "snapshot", &self.root.meta.keys, &role)?;
        let new = Snapshot::from_signed(&envelope.signed)?;
        if let Some(old) = &self.snapshot {
            for (name, old_meta) in &old.meta.meta {
                let Some(new_meta) = new.meta.get(name) else {
                    return Err(TrustError::NotListed(name.clone()));
                };
                if new_meta.version < old_meta.version {
                    return Err(TrustError::Rollback {
                        role: name.clone(),
                        trusted: old_meta.version,
                        offered: new_meta.version,
                    });
                }
            }
        }
        let final_check = if new.common.version != listed.version {
            Err(TrustError::VersionMismatch {
                role: "snapshot".into(),
                by: "timestamp".into(),
                expected: listed.version,
                found: new.common.version,
            })
        } else {
            self.check_expiry("snapshot", new.common.expires)
        };
        if final_check.is_ok() || from_cache {
            self.snapshot = Some(Verified {
                meta: new,
                bytes: bytes.to_vec(),
            });
        }
        final_check
    }

    /// The snapshot targets may be checked against: trusted, current and fresh.
    fn final_snapshot(&self) -> Result<&Verified<Snapshot>, TrustError> {
        let listed = self.fresh_timestamp()?.meta.snapshot.version;
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or_else(|| TrustError::Order("targets offered before snapshot".into()))?;
        if snapshot.meta.common.version != listed {
            return Err(TrustError::VersionMismatch {
                role: "snapshot".into(),
                by: "timestamp".into(),
                expected: listed,
                found: snapshot.meta.common.version,
            });
        }
        self.check_expiry("snapshot", snapshot.meta.common.expires)?;
        Ok(snapshot)
    }

    /// The snapshot's entry for `ROLE.json`: the version (and, when given, the length and
    /// hashes) the role's file must have.
    fn listed_in_snapshot(&self, role: &str) -> Result<MetaFile, TrustError> {
        let file = format!("{role}.json");
        self.final_snapshot()?
            .meta
            .meta
            .get(&file)
            .cloned()
            .ok_or(TrustError::NotListed(file))
    }

    /// The keys and threshold `delegator` names for `role`: the root's targets role for the
    /// top-level targets (`delegator` is then `root`), else the delegation entry in the
    /// delegator's metadata, which must already be trusted.
    fn delegation_keys(
        &self,
        role: &str,
        delegator: &str,
    ) -> Result<(HashMap<String, TufKey>, RoleKeys), TrustError> {
        if delegator == "root" {
            if role != "targets" {
                return Err(TrustError::Order(format!(
                    "root delegates to targets only, not to {role}"
                )));
            }
            return Ok((self.root.meta.keys.clone(), self.top_role("targets")?));
        }
        let parent = self.targets.get(delegator).ok_or_else(|| {
            TrustError::Order(format!("{role} offered before its delegator {delegator}"))
        })?;
        let delegations = parent
            .verified
            .meta
            .delegations
            .as_ref()
            .ok_or_else(|| TrustError::Order(format!("{delegator} delegates to no role")))?;
        let entry = delegations
            .roles
            .iter()
            .find(|r| r.name == role)
            .ok_or_else(|| TrustError::Order(format!("{delegator} does not delegate to {role}")))?;
        Ok((delegations.keys.clone(), entry.keys.clone()))
    }

    /// Accepts the top-level targets role or a delegated one (spec 5.6.1–5.6.5). `delegator`
    /// is the role that delegates to `role` (`root` for `targets`); it must already be trusted.
    /// The role is then trusted through that delegator only: a search reaching it through
    /// another delegator checks that one's keys and threshold too.
    pub fn update_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
        from_cache: bool,
    ) -> Result<(), TrustError> {
        // 5.6.1: the snapshot must list the file.
        let listed = self.listed_in_snapshot(role)?;
        // 5.6.2: its length and hashes, when the snapshot gives them.
        if !from_cache {
            check_length_and_hashes(role, bytes, &listed)?;
        }
        // 5.6.3: a threshold of the keys the delegator names for this role.
        let (keys, role_keys) = self.delegation_keys(role, delegator)?;
        let envelope = verify_envelope(bytes, role, &keys, &role_keys)?;
        let new = Targets::from_signed(&envelope.signed, role)?;
        // 5.6.4: exactly the version the snapshot lists (mix-and-match).
        if new.common.version != listed.version {
            return Err(TrustError::VersionMismatch {
                role: role.to_owned(),
                by: "snapshot".into(),
                expected: listed.version,
                found: new.common.version,
            });
        }
        // 5.6.5: not expired.
        self.check_expiry(role, new.common.expires)?;
        self.targets.insert(
            role.to_owned(),
            LoadedTargets {
                verified: Verified {
                    meta: new,
                    bytes: bytes.to_vec(),
                },
                envelope,
                verified_by: BTreeSet::from([delegator.to_owned()]),
            },
        );
        Ok(())
    }

    /// A role already trusted through another delegator, reached now through `delegator`: its
    /// signatures must meet this delegator's keys and threshold too. Without this check a role
    /// delegated by two roles with different keys, signed for one of them, would be believed
    /// on the other's paths (delegation confusion).
    fn verify_through(&mut self, role: &str, delegator: &str) -> Result<(), TrustError> {
        let (keys, role_keys) = self.delegation_keys(role, delegator)?;
        let loaded = self
            .targets
            .get_mut(role)
            .ok_or_else(|| TrustError::Order(format!("{role} is not loaded")))?;
        if !loaded.verified_by.contains(delegator) {
            loaded.envelope.verify_threshold(
                role,
                &keys,
                &role_keys.keyids,
                role_keys.threshold,
            )?;
            loaded.verified_by.insert(delegator.to_owned());
        }
        Ok(())
    }
}

/// Most roles a delegation search visits (the spec's suggested bound): a delegation graph
/// cannot make a client fetch without end.
pub const MAX_DELEGATIONS: usize = 32;

impl TrustedSet {
    /// Finds the authoritative entry for `path` (spec 5.6.7): a pre-order depth-first search
    /// from `targets` through the delegations trusted for the path, stopping at a terminating
    /// one, visiting each role once and at most [`MAX_DELEGATIONS`] roles. Roles are loaded
    /// when the search reaches them (fetched with `fetch(role, listed)`, checked by
    /// [`TrustedSet::update_targets`]), each verified against the delegator on *this* search
    /// path. A role on the path that cannot be loaded ends the search with its error. Returns
    /// the role that listed the path and the entry.
    pub fn find_target<E, F>(
        &mut self,
        path: &str,
        fetch: &mut F,
    ) -> Result<Option<(String, super::metadata::TargetFile)>, E>
    where
        E: From<TrustError> + std::fmt::Display,
        F: FnMut(&str, &MetaFile) -> Result<Vec<u8>, E>,
    {
        let mut to_visit = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = HashSet::new();
        while let Some((role, delegator)) = to_visit.pop() {
            // 5.6.7.1: at most MAX_DELEGATIONS roles; a role visited before is skipped (cycles).
            if visited.len() >= MAX_DELEGATIONS {
                break;
            }
            if !visited.insert(role.clone()) {
                continue;
            }
            // 5.6.7: metadata that cannot be downloaded or validated ends the search.
            self.load_targets(&role, &delegator, fetch)?;
            let Some(targets) = self.targets.get(&role) else {
                continue;
            };
            // 5.6.7.1: this role has metadata about the target: the search ends here.
            if let Some(entry) = targets.verified.meta.targets.get(path) {
                return Ok(Some((role, entry.clone())));
            }
            // 5.6.7.2: otherwise its delegations trusted for the path, in order of appearance.
            let mut children = Vec::new();
            if let Some(delegations) = &targets.verified.meta.delegations {
                for child in &delegations.roles {
                    if child.is_trusted_for(path) {
                        children.push((child.name.clone(), role.clone()));
                        // 5.6.7.2.1: a terminating delegation: nothing after its subtree.
                        if child.terminating {
                            to_visit.clear();
                            break;
                        }
                    }
                }
            }
            // 5.6.7.2.2: non-terminating: the next delegation once this subtree found nothing.
            children.reverse();
            to_visit.extend(children);
        }
        Ok(None)
    }

    /// Every target path the repository vouches for (a device choosing its release), each
    /// resolved through [`TrustedSet::find_target`], so delegation priorities, path
    /// restrictions and the delegator checks apply.
    ///
    /// Delegated roles stay lazy here too: a delegated role that cannot be fetched or verified
    /// (missing from the snapshot, unreachable, badly signed, expired) leaves out its own branch
    /// only. It is reported in [`AllTargets::unavailable`], and so is every path whose search
    /// reaches such a role before finding an entry (5.6.7: the target "cannot be found"), so a
    /// withheld higher-priority role never lets a lower-priority one answer in its place. The
    /// top-level targets role and the roles in `required` must load, and a path they list must
    /// resolve: their failure is returned.
    pub fn all_targets<E, F>(&mut self, required: &[&str], fetch: &mut F) -> Result<AllTargets, E>
    where
        E: From<TrustError> + std::fmt::Display,
        F: FnMut(&str, &MetaFile) -> Result<Vec<u8>, E>,
    {
        let mut result = AllTargets::default();
        let candidates = self.candidate_paths(required, fetch, &mut result.unavailable)?;
        for (path, listed_by) in candidates {
            match self.find_target(&path, fetch) {
                Ok(Some((_, entry))) => result.found.push((path, entry)),
                Ok(None) => {}
                Err(e) if listed_by.iter().any(|r| required.contains(&r.as_str())) => {
                    return Err(e)
                }
                Err(e) => result.unavailable.push(Unavailable {
                    name: path,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(result)
    }

    /// Loads every role reachable from `targets` (each once, at most [`MAX_DELEGATIONS`]) and
    /// returns the paths they list, each with the roles listing it. A role that fails to load
    /// is recorded in `unavailable` and its subtree skipped, unless it is `targets` or in
    /// `required`.
    fn candidate_paths<E, F>(
        &mut self,
        required: &[&str],
        fetch: &mut F,
        unavailable: &mut Vec<Unavailable>,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, E>
    where
        E: From<TrustError> + std::fmt::Display,
        F: FnMut(&str, &MetaFile) -> Result<Vec<u8>, E>,
    {
        let mut candidates: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut to_visit = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = HashSet::new();
        while let Some((role, delegator)) = to_visit.pop() {
            if visited.len() >= MAX_DELEGATIONS || !visited.insert(role.clone()) {
                continue;
            }
            if let Err(e) = self.load_targets(&role, &delegator, fetch) {
                if role == "targets" || required.contains(&role.as_str()) {
                    return Err(e);
                }
                unavailable.push(Unavailable {
                    name: format!("role {role}"),
                    reason: e.to_string(),
                });
                continue;
            }
            if let Some(targets) = self.targets.get(&role) {
                for path in targets.verified.meta.targets.keys() {
                    candidates
                        .entry(path.clone())
                        .or_default()
                        .push(role.clone());
                }
                if let Some(d) = &targets.verified.meta.delegations {
                    to_visit.extend(d.roles.iter().rev().map(|c| (c.name.clone(), role.clone())));
                }
            }
        }
        Ok(candidates)
    }

    /// Spec 5.6: loads the top-level targets role if it is not loaded yet (fetched with
    /// `fetch`), and nothing it delegates to: delegated roles load when a search reaches them.
    pub fn load_top_targets<E, F>(&mut self, fetch: &mut F) -> Result<(), E>
    where
        E: From<TrustError> + std::fmt::Display,
        F: FnMut(&str, &MetaFile) -> Result<Vec<u8>, E>,
    {
        self.load_targets("targets", "root", fetch)
    }

    /// Makes `role` trusted through `delegator`: a role loaded before is checked against this
    /// delegator's keys ([`TrustedSet::verify_through`]); otherwise it is fetched and checked
    /// by [`TrustedSet::update_targets`]. A failure is remembered for the run: the same pair
    /// then fails at once, without another download.
    fn load_targets<E, F>(&mut self, role: &str, delegator: &str, fetch: &mut F) -> Result<(), E>
    where
        E: From<TrustError> + std::fmt::Display,
        F: FnMut(&str, &MetaFile) -> Result<Vec<u8>, E>,
    {
        let key = (role.to_owned(), delegator.to_owned());
        if let Some(reason) = self.unavailable.get(&key) {
            return Err(TrustError::Unavailable {
                role: key.0,
                delegator: key.1,
                reason: reason.clone(),
            }
            .into());
        }
        let result = self.try_load_targets(role, delegator, fetch);
        if let Err(e) = &result {
            self.unavailable.insert(key, e.to_string());
        }
        result
    }

    fn try_load_targets<E, F>(
        &mut self,
        role: &str,
        delegator: &str,
        fetch: &mut F,
    ) -> Result<(), E>
    where
        E: From<TrustError>,
        F: FnMut(&str, &MetaFile) -> Result<Vec<u8>, E>,
    {
        if self.targets.contains_key(role) {
            return Ok(self.verify_through(role, delegator)?);
        }
        let listed = self.listed_in_snapshot(role)?;
        let bytes = fetch(role, &listed)?;
        self.update_targets(&bytes, role, delegator, false)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::tuf::repository::sign_envelope;
    use serde_json::{json, Value};
    use std::time::{Duration, UNIX_EPOCH};

    const FUTURE: &str = "2100-01-01T00:00:00Z";

    fn key_entry(k: &SigningKey) -> (String, Value) {
        let tuf = TufKey::from_verifying_key(&k.verifying_key());
        (tuf.key_id().to_owned(), tuf.to_value().clone())
    }

    /// A repository in memory: one key for every top-level role, and delegated roles.
    struct Repo {
        top: SigningKey,
        delegated: SigningKey,
        files: HashMap<String, Vec<u8>>,
    }

    impl Repo {
        fn new(delegations: Value, delegated_targets: &[(&str, Value)]) -> Self {
            let top = SigningKey::generate();
            let delegated = SigningKey::generate();
            let (id, key) = key_entry(&top);
            let role = json!({"keyids": [id], "threshold": 1});
            let root = json!({"_type": "root", "spec_version": "1.0.31", "version": 1,
                "expires": FUTURE, "consistent_snapshot": true, "keys": {id.clone(): key},
                "roles": {"root": role, "targets": role, "snapshot": role, "timestamp": role}});
            let (did, dkey) = key_entry(&delegated);
            let mut delegations = delegations;
            delegations["keys"] = json!({did.clone(): dkey});
            for r in delegations["roles"].as_array_mut().unwrap() {
                r["keyids"] = json!([did]);
                r["threshold"] = json!(1);
            }
            let targets = json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
                "expires": FUTURE, "targets": {}, "delegations": delegations});
            let mut files = HashMap::new();
            let mut meta = json!({"targets.json": {"version": 1}});
            files.insert("root".to_owned(), sign_envelope(&root, &[&top]).unwrap());
            files.insert(
                "targets".to_owned(),
                sign_envelope(&targets, &[&top]).unwrap(),
            );
            for (name, listed) in delegated_targets {
                let signed = json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
                    "expires": FUTURE, "targets": listed});
                files.insert(
                    (*name).to_owned(),
                    sign_envelope(&signed, &[&delegated]).unwrap(),
                );
                meta[format!("{name}.json")] = json!({"version": 1});
            }
            let snapshot = json!({"_type": "snapshot", "spec_version": "1.0.31", "version": 1,
                "expires": FUTURE, "meta": meta});
            let snap_bytes = sign_envelope(&snapshot, &[&top]).unwrap();
            let timestamp = json!({"_type": "timestamp", "spec_version": "1.0.31", "version": 1,
                "expires": FUTURE, "meta": {"snapshot.json": {"version": 1,
                "length": snap_bytes.len()}}});
            files.insert("snapshot".to_owned(), snap_bytes);
            files.insert(
                "timestamp".to_owned(),
                sign_envelope(&timestamp, &[&top]).unwrap(),
            );
            Self {
                top,
                delegated,
                files,
            }
        }

        fn trusted(&self) -> TrustedSet {
            let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let mut set = TrustedSet::new(&self.files["root"], now).unwrap();
            set.update_timestamp(&self.files["timestamp"], false)
                .unwrap();
            set.update_snapshot(&self.files["snapshot"], false).unwrap();
            set
        }

        /// Resolves `path`, returning the role that listed it and the roles fetched.
        fn find(&self, path: &str) -> (Option<String>, Vec<String>) {
            let mut set = self.trusted();
            let mut fetched = Vec::new();
            let mut fetch = |role: &str, _: &MetaFile| -> Result<Vec<u8>, TrustError> {
                fetched.push(role.to_owned());
                Ok(self.files[role].clone())
            };
            let found = set.find_target(path, &mut fetch).unwrap();
            (found.map(|(role, _)| role), fetched)
        }
    }

    fn file() -> Value {
        json!({"length": 1, "hashes": {"sha256": "00"}})
    }

    #[test]
    fn a_terminating_delegation_ends_the_search() {
        let roles = |terminating: bool| {
            json!({"roles": [
                {"name": "a", "terminating": terminating, "paths": ["fw/*"]},
                {"name": "b", "terminating": false, "paths": ["fw/*"]},
            ]})
        };
        let listed = [("a", json!({})), ("b", json!({"fw/x.bin": file()}))];
        let open = Repo::new(roles(false), &listed);
        assert_eq!(open.find("fw/x.bin").0.as_deref(), Some("b"));
        let closed = Repo::new(roles(true), &listed);
        let (found, fetched) = closed.find("fw/x.bin");
        assert_eq!(found, None);
        assert_eq!(fetched, ["targets", "a"], "b must not even be fetched");
    }

    #[test]
    fn a_role_is_not_trusted_for_paths_outside_its_patterns() {
        let roles = json!({"roles": [{"name": "a", "paths": ["router/*"]}]});
        let repo = Repo::new(
            roles,
            &[("a", json!({"nas/x.bin": file(), "router/y.bin": file()}))],
        );
        assert_eq!(repo.find("router/y.bin").0.as_deref(), Some("a"));
        assert_eq!(repo.find("nas/x.bin").0, None);
        let mut set = repo.trusted();
        let mut fetch = |role: &str, _: &MetaFile| -> Result<Vec<u8>, TrustError> {
            Ok(repo.files[role].clone())
        };
        let all: Vec<String> = set
            .all_targets(&[], &mut fetch)
            .unwrap()
            .found
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(all, ["router/y.bin"]);
    }

    #[test]
    fn a_delegation_cycle_is_visited_once_and_bounded() {
        // a delegates to a: a cycle; the walk visits it once and terminates.
        let roles = json!({"roles": [{"name": "a", "paths": ["*"]}]});
        let mut repo = Repo::new(roles, &[("a", json!({}))]);
        let (did, dkey) = key_entry(&repo.delegated);
        let cyclic = json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
            "expires": FUTURE, "targets": {}, "delegations": {"keys": {did.clone(): dkey},
            "roles": [{"name": "a", "keyids": [did], "threshold": 1, "paths": ["*"]}]}});
        repo.files.insert(
            "a".into(),
            sign_envelope(&cyclic, &[&repo.delegated]).unwrap(),
        );
        let (found, fetched) = repo.find("x");
        assert_eq!(found, None);
        assert_eq!(fetched, ["targets", "a"]);
    }

    #[test]
    fn a_delegated_role_signed_by_the_wrong_key_is_refused() {
        let roles = json!({"roles": [{"name": "a", "paths": ["*"]}]});
        let mut repo = Repo::new(roles, &[("a", json!({"x": file()}))]);
        let signed: Value =
            serde_json::from_slice::<Value>(&repo.files["a"]).unwrap()["signed"].clone();
        repo.files
            .insert("a".into(), sign_envelope(&signed, &[&repo.top]).unwrap());
        let mut set = repo.trusted();
        let mut fetch = |role: &str, _: &MetaFile| -> Result<Vec<u8>, TrustError> {
            Ok(repo.files[role].clone())
        };
        let err = set.find_target("x", &mut fetch).unwrap_err();
        assert!(matches!(err, TrustError::Signature(_)), "{err}");
    }

    #[test]
    fn out_of_order_updates_are_refused() {
        let repo = Repo::new(json!({"roles": []}), &[]);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut set = TrustedSet::new(&repo.files["root"], now).unwrap();
        assert!(matches!(
            set.update_snapshot(&repo.files["snapshot"], false),
            Err(TrustError::Order(_))
        ));
        set.update_timestamp(&repo.files["timestamp"], false)
            .unwrap();
        set.update_snapshot(&repo.files["snapshot"], false).unwrap();
        assert!(matches!(
            set.update_root(&repo.files["root"]),
            Err(TrustError::Order(_))
        ));
        // Metadata of one role offered as another is refused by its type.
        let mut fresh = TrustedSet::new(&repo.files["root"], now).unwrap();
        assert!(fresh
            .update_timestamp(&repo.files["snapshot"], false)
            .is_err());
    }

    /// A repository in memory with a free-form delegation graph: each role signed by its own
    /// key, delegations naming the keys of the roles they delegate to.
    struct Graph {
        keys: HashMap<String, SigningKey>,
        files: HashMap<String, Vec<u8>>,
        root: Vec<u8>,
        snapshot: Vec<u8>,
        timestamp: Vec<u8>,
    }

    /// One delegation: (delegated role, key names, paths, terminating).
    type Delegation<'a> = (&'a str, &'a [&'a str], &'a [&'a str], bool);

    impl Graph {
        /// `roles`: (name, signing key name, targets listed, delegations). `unlisted` roles are
        /// left out of the snapshot.
        fn new(roles: &[(&str, &str, Value, &[Delegation])], unlisted: &[&str]) -> Self {
            let mut keys: HashMap<String, SigningKey> = HashMap::new();
            let mut key = |name: &str| {
                let k = keys
                    .entry(name.to_owned())
                    .or_insert_with(SigningKey::generate);
                SigningKey::from_pem(&k.to_pem().unwrap(), "test").unwrap()
            };
            let top = key("top");
            let (id, top_key) = key_entry(&top);
            let role = json!({"keyids": [id], "threshold": 1});
            let root = json!({"_type": "root", "spec_version": "1.0.31", "version": 1,
                "expires": FUTURE, "consistent_snapshot": true, "keys": {id.clone(): top_key},
                "roles": {"root": role, "targets": role, "snapshot": role, "timestamp": role}});
            let mut files = HashMap::new();
            let mut meta = json!({});
            for (name, signer, listed, delegations) in roles {
                let mut dkeys = json!({});
                let mut droles = Vec::new();
                for (child, child_keys, paths, terminating) in *delegations {
                    let mut ids = Vec::new();
                    for k in *child_keys {
                        let (kid, kval) = key_entry(&key(k));
                        dkeys[kid.as_str()] = kval;
                        ids.push(kid);
                    }
                    droles.push(json!({"name": child, "keyids": ids, "threshold": 1,
                        "terminating": terminating, "paths": paths}));
                }
                let signed = json!({"_type": "targets", "spec_version": "1.0.31",
                    "version": 1, "expires": FUTURE, "targets": listed,
                    "delegations": {"keys": dkeys, "roles": droles}});
                files.insert(
                    (*name).to_owned(),
                    sign_envelope(&signed, &[&key(signer)]).unwrap(),
                );
                if !unlisted.contains(name) {
                    meta[format!("{name}.json")] = json!({"version": 1});
                }
            }
            let snapshot = json!({"_type": "snapshot", "spec_version": "1.0.31", "version": 1,
                "expires": FUTURE, "meta": meta});
            let snapshot = sign_envelope(&snapshot, &[&top]).unwrap();
            let timestamp = json!({"_type": "timestamp", "spec_version": "1.0.31",
                "version": 1, "expires": FUTURE,
                "meta": {"snapshot.json": {"version": 1, "length": snapshot.len()}}});
            Graph {
                root: sign_envelope(&root, &[&top]).unwrap(),
                timestamp: sign_envelope(&timestamp, &[&top]).unwrap(),
                snapshot,
                files,
                keys,
            }
        }

        fn trusted(&self) -> TrustedSet {
            let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let mut set = TrustedSet::new(&self.root, now).unwrap();
            set.update_timestamp(&self.timestamp, false).unwrap();
            set.update_snapshot(&self.snapshot, false).unwrap();
            set
        }

        fn fetch(&self) -> impl FnMut(&str, &MetaFile) -> Result<Vec<u8>, TrustError> + '_ {
            |role: &str, _: &MetaFile| {
                self.files
                    .get(role)
                    .cloned()
                    .ok_or_else(|| TrustError::Order(format!("404 for {role}")))
            }
        }
    }

    /// The diamond: `release` is delegated by parent-a (team-a/*, key a) and by parent-b
    /// (team-b/*, key b), and signed by key a only.
    fn diamond() -> Graph {
        let both = json!({"team-a/x": file(), "team-b/y": file()});
        Graph::new(
            &[
                (
                    "targets",
                    "top",
                    json!({}),
                    &[
                        ("parent-a", &["pa"], &["*/*"], false),
                        ("parent-b", &["pb"], &["*/*"], false),
                    ],
                ),
                (
                    "parent-a",
                    "pa",
                    json!({}),
                    &[("release", &["a"], &["team-a/*"], false)],
                ),
                (
                    "parent-b",
                    "pb",
                    json!({}),
                    &[("release", &["b"], &["team-b/*"], false)],
                ),
                ("release", "a", both, &[]),
            ],
            &[],
        )
    }

    #[test]
    fn a_role_reached_through_another_delegator_is_checked_against_its_keys() {
        let graph = diamond();
        assert!(graph.keys.contains_key("b"));
        // One run: team-a/x loads `release` through parent-a; team-b/y must not reuse it.
        let mut set = graph.trusted();
        let mut fetch = graph.fetch();
        let (role, _) = set.find_target("team-a/x", &mut fetch).unwrap().unwrap();
        assert_eq!(role, "release");
        let err = set.find_target("team-b/y", &mut fetch).unwrap_err();
        assert!(matches!(err, TrustError::Signature(_)), "{err}");
        // Asked again: refused at once, without another download.
        let mut fetched = Vec::new();
        let mut counting = |role: &str, listed: &MetaFile| {
            fetched.push(role.to_owned());
            graph.fetch()(role, listed)
        };
        let err = set.find_target("team-b/y", &mut counting).unwrap_err();
        assert!(matches!(err, TrustError::Unavailable { .. }), "{err}");
        assert!(fetched.is_empty(), "{fetched:?}");
        // A fresh run asking for team-b/y first is refused too.
        let mut fresh = graph.trusted();
        let err = fresh
            .find_target("team-b/y", &mut graph.fetch())
            .unwrap_err();
        assert!(matches!(err, TrustError::Signature(_)), "{err}");
        // Listing everything keeps team-a/x and reports team-b/y.
        let all = graph
            .trusted()
            .all_targets(&[], &mut graph.fetch())
            .unwrap();
        let found: Vec<&str> = all.found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(found, ["team-a/x"]);
        assert_eq!(all.unavailable.len(), 1, "{:?}", all.unavailable);
        assert_eq!(all.unavailable[0].name, "team-b/y");
        assert!(
            all.unavailable[0]
                .reason
                .contains("release: 0 of 1 required signatures"),
            "{:?}",
            all.unavailable
        );
    }

    #[test]
    fn a_role_signed_for_both_delegators_serves_both_paths() {
        let both = json!({"team-a/x": file(), "team-b/y": file()});
        let graph = Graph::new(
            &[
                (
                    "targets",
                    "top",
                    json!({}),
                    &[
                        ("parent-a", &["pa"], &["*/*"], false),
                        ("parent-b", &["pb"], &["*/*"], false),
                    ],
                ),
                (
                    "parent-a",
                    "pa",
                    json!({}),
                    &[("release", &["a"], &["team-a/*"], false)],
                ),
                (
                    "parent-b",
                    "pb",
                    json!({}),
                    &[("release", &["a"], &["team-b/*"], false)],
                ),
                ("release", "a", both, &[]),
            ],
            &[],
        );
        let mut set = graph.trusted();
        let mut fetch = graph.fetch();
        assert!(set.find_target("team-a/x", &mut fetch).unwrap().is_some());
        assert!(set.find_target("team-b/y", &mut fetch).unwrap().is_some());
    }

    /// targets lists fw/top.bin and delegates `broken` (missing from the snapshot) then
    /// `fine`, both for fw/*; fine lists fw/x.bin and fw/y.bin, and `other` (for misc/*)
    /// lists misc/z.bin.
    fn with_a_broken_branch(broken_first: bool) -> Graph {
        let broken = ("broken", &["k"][..], &["fw/*"][..], false);
        let fine = ("fine", &["k"][..], &["fw/*"][..], false);
        let other = ("other", &["k"][..], &["misc/*"][..], false);
        let order = if broken_first {
            [broken, fine, other]
        } else {
            [fine, broken, other]
        };
        Graph::new(
            &[
                ("targets", "top", json!({"fw/top.bin": file()}), &order),
                ("broken", "k", json!({"fw/x.bin": file()}), &[]),
                (
                    "fine",
                    "k",
                    json!({"fw/x.bin": file(), "fw/y.bin": file()}),
                    &[],
                ),
                ("other", "k", json!({"misc/z.bin": file()}), &[]),
            ],
            &["broken"],
        )
    }

    #[test]
    fn a_broken_branch_is_loaded_only_when_a_search_reaches_it() {
        let graph = with_a_broken_branch(true);
        let mut set = graph.trusted();
        let fetched = std::cell::RefCell::new(Vec::new());
        let mut fetch = |role: &str, listed: &MetaFile| {
            fetched.borrow_mut().push(role.to_owned());
            graph.fetch()(role, listed)
        };
        assert!(set.find_target("fw/top.bin", &mut fetch).unwrap().is_some());
        assert!(set.find_target("misc/z.bin", &mut fetch).unwrap().is_some());
        assert_eq!(*fetched.borrow(), ["targets", "other"]);
        // A search that does reach it fails, as the specification says (5.6.7).
        let err = set.find_target("fw/y.bin", &mut fetch).unwrap_err();
        assert!(
            matches!(&err, TrustError::NotListed(f) if f == "broken.json"),
            "{err}"
        );
    }

    #[test]
    fn listing_every_target_skips_a_broken_branch_without_reordering_priorities() {
        // broken comes first for fw/*: fw/x.bin and fw/y.bin cannot be resolved (fine must
        // not answer for a role that was withheld); misc/z.bin and fw/top.bin can.
        let graph = with_a_broken_branch(true);
        let all = graph
            .trusted()
            .all_targets(&[], &mut graph.fetch())
            .unwrap();
        let found: Vec<&str> = all.found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(found, ["fw/top.bin", "misc/z.bin"]);
        let skipped: Vec<&str> = all.unavailable.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(skipped, ["role broken", "fw/x.bin", "fw/y.bin"]);
        assert!(all.unavailable[0]
            .reason
            .contains("snapshot does not list broken.json"));

        // broken after fine: fine answers for fw/x.bin and fw/y.bin before broken is reached.
        let graph = with_a_broken_branch(false);
        let all = graph
            .trusted()
            .all_targets(&[], &mut graph.fetch())
            .unwrap();
        let found: Vec<&str> = all.found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(found, ["fw/top.bin", "fw/x.bin", "fw/y.bin", "misc/z.bin"]);
        let skipped: Vec<&str> = all.unavailable.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(skipped, ["role broken"]);

        // A required role must load.
        let err = graph
            .trusted()
            .all_targets(&["broken"], &mut graph.fetch())
            .unwrap_err();
        assert!(matches!(err, TrustError::NotListed(_)), "{err}");
    }
}
