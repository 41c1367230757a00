//! Writes the hostile signed delta bundles of `tests/support/hostile.rs` into a directory, for
//! `bench/install-rss.sh` (peak memory of `ota-sign verify` and `ota-update install` on them):
//!
//! ```text
//! cargo run --release -p ota-core --example hostile_bundles -- KEY BASE PRODUCT VERSION OUT_DIR
//! ```
//!
//! KEY signs (PKCS#8 PEM), BASE is the exact base the deltas name (the device's running slot).
//! Writes `oplist-bomb.bundle` (4,194,304 operations: needs an image slot of 4 MiB),
//! `control-bomb.bundle` (one 2 MiB bsdiff operation with 1.4 million empty control triples),
//! `zero-op.bundle` (a 2^63-byte zero operation in a 1 MiB image) and `zero-image.bundle` (a
//! 2^63-byte image of zeros), `max-window.bundle`: the most memory operations may take (two
//! `zstd_ref` operations with 8 MiB windows: BASE must be 8 MiB or more), and
//! `max-memory.bundle`: the same after an op list needing the largest zstd window (4 MiB) from
//! a compressed list near its 1 MiB bound, and `max-lzma.bundle`: one 2 MiB bsdiff operation
//! whose LZMA2 data decompresses to the largest patch a reader accepts, and `max-xz.bundle`
//! with its own base `max-xz.base`: the most memory an `xz` operation may take.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/hostile.rs"]
mod hostile;

use ota_core::keys::SigningKey;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, base, product, version, out] = &args[..] else {
        eprintln!("usage: hostile_bundles KEY BASE PRODUCT VERSION OUT_DIR");
        std::process::exit(2);
    };
    let key = SigningKey::from_file(&PathBuf::from(key)).unwrap();
    let base = std::fs::read(base).unwrap();
    let out = PathBuf::from(out);
    let target = |image_size| hostile::Target {
        product,
        version,
        base: &base,
        image_size,
    };
    let count = 1 << 22;
    let bundles = [
        (
            "oplist-bomb.bundle",
            hostile::op_list_bomb(&key, &target(count), count),
        ),
        (
            "control-bomb.bundle",
            hostile::control_triple_bomb(&key, &target(2 << 20), 2 << 20),
        ),
        (
            "zero-op.bundle",
            hostile::huge_zero_op(&key, &target(1 << 20), 1 << 63),
        ),
        (
            "zero-image.bundle",
            hostile::huge_zero_op(&key, &target(1 << 63), 1 << 63),
        ),
        (
            "max-window.bundle",
            hostile::max_window_op(&key, &base, product, version),
        ),
        (
            "max-memory.bundle",
            hostile::max_memory(&key, &base, product, version),
        ),
        (
            "max-lzma.bundle",
            hostile::max_lzma_op(&key, &base, product, version),
        ),
    ];
    for (name, bytes) in bundles {
        std::fs::write(out.join(name), bytes).unwrap();
    }
    let (xz_base, xz_bundle) = hostile::max_xz_op(&key, product, version);
    std::fs::write(out.join("max-xz.base"), xz_base).unwrap();
    std::fs::write(out.join("max-xz.bundle"), xz_bundle).unwrap();
}
