//! One test of this test binary run again in a child process, with an environment of its own.
//!
//! A test may not change its process's environment while other tests run (and `unsafe` is
//! forbidden), yet some code under test reads its settings from there (`AWS_ENDPOINT_URL_S3`,
//! `PATH`, ...). Such a test starts its servers, then runs itself in a child with the variables
//! set ([`ChildTest`]); the child sees a marker variable the parent set and runs the scenario.
//!
//! ```ignore
//! #[tokio::test]
//! async fn from_s3() {
//!     if let Some(endpoint) = std::env::var_os(CHILD) {
//!         return scenario(&endpoint.to_string_lossy()).await;
//!     }
//!     let seaweed = SeaweedFs::start(&[BUCKET]);
//!     ChildTest::new(module_path!(), "from_s3")
//!         .s3(seaweed.endpoint())
//!         .env(CHILD, seaweed.endpoint())
//!         .run()
//!         .assert_one_passed();
//! }
//! ```

use std::ffi::OsStr;
use std::process::{Command, ExitStatus};

/// The test binary, to be run with the one test `name` (`--exact --nocapture
/// --test-threads=1`), and the environment of this process changed as asked.
pub struct ChildTest {
    command: Command,
}

impl ChildTest {
    /// The test called `name` in module `module` (pass `module_path!()`) of this test binary.
    ///
    /// A crate's integration tests are linked as one binary whose files are modules, so a
    /// test's name for the test harness is its module path without the crate: `chain::NAME`.
    pub fn new(module: &str, name: &str) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let mut command = Command::new(exe);
        let exact = match module.split_once("::") {
            Some((_crate, path)) => format!("{path}::{name}"),
            None => name.to_owned(),
        };
        command.args([exact.as_str(), "--exact", "--nocapture", "--test-threads=1"]);
        ChildTest { command }
    }

    /// Sets `key` to `value` in the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// S3 at `endpoint` (`AWS_ENDPOINT_URL_S3`) with dummy credentials and region `us-east-1`,
    /// and nothing else of AWS: every `AWS_*` variable of this process is removed first, so
    /// call this before setting any `AWS_*` variable with [`ChildTest::env`].
    pub fn s3(mut self, endpoint: &str) -> Self {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                self.command.env_remove(key);
            }
        }
        self.command
            .env("AWS_ENDPOINT_URL_S3", endpoint)
            .env("AWS_ACCESS_KEY_ID", "any")
            .env("AWS_SECRET_ACCESS_KEY", "any")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        self
    }

    /// Runs the child to its end.
    pub fn run(mut self) -> ChildOutput {
        let output = self.command.output().expect("run the test binary");
        ChildOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// How the child ended and what it printed.
#[derive(Debug)]
pub struct ChildOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (the test harness's report, and the test's own output).
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl ChildOutput {
    /// Asserts that the child succeeded and ran exactly one test.
    pub fn assert_one_passed(&self) {
        self.assert_one_passed_or(String::new);
    }

    /// The same, adding `more()` (a server's log, say) to the message when the child failed.
    pub fn assert_one_passed_or(&self, more: impl FnOnce() -> String) {
        let ChildOutput {
            status,
            stdout,
            stderr,
        } = self;
        assert!(
            status.success(),
            "the child test failed:\n{stdout}\n{stderr}\n{}",
            more()
        );
        assert!(
            stdout.contains("1 passed"),
            "the child ran nothing:\n{stdout}"
        );
    }
}
