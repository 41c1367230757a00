//! The integrator's kit, as shipped files: the example configurations of an x86 GRUB board and
//! an ARM U-Boot board (with its `fw_env.config`) load in the updater's own parser, and the
//! SysV/BusyBox init script gives the boot verdict, then runs the daemon and stops it — run with
//! the real `ota-update` on a simulated device, under Debian's `sh` and `start-stop-daemon` and
//! under BusyBox's `sh` and `start-stop-daemon` applets.

#![allow(clippy::unwrap_used)]

use ota_test_support::{bin, image, SimDevice};
use ota_updater::config::Config;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn kit(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Loads an example configuration as the device would, with its files under `root` instead of
/// `/`: the trusted key, the repository root, fw_env.config (the shipped one), the U-Boot
/// default environment.
fn load_example(name: &str, root: &Path) -> Config {
    let etc = root.join("etc");
    fs::create_dir_all(etc.join("ota/keys")).unwrap();
    let key = ota_core::keys::SigningKey::generate()
        .verifying_key()
        .to_pem();
    fs::write(etc.join("ota/keys/release.pub"), key).unwrap();
    fs::write(etc.join("ota/root.json"), "{}").unwrap();
    fs::copy(kit("examples/fw_env.config"), etc.join("fw_env.config")).unwrap();
    fs::write(etc.join("u-boot-initial-env"), "bootdelay=2\n").unwrap();
    let text = fs::read_to_string(kit(&format!("examples/{name}"))).unwrap();
    let text = text.replace("\"/etc/", &format!("\"{}/", etc.display()));
    Config::parse(&text, &etc.join("ota/updater.toml"))
        .unwrap_or_else(|e| panic!("examples/{name}: {e}"))
}

#[test]
fn example_configurations_load() {
    let dir = tempfile::tempdir().unwrap();
    let grub = load_example("x86-grub-board.toml", &dir.path().join("x86"));
    assert_eq!(grub.product, "acme-gateway-x86");
    // The U-Boot board reads its environment's copies from the shipped fw_env.config.
    let uboot = load_example("arm-uboot-board.toml", &dir.path().join("arm"));
    assert_eq!(uboot.product, "acme-router-r2");
    let copies = ota_updater::bootloader::ubootenv::UbootEnvConfig::parse_fw_env_config(
        &fs::read_to_string(kit("examples/fw_env.config")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        format!("{copies:?}").matches("mmcblk0").count(),
        2,
        "{copies:?}"
    );
}

/// The init script with `PATH` giving `sh` and `start-stop-daemon` from `tools`.
fn init_script(
    device: &SimDevice,
    action: &str,
    shell: &str,
    tools: &Path,
    pidfile: &Path,
) -> Output {
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    Command::new(shell)
        .arg(kit("sysvinit/ota-update"))
        .arg(action)
        .env("PATH", path)
        .env("OTA_UPDATE", bin("ota-update"))
        .env("OTA_CONFIG", device.config())
        .env("PIDFILE", pidfile)
        .env_remove("CI")
        .output()
        .unwrap()
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn start_and_stop(shell: &str, tools: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.pub");
    fs::write(
        &key,
        ota_core::keys::SigningKey::generate()
            .verifying_key()
            .to_pem(),
    )
    .unwrap();
    // The daemon polls a repository nothing serves: it keeps running, backing off.
    fs::write(dir.path().join("root.json"), "{}").unwrap();
    let repository = format!(
        "[repository]\nurl = \"http://127.0.0.1:9\"\nroot = {:?}\n",
        dir.path().join("root.json").display().to_string()
    );
    let device = SimDevice::new(
        &dir.path().join("device"),
        &key,
        &image("GOOD 1.0.0", 100_000, 1),
        &repository,
    );
    let pidfile = dir.path().join("ota-update.pid");
    device.ok(&["simulate-boot"]);
    let out = init_script(&device, "start", shell, tools, &pidfile);
    assert!(
        out.status.success(),
        "{shell} start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The verdict was given (the factory slot is steady), and the daemon runs.
    let status = device.json(&["status", "--json"]);
    assert_eq!(status["booted"], "A", "{status}");
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    assert!(alive(&pid), "daemon {pid} is not running");
    // start-stop-daemon writes the pid file, then execs: wait for the exec.
    let exe = || fs::read_link(format!("/proc/{pid}/exe")).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while exe() != Some(bin("ota-update")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(exe(), Some(bin("ota-update")), "process {pid}");
    let out = init_script(&device, "stop", shell, tools, &pidfile);
    assert!(
        out.status.success(),
        "{shell} stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(&pid), "daemon {pid} still runs after stop");
    assert!(!pidfile.exists());
    // Stopping what is not running is not an error.
    assert!(init_script(&device, "stop", shell, tools, &pidfile)
        .status
        .success());
}

#[test]
fn init_script_gives_the_verdict_then_runs_and_stops_the_daemon() {
    // Debian's sh and start-stop-daemon.
    let debian = tempfile::tempdir().unwrap();
    start_and_stop("sh", debian.path());
    // BusyBox's, as on a small device: its applets first in PATH.
    let busybox = ota_test_support::tool("busybox", "busybox");
    let applets = tempfile::tempdir().unwrap();
    for applet in ["sh", "start-stop-daemon", "rm"] {
        std::os::unix::fs::symlink(&busybox, applets.path().join(applet)).unwrap();
    }
    start_and_stop(
        &applets.path().join("sh").display().to_string(),
        applets.path(),
    );
}
