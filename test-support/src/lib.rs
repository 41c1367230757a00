//! What the integration tests share, instead of copying it per test file: the paths of the
//! built binaries and reference tools, firmware-like image generators, bundles signed in
//! process, a vendor TUF repository made with the real `ota-sign repo`, `ota-server` on a
//! loopback port, the simulated device's updater.toml, and simulated A/B devices (slot files
//! and the `file` bootloader) driven through the real `ota-update` CLI.
//!
//! Everything panics with the command and its stderr on failure: these are test fixtures.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod cli_docs;

use ota_core::bundle::{build_bundle, BuildOptions, ImageInput};
use ota_core::keys::SigningKey;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A firmware-like image of `len` bytes: `marker` first (health checks read it), then letters
/// `a` to `k` from a seeded generator (compressible, different per seed).
pub fn image(marker: &str, len: usize, seed: u32) -> Vec<u8> {
    seeded_image(marker, len, seed, |x| b'a' + (x % 11) as u8)
}

/// Like [`image`], but a quarter of the bytes after `marker` are raw generator bytes and the
/// rest letters `a` to `g`: moderately compressible. Other bytes than [`image`] for the same
/// arguments.
pub fn image_with_bytes(marker: &str, len: usize, seed: u32) -> Vec<u8> {
    seeded_image(marker, len, seed, |x| {
        if x % 4 == 0 {
            (x >> 8) as u8
        } else {
            b'a' + (x % 7) as u8
        }
    })
}

/// `marker`, then one `byte(x)` per step of a xorshift32 generator seeded from `seed`, cut to
/// `len` bytes.
fn seeded_image(marker: &str, len: usize, seed: u32, byte: impl Fn(u32) -> u8) -> Vec<u8> {
    let mut out = marker.as_bytes().to_vec();
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(byte(x));
    }
    out.truncate(len);
    out
}

/// Signs, in process, a full bundle of one `rootfs` image for `product` release `version` with
/// `key` into `out`: creation time 0 (reproducible), zstd level 3, `chunk_size`-byte chunks.
pub fn sign_rootfs_bundle(
    key: &SigningKey,
    product: &str,
    version: &str,
    rootfs: &[u8],
    chunk_size: u32,
    out: &Path,
) {
    sign_rootfs_bundle_from(key, product, version, rootfs, None, chunk_size, out);
}

/// [`sign_rootfs_bundle`], as a delta from the image in `base` when given.
pub fn sign_rootfs_bundle_from(
    key: &SigningKey,
    product: &str,
    version: &str,
    rootfs: &[u8],
    base: Option<&Path>,
    chunk_size: u32,
    out: &Path,
) {
    let options = BuildOptions {
        product: product.into(),
        version: semver::Version::parse(version).unwrap(),
        created: 0,
        chunk_size,
        zstd_level: 3,
        temp_dir: out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
        provenance: None,
        delta_format: ota_core::delta::DELTA_FORMAT_LATEST,
        xz_content: false,
    };
    let images = vec![ImageInput {
        name: "rootfs".into(),
        reader: Box::new(std::io::Cursor::new(rootfs.to_vec())),
        base: base.map(|b| fs::File::open(b).unwrap()),
    }];
    build_bundle(
        &options,
        images,
        std::slice::from_ref(key),
        &mut tempfile::tempfile().unwrap(),
        &mut fs::File::create(out).unwrap(),
        &|_| {},
    )
    .unwrap();
}

/// A reference tool found in PATH (an oracle such as `fw_printenv` or `grub-editenv`), or a
/// panic naming the Debian package that provides it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: this test needs it as an oracle. Install the Debian \
                 package `{package}` (scripts/install-deps.sh does)."
            )
        })
}

/// A loopback TCP port that was free when asked (another process may take it before it is
/// used: for a port nothing listens on, or a server that retries).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Requires the output of `ota-update ARGS` to be a failure with exit code `code` and an error
/// of exactly one line; returns that error (stderr).
pub fn expect_one_line_error(out: &Output, args: &[&str], code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "ota-update {args:?}: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    stderr
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
    /// `http://127.0.0.1:PORT` (`https://` with `--tls-cert`).
    pub base: String,
}

impl Server {
    /// Starts `ota-server serve --repo DIR --listen 127.0.0.1:0` with `extra` arguments (such
    /// as `--access-log off` or `--tls-cert`), and waits until it listens. Its standard output
    /// is discarded; its standard error is drained after the first line.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(bin("ota-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        // "ota-server: serving DIR on http://ADDR"
        let base = match line.trim_end().rsplit_once(" on ") {
            Some((_, url)) if url.starts_with("http://") || url.starts_with("https://") => {
                url.to_owned()
            }
            _ => panic!("ota-server did not say where it serves: {line:?}"),
        };
        // Keep draining its standard error so a later message never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server { child, base }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        let (_, addr) = self.base.split_once("://").unwrap();
        addr.parse()
            .unwrap_or_else(|_| panic!("no address in {:?}", self.base))
    }

    /// Its process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to exit (after a signal) and returns how it exited.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
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
        let repo = Repo::with_keys(dir, &[]);
        repo.init(&[], None);
        repo
    }

    /// Makes a key per role (`root`, `targets`, `snapshot`, `timestamp`, `bundle`) and one per
    /// name of `extra` in `dir/keys` (created); no repository yet (see [`Repo::init`]).
    pub fn with_keys(dir: &Path, extra: &[&str]) -> Self {
        fs::create_dir_all(dir.join("keys")).unwrap();
        let repo = Repo {
            dir: dir.to_owned(),
        };
        for role in ["root", "targets", "snapshot", "timestamp", "bundle"]
            .iter()
            .chain(extra)
        {
            repo.sign(&["keygen", "-o", &repo.key(role)]);
        }
        repo
    }

    /// `ota-sign repo init` with one key per role, `extra` arguments (more keys, thresholds,
    /// `--expires`), and `SOURCE_DATE_EPOCH=epoch` when given.
    pub fn init(&self, extra: &[&str], epoch: Option<u64>) {
        let root = self.root_dir();
        let (root_key, targets_key) = (self.key("root"), self.key("targets"));
        let (snapshot_key, timestamp_key) = (self.key("snapshot"), self.key("timestamp"));
        let mut args = vec![
            "repo",
            "init",
            "--repo",
            &root,
            "--root-key",
            &root_key,
            "--targets-key",
            &targets_key,
            "--snapshot-key",
            &snapshot_key,
            "--timestamp-key",
            &timestamp_key,
        ];
        args.extend_from_slice(extra);
        self.sign_at(&args, epoch);
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

    /// Path of a metadata file of the repository (`1.root.json`, `timestamp.json`, ...).
    pub fn metadata(&self, name: &str) -> PathBuf {
        self.dir.join("repo/metadata").join(name)
    }

    /// Runs `ota-sign` (no SOURCE_DATE_EPOCH: real time).
    pub fn sign(&self, args: &[&str]) -> String {
        self.sign_at(args, None)
    }

    /// Runs `ota-sign` with `SOURCE_DATE_EPOCH=epoch` (its "now"), or real time for `None`.
    pub fn sign_at(&self, args: &[&str], epoch: Option<u64>) -> String {
        let mut cmd = Command::new(bin("ota-sign"));
        cmd.args(args).env_remove("CI");
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e.to_string()),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        run_ok(&mut cmd)
    }

    /// Signs a full bundle of one `rootfs` image with the bundle key; returns its path.
    pub fn bundle(&self, product: &str, version: &str, rootfs: &[u8]) -> PathBuf {
        let img = self.dir.join(format!("{product}-{version}.rootfs"));
        fs::write(&img, rootfs).unwrap();
        self.bundle_images(product, version, &[("rootfs", &img)])
    }

    /// Signs a full bundle of `images` (name, file) with the bundle key into
    /// `PRODUCT-VERSION.bundle`; returns its path.
    pub fn bundle_images(&self, product: &str, version: &str, images: &[(&str, &Path)]) -> PathBuf {
        let bundle = self.dir.join(format!("{product}-{version}.bundle"));
        let specs: Vec<String> = images
            .iter()
            .map(|(name, path)| format!("{name}={}", path.display()))
            .collect();
        let (key, out) = (self.key("bundle"), bundle.display().to_string());
        let mut args = vec!["bundle", "--product", product, "--version", version];
        for spec in &specs {
            args.extend(["--image", spec.as_str()]);
        }
        args.extend(["--key", &key, "-o", &out]);
        self.sign(&args);
        bundle
    }

    /// `ota-sign repo add` of `bundle` with `extra` arguments (`--channel`, `--trusted`, ...).
    pub fn add(&self, bundle: &Path, extra: &[&str]) {
        let (root, bundle) = (self.root_dir(), bundle.display().to_string());
        let mut args = vec!["repo", "add", "--repo", &root];
        args.extend_from_slice(extra);
        args.push(&bundle);
        self.sign(&args);
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
        let trusted = self.bundle_pub().display().to_string();
        self.add(&bundle, &["--trusted", &trusted, "--channel", channel]);
        name
    }

    /// Signs targets, snapshot and timestamp with their keys (vendor CI + online roles).
    pub fn publish(&self) {
        self.publish_with(&["targets", "snapshot", "timestamp"], None);
    }

    /// `ota-sign repo publish` with the keys of `roles` (key names, as for [`Repo::key`]) and
    /// `SOURCE_DATE_EPOCH=epoch` when given.
    pub fn publish_with(&self, roles: &[&str], epoch: Option<u64>) {
        let root = self.root_dir();
        let keys: Vec<String> = roles.iter().map(|role| self.key(role)).collect();
        let mut args = vec!["repo", "publish", "--repo", &root];
        for key in &keys {
            args.extend(["--key", key.as_str()]);
        }
        self.sign_at(&args, epoch);
    }
}

/// Size of a simulated slot file.
pub const SLOT_SIZE: usize = 512 * 1024;

/// A health check that passes when the booted rootfs starts with `GOOD`.
pub const HEALTH_GOOD_MARKER: &str =
    r#"command = ["sh", "-c", "head -c 4 \"$OTA_SLOT_ROOTFS\" | grep -q GOOD"]"#;

/// The `[bootloader]` lines of the `file` backend (`bootloader.json` beside the configuration).
pub const FILE_BOOTLOADER: &str = "backend = \"file\"\npath = \"bootloader.json\"";

/// A simulated device's updater.toml: product `acme-router`, factory version 1.0.0, state in
/// `state/`, slots A and B in `slot-a.rootfs` and `slot-b.rootfs`, `vendor.pub` trusted;
/// `bootloader` and `health_check` are the lines of those sections. It ends inside
/// `[health_check]`: append its further keys, then other sections.
pub fn updater_toml(bootloader: &str, health_check: &str) -> String {
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
{bootloader}

[trust]
keys = ["vendor.pub"]

[health_check]
{health_check}
"#
    )
}

/// The entry of slot `name` in the output of `ota-update status --json`.
pub fn slot_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no slot {name} in {status:#}"))
}

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
        device.write_config(extra);
        device
    }

    /// (Re)writes updater.toml: the `file` bootloader, the `GOOD` health check, then `extra`.
    pub fn write_config(&self, extra: &str) {
        let base = updater_toml(FILE_BOOTLOADER, HEALTH_GOOD_MARKER);
        fs::write(self.config(), format!("{base}\n{extra}\n")).unwrap();
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
            .env_remove("CI")
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

// ---------------------------------------------------------------- nginx

/// nginx serving a directory with its own configuration in a temporary prefix: one process
/// (`master_process off`, so it keeps the current user and is stopped by killing its id),
/// logs in the prefix.
pub struct Nginx {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx serving `root` with the server block of docs/repository.md.
    pub fn start(root: &Path) -> Self {
        let prefix = tempfile::tempdir().unwrap();
        let exe = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nginx");
        // The free port is found by binding and releasing it; another process may take it in
        // between, so a bind failure is retried with a new port.
        for _ in 0..5 {
            let port = free_port();
            let conf = prefix.path().join("nginx.conf");
            fs::write(&conf, nginx_conf(prefix.path(), root, port)).unwrap();
            let mut child = Command::new(exe)
                .args(["-p", path_arg(prefix.path()), "-c", path_arg(&conf)])
                .args(["-e", path_arg(&prefix.path().join("error.log"))])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run nginx ({e}): install the Debian package nginx")
                });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        prefix,
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    let log =
                        fs::read_to_string(prefix.path().join("error.log")).unwrap_or_default();
                    assert!(
                        log.contains("Address already in use"),
                        "nginx exited ({status}):\n{log}"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen on {port} within 10 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx found no free port in 5 attempts");
    }

    /// Status line and `Cache-Control` of a HEAD request for `path`.
    pub fn head(&self, path: &str) -> (String, Option<String>) {
        use std::io::Read;
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "HEAD {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let mut lines = reply.lines();
        let status = lines.next().unwrap_or_default().to_owned();
        let cache_control = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("cache-control"))
            .map(|(_, v)| v.trim().to_owned());
        (status, cache_control)
    }

    /// nginx's access log so far.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.prefix.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx.conf for a repository at `root` on `port`: the server block of docs/repository.md
/// (without TLS), logs and temporary files in `prefix`.
pub fn nginx_conf(prefix: &Path, root: &Path, port: u16) -> String {
    let p = prefix.display();
    format!(
        r#"daemon off;
master_process off;
pid "{p}/nginx.pid";
error_log "{p}/error.log";
events {{ worker_connections 64; }}
http {{
    access_log "{p}/access.log";
    client_body_temp_path "{p}/client_body";
    proxy_temp_path "{p}/proxy";
    fastcgi_temp_path "{p}/fastcgi";
    uwsgi_temp_path "{p}/uwsgi";
    scgi_temp_path "{p}/scgi";
    types {{ application/json json; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root "{root}";
        # The server block of docs/repository.md, "Serving with nginx" (without TLS).
        etag on;
        location ~ /\. {{ deny all; }}
        location = /metadata/timestamp.json {{
            add_header Cache-Control "public, max-age=10, must-revalidate";
        }}
        location ~ "^/metadata/[0-9]+\.[^/]+\.json$" {{
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
        location ~ "^/targets/[0-9a-f]{{64}}\.[^/]+$" {{
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
        location / {{
            add_header Cache-Control "public, max-age=60, must-revalidate";
        }}
    }}
}}
"#,
        root = root.display()
    )
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}
