//! `ota-server`: serves a static update repository over HTTP(S). Parses arguments, binds,
//! handles signals and maps errors to exit codes; the serving lives in the `ota_server` library.

mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
// Exit codes: the table shared by every OTA command (2 usage or TLS, 3 I/O here).
use ota_core::exit;
use ota_server::access_log::AccessLog;
use ota_server::resolve::canonical_root;
use ota_server::serve::{self, Settings};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    ota_core::exit::end_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            ota_core::exit::report_error("ota-server", code, &format!("{e:#}"));
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), (u8, anyhow::Error)> {
    let Command::Serve {
        repo,
        listen,
        tls_cert,
        tls_key,
        access_log,
        header_timeout,
        connection_lifetime,
        max_connections,
        max_connections_per_peer,
        min_send_rate,
        send_timeout,
        timestamp_key,
        snapshot_key,
        resign_interval,
        json,
        pkcs11_module,
    } = cli.command;
    ota_server::set_json_log(json);
    let root = canonical_root(&repo)
        .with_context(|| format!("repository {}", repo.display()))
        .map_err(|e| (exit::IO, e))?;
    let mut settings = Settings::new(root.clone());
    settings.header_timeout = Duration::from_secs(header_timeout.max(1));
    settings.connection_lifetime = Duration::from_secs(connection_lifetime.max(1));
    settings.max_connections = max_connections.max(1);
    settings.max_connections_per_peer = max_connections_per_peer.max(1);
    settings.send_rate = ota_server::limits::SendRate {
        min_bytes_per_sec: min_send_rate,
        window: Duration::from_secs(send_timeout.max(1)),
    };
    settings.access_log = match access_log.as_str() {
        "-" => AccessLog::new(Box::new(std::io::stdout())),
        "off" => AccessLog::off(),
        path => AccessLog::new(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("access log {path}"))
                .map_err(|e| (exit::IO, e))?,
        )),
    };
    if let (Some(cert), Some(key)) = (&tls_cert, &tls_key) {
        settings.tls = Some(
            serve::load_tls(cert, key).map_err(|e| (exit::USAGE, anyhow::anyhow!("TLS: {e}")))?,
        );
    }
    let key_options = ota_core::keyref::KeyOptions {
        program: "ota-server",
        pkcs11_module,
    };
    let online_keys = [timestamp_key, snapshot_key]
        .into_iter()
        .flatten()
        .map(|p| ota_core::keyref::load_private_key(&p.to_string_lossy(), &key_options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (e.exit_code(), e.into()))?;
    if !online_keys.is_empty() {
        // A first pass now: a wrong key or a broken repository stops the server at start,
        // not silently an interval later.
        let report = ota_server::resign::resign_once(&repo, &online_keys)
            .context("online re-signing")
            .map_err(|e| (exit::USAGE, e))?;
        ota_server::resign::log(&report);
        ota_server::resign::spawn(
            repo.clone(),
            online_keys,
            Duration::from_secs(resign_interval.max(1)),
        );
    }
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .map_err(|e| (exit::IO, e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))
            .map_err(|e| (exit::IO, e))?;
        let local = listener
            .local_addr()
            .context("listening address")
            .map_err(|e| (exit::IO, e))?;
        // Tests and scripts read the address from this line (port 0 picks a free one).
        ota_server::log_event(
            "listening",
            &format!("serving {} on {scheme}://{local}", root.display()),
            serde_json::json!({"url": format!("{scheme}://{local}"), "repo": root}),
        );
        serve::run(settings, listener, shutdown_signal())
            .await
            .context("serving")
            .map_err(|e| (exit::IO, e))?;
        ota_server::log_event("stopped", "stopped", serde_json::Value::Null);
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers the server runs until killed.
        _ => std::future::pending().await,
    }
}
