//! The U-Boot environment, single and redundant: blocks (`UbootEnv::from_block`, CRC, flags,
//! data area), two copies on a device (`UbootEnv::read` and `probe` choosing the active copy as
//! U-Boot does, then `write`), `fw_env.config` (`UbootEnvConfig::parse_fw_env_config`) and the
//! default environment text (`UbootEnv::parse_text`).
//!
//! Input: a mode byte, then — 0: a single block; 1: a redundant block; 2: a u16 copy size and
//! two redundant copies, written to a file in a tmpfs directory; 3: fw_env.config text; 4:
//! default environment text. Properties: a decoded block re-encodes (when it fits) to one that
//! decodes to the same variables and flags; after `write` on two copies, `read` returns what
//! was written, from the other copy; a parsed fw_env.config prints to text that parses to the
//! same configuration; a parsed default environment survives encode/parse of its data area.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_updater::bootloader::ubootenv::{UbootEnv, UbootEnvConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temporary directory")
    })
    .path()
}

fn block_round_trip(block: &[u8], redundant: bool) {
    let Ok((env, flags)) = UbootEnv::from_block(block, redundant) else {
        return;
    };
    if let Ok(again) = env.to_block(block.len(), flags) {
        assert_eq!(again.len(), block.len());
        let (back, back_flags) = UbootEnv::from_block(&again, redundant).expect("re-encoded block");
        assert_eq!(back, env, "variables changed through to_block/from_block");
        assert_eq!(back_flags, flags);
    }
}

fn two_copies(size: usize, copies: &[u8]) {
    if !(6..=1 << 16).contains(&size) || copies.len() < 2 * size {
        return;
    }
    let path: PathBuf = dir().join("env.img");
    std::fs::write(&path, &copies[..2 * size]).expect("write copies");
    let config = UbootEnvConfig::redundant((path.clone(), 0), (path.clone(), size as u64), size);
    let _ = UbootEnv::probe(&config);
    let Ok(env) = UbootEnv::read(&config) else {
        return;
    };
    let before = std::fs::read(&path).expect("read copies");
    if env.write(&config).is_ok() {
        assert_eq!(UbootEnv::read(&config).expect("read after write"), env);
        let after = std::fs::read(&path).expect("read copies");
        // Exactly one copy was rewritten: the one that was not active.
        let changed = [0, 1]
            .iter()
            .filter(|&&i| before[i * size..(i + 1) * size] != after[i * size..(i + 1) * size])
            .count();
        assert!(changed <= 1, "write changed both copies");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => block_round_trip(rest, false),
        1 => block_round_trip(rest, true),
        2 => {
            let size = rest
                .get(..2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
            two_copies(size, rest.get(2..).unwrap_or(&[]));
        }
        3 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(config) = UbootEnvConfig::parse_fw_env_config(&text) {
                if let Ok(printed) = config.to_fw_env_config() {
                    let again = UbootEnvConfig::parse_fw_env_config(&printed)
                        .expect("printed fw_env.config parses");
                    assert_eq!(again, config, "fw_env.config changed through print/parse");
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(env) = UbootEnv::parse_text(&text, Path::new("u-boot-initial-env")) {
                let data = env
                    .encode_data(text.len() + 2)
                    .expect("fits in its own text");
                assert_eq!(
                    UbootEnv::parse_data(&data).expect("encoded data parses"),
                    env
                );
            }
        }
    }
});
