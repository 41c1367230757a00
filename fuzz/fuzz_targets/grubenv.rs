//! The GRUB environment block (`GrubEnv::parse`, `to_bytes`, `set`, `unset`), which the
//! updater reads and rewrites in place on every boot-state change.
//!
//! Input: a block (used as is when it is 1024 bytes, else cut or padded with `#` to 1024 after
//! the real parse of the raw bytes), then, after a NUL, `NAME=VALUE` edits separated by NULs.
//! Properties: a parsed block encodes (never larger than 1024 bytes, since escapes only
//! shrink) to a block that parses to the same environment; after a successful `set` and
//! encode, the variable reads back with its value; after `unset` it is gone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_updater::bootloader::grubenv::{GrubEnv, GRUBENV_SIZE};

fuzz_target!(|data: &[u8]| {
    let (block, edits) = match data.iter().position(|&b| b == 0) {
        Some(at) if data.len() > GRUBENV_SIZE && at >= GRUBENV_SIZE => {
            (&data[..GRUBENV_SIZE], &data[GRUBENV_SIZE + 1..])
        }
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let _ = GrubEnv::parse(block);
    let mut fitted = block[..block.len().min(GRUBENV_SIZE)].to_vec();
    fitted.resize(GRUBENV_SIZE, b'#');
    let Ok(mut env) = GrubEnv::parse(&fitted) else {
        return;
    };
    let encoded = env.to_bytes().expect("a parsed block fits again");
    assert_eq!(encoded.len(), GRUBENV_SIZE);
    let again = GrubEnv::parse(&encoded).expect("an encoded block parses");
    assert_eq!(again, env, "environment changed through to_bytes/parse");

    for edit in edits.split(|&b| b == 0).take(16) {
        let text = String::from_utf8_lossy(edit);
        match text.split_once('=') {
            Some((name, value)) => {
                if env.set(name, value).is_err() {
                    continue;
                }
                assert_eq!(env.get(name), Some(value));
                if let Ok(bytes) = env.to_bytes() {
                    let back = GrubEnv::parse(&bytes).expect("an encoded block parses");
                    assert_eq!(back.get(name), Some(value), "{name} lost its value");
                    assert_eq!(back, env);
                }
            }
            None => {
                env.unset(&text);
                assert_eq!(env.get(&text), None);
            }
        }
    }
});
