//! The command line of `ota-server` (clap): compiled into the program, and into its build
//! script (build.rs), which writes the man pages and shell completions from it. It uses only
//! clap and std.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serves an update repository directory (TUF metadata and bundles) over HTTP or HTTPS.
///
/// Exit codes: 0 stopped by SIGTERM/SIGINT, 2 usage or configuration, 3 I/O (cannot bind,
/// repository missing).
#[derive(Parser, Debug)]
#[command(name = "ota-server", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve DIR: GET/HEAD, byte ranges, ETag/Last-Modified with conditional GETs, cache
    /// headers by file name, no path escapes.
    Serve {
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// PEM certificate chain: serve HTTPS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The server's own log lines (listening, re-signed, stopped, ...) as JSON objects on
        /// standard error: {"time", "event", "message", ...}; a failure to start as
        /// {"error": {...}} on standard output.
        #[arg(long)]
        json: bool,
        /// Access log file (appended to), `-` for standard output, `off` for none.
        #[arg(long, default_value = "-")]
        access_log: String,
        /// Seconds a client has to send a complete request head.
        #[arg(long, default_value_t = 10)]
        header_timeout: u64,
        /// Seconds after which any connection is closed.
        #[arg(long, default_value_t = 1800)]
        connection_lifetime: u64,
        /// Connections served at once.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Connections one client (an IPv4 address, an IPv6 /64) may hold at once; more are
        /// closed as soon as they are accepted.
        #[arg(long, default_value_t = 32)]
        max_connections_per_peer: usize,
        /// Bytes per second a client must take while a response waits for it, measured over
        /// --send-timeout; slower clients are disconnected (0: no minimum).
        #[arg(long, default_value_t = 1024)]
        min_send_rate: u64,
        /// Seconds over which --min-send-rate is measured: a client that reads nothing is
        /// disconnected 1 to 2.25 times this long after the server's writes blocked.
        #[arg(long, default_value_t = 30)]
        send_timeout: u64,
        /// Online timestamp key: re-sign timestamp.json before it expires. A key reference: a
        /// PEM file, env:NAME, pkcs11:URI or cmd:COMMAND (docs/keys.md).
        #[arg(long)]
        timestamp_key: Option<PathBuf>,
        /// The PKCS#11 module (a .so) `pkcs11:` key references use when the URI has no
        /// `module-path` (default: $OTA_PKCS11_MODULE).
        #[arg(long, value_name = "PATH")]
        pkcs11_module: Option<PathBuf>,
        /// Online snapshot key (a key reference, as --timestamp-key): re-sign the snapshot before it expires and when new
        /// targets metadata was published.
        #[arg(long, requires = "timestamp_key")]
        snapshot_key: Option<PathBuf>,
        /// Seconds between re-signing passes (with --timestamp-key).
        #[arg(long, default_value_t = 60)]
        resign_interval: u64,
    },
}
