//! The four TUF 1.0 roles as typed views over the `signed` object: root, targets (with
//! delegations), snapshot and timestamp.
//!
//! Each view is read from the `signed` JSON *after* its signatures were checked (see
//! [`super::trusted`]); the JSON itself stays the source of truth for signatures, so fields we
//! do not model (`custom`, vendor extensions) survive untouched and keep their signatures
//! valid. The repository writer ([`super::repository`]) edits the same views and writes them
//! back with `to_signed`: the targets, snapshot and timestamp views keep every field they do not
//! model (`unknown`), so reading then writing loses nothing.

use super::keys::{TufKey, TufKeyError};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The spec major version we implement; metadata with another major version is refused.
pub const SPEC_MAJOR: u64 = 1;
/// The `spec_version` we write.
pub const SPEC_VERSION: &str = "1.0.31";

/// Why a role's `signed` object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A field is missing or has the wrong type.
    #[error("{role}: field '{field}' is missing or invalid")]
    Field {
        /// The role being read.
        role: String,
        /// The field.
        field: String,
    },
    /// `_type` is not the role we expected (a snapshot served as timestamp, say).
    #[error("{role}: metadata has type '{found}', expected '{role}'")]
    WrongType {
        /// The expected type.
        role: String,
        /// The `_type` found.
        found: String,
    },
    /// `spec_version` has a major version we do not implement.
    #[error("{role}: unsupported spec_version '{found}' (this client implements TUF 1.x)")]
    SpecVersion {
        /// The role being read.
        role: String,
        /// The version found.
        found: String,
    },
    /// A key object is unreadable.
    #[error("{role}: {source}")]
    Key {
        /// The role holding the key.
        role: String,
        /// The key error.
        source: TufKeyError,
    },
}

/// The fields every role has.
#[derive(Clone, Debug)]
pub struct Common {
    /// Metadata version, ≥ 1.
    pub version: u64,
    /// Expiry time.
    pub expires: SystemTime,
}

/// Key ids and threshold of one role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleKeys {
    /// Authorised key ids.
    pub keyids: Vec<String>,
    /// Distinct valid signatures needed.
    pub threshold: usize,
}

/// The root role: the keys and thresholds of every top-level role.
#[derive(Clone, Debug)]
pub struct Root {
    /// Version and expiry.
    pub common: Common,
    /// Whether snapshot/targets files and targets are published under versioned/hashed names.
    pub consistent_snapshot: bool,
    /// Keys by id.
    pub keys: HashMap<String, TufKey>,
    /// `root`, `targets`, `snapshot`, `timestamp`.
    pub roles: HashMap<String, RoleKeys>,
}

/// Length, hashes and version of a metadata file as listed by timestamp or snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaFile {
    /// The file's metadata version.
    pub version: u64,
    /// Its length in bytes, when given.
    pub length: Option<u64>,
    /// Hash algorithm → hex digest, when given.
    pub hashes: BTreeMap<String, String>,
}

impl MetaFile {
    /// A listing by version only (what our snapshots write for targets files).
    pub fn version_only(version: u64) -> Self {
        Self {
            version,
            length: None,
            hashes: BTreeMap::new(),
        }
    }

    /// The JSON entry.
    pub fn to_value(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("version".into(), json!(self.version));
        if let Some(length) = self.length {
            entry.insert("length".into(), json!(length));
        }
        if !self.hashes.is_empty() {
            entry.insert("hashes".into(), json!(self.hashes));
        }
        Value::Object(entry)
    }
}

/// The timestamp role: points at the current snapshot.
#[derive(Clone, Debug)]
pub struct Timestamp {
    /// Version and expiry.
    pub common: Common,
    /// `snapshot.json`'s entry.
    pub snapshot: MetaFile,
    /// `signed` fields not modelled, kept as read.
    pub unknown: Map<String, Value>,
}

/// The snapshot role: the version of every targets metadata file.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Version and expiry.
    pub common: Common,
    /// `targets.json` and each delegated `ROLE.json` → entry.
    pub meta: BTreeMap<String, MetaFile>,
    /// `signed` fields not modelled, kept as read.
    pub unknown: Map<String, Value>,
}

/// One target file: what a download must match.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetFile {
    /// Exact length in bytes.
    pub length: u64,
    /// Hash algorithm → hex digest (at least one).
    pub hashes: BTreeMap<String, String>,
    /// The `custom` object, if any.
    pub custom: Option<Value>,
    /// Fields of the entry not modelled, kept as read.
    pub unknown: Map<String, Value>,
}

impl TargetFile {
    /// A target entry of `length` bytes with this SHA-256 and `custom`.
    pub fn new(length: u64, sha256: &str, custom: Option<Value>) -> Self {
        Self {
            length,
            hashes: BTreeMap::from([("sha256".to_owned(), sha256.to_owned())]),
            custom,
            unknown: Map::new(),
        }
    }

    /// The JSON entry.
    pub fn to_value(&self) -> Value {
        let mut entry = self.unknown.clone();
        entry.insert("length".into(), json!(self.length));
        entry.insert("hashes".into(), json!(self.hashes));
        if let Some(custom) = &self.custom {
            entry.insert("custom".into(), custom.clone());
        }
        Value::Object(entry)
    }
}

/// A delegated targets role as its delegator describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct DelegatedRole {
    /// Role name (its metadata is `VERSION.NAME.json` on the repository, requested and cached
    /// under [`encode_role_name`]).
    pub name: String,
    /// Authorised keys and threshold.
    pub keys: RoleKeys,
    /// When true, a search that reaches this role for a matching path stops here.
    pub terminating: bool,
    /// Shell-style path patterns this role is trusted for (`paths`).
    pub paths: Option<Vec<String>>,
    /// Hex prefixes of SHA-256(path) this role is trusted for (`path_hash_prefixes`).
    pub path_hash_prefixes: Option<Vec<String>>,
    /// Fields of the entry not modelled, kept as read.
    pub unknown: Map<String, Value>,
}

impl DelegatedRole {
    /// True when this role is trusted for `target_path`.
    pub fn is_trusted_for(&self, target_path: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| path_matches(p, target_path));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = crate::Sha256Digest::of(target_path.as_bytes()).to_hex();
            return prefixes.iter().any(|p| digest.starts_with(p.as_str()));
        }
        false
    }
}

impl DelegatedRole {
    /// The JSON entry.
    pub fn to_value(&self) -> Value {
        let mut entry = self.unknown.clone();
        entry.insert("name".into(), json!(self.name));
        entry.insert("keyids".into(), json!(self.keys.keyids));
        entry.insert("threshold".into(), json!(self.keys.threshold));
        entry.insert("terminating".into(), json!(self.terminating));
        if let Some(paths) = &self.paths {
            entry.insert("paths".into(), json!(paths));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            entry.insert("path_hash_prefixes".into(), json!(prefixes));
        }
        Value::Object(entry)
    }
}

/// A targets role's delegations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delegations {
    /// Keys by id for the delegated roles.
    pub keys: HashMap<String, TufKey>,
    /// Delegated roles in priority order.
    pub roles: Vec<DelegatedRole>,
    /// Fields not modelled, kept as read.
    pub unknown: Map<String, Value>,
}

impl Delegations {
    /// The JSON object.
    pub fn to_value(&self) -> Value {
        let mut out = self.unknown.clone();
        let keys: Map<String, Value> = self
            .keys
            .iter()
            .map(|(id, key)| (id.clone(), key.to_value().clone()))
            .collect();
        out.insert("keys".into(), Value::Object(keys));
        out.insert(
            "roles".into(),
            Value::Array(self.roles.iter().map(DelegatedRole::to_value).collect()),
        );
        Value::Object(out)
    }
}

/// A targets role (top-level or delegated).
#[derive(Clone, Debug)]
pub struct Targets {
    /// Version and expiry.
    pub common: Common,
    /// `spec_version` as read.
    pub spec_version: String,
    /// Target path → file.
    pub targets: BTreeMap<String, TargetFile>,
    /// Delegations, if any.
    pub delegations: Option<Delegations>,
    /// `signed` fields not modelled, kept as read.
    pub unknown: Map<String, Value>,
}

impl Targets {
    /// An empty targets role (no targets, no delegations).
    pub fn empty(version: u64, expires: SystemTime) -> Self {
        Self {
            common: Common { version, expires },
            spec_version: SPEC_VERSION.to_owned(),
            targets: BTreeMap::new(),
            delegations: None,
            unknown: Map::new(),
        }
    }

    /// The `signed` object: every modelled field plus the unknown ones as read.
    pub fn to_signed(&self) -> Value {
        let mut signed = self.unknown.clone();
        signed.insert("_type".into(), json!("targets"));
        signed.insert("spec_version".into(), json!(self.spec_version));
        signed.insert("version".into(), json!(self.common.version));
        signed.insert("expires".into(), json!(format_time(self.common.expires)));
        let targets: Map<String, Value> = self
            .targets
            .iter()
            .map(|(path, file)| (path.clone(), file.to_value()))
            .collect();
        signed.insert("targets".into(), Value::Object(targets));
        if let Some(delegations) = &self.delegations {
            signed.insert("delegations".into(), delegations.to_value());
        }
        Value::Object(signed)
    }
}

impl Snapshot {
    /// The `signed` object.
    pub fn to_signed(&self) -> Value {
        let mut signed = self.unknown.clone();
        signed.insert("_type".into(), json!("snapshot"));
        signed.insert("spec_version".into(), json!(SPEC_VERSION));
        signed.insert("version".into(), json!(self.common.version));
        signed.insert("expires".into(), json!(format_time(self.common.expires)));
        let meta: Map<String, Value> = self
            .meta
            .iter()
            .map(|(file, entry)| (file.clone(), entry.to_value()))
            .collect();
        signed.insert("meta".into(), Value::Object(meta));
        Value::Object(signed)
    }
}

impl Timestamp {
    /// The `signed` object.
    pub fn to_signed(&self) -> Value {
        let mut signed = self.unknown.clone();
        signed.insert("_type".into(), json!("timestamp"));
        signed.insert("spec_version".into(), json!(SPEC_VERSION));
        signed.insert("version".into(), json!(self.common.version));
        signed.insert("expires".into(), json!(format_time(self.common.expires)));
        signed.insert(
            "meta".into(),
            json!({"snapshot.json": self.snapshot.to_value()}),
        );
        Value::Object(signed)
    }
}

/// The fields of `v` (an object) other than `known`.
fn unknown_fields(v: &Value, known: &[&str]) -> Map<String, Value> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !known.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

const COMMON_FIELDS: [&str; 4] = ["_type", "spec_version", "version", "expires"];

/// The file-name form of a role name, as python-tuf's `urllib.parse.quote(name, safe="")`
/// writes it: every byte of its UTF-8 outside ASCII letters, digits and `-._~` becomes `%XX`
/// (upper-case hex). Metadata is requested as `VERSION.ENCODED.json` and cached as
/// `ENCODED.json`, so a name like `../x` or `?` stays one path segment of the URL and one
/// file inside the cache directory. (Snapshot entries keep the plain `NAME.json`.)
pub fn encode_role_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Matches a TUF delegation path pattern as python-tuf does: the pattern and the path are
/// split at `/` and must have as many segments; each segment matches like Python's `fnmatch`
/// (case-sensitive): `*` any run of characters, `?` one character, `[seq]` / `[!seq]` one
/// character in / not in the set (ranges `a-z` allowed), an unclosed `[` literally.
/// Characters, not bytes: `?` matches one `é`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    let path_parts: Vec<&str> = path.split('/').collect();
    pattern_parts.len() == path_parts.len()
        && pattern_parts.iter().zip(&path_parts).all(|(p, s)| {
            let p: Vec<char> = p.chars().collect();
            let s: Vec<char> = s.chars().collect();
            glob_segment(&p, &s)
        })
}

/// One pattern element.
enum Token {
    Star,
    Any,
    Char(char),
    /// A bracket set: negated?, items (single chars or inclusive ranges).
    Set(bool, Vec<(char, char)>),
}

fn tokenize(pattern: &[char]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '[' => {
                // fnmatch: `[!` negates; a `]` right after `[` or `[!` is a member; without a
                // closing `]` the `[` is literal.
                let mut j = i + 1;
                let negated = pattern.get(j) == Some(&'!');
                if negated {
                    j += 1;
                }
                let start = j;
                if pattern.get(j) == Some(&']') {
                    j += 1;
                }
                while j < pattern.len() && pattern[j] != ']' {
                    j += 1;
                }
                if j >= pattern.len() {
                    tokens.push(Token::Char('['));
                } else {
                    let body = &pattern[start..j];
                    let mut items = Vec::new();
                    let mut k = 0;
                    while k < body.len() {
                        if k + 2 < body.len() && body[k + 1] == '-' {
                            items.push((body[k], body[k + 2]));
                            k += 3;
                        } else {
                            items.push((body[k], body[k]));
                            k += 1;
                        }
                    }
                    tokens.push(Token::Set(negated, items));
                    i = j;
                }
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

fn glob_segment(pattern: &[char], text: &[char]) -> bool {
    let tokens = tokenize(pattern);
    let single = |token: &Token, c: char| match token {
        Token::Any => true,
        Token::Char(x) => *x == c,
        Token::Set(negated, items) => items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
        Token::Star => false,
    };
    // Iterative wildcard match with backtracking to the last `*`: no recursion an attacker
    // could deepen, quadratic at worst on one segment.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(token) if single(token, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| matches!(t, Token::Star))
}

/// Parses a TUF time (`2030-01-01T00:00:00Z`).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    if !text.ends_with('Z') {
        return None;
    }
    humantime::parse_rfc3339(text).ok()
}

/// Formats a time the way python-tuf writes it (seconds, `Z`).
pub fn format_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

struct Reader<'a> {
    role: &'a str,
    signed: &'a Value,
}

impl<'a> Reader<'a> {
    fn err(&self, field: &str) -> MetadataError {
        MetadataError::Field {
            role: self.role.to_owned(),
            field: field.to_owned(),
        }
    }
    fn get(&self, v: &'a Value, field: &str) -> Result<&'a Value, MetadataError> {
        v.get(field).ok_or_else(|| self.err(field))
    }
    fn str_of(&self, v: &'a Value, field: &str) -> Result<&'a str, MetadataError> {
        self.get(v, field)?.as_str().ok_or_else(|| self.err(field))
    }
    fn u64_of(&self, v: &'a Value, field: &str) -> Result<u64, MetadataError> {
        self.get(v, field)?.as_u64().ok_or_else(|| self.err(field))
    }
    fn obj_of(
        &self,
        v: &'a Value,
        field: &str,
    ) -> Result<&'a serde_json::Map<String, Value>, MetadataError> {
        self.get(v, field)?
            .as_object()
            .ok_or_else(|| self.err(field))
    }

    /// Checks `_type` and `spec_version`, reads version and expiry.
    fn common(&self, expected_type: &str) -> Result<Common, MetadataError> {
        let found = self.str_of(self.signed, "_type")?;
        if found != expected_type {
            return Err(MetadataError::WrongType {
                role: expected_type.to_owned(),
                found: found.to_owned(),
            });
        }
        let spec = self.str_of(self.signed, "spec_version")?;
        let major = spec.split('.').next().and_then(|m| m.parse::<u64>().ok());
        if major != Some(SPEC_MAJOR) || spec.split('.').count() < 2 {
            return Err(MetadataError::SpecVersion {
                role: self.role.to_owned(),
                found: spec.to_owned(),
            });
        }
        let version = self.u64_of(self.signed, "version")?;
        if version == 0 {
            return Err(self.err("version"));
        }
        let expires =
            parse_time(self.str_of(self.signed, "expires")?).ok_or_else(|| self.err("expires"))?;
        Ok(Common { version, expires })
    }

    fn keys(&self, v: &'a Value) -> Result<HashMap<String, TufKey>, MetadataError> {
        let mut keys = HashMap::new();
        for (id, key) in self.obj_of(v, "keys")? {
            let key = TufKey::from_value(key).map_err(|source| MetadataError::Key {
                role: self.role.to_owned(),
                source,
            })?;
            keys.insert(id.clone(), key);
        }
        Ok(keys)
    }

    fn role_keys(&self, v: &'a Value, what: &str) -> Result<RoleKeys, MetadataError> {
        let keyids = self
            .get(v, "keyids")?
            .as_array()
            .ok_or_else(|| self.err(&format!("{what}.keyids")))?
            .iter()
            .map(|k| k.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.err(&format!("{what}.keyids")))?;
        let threshold = self.u64_of(v, "threshold")?;
        if threshold == 0 {
            return Err(self.err(&format!("{what}.threshold")));
        }
        let threshold = usize::try_from(threshold).map_err(|_| self.err("threshold"))?;
        Ok(RoleKeys { keyids, threshold })
    }

    fn hashes(&self, v: &'a Value, what: &str) -> Result<BTreeMap<String, String>, MetadataError> {
        let Some(h) = v.get("hashes") else {
            return Ok(BTreeMap::new());
        };
        let map = h
            .as_object()
            .ok_or_else(|| self.err(&format!("{what}.hashes")))?;
        map.iter()
            .map(|(alg, d)| d.as_str().map(|d| (alg.clone(), d.to_owned())))
            .collect::<Option<_>>()
            .ok_or_else(|| self.err(&format!("{what}.hashes")))
    }

    fn meta_file(&self, v: &'a Value, what: &str) -> Result<MetaFile, MetadataError> {
        let version = self.u64_of(v, "version")?;
        let length = match v.get("length") {
            None => None,
            Some(l) => Some(
                l.as_u64()
                    .ok_or_else(|| self.err(&format!("{what}.length")))?,
            ),
        };
        Ok(MetaFile {
            version,
            length,
            hashes: self.hashes(v, what)?,
        })
    }
}

impl Root {
    /// Reads a root role's `signed` object.
    pub fn from_signed(signed: &Value) -> Result<Self, MetadataError> {
        let r = Reader {
            role: "root",
            signed,
        };
        let common = r.common("root")?;
        let consistent_snapshot = signed
            .get("consistent_snapshot")
            .map(|v| v.as_bool().ok_or_else(|| r.err("consistent_snapshot")))
            .transpose()?
            .unwrap_or(false);
        let keys = r.keys(signed)?;
        let roles_value = r.get(signed, "roles")?;
        let mut roles = HashMap::new();
        for name in ["root", "targets", "snapshot", "timestamp"] {
            let role = r.get(roles_value, name)?;
            roles.insert(name.to_owned(), r.role_keys(role, name)?);
        }
        Ok(Self {
            common,
            consistent_snapshot,
            keys,
            roles,
        })
    }

    /// The keys and threshold of a top-level role.
    pub fn role(&self, name: &str) -> Option<&RoleKeys> {
        self.roles.get(name)
    }
}

impl Timestamp {
    /// Reads a timestamp role's `signed` object.
    pub fn from_signed(signed: &Value) -> Result<Self, MetadataError> {
        let r = Reader {
            role: "timestamp",
            signed,
        };
        let common = r.common("timestamp")?;
        let meta = r.obj_of(signed, "meta")?;
        let entry = meta
            .get("snapshot.json")
            .ok_or_else(|| r.err("meta.snapshot.json"))?;
        Ok(Self {
            common,
            snapshot: r.meta_file(entry, "meta.snapshot.json")?,
            unknown: unknown_fields(signed, &[&COMMON_FIELDS[..], &["meta"]].concat()),
        })
    }
}

impl Snapshot {
    /// Reads a snapshot role's `signed` object.
    pub fn from_signed(signed: &Value) -> Result<Self, MetadataError> {
        let r = Reader {
            role: "snapshot",
            signed,
        };
        let common = r.common("snapshot")?;
        let mut meta = BTreeMap::new();
        for (name, entry) in r.obj_of(signed, "meta")? {
            meta.insert(name.clone(), r.meta_file(entry, &format!("meta.{name}"))?);
        }
        Ok(Self {
            common,
            meta,
            unknown: unknown_fields(signed, &[&COMMON_FIELDS[..], &["meta"]].concat()),
        })
    }
}

impl Targets {
    /// Reads a targets role's `signed` object; `role` is its name (`targets` or a delegated
    /// role), used in errors.
    pub fn from_signed(signed: &Value, role: &str) -> Result<Self, MetadataError> {
        let r = Reader { role, signed };
        let common = r.common("targets")?;
        let mut targets = BTreeMap::new();
        for (path, entry) in r.obj_of(signed, "targets")? {
            let what = format!("targets.{path}");
            let length = entry
                .get("length")
                .and_then(Value::as_u64)
                .ok_or_else(|| r.err(&format!("{what}.length")))?;
            let hashes = r.hashes(entry, &what)?;
            if hashes.is_empty() {
                return Err(r.err(&format!("{what}.hashes")));
            }
            targets.insert(
                path.clone(),
                TargetFile {
                    length,
                    hashes,
                    custom: entry.get("custom").cloned(),
                    unknown: unknown_fields(entry, &["length", "hashes", "custom"]),
                },
            );
        }
        let delegations = match signed.get("delegations") {
            None => None,
            Some(d) => Some(Self::delegations(&r, d)?),
        };
        Ok(Self {
            common,
            spec_version: r.str_of(signed, "spec_version")?.to_owned(),
            targets,
            delegations,
            unknown: unknown_fields(
                signed,
                &[&COMMON_FIELDS[..], &["targets", "delegations"]].concat(),
            ),
        })
    }

    fn delegations(r: &Reader, d: &Value) -> Result<Delegations, MetadataError> {
        let keys = r.keys(d)?;
        let list = r
            .get(d, "roles")?
            .as_array()
            .ok_or_else(|| r.err("delegations.roles"))?;
        let mut roles: Vec<DelegatedRole> = Vec::with_capacity(list.len());
        for role in list {
            let name = r.str_of(role, "name")?.to_owned();
            // Any string is a role name (`?`, `#`, `../x` included): it reaches URLs and file
            // names only through `encode_role_name`. A top-level name or the same name twice
            // would make the delegation ambiguous.
            if name.is_empty()
                || ["root", "targets", "snapshot", "timestamp"].contains(&name.as_str())
                || roles.iter().any(|d| d.name == name)
            {
                return Err(r.err("delegations.roles.name"));
            }
            let strings = |field: &str| -> Result<Option<Vec<String>>, MetadataError> {
                match role.get(field) {
                    None => Ok(None),
                    Some(v) => v
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|s| s.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>()
                        })
                        .map(Some)
                        .ok_or_else(|| r.err(&format!("delegations.roles.{field}"))),
                }
            };
            let paths = strings("paths")?;
            let path_hash_prefixes = strings("path_hash_prefixes")?;
            if paths.is_some() == path_hash_prefixes.is_some() {
                // The spec requires exactly one of the two.
                return Err(r.err("delegations.roles.paths"));
            }
            roles.push(DelegatedRole {
                keys: r.role_keys(role, &name)?,
                terminating: role
                    .get("terminating")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                name,
                paths,
                path_hash_prefixes,
                unknown: unknown_fields(
                    role,
                    &[
                        "name",
                        "keyids",
                        "threshold",
                        "terminating",
                        "paths",
                        "path_hash_prefixes",
                    ],
                ),
            });
        }
        Ok(Delegations {
            keys,
            roles,
            unknown: unknown_fields(d, &["keys", "roles"]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_patterns_match_within_segments() {
        assert!(path_matches("*.bundle", "fw-1.bundle"));
        assert!(!path_matches("*.bundle", "router/fw-1.bundle"));
        assert!(path_matches("router/*", "router/fw-1.bundle"));
        assert!(path_matches("router/fw-?.bundle", "router/fw-1.bundle"));
        assert!(!path_matches("router/fw-?.bundle", "router/fw-10.bundle"));
        assert!(path_matches("*", "x"));
        assert!(path_matches("class/fw-[0-9].bin", "class/fw-1.bin"));
        assert!(!path_matches("class/fw-[0-9].bin", "class/fw-x.bin"));
        assert!(path_matches("fw-[!0-9].bin", "fw-x.bin"));
        assert!(!path_matches("fw-[!0-9].bin", "fw-1.bin"));
        assert!(!path_matches("[ab].bin", "[ab].bin"));
        assert!(path_matches("[ab].bin", "a.bin"));
        assert!(path_matches("[]].bin", "].bin"));
        assert!(path_matches("[.bin", "[.bin"));
        assert!(path_matches("?.bin", "é.bin"));
        assert!(!path_matches("??.bin", "é.bin"));
        assert!(!path_matches("a*b*c", "aXbY"));
        assert!(path_matches("a*b*c", "aXbYc"));
    }

    #[test]
    fn targets_snapshot_and_timestamp_write_back_what_they_read() {
        let key = json!({"keytype": "ed25519", "scheme": "ed25519",
            "keyval": {"public": "ab"}, "x-key": 1});
        let targets = json!({
            "_type": "targets", "spec_version": "1.0.31", "version": 3,
            "expires": "2030-01-01T00:00:00Z", "x-release-notes": "Sicherheitsupdate — «wichtig»",
            "targets": {"fw.bundle": {"length": 5, "hashes": {"sha256": "00", "sha512": "11"},
                "custom": {"product": "acme"}, "x-entry": [1, 2]},
                "plain": {"length": 0, "hashes": {"sha256": "22"}}},
            "delegations": {"keys": {"kid": key}, "x-delegations": true, "roles": [
                {"name": "router", "keyids": ["kid"], "threshold": 1, "terminating": true,
                 "paths": ["router/*"], "x-role": "kept"},
                {"name": "?", "keyids": ["kid"], "threshold": 1, "terminating": false,
                 "path_hash_prefixes": ["ab"]}]}
        });
        let read = Targets::from_signed(&targets, "targets").unwrap();
        assert_eq!(read.to_signed(), targets);
        let snapshot = json!({"_type": "snapshot", "spec_version": "1.0.31", "version": 7,
            "expires": "2030-01-01T00:00:00Z", "x-snap": {"a": 1},
            "meta": {"targets.json": {"version": 3},
                     "router.json": {"version": 2, "length": 10, "hashes": {"sha256": "33"}}}});
        assert_eq!(
            Snapshot::from_signed(&snapshot).unwrap().to_signed(),
            snapshot
        );
        let timestamp = json!({"_type": "timestamp", "spec_version": "1.0.31", "version": 9,
            "expires": "2030-01-01T00:00:00Z",
            "meta": {"snapshot.json": {"version": 7, "length": 100, "hashes": {"sha256": "44"}}}});
        assert_eq!(
            Timestamp::from_signed(&timestamp).unwrap().to_signed(),
            timestamp
        );
    }

    #[test]
    fn role_names_are_quoted_like_python_urllib() {
        // urllib.parse.quote(name, safe="") for each.
        for (name, quoted) in [
            ("?", "%3F"),
            ("#", "%23"),
            ("/delegatedrole", "%2Fdelegatedrole"),
            ("../delegatedrole", "..%2Fdelegatedrole"),
            ("a-b_c.d~e", "a-b_c.d~e"),
            ("x y%", "x%20y%25"),
            ("é", "%C3%A9"),
        ] {
            assert_eq!(encode_role_name(name), quoted, "{name:?}");
        }
    }

    #[test]
    fn times_round_trip_and_need_utc() {
        let t = parse_time("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(format_time(t), "2030-01-02T03:04:05Z");
        assert!(parse_time("2030-01-02T03:04:05+01:00").is_none());
        assert!(parse_time("tomorrow").is_none());
    }

    fn root_signed() -> Value {
        json!({
            "_type": "root", "spec_version": "1.0.31", "version": 1,
            "expires": "2030-01-01T00:00:00Z", "consistent_snapshot": true, "keys": {},
            "roles": {
                "root": {"keyids": ["a"], "threshold": 1},
                "targets": {"keyids": ["a"], "threshold": 1},
                "snapshot": {"keyids": ["a"], "threshold": 1},
                "timestamp": {"keyids": ["a"], "threshold": 1}
            }
        })
    }

    #[test]
    fn root_is_read_and_checked() {
        let root = Root::from_signed(&root_signed()).unwrap();
        assert!(root.consistent_snapshot);
        assert_eq!(root.role("timestamp").unwrap().threshold, 1);
        let mut wrong = root_signed();
        wrong["_type"] = json!("targets");
        assert!(matches!(
            Root::from_signed(&wrong),
            Err(MetadataError::WrongType { .. })
        ));
        let mut spec = root_signed();
        spec["spec_version"] = json!("2.0.0");
        assert!(matches!(
            Root::from_signed(&spec),
            Err(MetadataError::SpecVersion { .. })
        ));
        let mut zero = root_signed();
        zero["roles"]["root"]["threshold"] = json!(0);
        assert!(Root::from_signed(&zero).is_err());
        let mut missing = root_signed();
        missing["roles"].as_object_mut().unwrap().remove("snapshot");
        assert!(Root::from_signed(&missing).is_err());
    }

    #[test]
    fn delegations_are_read_and_names_checked() {
        let signed = json!({
            "_type": "targets", "spec_version": "1.0.31", "version": 3,
            "expires": "2030-01-01T00:00:00Z",
            "targets": {"fw.bundle": {"length": 5, "hashes": {"sha256": "00"}, "custom": {"x": 1}}},
            "delegations": {"keys": {}, "roles": [
                {"name": "router", "keyids": [], "threshold": 1, "terminating": true,
                 "paths": ["router/*"]}
            ]}
        });
        let t = Targets::from_signed(&signed, "targets").unwrap();
        assert_eq!(t.targets["fw.bundle"].length, 5);
        let d = t.delegations.unwrap();
        assert!(d.roles[0].terminating);
        assert!(d.roles[0].is_trusted_for("router/a.bundle"));
        assert!(!d.roles[0].is_trusted_for("nas/a.bundle"));
        for unusual in ["../root", "?", "#", "/delegatedrole", "x y", "é"] {
            let mut odd = signed.clone();
            odd["delegations"]["roles"][0]["name"] = json!(unusual);
            let t = Targets::from_signed(&odd, "targets").unwrap();
            assert_eq!(t.delegations.unwrap().roles[0].name, unusual);
        }
        for refused in ["", "targets", "root"] {
            let mut bad = signed.clone();
            bad["delegations"]["roles"][0]["name"] = json!(refused);
            assert!(
                Targets::from_signed(&bad, "targets").is_err(),
                "{refused:?}"
            );
        }
        let mut twice = signed.clone();
        let first = twice["delegations"]["roles"][0].clone();
        twice["delegations"]["roles"]
            .as_array_mut()
            .unwrap()
            .push(first);
        assert!(Targets::from_signed(&twice, "targets").is_err());
        let mut no_hash = signed;
        no_hash["targets"]["fw.bundle"]["hashes"] = json!({});
        assert!(Targets::from_signed(&no_hash, "targets").is_err());
    }
}
