//! The man pages and bash/zsh/fish completions that build.rs generates from `ota-sign`'s
//! command line (ota_test_support::cli_docs: each page renders without warnings, each
//! completion parses), and the values the build script stands in for are ota-core's.

use ota_test_support::cli_docs::check_cli_docs;
use std::path::Path;

const PAGES: &[&str] = &[
    "ota-sign",
    "ota-sign-keygen",
    "ota-sign-key",
    "ota-sign-key-public",
    "ota-sign-bundle",
    "ota-sign-verify",
    "ota-sign-inspect",
    "ota-sign-repo",
    "ota-sign-repo-init",
    "ota-sign-repo-add",
    "ota-sign-repo-remove",
    "ota-sign-repo-list",
    "ota-sign-repo-publish",
    "ota-sign-repo-refresh-timestamp",
    "ota-sign-repo-rotate",
    "ota-sign-repo-delegate",
    "ota-sign-repo-doctor",
    "ota-sign-rollout",
    "ota-sign-rollout-init",
    "ota-sign-rollout-start",
    "ota-sign-rollout-pause",
    "ota-sign-rollout-resume",
    "ota-sign-rollout-pull",
    "ota-sign-rollout-status",
    "ota-sign-fleet",
    "ota-sign-fleet-report",
];

#[test]
fn man_pages_and_completions_of_ota_sign() {
    let pages = check_cli_docs(Path::new(env!("OUT_DIR")), "ota-sign", PAGES);
    let bundle = &pages["ota-sign-bundle"];
    // build.rs stands in for ota-core's default compression level: the same one.
    let level = format!("[default: {}]", ota_core::bundle::DEFAULT_ZSTD_LEVEL);
    assert!(bundle.contains(&level), "{level} missing:\n{bundle}");
    assert!(pages["ota-sign-keygen"].contains("ecdsa-p256"));
}
