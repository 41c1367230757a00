//! The TUF client workflow over HTTP (specification §5): refresh the trusted metadata from a
//! repository, resolve targets through delegations, and download targets that must match the
//! signed length and hashes.
//!
//! The checks themselves live in `ota_core::tuf::trusted`; this module fetches bytes with the
//! device's network defences ([`crate::fetch`]), keeps the metadata cache (unversioned names:
//! `root.json`, `timestamp.json`, `snapshot.json`, `targets.json`, and `ENCODED.json` for a
//! delegated role, its name percent-encoded as python-tuf does) and applies the clock policy
//! ([`crate::clock`]). Nothing is written to the cache before it verified.

use crate::clock;
use crate::fetch::{FetchError, Fetched, Fetcher};
use ota_core::tuf::metadata::{encode_role_name, MetaFile, TargetFile};
use ota_core::tuf::trusted::{TrustError, TrustedSet, Unavailable};
use sha2::{Digest, Sha256, Sha512};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest root file fetched (python-tuf's default).
pub const MAX_ROOT_BYTES: u64 = 512_000;
/// Largest timestamp file fetched.
pub const MAX_TIMESTAMP_BYTES: u64 = 16_384;
/// Largest snapshot file fetched when the timestamp gives no length.
pub const MAX_SNAPSHOT_BYTES: u64 = 2_000_000;
/// Largest targets file fetched when the snapshot gives no length.
pub const MAX_TARGETS_BYTES: u64 = 5_000_000;
/// Most root versions walked in one refresh.
pub const MAX_ROOT_ROTATIONS: u64 = 32;

/// Why a refresh or a target download failed.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    /// Metadata refused by the TUF checks.
    #[error("repository metadata refused: {0}")]
    Trust(#[from] TrustError),
    /// A download failed.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The cache could not be read or written.
    #[error("metadata cache {path}: {source}")]
    Cache {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// No trusted root to start from.
    #[error("no trusted root: {0}")]
    NoRoot(String),
    /// The target is not in the signed metadata.
    #[error("target {0} is not listed by the repository's signed metadata")]
    UnknownTarget(String),
}

/// What a refresh did, for `check --json` and logs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RefreshReport {
    /// Root version trusted after the refresh.
    pub root_version: u64,
    /// Timestamp version.
    pub timestamp_version: u64,
    /// Snapshot version.
    pub snapshot_version: u64,
    /// Whether the server answered the timestamp request with 304 Not Modified.
    pub timestamp_not_modified: bool,
    /// Metadata files downloaded (bodies, not 304s).
    pub files_downloaded: u32,
    /// Metadata bytes downloaded (bodies).
    pub bytes_downloaded: u64,
    /// The reference time was raised above the system clock (clock behind; see the clock
    /// policy).
    pub clock_behind: bool,
    /// Delegated roles that could not be loaded while listing every target, and target paths
    /// left unresolved because of them (absent when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
}

/// Which time a refresh checks expiry against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClockPolicy {
    /// The device's policy ([`crate::clock`]): the latest of the system clock, the build time
    /// and the floor recorded by the last refresh, which the refresh then raises.
    #[default]
    Floor,
    /// The system clock alone; the floor is neither read nor raised. For checking a repository
    /// at a chosen time (`ota-update tuf --clock system` under a faked clock), never for a
    /// device deciding what to install.
    System,
}

/// What [`download_target_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloaded {
    /// The target was fetched, verified and written.
    Fetched,
    /// The file already there has the signed length and hashes: nothing was fetched.
    AlreadyPresent,
}

/// The metadata cache directory.
#[derive(Debug, Clone)]
pub struct MetadataCache {
    dir: PathBuf,
}

impl MetadataCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(name)).ok()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TufError> {
        let path = self.dir.join(name);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| crate::fsutil::atomic_write(&path, bytes))
            .map_err(|source| TufError::Cache {
                path: path.display().to_string(),
                source,
            })
    }

    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Takes the cache's own lock, waiting for another process that holds it (a refresh is
    /// bounded by the download timeouts): refreshes never race on the cache files, and a
    /// `check` never waits for an install holding the device lock.
    pub fn lock(&self) -> Result<MetadataLock, TufError> {
        let path = self.dir.join(".lock");
        let cache_err = |source: io::Error| TufError::Cache {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(cache_err)?;
        let file = crate::state::open_lock_file(&path).map_err(|e| match e {
            crate::UpdateError::Io { source, .. } => cache_err(source),
            other => cache_err(io::Error::other(other.to_string())),
        })?;
        file.lock().map_err(cache_err)?;
        Ok(MetadataLock { _file: file })
    }

    /// Installs `root_bytes` as the trusted root if the cache has none (`tuf init`, and the
    /// device's first run from its shipped root). The root must verify with its own keys.
    pub fn init_root(&self, root_bytes: &[u8], overwrite: bool) -> Result<(), TufError> {
        if !overwrite && self.read("root.json").is_some() {
            return Ok(());
        }
        TrustedSet::new(root_bytes, std::time::SystemTime::now())?;
        self.write("root.json", root_bytes)
    }
}

/// Holds the metadata cache's lock until dropped.
pub struct MetadataLock {
    _file: std::fs::File,
}

/// A client for one repository.
pub struct TufClient<'a> {
    fetcher: &'a Fetcher,
    metadata_url: String,
    cache: MetadataCache,
    clock: ClockPolicy,
}

impl<'a> TufClient<'a> {
    /// A client fetching metadata from `metadata_url` and caching it in `cache`, with the
    /// device's clock policy ([`ClockPolicy::Floor`]).
    pub fn new(fetcher: &'a Fetcher, metadata_url: &str, cache: MetadataCache) -> Self {
        Self {
            fetcher,
            metadata_url: metadata_url.trim_end_matches('/').to_owned(),
            cache,
            clock: ClockPolicy::Floor,
        }
    }

    /// The same client with another clock policy.
    pub fn with_clock(mut self, clock: ClockPolicy) -> Self {
        self.clock = clock;
        self
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.metadata_url)
    }

    /// Runs the workflow up to snapshot (targets are loaded lazily by
    /// [`TufClient::find_target`] / [`TufClient::all_targets`], or
    /// [`TufClient::load_top_targets`]).
    pub fn refresh(&self) -> Result<(TrustedSet, RefreshReport), TufError> {
        // 5.1: the fixed update start time.
        let reference = match self.clock {
            ClockPolicy::Floor => clock::reference_time(self.cache.dir()),
            ClockPolicy::System => clock::ReferenceTime {
                now: std::time::SystemTime::now(),
                clock_behind: false,
            },
        };
        let mut report = RefreshReport {
            clock_behind: reference.clock_behind,
            ..Default::default()
        };
        let root_bytes = self.cache.read("root.json").ok_or_else(|| {
            TufError::NoRoot(format!(
                "{} has no root.json (initialise it with a root shipped out of band)",
                self.cache.dir().display()
            ))
        })?;
        let mut set = TrustedSet::new(&root_bytes, reference.now)?;
        self.load_root_chain(&mut set, &mut report)?;
        let listed = self.load_timestamp(&mut set, &mut report)?;
        self.load_snapshot(&mut set, &listed, &mut report)?;
        if self.clock == ClockPolicy::Floor {
            clock::advance_floor(self.cache.dir(), set.now()).map_err(|source| {
                TufError::Cache {
                    path: self.cache.dir().display().to_string(),
                    source,
                }
            })?;
        }
        Ok((set, report))
    }

    /// Specification §5.3: updates the trusted root through the repository's root chain, then
    /// requires it to be fresh.
    fn load_root_chain(
        &self,
        set: &mut TrustedSet,
        report: &mut RefreshReport,
    ) -> Result<(), TufError> {
        // 5.3: walk the root chain, N+1.root.json until the repository has no newer one.
        for _ in 0..MAX_ROOT_ROTATIONS {
            let next = set.root().meta.common.version + 1;
            let url = self.url(&format!("{next}.root.json"));
            let bytes = match self.fetcher.get_conditional(&url, MAX_ROOT_BYTES, None) {
                Ok(Fetched::Body { bytes, .. }) => bytes,
                Ok(Fetched::NotModified) => break,
                Err(FetchError::Status { status, .. })
                    if status == reqwest::StatusCode::NOT_FOUND
                        || status == reqwest::StatusCode::FORBIDDEN =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            };
            report.files_downloaded += 1;
            report.bytes_downloaded += bytes.len() as u64;
            let old_keys = (
                set.root().meta.role("timestamp").cloned(),
                set.root().meta.role("snapshot").cloned(),
            );
            set.update_root(&bytes)?;
            self.cache.write("root.json", &bytes)?;
            // 5.3.11: after a rotation of the timestamp or snapshot keys, the cached files
            // signed by the old keys are no baseline (fast-forward attack recovery).
            let new_keys = (
                set.root().meta.role("timestamp").cloned(),
                set.root().meta.role("snapshot").cloned(),
            );
            if old_keys.0 != new_keys.0 || old_keys.1 != new_keys.1 {
                self.cache.remove("timestamp.json");
                self.cache.remove("timestamp.json.etag");
                self.cache.remove("snapshot.json");
            }
        }
        set.check_root_fresh()?;
        report.root_version = set.root().meta.common.version;
        Ok(())
    }

    /// Specification §5.4: updates the timestamp (conditionally on the cached one's ETag);
    /// returns the snapshot it lists.
    fn load_timestamp(
        &self,
        set: &mut TrustedSet,
        report: &mut RefreshReport,
    ) -> Result<MetaFile, TufError> {
        // 5.4: timestamp. The cached one is the rollback baseline even if expired; a 304
        // means it is still current, and then it must still be fresh.
        let cached_ts = self.cache.read("timestamp.json");
        let mut have_cached = false;
        if let Some(bytes) = &cached_ts {
            have_cached = match set.update_timestamp(bytes, true) {
                Ok(()) => true,
                Err(TrustError::Expired { .. }) => true,
                Err(_) => false,
            };
        }
        let etag = if have_cached {
            self.cache
                .read("timestamp.json.etag")
                .and_then(|b| String::from_utf8(b).ok())
        } else {
            None
        };
        match self.fetcher.get_conditional(
            &self.url("timestamp.json"),
            MAX_TIMESTAMP_BYTES,
            etag.as_deref(),
        )? {
            Fetched::NotModified => {
                report.timestamp_not_modified = true;
                set.timestamp().ok_or_else(|| {
                    TrustError::Order("304 for a timestamp the cache does not hold".into())
                })?;
                check_kept_timestamp_fresh(set)?;
            }
            Fetched::Body { bytes, etag } => {
                report.files_downloaded += 1;
                report.bytes_downloaded += bytes.len() as u64;
                self.apply_timestamp(set, &bytes, etag)?;
            }
        }
        let listed = set
            .timestamp()
            .map(|t| t.meta.snapshot.clone())
            .ok_or_else(|| TrustError::Order("no timestamp".into()))?;
        report.timestamp_version = set.timestamp().map_or(0, |t| t.meta.common.version);
        Ok(listed)
    }

    /// A downloaded timestamp: trusted and cached with its ETag, or, when it is the version
    /// already trusted, the cached one kept (it must be fresh) with the new ETag.
    fn apply_timestamp(
        &self,
        set: &mut TrustedSet,
        bytes: &[u8],
        etag: Option<String>,
    ) -> Result<(), TufError> {
        match set.update_timestamp(bytes, false) {
            Ok(()) => {
                self.cache.write("timestamp.json", bytes)?;
                match etag {
                    Some(tag) => self.cache.write("timestamp.json.etag", tag.as_bytes())?,
                    None => self.cache.remove("timestamp.json.etag"),
                }
            }
            // The same version again: keep the cached one, which must be fresh.
            Err(TrustError::EqualTimestamp(_)) => {
                check_kept_timestamp_fresh(set)?;
                if let Some(tag) = etag {
                    self.cache.write("timestamp.json.etag", tag.as_bytes())?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Specification §5.5: updates the snapshot to the version `listed` by the timestamp.
    fn load_snapshot(
        &self,
        set: &mut TrustedSet,
        listed: &MetaFile,
        report: &mut RefreshReport,
    ) -> Result<(), TufError> {
        // 5.5: snapshot. A cached copy of the listed version is used as is; an older one is the
        // rollback baseline for the download.
        let mut current = false;
        if let Some(bytes) = self.cache.read("snapshot.json") {
            current = set.update_snapshot(&bytes, true).is_ok();
        }
        if !current {
            let name = if set.root().meta.consistent_snapshot {
                format!("{}.snapshot.json", listed.version)
            } else {
                "snapshot.json".to_owned()
            };
            let bytes = self.fetch_listed(&name, listed, MAX_SNAPSHOT_BYTES, report)?;
            set.update_snapshot(&bytes, false)?;
            self.cache.write("snapshot.json", &bytes)?;
        }
        report.snapshot_version = set.snapshot().map_or(0, |s| s.meta.common.version);
        Ok(())
    }

    fn fetch_listed(
        &self,
        name: &str,
        listed: &MetaFile,
        default_max: u64,
        report: &mut RefreshReport,
    ) -> Result<Vec<u8>, TufError> {
        let limit = listed.length.unwrap_or(default_max);
        match self.fetcher.get_conditional(&self.url(name), limit, None)? {
            Fetched::Body { bytes, .. } => {
                report.files_downloaded += 1;
                report.bytes_downloaded += bytes.len() as u64;
                Ok(bytes)
            }
            Fetched::NotModified => Err(TrustError::Order(format!("304 for {name}")).into()),
        }
    }

    /// The fetch callback for targets roles (5.6.1): the cached copy when it is the listed
    /// version, else a download of `VERSION.ENCODED.json` (`ENCODED.json` without consistent
    /// snapshots), the role name percent-encoded as python-tuf requests it; verified copies
    /// are cached by the caller's success.
    fn targets_fetcher<'s>(
        &'s self,
        consistent: bool,
        report: &'s mut RefreshReport,
    ) -> impl FnMut(&str, &MetaFile) -> Result<Vec<u8>, TufError> + 's {
        move |role: &str, listed: &MetaFile| {
            let cache_name = format!("{}.json", encode_role_name(role));
            if let Some(bytes) = self.cache.read(&cache_name) {
                if ota_core::tuf::trusted::check_length_and_hashes(role, &bytes, listed).is_ok()
                    && version_of(&bytes) == Some(listed.version)
                {
                    return Ok(bytes);
                }
            }
            let name = if consistent {
                format!("{}.{cache_name}", listed.version)
            } else {
                cache_name.clone()
            };
            self.fetch_listed(&name, listed, MAX_TARGETS_BYTES, report)
        }
    }

    /// Spec 5.6: loads (and caches) the top-level targets role only; delegated roles wait for
    /// a search that reaches them. What `ota-update tuf refresh` does, like python-tuf's
    /// `Updater.refresh()`.
    pub fn load_top_targets(
        &self,
        set: &mut TrustedSet,
        report: &mut RefreshReport,
    ) -> Result<(), TufError> {
        let consistent = set.root().meta.consistent_snapshot;
        let mut fetch = self.targets_fetcher(consistent, report);
        let loaded = set.load_top_targets::<TufError, _>(&mut fetch);
        self.cache_verified_targets(set)?;
        loaded
    }

    /// Resolves one target path (delegations included).
    pub fn find_target(
        &self,
        set: &mut TrustedSet,
        path: &str,
        report: &mut RefreshReport,
    ) -> Result<TargetFile, TufError> {
        let consistent = set.root().meta.consistent_snapshot;
        let mut fetch = self.targets_fetcher(consistent, report);
        let found = set.find_target::<TufError, _>(path, &mut fetch);
        self.cache_verified_targets(set)?;
        found?
            .map(|(_, entry)| entry)
            .ok_or_else(|| TufError::UnknownTarget(path.to_owned()))
    }

    /// Every target the repository vouches for, for a device choosing its release. A
    /// delegated role that cannot be loaded (missing from the snapshot, unreachable, badly
    /// signed, expired) only leaves out its own branch: it goes into `report.unavailable`
    /// with the paths its failure leaves unresolved (see `TrustedSet::all_targets`). Except
    /// the fleet's rollout role ([`ota_core::rollout::ROLLOUT_ROLE`]): it can pause or pull a
    /// release, so withholding it must not turn a pause into "offered to everyone", and its
    /// failure fails the whole listing.
    pub fn all_targets(
        &self,
        set: &mut TrustedSet,
        report: &mut RefreshReport,
    ) -> Result<Vec<(String, TargetFile)>, TufError> {
        let consistent = set.root().meta.consistent_snapshot;
        let required = [ota_core::rollout::ROLLOUT_ROLE];
        let listed = {
            let mut fetch = self.targets_fetcher(consistent, report);
            set.all_targets::<TufError, _>(&required, &mut fetch)
        };
        self.cache_verified_targets(set)?;
        let listed = listed?;
        report.unavailable = listed.unavailable;
        Ok(listed.found)
    }

    /// 5.6.6: stores the targets roles that verified (only those) under their unversioned,
    /// percent-encoded names, inside the cache directory whatever the role name.
    fn cache_verified_targets(&self, set: &TrustedSet) -> Result<(), TufError> {
        for (role, verified) in set.loaded_targets() {
            let name = format!("{}.json", encode_role_name(role));
            if self.cache.read(&name).as_deref() != Some(verified.bytes.as_slice()) {
                self.cache.write(&name, &verified.bytes)?;
            }
        }
        Ok(())
    }
}

/// The trusted timestamp, kept because the repository has no newer one (304, or the same
/// version again), must still be fresh.
fn check_kept_timestamp_fresh(set: &TrustedSet) -> Result<(), TufError> {
    if let Some(ts) = set.timestamp() {
        if ts.meta.common.expires <= set.now() {
            return Err(TrustError::Expired {
                role: "timestamp".into(),
                expires: ota_core::tuf::metadata::format_time(ts.meta.common.expires),
            }
            .into());
        }
    }
    Ok(())
}

fn version_of(bytes: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("signed")?.get("version")?.as_u64()
}

/// The URL of a target: `BASE/DIR/HASH.NAME` with consistent snapshots (python-tuf's
/// `prefix_targets_with_hash`), `BASE/PATH` otherwise.
pub fn target_url(base: &str, path: &str, entry: &TargetFile, consistent: bool) -> String {
    let base = base.trim_end_matches('/');
    let hash = entry
        .hashes
        .get("sha256")
        .or_else(|| entry.hashes.values().next());
    match (consistent, hash) {
        (true, Some(hash)) => match path.rsplit_once('/') {
            Some((dir, name)) => format!("{base}/{dir}/{hash}.{name}"),
            None => format!("{base}/{hash}.{path}"),
        },
        _ => format!("{base}/{path}"),
    }
}

/// A reader that hashes what passes through and, at end of stream, refuses it unless length
/// and every listed hash match the signed target entry. The bundle reader above it probes for
/// end of stream before the slot switch, so a mismatch stops the install before the switch.
pub struct VerifiedTarget<R> {
    inner: R,
    url: String,
    entry: TargetFile,
    sha256: Sha256,
    sha512: Sha512,
    len: u64,
    checked: bool,
    /// Bytes were skipped (a resumed install): the whole-file hashes cannot be computed.
    skipped: bool,
}

impl<R: Read> VerifiedTarget<R> {
    /// Wraps `inner`, the download of `entry` from `url`. Fails at once when the entry names
    /// no hash algorithm we can check.
    pub fn new(inner: R, url: &str, entry: &TargetFile) -> Result<Self, FetchError> {
        if let Some(alg) = entry
            .hashes
            .keys()
            .find(|a| a.as_str() != "sha256" && a.as_str() != "sha512")
        {
            return Err(FetchError::Unverified {
                url: url.to_owned(),
                detail: format!("unsupported hash algorithm '{alg}' in the target entry"),
            });
        }
        Ok(Self {
            inner,
            url: url.to_owned(),
            entry: entry.clone(),
            sha256: Sha256::new(),
            sha512: Sha512::new(),
            len: 0,
            checked: false,
            skipped: false,
        })
    }

    fn verify(&mut self) -> Result<(), FetchError> {
        let unverified = |detail: String| FetchError::Unverified {
            url: self.url.clone(),
            detail,
        };
        if self.len != self.entry.length {
            return Err(unverified(format!(
                "{} bytes where the signed metadata lists {}",
                self.len, self.entry.length
            )));
        }
        if self.skipped {
            // A resumed install read only part of the file: the caller bound the bundle to
            // this target through the signed release info instead (see `install::install_on`),
            // and every byte it used is covered by the bundle's chunk and image hashes.
            return Ok(());
        }
        for (alg, expected) in &self.entry.hashes {
            let actual = match alg.as_str() {
                "sha256" => hex::encode(self.sha256.clone().finalize()),
                _ => hex::encode(self.sha512.clone().finalize()),
            };
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(unverified(format!(
                    "{alg} differs from the signed metadata"
                )));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifiedTarget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if !self.checked {
                self.verify()?;
                self.checked = true;
            }
            return Ok(0);
        }
        self.len += n as u64;
        self.sha256.update(&buf[..n]);
        if self.entry.hashes.contains_key("sha512") {
            self.sha512.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R: crate::source::Forward> crate::source::Forward for VerifiedTarget<R> {
    /// Skips `n` bytes; the whole-file hashes are then no longer checked (only the length):
    /// for a resumed install, which checks the manifest against the signed release info.
    fn forward(&mut self, n: u64) -> io::Result<()> {
        self.inner.forward(n)?;
        self.len = self.len.saturating_add(n);
        self.skipped = true;
        Ok(())
    }
}

/// Whether `path` already holds the target: a regular file of the signed length whose every
/// listed hash matches (python-tuf's `find_cached_target`). Reads at most the signed length.
pub fn holds_target(path: &Path, entry: &TargetFile) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() != entry.length {
        return false;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(mut reader) = VerifiedTarget::new(file.take(entry.length), "", entry) else {
        return false;
    };
    io::copy(&mut reader, &mut io::sink()).is_ok()
}

/// Downloads a target into `dest` (written to a temporary file, verified, then renamed),
/// unless `dest` already holds it ([`holds_target`]): then nothing is fetched (5.7.3).
pub fn download_target_to(
    fetcher: &Fetcher,
    url: &str,
    entry: &TargetFile,
    dest: &Path,
) -> Result<Downloaded, TufError> {
    if holds_target(dest, entry) {
        return Ok(Downloaded::AlreadyPresent);
    }
    let download = fetcher.open(url, entry.length, true)?;
    let mut reader = VerifiedTarget::new(download, url, entry)?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let cache_err = |source: io::Error| TufError::Cache {
        path: dest.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(cache_err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cache_err)?;
    io::copy(&mut reader, &mut tmp)
        .map_err(|e| TufError::Fetch(crate::fetch::unwrap_io(url, e)))?;
    // A temporary file is private (0600); a downloaded target is an ordinary file.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(cache_err)?;
    tmp.persist(dest).map_err(|e| cache_err(e.error))?;
    Ok(Downloaded::Fetched)
}
