//! An AWS emulator: `moto_server` on `127.0.0.1`; killed on drop.
//!
//! The binary is `$MOTO_SERVER`, else `moto_server` in the test venv (PyPI `moto[server]`,
//! installed by `infra/local/test.sh`). Requests must be SigV4-signed, but any key works.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::server::{Process, VENV, free_ports, http_status, locate};

/// A running moto server.
pub struct MotoServer {
    // First: killed before its folder is removed.
    process: Process,
    port: u16,
    _dir: TempDir,
}

impl MotoServer {
    /// Starts a server and waits until it answers HTTP.
    pub fn start() -> Self {
        let binary = locate(
            "MOTO_SERVER",
            &[PathBuf::from(VENV).join("bin/moto_server")],
            "moto_server",
            "moto[server]",
        );
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("moto-")
                .tempdir()
                .expect("create moto's temporary folder");
            let port = free_ports(1)[0];
            let log_path = dir.path().join("moto.log");
            let log = std::fs::File::create(&log_path).expect("create moto's log");
            let child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary.display()));
            let mut process = Process::new("moto_server", child, log_path);
            // 200 from moto's own API, not merely an answer: another test's server that took
            // the port before moto bound it answers too (a registry says 404).
            match process.wait_until(Duration::from_secs(60), || {
                http_status(port, "/moto-api/") == Some(200)
            }) {
                Ok(()) => {
                    return MotoServer {
                        process,
                        port,
                        _dir: dir,
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
