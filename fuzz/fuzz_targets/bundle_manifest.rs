//! Bundle header, manifest and signature block, then the payload of a bundle whose signature
//! verifies.
//!
//! - Input starting with the bundle magic: `Header::decode` (its re-encoding must give the same
//!   24 bytes), `read_unverified` (what `ota-sign inspect` shows of an untrusted file), then
//!   `BundleReader::open` against the fixture bundle key and, when that succeeds (a seed bundle
//!   with a mutated payload), `stream_payload` checking every image (chunk hashes, zstd, image
//!   hashes; deltas without a base).
//! - Any other input: `Manifest::parse` on it (JSON manifest seeds).
//!
//! A manifest that parses must serialise to bytes that parse to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::bundle::{
    read_unverified, BundleReader, Header, ImageAction, Manifest, TrustPolicy, HEADER_LEN, MAGIC,
};
use ota_fuzz::bundle_public;
use std::sync::OnceLock;

fn trust() -> &'static TrustPolicy {
    static CELL: OnceLock<TrustPolicy> = OnceLock::new();
    CELL.get_or_init(|| TrustPolicy::new(vec![bundle_public()], 1).expect("policy"))
}

fn round_trips(manifest: &Manifest) {
    let again = Manifest::parse(&manifest.to_bytes()).expect("a parsed manifest re-parses");
    assert_eq!(&again, manifest, "manifest changed through to_bytes/parse");
}

fuzz_target!(|data: &[u8]| {
    if !data.starts_with(&MAGIC) {
        if let Ok(manifest) = Manifest::parse(data) {
            round_trips(&manifest);
        }
        return;
    }
    if let Some(head) = data.get(..HEADER_LEN) {
        let head: &[u8; HEADER_LEN] = head.try_into().expect("24 bytes");
        if let Ok(header) = Header::decode(head) {
            assert_eq!(&header.encode(), head, "header re-encodes differently");
        }
    }
    if let Ok((manifest, _)) = read_unverified(data) {
        round_trips(&manifest);
    }
    if let Ok(reader) = BundleReader::open(data, trust()) {
        round_trips(reader.manifest());
        let _ = reader.stream_payload(|_, _| Ok(ImageAction::Check), &|_| {});
    }
});
