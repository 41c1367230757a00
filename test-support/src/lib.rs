//! What the integration tests share, instead of copying it per test file: the paths of the
//! built binaries, firmware-like image generators, a vendor TUF repository made with the real
//! `ota-sign repo`, `ota-server` on a loopback port, and simulated A/B devices (slot files and
//! the `file` bootloader) driven through the real `ota-update` CLI.
//!
//! Everything panics with the command and its stderr on failure: these are test fixtures.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A binary of the workspace (`ota-update`, `ota-sign`, `ota-server`), next to the running
/// test's own directory (`target/<profile>/deps/..`), wherever the target directory is.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds every binary)",
        path.display()
    );
    path
}

/// A firmware-like image of `len` bytes: `marker` first (health checks read it), then bytes
/// from a seeded generator (compressible, different per seed).
pub fn image(marker: &str, len: usize, seed: u32) -> Vec<u8> {
    let mut out = marker.as_bytes().to_vec();
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(b'a' + (x % 11) as u8);
    }
    out.truncate(len);
    out
}

/// Runs a command; panics with its stderr unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ota-server` serving a directory on a free loopback port; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `ota-server serve --repo DIR` with `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(bin("ota-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
            .arg(dir)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split(" on ")
            .nth(1)
            .unwrap_or_else(|| panic!("ota-server said {line:?}"))
            .trim()
            .to_owned();
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A vendor's TUF repository made with `ota-sign repo`: one key per role plus a bundle key.
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// Makes the keys and `repo init` in `dir` (created).
    pub fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("keys")).unwrap();
        let repo = Repo {
            dir: dir.to_owned(),
        };
        for role in ["root", "targets", "snapshot", "timestamp", "bundle"] {
            repo.sign(&["keygen", "-o", &repo.key(role)]);
        }
        let root = repo.root_dir();
        repo.sign(&[
            "repo",
            "init",
            "--repo",
            &root,
            "--root-key",
            &repo.key("root"),
            "--targets-key",
            &repo.key("targets"),
            "--snapshot-key",
            &repo.key("snapshot"),
            "--timestamp-key",
            &repo.key("timestamp"),
        ]);
        repo
    }

    /// Path of a role's private key (`KEY.pub` beside it).
    pub fn key(&self, role: &str) -> String {
        self.dir
            .join(format!("keys/{role}.key"))
            .display()
            .to_string()
    }

    /// The repository directory that is served.
    pub fn root_dir(&self) -> String {
        self.dir.join("repo").display().to_string()
    }

    /// The first root metadata (what a device ships with).
    pub fn initial_root(&self) -> PathBuf {
        self.dir.join("repo/metadata/1.root.json")
    }

    /// The bundle signing key's public half (what a device trusts).
    pub fn bundle_pub(&self) -> PathBuf {
        PathBuf::from(format!("{}.pub", self.key("bundle")))
    }

    /// Runs `ota-sign` (no SOURCE_DATE_EPOCH: real time).
    pub fn sign(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(bin("ota-sign"))
                .args(args)
                .env_remove("SOURCE_DATE_EPOCH"),
        )
    }

    /// Signs a full bundle of one `rootfs` image with the bundle key; returns its path.
    pub fn bundle(&self, product: &str, version: &str, rootfs: &[u8]) -> PathBuf {
        let img = self.dir.join(format!("{product}-{version}.rootfs"));
        fs::write(&img, rootfs).unwrap();
        let bundle = self.dir.join(format!("{product}-{version}.bundle"));
        self.sign(&[
            "bundle",
            "--product",
            product,
            "--version",
            version,
            "--image",
            &format!("rootfs={}", img.display()),
            "--key",
            &self.key("bundle"),
            "-o",
            &bundle.display().to_string(),
        ]);
        bundle
    }

    /// Signs a full bundle of one `rootfs` image and stages it on `channel`; returns its
    /// target name.
    pub fn add_release(
        &self,
        product: &str,
        version: &str,
        channel: &str,
        rootfs: &[u8],
    ) -> String {
        let bundle = self.bundle(product, version, rootfs);
        let name = format!("{product}-{version}.bundle");
        self.sign(&[
            "repo",
            "add",
            "--repo",
            &self.root_dir(),
            "--trusted",
            &self.bundle_pub().display().to_string(),
            "--channel",
            channel,
            &bundle.display().to_string(),
        ]);
        name
    }

    /// Signs targets, snapshot and timestamp with their keys (vendor CI + online roles).
    pub fn publish(&self) {
        self.sign(&[
            "repo",
            "publish",
            "--repo",
            &self.root_dir(),
            "--key",
            &self.key("targets"),
            "--key",
            &self.key("snapshot"),
            "--key",
            &self.key("timestamp"),
        ]);
    }
}

/// Size of a simulated slot file.
pub const SLOT_SIZE: usize = 512 * 1024;

/// A health check that passes when the booted rootfs starts with `GOOD`.
pub const HEALTH_GOOD_MARKER: &str =
    r#"command = ["sh", "-c", "head -c 4 \"$OTA_SLOT_ROOTFS\" | grep -q GOOD"]"#;

/// A simulated A/B device: slot files, the `file` bootloader, its own state directory.
pub struct SimDevice {
    dir: PathBuf,
}

impl SimDevice {
    /// A device in `dir` whose slot A holds `factory` (version 1.0.0). `extra` is appended to
    /// updater.toml (sections such as `[repository]` or `[daemon]`). Not booted yet.
    pub fn new(dir: &Path, trusted_pub: &Path, factory: &[u8], extra: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let device = SimDevice {
            dir: dir.to_owned(),
        };
        let mut a = factory.to_vec();
        a.resize(SLOT_SIZE, 0);
        fs::write(device.path("slot-a.rootfs"), a).unwrap();
        fs::write(device.path("slot-b.rootfs"), vec![0u8; SLOT_SIZE]).unwrap();
        fs::copy(trusted_pub, device.path("vendor.pub")).unwrap();
        fs::write(
            device.path("updater.toml"),
            format!(
                r#"product = "acme-router"
state_dir = "state"
factory_version = "1.0.0"
reboot_command = ["true"]

[slots.A]
rootfs = "slot-a.rootfs"

[slots.B]
rootfs = "slot-b.rootfs"

[bootloader]
backend = "file"
path = "bootloader.json"

[trust]
keys = ["vendor.pub"]

[health_check]
{HEALTH_GOOD_MARKER}

{extra}
"#
            ),
        )
        .unwrap();
        device
    }

    /// The `[repository]` section for `url`, trusting `root` (copied into the device).
    pub fn repository_section(&self, url: &str, root: &Path) -> String {
        fs::copy(root, self.path("root.json")).unwrap();
        format!("[repository]\nurl = \"{url}\"\nroot = \"root.json\"\n")
    }

    /// A file of the device directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.path("updater.toml")
    }

    /// Runs `ota-update --config ... ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("ota-update"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ota-update {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and requires exit code `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: u8) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(i32::from(code)),
            "ota-update {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs a `--json` command and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Power on: the simulated bootloader picks a slot, then `ota-update boot` runs (its
    /// exit code is returned: 0, or 11 for a failed health check).
    pub fn power_on(&self) -> Option<i32> {
        self.ok(&["simulate-boot"]);
        self.run(&["boot"]).status.code()
    }

    /// A slot file's bytes.
    pub fn slot(&self, slot: &str) -> Vec<u8> {
        fs::read(self.path(&format!("slot-{}.rootfs", slot.to_lowercase()))).unwrap()
    }

    /// The bootloader file's bytes.
    pub fn bootloader(&self) -> Vec<u8> {
        fs::read(self.path("bootloader.json")).unwrap_or_default()
    }
}
