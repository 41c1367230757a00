//! The exit codes of every OTA command (`ota-sign`, `ota-server`, `ota-update`): one table.
//!
//! Scripts and CI pipelines act on these numbers: never renumber, only add. Each command uses
//! the subset that can happen to it; docs/ lists them per command, with what each means there
//! (`ota-sign`: docs/bundle-format.md and docs/signing-in-ci.md; `ota-server`: docs/server.md;
//! `ota-update`: docs/updater.md).
//!
//! | code | constant | meaning |
//! |---:|---|---|
//! | 0 | [`OK`] | success |
//! | 1 | [`FAILURE`] | any other failure |
//! | 2 | [`USAGE`] | bad arguments, configuration or key file contents |
//! | 3 | [`IO`] | a file, slot, device or socket could not be read or written |
//! | 4 | [`SIGNATURE`] | signatures invalid, missing, untrusted or below the threshold |
//! | 5 | [`CORRUPT`] | corrupt or truncated input, a hash or length mismatch |
//! | 6 | [`UNSUPPORTED`] | format version or payload kind not supported |
//! | 7 | [`INCOMPATIBLE`] | not for this device or this base (also `ota-sign`'s wrong delta base) |
//! | 8 | [`DOWNGRADE`] | version not newer than the booted one |
//! | 9 | [`BUSY`] | another updater process is running |
//! | 10 | [`REFUSED`] | not possible in the current state |
//! | 11 | [`HEALTH_CHECK`] | the health check failed |
//! | 12 | [`NETWORK`] | a download failed (unreachable, HTTP error, too much data, too slow) |
//! | 13 | [`EXPIRED`] | repository metadata expired |
//! | 14 | [`METADATA`] | repository metadata refused (rollback, mix-and-match, length or hash) |
//!
//! The constants are `u8` for `std::process::ExitCode::from`; tests comparing with
//! `ExitStatus::code()` use `i32::from(exit::X)`.

/// Success.
pub const OK: u8 = 0;
/// Any other failure.
pub const FAILURE: u8 = 1;
/// Bad arguments, configuration or key file contents (clap's own usage errors are also 2).
pub const USAGE: u8 = 2;
/// A file, slot, device or socket could not be read or written.
pub const IO: u8 = 3;
/// Signatures invalid, missing, from untrusted keys or below the threshold (bundles and
/// repository metadata).
pub const SIGNATURE: u8 = 4;
/// Corrupt or truncated input: a bundle, a chunk or image hash mismatch, a written image that
/// failed its read-back check, a download that differs from its signed length or hash, a
/// repository's unreadable metadata.
pub const CORRUPT: u8 = 5;
/// Bundle format version or payload kind not supported.
pub const UNSUPPORTED: u8 = 6;
/// Not for this device: another product, images that do not fit the slots, a delta whose base
/// is not the image it was made from (`ota-sign verify --base` too).
pub const INCOMPATIBLE: u8 = 7;
/// Bundle version not newer than the booted one.
pub const DOWNGRADE: u8 = 8;
/// Another updater process is running (lock held).
pub const BUSY: u8 = 9;
/// Not possible in the current state (e.g. rollback to a slot without a verified image).
pub const REFUSED: u8 = 10;
/// The health check failed (`ota-update boot`).
pub const HEALTH_CHECK: u8 = 11;
/// A download failed: unreachable server, HTTP error, too much data, too slow.
pub const NETWORK: u8 = 12;
/// Repository metadata expired (freeze attack, or a repository nobody refreshes).
pub const EXPIRED: u8 = 13;
/// Repository metadata refused: rollback of a version, mix-and-match, length or hash
/// mismatch with what the signed metadata lists.
pub const METADATA: u8 = 14;

/// The class of an exit code: the `class` of an error in JSON (`"signature"`, `"corrupt"`...).
pub fn class_name(code: u8) -> &'static str {
    match code {
        OK => "ok",
        USAGE => "usage",
        IO => "io",
        SIGNATURE => "signature",
        CORRUPT => "corrupt",
        UNSUPPORTED => "unsupported",
        INCOMPATIBLE => "incompatible",
        DOWNGRADE => "downgrade",
        BUSY => "busy",
        REFUSED => "refused",
        HEALTH_CHECK => "health_check",
        NETWORK => "network",
        EXPIRED => "expired",
        METADATA => "metadata",
        _ => "failure",
    }
}

/// Reports a failed command: `PROGRAM: error: MESSAGE` on standard error, and when `--json` is
/// among the arguments also `{"error": {"class", "exit_code", "message"}}` as one line on
/// standard output, where a script reading the command's JSON looks.
pub fn report_error(program: &str, code: u8, message: &str) {
    eprintln!("{program}: error: {message}");
    if std::env::args_os().skip(1).any(|a| a == "--json") {
        let error = serde_json::json!({
            "error": {"class": class_name(code), "exit_code": code, "message": message}
        });
        println!("{error}");
    }
}

/// Makes a closed standard output end the process quietly with exit 0. A reader that stops
/// early (`ota-sign repo list | head -1`) closes the pipe: printing then fails with EPIPE, which
/// `println!` turns into a panic. That is the reader's choice, not an error: no message, no
/// backtrace. Any other panic is reported as before. Called first thing by each binary.
pub fn end_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(OK));
        }
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers are an interface: this test fails if one is changed.
    #[test]
    fn codes_are_never_renumbered() {
        let table = [
            OK,
            FAILURE,
            USAGE,
            IO,
            SIGNATURE,
            CORRUPT,
            UNSUPPORTED,
            INCOMPATIBLE,
            DOWNGRADE,
            BUSY,
            REFUSED,
            HEALTH_CHECK,
            NETWORK,
            EXPIRED,
            METADATA,
        ];
        let expected: Vec<u8> = (0..=14).collect();
        assert_eq!(table.to_vec(), expected);
    }
}
