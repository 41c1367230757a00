//! `ota-server`: will serve a static TUF update repository over HTTP(S).
//!
//! Not implemented yet (tracked by the repository issue): this binary only reserves the name in
//! the workspace and says so, rather than pretending to serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "ota-server: error: serving is not implemented yet; publish the repository directory with any static web server (nginx) meanwhile"
    );
    ExitCode::from(2)
}
