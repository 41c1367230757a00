//! The U-Boot environment, byte-compatible with `fw_printenv`/`fw_setenv` (libubootenv) and
//! `mkenvimage`.
//!
//! # Format
//!
//! One copy of the environment is `size` bytes (the `SIZE` column of `fw_env.config`):
//!
//! - a CRC-32 (the zlib one, stored little-endian) of the data area,
//! - for a redundant environment only, a flags byte,
//! - the data area: `name=value\0` entries, an extra `\0` after the last one, then padding up to
//!   the end. The CRC covers the whole data area, padding included.
//!
//! A single environment is one copy; a redundant one is two copies (two lines of
//! `fw_env.config`), and the valid copy with the newer flags byte is the active one.
//!
//! # Behaviour matched (checked against libubootenv 0.3.2 and U-Boot's `env/common.c`)
//!
//! - Variables are kept sorted by name (byte order): libubootenv re-sorts them when it loads an
//!   environment and U-Boot's `saveenv` sorts on export, so writing them sorted is what both do.
//!   `.flags` is stored like any other variable (libubootenv appends it last instead; both readers
//!   accept either place). Its type/access attributes are not enforced here.
//! - Choosing between two copies: a copy whose CRC is wrong, or that cannot be read, is ignored;
//!   if both are valid the higher flags byte wins, except that 0 beats 255 (the counter wrapped),
//!   and equal flags select the first copy. libubootenv and U-Boot use the same rule.
//! - Saving a redundant environment writes the copy that is *not* active, with the active copy's
//!   flags plus one (wrapping 255 → 0). Until that write is complete and fsynced the old copy
//!   stays the valid, newer one, so a power cut at any moment leaves one valid environment; the
//!   new copy takes over atomically when its CRC becomes valid. This is the "incremental" flag
//!   scheme used for files and block devices (the boolean scheme of NAND/MTD is not supported,
//!   and MTD/UBI devices are refused because they need erasing before a write).
//! - Padding is `0x00`, as U-Boot's `saveenv` writes it (`mkenvimage` pads with `0xff` unless
//!   given `-p 0`; libubootenv leaves whatever its buffer held).
//! - Values are stored raw, as libubootenv does. U-Boot itself treats `\` in a stored value as an
//!   escape character when it loads the environment, so [`UbootEnv::set`] refuses values that
//!   contain `\` (U-Boot would read them differently); such values already present are kept
//!   byte for byte.

use crate::fault::{self, Io};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Header length of a single-copy environment: the CRC.
pub const HEADER_LEN_SINGLE: usize = 4;

/// Header length of each copy of a redundant environment: the CRC and the flags byte.
pub const HEADER_LEN_REDUNDANT: usize = 5;

/// Flags byte `mkenvimage -r` writes into a new redundant environment; [`UbootEnv::create`] uses
/// it for the first copy too.
const CREATED_FLAGS: u8 = 1;

/// Byte filling the data area after the terminating NUL, as U-Boot's `saveenv` does.
const PAD: u8 = 0;

/// What went wrong with a U-Boot environment or its configuration.
#[derive(Debug, thiserror::Error)]
pub enum UbootEnvError {
    /// The configuration cannot describe a usable environment.
    #[error("invalid U-Boot environment configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A line of an `fw_env.config` file cannot be parsed.
    #[error("fw_env.config line {line}: {reason}")]
    ConfigSyntax {
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A variable name that U-Boot cannot store or would read back differently.
    #[error("invalid U-Boot variable name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A value that U-Boot cannot store or would read back differently.
    #[error("invalid value for U-Boot variable {name:?}: {reason}")]
    InvalidValue {
        /// The variable whose value was rejected.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The variables do not fit in the data area.
    #[error(
        "U-Boot environment does not fit: its variables need {needed} bytes but the data area \
         holds {available}; remove or shorten variables, or configure a larger environment"
    )]
    TooLarge {
        /// Bytes needed, terminating NULs included.
        needed: usize,
        /// Size of the data area (environment size minus header).
        available: usize,
    },
    /// The data area has a valid CRC but cannot be parsed.
    #[error("malformed U-Boot environment data at byte {offset}: {reason}")]
    Malformed {
        /// Offset in the data area.
        offset: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// The stored CRC does not match the data.
    #[error(
        "bad CRC (stored {stored:#010x}, computed {computed:#010x}): the environment is corrupted \
         or was never written"
    )]
    CrcMismatch {
        /// CRC found in the header.
        stored: u32,
        /// CRC of the data area.
        computed: u32,
    },
    /// The file or device ends before the end of the environment.
    #[error("the file or device ends before the end of the environment")]
    EndOfFile,
    /// An operating-system call failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// One of the errors above, in the copy at this place.
    #[error("U-Boot environment in {} at offset {offset:#x}: {source}", path.display())]
    InCopy {
        /// File or device holding the copy.
        path: PathBuf,
        /// Offset of the copy in it.
        offset: u64,
        /// What is wrong with that copy.
        #[source]
        source: Box<UbootEnvError>,
    },
    /// A line of a default environment text file cannot be parsed.
    #[error("default environment {} line {line}: {reason}", path.display())]
    TextSyntax {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither copy of a redundant environment is valid.
    #[error(
        "no valid copy of the redundant U-Boot environment ({first}; {second}); it must be \
         initialised first, as mkenvimage does"
    )]
    NoValidCopy {
        /// Why the first copy is not valid.
        first: Box<UbootEnvError>,
        /// Why the second copy is not valid.
        second: Box<UbootEnvError>,
    },
}

impl UbootEnvError {
    fn in_copy(path: &Path, offset: u64, source: UbootEnvError) -> Self {
        UbootEnvError::InCopy {
            path: path.to_path_buf(),
            offset,
            source: Box::new(source),
        }
    }

    fn config(reason: impl Into<String>) -> Self {
        UbootEnvError::InvalidConfig {
            reason: reason.into(),
        }
    }
}

/// Where the environment lives, as in `fw_env.config`: one copy (single environment) or two
/// (redundant), each a file or block device and an offset in it, all copies `size` bytes long
/// (header included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootEnvConfig {
    /// The copies: file or block device, and byte offset of the copy in it.
    pub copies: Vec<(PathBuf, u64)>,
    /// Size of each copy in bytes, header included.
    pub size: usize,
}

impl UbootEnvConfig {
    /// A single environment.
    pub fn single(path: impl Into<PathBuf>, offset: u64, size: usize) -> Self {
        UbootEnvConfig {
            copies: vec![(path.into(), offset)],
            size,
        }
    }

    /// A redundant environment with two copies.
    pub fn redundant(first: (PathBuf, u64), second: (PathBuf, u64), size: usize) -> Self {
        UbootEnvConfig {
            copies: vec![first, second],
            size,
        }
    }

    /// Whether there are two copies.
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }

    /// Bytes of header at the start of each copy: 4, or 5 when redundant.
    pub fn header_len(&self) -> usize {
        if self.is_redundant() {
            HEADER_LEN_REDUNDANT
        } else {
            HEADER_LEN_SINGLE
        }
    }

    /// Parses an `fw_env.config`: one `DEVICE OFFSET SIZE [SECTOR_SIZE [SECTORS]]` line per copy,
    /// `#` comments and blank lines ignored.
    ///
    /// Numbers are read as libubootenv reads them: the offset like C's `strtoll(s, 0)` (decimal,
    /// `0x` hex, or leading-`0` octal) and the size **always as hexadecimal**, with or without
    /// `0x` (`8192` means 0x8192). Sector columns only matter for MTD flash and are ignored.
    pub fn parse_fw_env_config(text: &str) -> Result<Self, UbootEnvError> {
        let mut copies = Vec::new();
        let mut size = None;
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let syntax = |reason: String| UbootEnvError::ConfigSyntax {
                line: line_no,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [device, offset, copy_size, ..] = fields[..] else {
                return Err(syntax("expected DEVICE OFFSET SIZE".to_owned()));
            };
            let offset = parse_c_integer(offset).ok_or_else(|| {
                syntax(format!(
                    "offset {offset:?} is not a decimal, 0x-hex or 0-octal number"
                ))
            })?;
            let copy_size = parse_hex(copy_size).ok_or_else(|| {
                syntax(format!(
                    "size {copy_size:?} is not a hexadecimal number (libubootenv always reads \
                     the size as hexadecimal)"
                ))
            })?;
            if copies.len() == 2 {
                return Err(syntax(
                    "a third environment copy; at most two are supported".to_owned(),
                ));
            }
            if size.is_some_and(|s| s != copy_size) {
                return Err(syntax(
                    "the two copies have different sizes; they must be equal".to_owned(),
                ));
            }
            copies.push((PathBuf::from(device), offset));
            size = Some(copy_size);
        }
        let size = size.ok_or_else(|| UbootEnvError::config("fw_env.config names no device"))?;
        let config = UbootEnvConfig { copies, size };
        config.validate()?;
        Ok(config)
    }

    /// The `fw_env.config` text describing this configuration (hexadecimal offsets and sizes),
    /// for `fw_printenv -c` / `fw_setenv -c`.
    pub fn to_fw_env_config(&self) -> Result<String, UbootEnvError> {
        self.validate()?;
        let mut text = String::new();
        for (path, offset) in &self.copies {
            let device = path
                .to_str()
                .filter(|p| !p.chars().any(char::is_whitespace))
                .ok_or_else(|| {
                    UbootEnvError::config(format!(
                        "{} cannot be written in fw_env.config (not UTF-8, or contains \
                         whitespace)",
                        path.display()
                    ))
                })?;
            text.push_str(&format!("{device} {offset:#x} {:#x}\n", self.size));
        }
        Ok(text)
    }

    /// Checks what every read and write relies on.
    fn validate(&self) -> Result<(), UbootEnvError> {
        if !(1..=2).contains(&self.copies.len()) {
            return Err(UbootEnvError::config(format!(
                "{} copies configured; there must be 1 (single) or 2 (redundant)",
                self.copies.len()
            )));
        }
        // Room for the header and at least the terminating NUL of an empty environment.
        if self.size <= self.header_len() {
            return Err(UbootEnvError::config(format!(
                "environment size {} is too small for the {}-byte header",
                self.size,
                self.header_len()
            )));
        }
        let size = self.size as u64;
        for (path, offset) in &self.copies {
            let device = path.to_string_lossy();
            if device.starts_with("/dev/mtd") || device.starts_with("/dev/ubi") {
                return Err(UbootEnvError::config(format!(
                    "{device}: MTD/UBI devices need erasing before writing, which is not \
                     supported; use a block device or file"
                )));
            }
            if offset.checked_add(size).is_none() {
                return Err(UbootEnvError::config(format!(
                    "{device}: offset {offset:#x} plus size overflows"
                )));
            }
        }
        if let [(path_a, offset_a), (path_b, offset_b)] = &self.copies[..] {
            // Overlapping copies would let the write of one destroy the other, and with it the
            // power-loss safety of the redundant environment.
            if path_a == path_b && offset_a.abs_diff(*offset_b) < size {
                return Err(UbootEnvError::config(format!(
                    "the two copies overlap in {} (offsets {offset_a:#x} and {offset_b:#x}, size \
                     {:#x})",
                    path_a.display(),
                    self.size
                )));
            }
        }
        Ok(())
    }
}

/// The variables of a U-Boot environment, sorted by name as libubootenv and U-Boot keep them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UbootEnv {
    vars: BTreeMap<String, String>,
}

impl UbootEnv {
    /// An environment without variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of a variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Sets a variable. An empty value removes it, as in U-Boot, which has no empty variables.
    ///
    /// Refuses names and values that U-Boot cannot store or would load as something else: empty
    /// names, `=` or NUL in names, names starting with `#` (a comment to U-Boot) or a blank (which
    /// U-Boot strips), NUL or `\` in values (U-Boot unescapes `\`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), UbootEnvError> {
        validate_name(name)?;
        let bad_value = |reason| UbootEnvError::InvalidValue {
            name: name.to_owned(),
            reason,
        };
        if value.contains('\0') {
            return Err(bad_value("it contains a NUL byte"));
        }
        if value.contains('\\') {
            return Err(bad_value(
                "it contains '\\', which U-Boot treats as an escape character when loading",
            ));
        }
        if value.is_empty() {
            self.vars.remove(name);
        } else {
            self.vars.insert(name.to_owned(), value.to_owned());
        }
        Ok(())
    }

    /// Removes a variable. Returns whether it was there.
    pub fn unset(&mut self, name: &str) -> bool {
        self.vars.remove(name).is_some()
    }

    /// The variables, sorted by name, as `fw_printenv` prints them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Parses a data area (the part after the header).
    ///
    /// Reads as libubootenv does: entries without `=` are skipped, a later entry for the same
    /// name wins, values are taken raw. An entry with an empty name is an error, because U-Boot
    /// rejects the whole environment for it and boots with its built-in default instead.
    pub fn parse_data(data: &[u8]) -> Result<Self, UbootEnvError> {
        let mut vars = BTreeMap::new();
        let mut start = 0;
        // An empty entry ends the list. U-Boot also accepts a list that runs to the very end of
        // the area without the extra NUL, so that is not an error either.
        while start < data.len() && data[start] != 0 {
            let len =
                data[start..]
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(UbootEnvError::Malformed {
                        offset: start,
                        reason: "the last entry is not NUL-terminated",
                    })?;
            let entry = &data[start..start + len];
            if let Some(eq) = entry.iter().position(|&b| b == b'=') {
                let malformed = |reason| UbootEnvError::Malformed {
                    offset: start,
                    reason,
                };
                if eq == 0 {
                    return Err(malformed("entry with an empty variable name"));
                }
                let name = std::str::from_utf8(&entry[..eq])
                    .map_err(|_| malformed("variable name is not valid UTF-8"))?;
                let value = std::str::from_utf8(&entry[eq + 1..])
                    .map_err(|_| malformed("value is not valid UTF-8"))?;
                vars.insert(name.to_owned(), value.to_owned());
            }
            start += len + 1;
        }
        Ok(UbootEnv { vars })
    }

    /// Encodes the data area of `len` bytes: sorted entries, the extra NUL, padding.
    pub fn encode_data(&self, len: usize) -> Result<Vec<u8>, UbootEnvError> {
        let needed = self
            .vars
            .iter()
            .map(|(n, v)| n.len() + 1 + v.len() + 1)
            .sum::<usize>()
            + 1;
        if needed > len {
            return Err(UbootEnvError::TooLarge {
                needed,
                available: len,
            });
        }
        let mut data = Vec::with_capacity(len);
        for (name, value) in &self.vars {
            data.extend_from_slice(name.as_bytes());
            data.push(b'=');
            data.extend_from_slice(value.as_bytes());
            data.push(0);
        }
        data.push(0);
        data.resize(len, PAD);
        Ok(data)
    }

    /// Encodes one copy of `size` bytes: CRC, then the flags byte if `flags` is given (redundant
    /// environment), then the data area.
    pub fn to_block(&self, size: usize, flags: Option<u8>) -> Result<Vec<u8>, UbootEnvError> {
        let header_len = header_len(flags.is_some());
        let data_len = size
            .checked_sub(header_len)
            .ok_or(UbootEnvError::TooLarge {
                needed: header_len + 1,
                available: size,
            })?;
        let data = self.encode_data(data_len)?;
        Ok(assemble_block(&data, flags))
    }

    /// Decodes one copy: checks its CRC and parses its data. Returns the flags byte too when
    /// `redundant`.
    pub fn from_block(block: &[u8], redundant: bool) -> Result<(Self, Option<u8>), UbootEnvError> {
        let (flags, data) = check_block(block, redundant)?;
        Ok((Self::parse_data(data)?, redundant.then_some(flags)))
    }

    /// Reads the environment: the only copy, whose CRC must be valid, or the active copy of a
    /// redundant environment (see the module documentation for how it is chosen).
    pub fn read(config: &UbootEnvConfig) -> Result<Self, UbootEnvError> {
        let active = load_active(config)?;
        let (path, offset) = &config.copies[active.index];
        Self::parse_data(&active.block[config.header_len()..])
            .map_err(|e| UbootEnvError::in_copy(path, *offset, e))
    }

    /// Saves the environment over an existing valid one.
    ///
    /// Single copy: rewrites it in place and fsyncs (not power-safe: a single environment cannot
    /// be). Redundant: writes the copy that is not active, flags = active flags + 1 (wrapping),
    /// and fsyncs; the old copy stays valid and newer until then, so this one write is the atomic
    /// switch. The current state is read again here, never taken from an earlier
    /// [`UbootEnv::read`].
    ///
    /// Refuses to write when no copy is valid (nothing proves the configuration points at an
    /// environment rather than at other data); use [`UbootEnv::create`] for a new environment.
    pub fn write(&self, config: &UbootEnvConfig) -> Result<(), UbootEnvError> {
        config.validate()?;
        let data = self.encode_data(config.size - config.header_len())?;
        let active = load_active(config)?;
        let (target, flags) = if config.is_redundant() {
            (1 - active.index, Some(active.flags.wrapping_add(1)))
        } else {
            (0, None)
        };
        let (path, offset) = &config.copies[target];
        write_copy(path, *offset, &assemble_block(&data, flags), false)
    }

    /// Writes a new environment whatever the copies hold now, like `mkenvimage` (plus writing it
    /// to the device). A missing file is created (never truncated: other data may surround the
    /// environment).
    ///
    /// For a redundant environment both copies get the data, the first with flags 1 (as
    /// `mkenvimage -r` writes) and the second with flags 0, so the first is active and a stale
    /// second copy can never win. Meant for provisioning: a power cut during `create` may leave
    /// the old environment or no valid one.
    pub fn create(&self, config: &UbootEnvConfig) -> Result<(), UbootEnvError> {
        config.validate()?;
        let data = self.encode_data(config.size - config.header_len())?;
        if config.is_redundant() {
            for ((path, offset), flags) in config.copies.iter().zip([CREATED_FLAGS, 0]) {
                write_copy(path, *offset, &assemble_block(&data, Some(flags)), true)?;
            }
            Ok(())
        } else {
            let (path, offset) = &config.copies[0];
            write_copy(path, *offset, &assemble_block(&data, None), true)
        }
    }
}

/// What the configured copies hold, telling a never-saved environment from a broken setup
/// (see [`UbootEnv::probe`]).
#[derive(Debug)]
pub enum EnvProbe {
    /// At least one copy is valid: the active environment, as [`UbootEnv::read`] returns it.
    Valid(UbootEnv),
    /// Every copy could be read and none has a valid CRC. U-Boot then boots with its built-in
    /// default environment (`*** Warning - bad CRC, using default environment`).
    NoValidCopy {
        /// Every copy is entirely `0xff` (erased flash) or entirely `0x00`: never written, so
        /// there is no other data at these offsets to destroy.
        blank: bool,
        /// Why the copies are invalid, for messages.
        error: UbootEnvError,
    },
}

impl UbootEnv {
    /// Reads the environment like [`UbootEnv::read`], but reports "no copy has a valid CRC" as
    /// [`EnvProbe::NoValidCopy`] instead of an error. Anything else (a copy that cannot be
    /// opened or is too short, a valid CRC over malformed data, a bad configuration) stays an
    /// error: only a bad CRC is what U-Boot answers with its default environment.
    pub fn probe(config: &UbootEnvConfig) -> Result<EnvProbe, UbootEnvError> {
        match Self::read(config) {
            Ok(env) => Ok(EnvProbe::Valid(env)),
            Err(error) if only_bad_crc(&error) => {
                let blank = config.copies.iter().all(|(path, offset)| {
                    read_copy(path, *offset, config.size).is_ok_and(|block| is_blank(&block))
                });
                Ok(EnvProbe::NoValidCopy { blank, error })
            }
            Err(error) => Err(error),
        }
    }

    /// Parses a default environment in the text form U-Boot's `make u-boot-initial-env` writes
    /// (and libubootenv reads as its default, `/etc/u-boot-initial-env`): one `name=value` per
    /// line; blank lines and lines starting with `#` are skipped. `path` names the file in errors.
    pub fn parse_text(text: &str, path: &Path) -> Result<Self, UbootEnvError> {
        let mut env = UbootEnv::new();
        for (index, line) in text.lines().enumerate() {
            let syntax = |reason: String| UbootEnvError::TextSyntax {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| syntax("expected name=value".to_owned()))?;
            env.set(name, value).map_err(|e| syntax(e.to_string()))?;
        }
        Ok(env)
    }
}

/// Whether every copy failed only because of its CRC.
fn only_bad_crc(error: &UbootEnvError) -> bool {
    match error {
        UbootEnvError::CrcMismatch { .. } => true,
        UbootEnvError::InCopy { source, .. } => only_bad_crc(source),
        UbootEnvError::NoValidCopy { first, second } => only_bad_crc(first) && only_bad_crc(second),
        _ => false,
    }
}

/// Erased flash (all `0xff`) or zeroed storage (all `0x00`).
fn is_blank(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0xff) || block.iter().all(|&b| b == 0)
}

fn header_len(redundant: bool) -> usize {
    if redundant {
        HEADER_LEN_REDUNDANT
    } else {
        HEADER_LEN_SINGLE
    }
}

fn validate_name(name: &str) -> Result<(), UbootEnvError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('=') {
        "it contains '='"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else if name.starts_with('#') {
        "it starts with '#', which U-Boot skips as a comment"
    } else if name.starts_with([' ', '\t']) {
        "it starts with a blank, which U-Boot strips"
    } else {
        return Ok(());
    };
    Err(UbootEnvError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// CRC (little-endian), optional flags byte, data.
fn assemble_block(data: &[u8], flags: Option<u8>) -> Vec<u8> {
    let mut block = Vec::with_capacity(HEADER_LEN_REDUNDANT + data.len());
    block.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    block.extend(flags);
    block.extend_from_slice(data);
    block
}

/// Checks the CRC of one copy; returns its flags byte (0 for a single copy) and data area.
fn check_block(block: &[u8], redundant: bool) -> Result<(u8, &[u8]), UbootEnvError> {
    let header_len = header_len(redundant);
    if block.len() <= header_len {
        return Err(UbootEnvError::Malformed {
            offset: 0,
            reason: "block is not longer than its header",
        });
    }
    let stored = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    let flags = if redundant { block[4] } else { 0 };
    let data = &block[header_len..];
    let computed = crc32fast::hash(data);
    if stored != computed {
        return Err(UbootEnvError::CrcMismatch { stored, computed });
    }
    Ok((flags, data))
}

/// Which of two valid copies is active, given their flags: the higher one, except that 0 follows
/// 255; the first one when equal. The rule of U-Boot's `env_check_redund` and libubootenv.
fn active_of_two(flags0: u8, flags1: u8) -> usize {
    match (flags0, flags1) {
        (255, 0) => 1,
        (0, 255) => 0,
        (f0, f1) if f1 > f0 => 1,
        _ => 0,
    }
}

/// The valid copy in use, as raw bytes.
struct ActiveCopy {
    index: usize,
    flags: u8,
    block: Vec<u8>,
}

fn load_active(config: &UbootEnvConfig) -> Result<ActiveCopy, UbootEnvError> {
    config.validate()?;
    let redundant = config.is_redundant();
    let mut copies = config
        .copies
        .iter()
        .enumerate()
        .map(|(index, (path, offset))| {
            let block = read_copy(path, *offset, config.size)?;
            let (flags, _) = check_block(&block, redundant)
                .map_err(|e| UbootEnvError::in_copy(path, *offset, e))?;
            Ok(ActiveCopy {
                index,
                flags,
                block,
            })
        });
    let first = copies.next().unwrap_or_else(|| {
        Err(UbootEnvError::config(
            "no environment copy configured".to_owned(),
        ))
    });
    let Some(second) = copies.next() else {
        return first;
    };
    // A copy that cannot be read counts as invalid, like in U-Boot: the other one may still be
    // good, and that is what the redundancy is for.
    match (first, second) {
        (Ok(a), Ok(b)) => Ok(if active_of_two(a.flags, b.flags) == 0 {
            a
        } else {
            b
        }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(first), Err(second)) => Err(UbootEnvError::NoValidCopy {
            first: Box::new(first),
            second: Box::new(second),
        }),
    }
}

fn read_copy(path: &Path, offset: u64, size: usize) -> Result<Vec<u8>, UbootEnvError> {
    let fail = |e: UbootEnvError| UbootEnvError::in_copy(path, offset, e);
    let io = |action| move |source| fail(UbootEnvError::Io { action, source });
    let mut file = File::open(path).map_err(io("open"))?;
    file.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
    let mut block = vec![0u8; size];
    file.read_exact(&mut block).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            fail(UbootEnvError::EndOfFile)
        } else {
            fail(UbootEnvError::Io {
                action: "read",
                source: e,
            })
        }
    })?;
    Ok(block)
}

/// Writes one copy at its offset without truncating anything, then fsyncs. With `create`, a
/// missing file is created and its directory fsynced so the new entry survives a power cut.
fn write_copy(path: &Path, offset: u64, block: &[u8], create: bool) -> Result<(), UbootEnvError> {
    let io = |action| {
        move |source| UbootEnvError::in_copy(path, offset, UbootEnvError::Io { action, source })
    };
    let is_new = create && !matches!(path.try_exists(), Ok(true));
    let mut file = OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(io("open for writing"))?;
    if is_new {
        fault::io(Io::Create(path));
    }
    file.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
    file.write_all(block).map_err(io("write"))?;
    fault::io(Io::Write(path, offset, block));
    file.sync_all().map_err(io("fsync"))?;
    fault::io(Io::Sync(path));
    if is_new {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync the directory of"))?;
        fault::io(Io::SyncDir(dir));
    }
    Ok(())
}

/// C `strtoull(s, NULL, 0)` on a whole token: `0x` hex, leading `0` octal, else decimal.
fn parse_c_integer(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u64::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

/// scanf `%zx` on a whole token: hexadecimal with an optional `0x`.
fn parse_hex(text: &str) -> Option<usize> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    usize::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const SIZE: usize = 0x400;

    fn env_of(pairs: &[(&str, &str)]) -> UbootEnv {
        let mut env = UbootEnv::new();
        for (name, value) in pairs {
            env.set(name, value).unwrap();
        }
        env
    }

    fn redundant_in(path: &Path) -> UbootEnvConfig {
        UbootEnvConfig::redundant(
            (path.to_path_buf(), 0),
            (path.to_path_buf(), SIZE as u64),
            SIZE,
        )
    }

    fn flags_at(path: &Path, offset: usize) -> u8 {
        fs::read(path).unwrap()[offset + 4]
    }

    #[test]
    fn data_is_sorted_nul_separated_and_terminated() {
        let env = env_of(&[("zeta", "1"), ("alpha", "2"), ("mid", "hello world")]);
        let data = env.encode_data(64).unwrap();
        let text = b"alpha=2\0mid=hello world\0zeta=1\0\0";
        assert_eq!(&data[..text.len()], text);
        assert!(data[text.len()..].iter().all(|&b| b == 0));
        assert_eq!(UbootEnv::parse_data(&data).unwrap(), env);
    }

    #[test]
    fn single_block_has_crc_then_data() {
        let env = env_of(&[("a", "1")]);
        let block = env.to_block(SIZE, None).unwrap();
        assert_eq!(block.len(), SIZE);
        let crc = crc32fast::hash(&block[4..]);
        assert_eq!(block[..4], crc.to_le_bytes());
        assert_eq!(&block[4..9], b"a=1\0\0");
        assert_eq!(UbootEnv::from_block(&block, false).unwrap(), (env, None));
    }

    #[test]
    fn redundant_block_has_flags_byte_outside_the_crc() {
        let env = env_of(&[("a", "1")]);
        let mut block = env.to_block(SIZE, Some(7)).unwrap();
        assert_eq!(block[4], 7);
        assert_eq!(block[..4], crc32fast::hash(&block[5..]).to_le_bytes());
        block[4] = 8;
        assert_eq!(UbootEnv::from_block(&block, true).unwrap(), (env, Some(8)));
    }

    #[test]
    fn bad_crc_is_reported_with_both_values() {
        let mut block = env_of(&[("a", "1")]).to_block(SIZE, None).unwrap();
        block[6] = b'2';
        let err = UbootEnv::from_block(&block, false).unwrap_err();
        assert!(matches!(err, UbootEnvError::CrcMismatch { .. }), "{err}");
        assert!(err.to_string().contains("bad CRC"), "{err}");
    }

    #[test]
    fn too_large_environment_is_refused() {
        let env = env_of(&[("a", &"x".repeat(20))]);
        // "a=" + 20 + NUL + final NUL = 24 bytes of data.
        assert!(env.to_block(24 + 4, None).is_ok());
        assert!(matches!(
            env.to_block(23 + 4, None),
            Err(UbootEnvError::TooLarge {
                needed: 24,
                available: 23
            })
        ));
    }

    #[test]
    fn parse_follows_libubootenv_for_odd_entries() {
        let data = b"b=1\0junk\0a=2\0b=3\0empty=\0\0ignored=after-end\0";
        let env = UbootEnv::parse_data(data).unwrap();
        assert_eq!(
            env.iter().collect::<Vec<_>>(),
            [("a", "2"), ("b", "3"), ("empty", "")]
        );
    }

    #[test]
    fn parse_refuses_broken_data() {
        for (data, why) in [
            (&b"a=1\0=2\0\0"[..], "empty name"),
            (b"a=1\0b=2", "unterminated entry"),
            (b"a=\xff\0\0", "not UTF-8"),
        ] {
            assert!(
                matches!(
                    UbootEnv::parse_data(data),
                    Err(UbootEnvError::Malformed { .. })
                ),
                "{why}"
            );
        }
        // U-Boot accepts a list that fills the area exactly, without the extra NUL.
        assert_eq!(UbootEnv::parse_data(b"a=1\0").unwrap().get("a"), Some("1"));
    }

    #[test]
    fn set_refuses_what_u_boot_would_read_differently() {
        let mut env = UbootEnv::new();
        for name in ["", "a=b", "#a", " a", "\ta", "a\0"] {
            assert!(
                matches!(env.set(name, "v"), Err(UbootEnvError::InvalidName { .. })),
                "{name:?}"
            );
        }
        for value in ["a\\b", "a\0b"] {
            assert!(
                matches!(env.set("n", value), Err(UbootEnvError::InvalidValue { .. })),
                "{value:?}"
            );
        }
        env.set("n", "v").unwrap();
        env.set("n", "").unwrap();
        assert_eq!(env.get("n"), None);
        assert!(env.is_empty());
    }

    #[test]
    fn active_copy_follows_u_boot_flag_rules() {
        assert_eq!(active_of_two(1, 2), 1);
        assert_eq!(active_of_two(2, 1), 0);
        assert_eq!(active_of_two(254, 255), 1);
        assert_eq!(active_of_two(255, 0), 1);
        assert_eq!(active_of_two(0, 255), 0);
        assert_eq!(active_of_two(5, 5), 0);
        // Only the exact 255 -> 0 step wraps; any other pair compares plainly.
        assert_eq!(active_of_two(254, 0), 0);
    }

    #[test]
    fn redundant_write_alternates_copies_and_increments_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.bin");
        let config = redundant_in(&path);
        env_of(&[("v", "0")]).create(&config).unwrap();
        assert_eq!((flags_at(&path, 0), flags_at(&path, SIZE)), (1, 0));

        env_of(&[("v", "1")]).write(&config).unwrap();
        assert_eq!((flags_at(&path, 0), flags_at(&path, SIZE)), (1, 2));
        env_of(&[("v", "2")]).write(&config).unwrap();
        assert_eq!((flags_at(&path, 0), flags_at(&path, SIZE)), (3, 2));
        assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("2"));

        // The previous environment is still intact in the inactive copy.
        let bytes = fs::read(&path).unwrap();
        let (old, flags) = UbootEnv::from_block(&bytes[SIZE..], true).unwrap();
        assert_eq!((old.get("v"), flags), (Some("1"), Some(2)));
    }

    #[test]
    fn redundant_write_wraps_the_flags_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.bin");
        let config = redundant_in(&path);
        env_of(&[("v", "old")]).create(&config).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[4] = 255; // The flags byte is outside the CRC.
        fs::write(&path, &bytes).unwrap();

        env_of(&[("v", "new")]).write(&config).unwrap();
        assert_eq!(flags_at(&path, SIZE), 0);
        assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("new"));
    }

    #[test]
    fn corrupt_active_copy_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.bin");
        let config = redundant_in(&path);
        env_of(&[("v", "old")]).create(&config).unwrap();
        env_of(&[("v", "new")]).write(&config).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[SIZE + 10] ^= 0xff;
        fs::write(&path, &bytes).unwrap();

        assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("old"));
        // The next write replaces the corrupt copy, keeping the valid one.
        env_of(&[("v", "newer")]).write(&config).unwrap();
        assert_eq!(flags_at(&path, SIZE), 2);
        assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("newer"));
    }

    #[test]
    fn short_file_counts_as_an_invalid_second_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.bin");
        let env = env_of(&[("v", "1")]);
        fs::write(&path, env.to_block(SIZE, Some(1)).unwrap()).unwrap();
        let config = redundant_in(&path);
        assert_eq!(UbootEnv::read(&config).unwrap(), env);
        // Writing the second copy extends the file.
        env_of(&[("v", "2")]).write(&config).unwrap();
        assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("2"));
    }

    #[test]
    fn no_valid_copy_is_an_error_and_write_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.bin");
        fs::write(&path, vec![0u8; 2 * SIZE]).unwrap();
        let config = redundant_in(&path);
        let err = UbootEnv::read(&config).unwrap_err();
        assert!(matches!(err, UbootEnvError::NoValidCopy { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("offset 0x400"), "{message}");

        assert!(env_of(&[("v", "1")]).write(&config).is_err());
        assert_eq!(fs::read(&path).unwrap(), vec![0u8; 2 * SIZE]);
    }

    #[test]
    fn probe_tells_never_saved_from_corrupt_and_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.bin");
        let config = redundant_in(&path);
        for fill in [0xffu8, 0x00] {
            fs::write(&path, vec![fill; 2 * SIZE]).unwrap();
            match UbootEnv::probe(&config).unwrap() {
                EnvProbe::NoValidCopy { blank, error } => {
                    assert!(blank, "{fill:#x}");
                    assert!(
                        matches!(error, UbootEnvError::NoValidCopy { .. }),
                        "{error}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // Garbage with a bad CRC: invalid, but not blank (maybe the offsets are wrong).
        let mut bytes = vec![0xffu8; 2 * SIZE];
        bytes[SIZE + 100] = 0x42;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            UbootEnv::probe(&config).unwrap(),
            EnvProbe::NoValidCopy { blank: false, .. }
        ));
        // One valid copy is a valid environment (a torn write of the other).
        env_of(&[("v", "1")]).create(&config).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[SIZE..].fill(0xff);
        fs::write(&path, &bytes).unwrap();
        match UbootEnv::probe(&config).unwrap() {
            EnvProbe::Valid(env) => assert_eq!(env.get("v"), Some("1")),
            other => panic!("{other:?}"),
        }
        // A copy that cannot be read at all stays an error.
        fs::write(&path, vec![0xffu8; SIZE + 10]).unwrap();
        assert!(UbootEnv::probe(&config).is_err());
        let single = UbootEnvConfig::single(dir.path().join("missing"), 0, SIZE);
        assert!(UbootEnv::probe(&single).is_err());
    }

    #[test]
    fn default_environment_text_is_parsed_like_u_boot_initial_env() {
        let path = Path::new("u-boot-initial-env");
        let env = UbootEnv::parse_text(
            "# comment\narch=arm\nbootcmd=run ota_boot; reset\n\nbootargs=a=b c\r\nempty=\n",
            path,
        )
        .unwrap();
        assert_eq!(
            env.iter().collect::<Vec<_>>(),
            [
                ("arch", "arm"),
                ("bootargs", "a=b c"),
                ("bootcmd", "run ota_boot; reset")
            ]
        );
        for (text, line) in [("a=1\nnot a variable\n", 2), ("=1\n", 1), ("a=x\\y\n", 1)] {
            match UbootEnv::parse_text(text, path) {
                Err(UbootEnvError::TextSyntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn single_write_needs_a_valid_environment_and_keeps_surroundings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        fs::write(&path, vec![0xaau8; 0x2000]).unwrap();
        let config = UbootEnvConfig::single(&path, 0x800, SIZE);
        let err = env_of(&[("v", "1")]).write(&config).unwrap_err();
        assert!(err.to_string().contains("bad CRC"), "{err}");

        env_of(&[("v", "1")]).create(&config).unwrap();
        env_of(&[("v", "2")]).write(&config).unwrap();
        assert_eq!(UbootEnv::read(&config).unwrap().get("v"), Some("2"));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 0x2000);
        assert!(bytes[..0x800].iter().all(|&b| b == 0xaa));
        assert!(bytes[0x800 + SIZE..].iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn fw_env_config_numbers_are_read_like_libubootenv() {
        let config = UbootEnvConfig::parse_fw_env_config(
            "# device offset size\n\
             /dev/mmcblk0 0x400000 0x4000\n\
             \n\
             /dev/mmcblk0 4210688 4000 0x200 1\n",
        )
        .unwrap();
        assert_eq!(
            config,
            UbootEnvConfig::redundant(
                ("/dev/mmcblk0".into(), 0x40_0000),
                ("/dev/mmcblk0".into(), 0x40_4000),
                0x4000
            )
        );
        assert_eq!(
            config.to_fw_env_config().unwrap(),
            "/dev/mmcblk0 0x400000 0x4000\n/dev/mmcblk0 0x404000 0x4000\n"
        );
        assert_eq!(parse_c_integer("010"), Some(8));
        assert_eq!(parse_c_integer("0"), Some(0));
    }

    #[test]
    fn fw_env_config_errors_name_the_line() {
        for (text, line) in [
            ("/dev/sda 0\n", 1),
            ("# c\n/dev/sda zero 0x100\n", 2),
            ("/dev/sda 0 0x1000\n/dev/sda 0x1000 0x2000\n", 2),
            ("a 0 0x100\nb 0 0x100\nc 0 0x100\n", 3),
        ] {
            match UbootEnvConfig::parse_fw_env_config(text) {
                Err(UbootEnvError::ConfigSyntax { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsafe_configurations_are_refused() {
        let overlapping = UbootEnvConfig::redundant(("f".into(), 0), ("f".into(), 0x100), 0x200);
        let mtd = UbootEnvConfig::single("/dev/mtd1", 0, 0x1000);
        let three = UbootEnvConfig {
            copies: vec![("a".into(), 0), ("b".into(), 0), ("c".into(), 0)],
            size: 0x100,
        };
        let tiny = UbootEnvConfig::single("f", 0, 4);
        for config in [overlapping, mtd, three, tiny] {
            assert!(
                matches!(
                    UbootEnv::read(&config),
                    Err(UbootEnvError::InvalidConfig { .. })
                ),
                "{config:?}"
            );
        }
    }
}
