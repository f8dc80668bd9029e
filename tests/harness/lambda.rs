//! The Lambda Runtime API emulator of cargo-lambda on `127.0.0.1`, and the functions' own
//! binaries run against it exactly as Lambda runs a `provided.al2023` bootstrap.
//!
//! `cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P PORT` serves the invoke API
//! (`POST /2015-03-31/functions/NAME/invocations`), Function URLs (`ANY /lambda-url/NAME/...`,
//! turned into a Function URL event with the request's headers, query and body) and the
//! Runtime API a function polls (`/.rt/NAME/2018-06-01/runtime/invocation/next`). With
//! `--only-lambda-apis` it compiles and starts nothing: the binaries already built by `cargo
//! build --workspace --bins` (beside the test executable, see [`built_binary`]) are started
//! here with the variables cargo-lambda gives a function (`AWS_LAMBDA_RUNTIME_API=
//! http://127.0.0.1:PORT/.rt/NAME`, `AWS_LAMBDA_FUNCTION_NAME`, `_VERSION`, `_MEMORY_SIZE`),
//! so a running `cargo test` is never waited for. The emulator only runs `cargo metadata` to
//! learn the workspace's binary names (an unknown name answers 404).
//!
//! A function's binary is started once, on its first invocation (a cold start, as on Lambda):
//! until an invocation for it is queued, the emulator answers the Runtime API's `next` with
//! 204, which a debug build of `lambda_runtime` polls again at once; starting the binary after
//! queuing its first event avoids that busy loop.
//!
//! The emulator is `$CARGO_LAMBDA`, else `cargo-lambda` in the test venv (PyPI
//! `cargo-lambda`, installed by `infra/local/test.sh`). Every call is safe inside an async
//! test: the blocking HTTP client runs on helper threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::server::{Process, VENV, free_ports, http_status, locate};

/// How long an invocation may take (a debug build copying images included).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long after queuing a function's first event its binary is started.
const QUEUE_HEAD_START: Duration = Duration::from_millis(150);

/// A function binary built by `cargo build --workspace --bins` in this test's target folder:
/// `target/debug/NAME`, found from the test executable (`target/debug/deps/TEST-HASH`).
/// Panics, naming the command to run, when it is missing.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/PROFILE/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} not found: build the functions first with `cargo build --workspace --bins` \
         (infra/local/test.sh does)",
        binary.display()
    );
    binary
}

/// An HTTP answer from the emulator.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The function that answered.
    pub function: String,
    /// The status.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "a JSON body expected ({e}), got {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A function the emulator can run: its binary and environment.
struct Function {
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// Its process once started.
    running: Option<Process>,
    /// How long its first invocation took from starting the binary.
    cold: Option<Duration>,
}

/// A running emulator and the function processes it serves; all killed on drop.
pub struct Emulator {
    // Dropped first: the functions, then the emulator, then the folder of logs.
    functions: Mutex<HashMap<String, Function>>,
    process: Process,
    port: u16,
    dir: TempDir,
}

impl Emulator {
    /// Starts the emulator for the workspace of `manifest` (its `Cargo.toml`) and waits until
    /// it answers.
    pub fn start(manifest: &Path) -> Self {
        let binary = locate(
            "CARGO_LAMBDA",
            &[PathBuf::from(VENV).join("bin/cargo-lambda")],
            "cargo-lambda",
            "cargo-lambda",
        );
        let workspace = manifest
            .parent()
            .expect("a Cargo.toml inside a folder")
            .to_path_buf();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("lambda-emulator-")
                .tempdir()
                .expect("create the emulator's temporary folder");
            let port = free_ports(1)[0];
            let log_path = dir.path().join("emulator.log");
            let log = std::fs::File::create(&log_path).expect("create the emulator's log");
            let child = Command::new(&binary)
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "-A",
                    "127.0.0.1",
                    "-P",
                ])
                .arg(port.to_string())
                .arg("--manifest-path")
                .arg(manifest)
                .current_dir(&workspace)
                // `cargo metadata` needs nothing from the network: Cargo.lock is committed.
                .env("CARGO_NET_OFFLINE", "true")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary.display()));
            let mut process = Process::new("cargo lambda watch", child, log_path);
            // An unknown function answers 404 at once, without queuing anything.
            match process.wait_until(Duration::from_secs(60), || {
                http_status(port, "/lambda-url/no-such-function/").is_some()
            }) {
                Ok(()) => {
                    return Emulator {
                        functions: Mutex::new(HashMap::new()),
                        process,
                        port,
                        dir,
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("cargo lambda watch did not start: {last_error}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Runtime API base a function `name` polls (`AWS_LAMBDA_RUNTIME_API`).
    pub fn runtime_api(&self, name: &str) -> String {
        format!("{}/.rt/{name}", self.endpoint())
    }

    /// The emulator's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The logs of function `name` and of the emulator, for failure messages.
    pub fn logs(&self, name: &str) -> String {
        format!(
            "{name}'s log:\n{}\nthe emulator's log:\n{}",
            self.function_log(name),
            self.log()
        )
    }

    /// Registers function `name`: `binary` run with only `env` (plus `PATH` and the Lambda
    /// variables), started on its first invocation.
    pub fn add_function(&self, name: &str, binary: PathBuf, env: &[(&str, String)]) {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        self.functions.lock().expect("functions lock").insert(
            name.to_owned(),
            Function {
                binary,
                env,
                running: None,
                cold: None,
            },
        );
    }

    /// The log of function `name` so far (empty before it started).
    pub fn function_log(&self, name: &str) -> String {
        self.functions
            .lock()
            .expect("functions lock")
            .get(name)
            .and_then(|f| f.running.as_ref())
            .map(Process::log)
            .unwrap_or_default()
    }

    /// How long the first invocation of `name` took from starting its binary (its cold start
    /// plus that invocation), once it ran.
    pub fn cold_start(&self, name: &str) -> Option<Duration> {
        self.functions
            .lock()
            .expect("functions lock")
            .get(name)
            .and_then(|f| f.cold)
    }

    /// Invokes `name` with `event` (`RequestResponse`): 200 and the function's JSON answer, or
    /// 500 and `{"errorType", "errorMessage"}` when the invocation failed.
    pub fn invoke(&self, name: &str, event: &serde_json::Value) -> Answer {
        let url = format!(
            "{}/2015-03-31/functions/{name}/invocations",
            self.endpoint()
        );
        let body = serde_json::to_vec(event).expect("serialize an event");
        self.send(
            name,
            "POST",
            &url,
            &[("content-type", "application/json")],
            body,
        )
    }

    /// Sends an HTTP request to `name`'s Function URL: `path_and_query` below
    /// `/lambda-url/NAME` (e.g. `/?token=T`), headers and body as given.
    pub fn function_url(
        &self,
        name: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let url = format!("{}/lambda-url/{name}{path_and_query}", self.endpoint());
        self.send(name, method, &url, headers, body.to_vec())
    }

    fn send(
        &self,
        name: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let must_start = {
            let functions = self.functions.lock().expect("functions lock");
            let function = functions
                .get(name)
                .unwrap_or_else(|| panic!("function {name} was not added to the emulator"));
            function.running.is_none()
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let url = url.to_owned();
        let function = name.to_owned();
        // A detached thread: when the function dies, the test fails at once, not after the
        // request's timeout.
        let request = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(INVOKE_TIMEOUT)
                .build()
                .expect("an HTTP client");
            let mut request = client.request(method, &url).body(body);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            request.send().map(|r| {
                let status = r.status().as_u16();
                let headers = r
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_ascii_lowercase(),
                            v.to_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
                Answer {
                    function,
                    status,
                    headers,
                    body,
                }
            })
        });
        let started = must_start.then(|| {
            std::thread::sleep(QUEUE_HEAD_START);
            self.spawn_function(name)
        });
        // Wait for the answer, unless the function's process dies first.
        let watched = {
            let mut functions = self.functions.lock().expect("functions lock");
            let process = functions
                .get_mut(name)
                .and_then(|f| f.running.as_mut())
                .expect("a started function");
            process.wait_until(INVOKE_TIMEOUT, || request.is_finished())
        };
        if let Err(error) = watched {
            panic!(
                "function {name} did not answer: {error}\nemulator log:\n{}",
                self.log()
            );
        }
        let answered = started.map(|at| at.elapsed());
        let result = match request.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let answer = result.unwrap_or_else(|e| {
            panic!(
                "invoking {name} through the emulator failed: {e}\nemulator log:\n{}\n\
                 function log:\n{}",
                self.log(),
                self.function_log(name)
            )
        });
        if let Some(cold) = answered {
            let mut functions = self.functions.lock().expect("functions lock");
            if let Some(function) = functions.get_mut(name) {
                function.cold = Some(cold);
            }
        }
        answer
    }

    /// Starts `name`'s binary against the emulator; returns when it was started.
    fn spawn_function(&self, name: &str) -> Instant {
        let mut functions = self.functions.lock().expect("functions lock");
        let function = functions
            .get_mut(name)
            .unwrap_or_else(|| panic!("function {name} was not added to the emulator"));
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("create a function's log");
        let mut command = Command::new(&function.binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
            .env("AWS_LAMBDA_RUNTIME_API", self.runtime_api(name))
            .envs(function.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        let at = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", function.binary.display()));
        function.running = Some(Process::new("lambda function", child, log_path));
        at
    }
}
