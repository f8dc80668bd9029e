//! The state requirements of `promoter promote`, checked on the binary as users run it, against
//! real registries (CNCF distribution) and a real S3 store (SeaweedFS) from the test harness:
//!
//! - crash and resume: a promotion of 50 images to 2 repositories is killed with SIGKILL at 5
//!   moments chosen by progress (units done), rerun each time, then finished; production ends
//!   exactly as planned, the run is the same throughout and complete, a unit recorded done is
//!   never redone or rewritten, and units killed mid-copy are taken over and finished. Once
//!   with state in a local folder, once in S3;
//! - two workers at once on the same run: every unit copied by exactly one of them;
//! - bad state (truncated or foreign records, a missing bucket, refused credentials): a clear
//!   error naming the object, exit code 2, no panic, and nothing redone.
//!
//! Three of these first found defects, since fixed: a corrupt unit record of a complete run went
//! unnoticed on rerun; a second worker started at once copied nothing; shared layers were
//! re-mounted under concurrent manifest PUTs (distribution then refused the PUT).
//!
//! Every process logs at `RUST_LOG=info`; its stdout and stderr go to files of the test's
//! temporary folder (SIGKILLed processes print no summary).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use promoter::state::records::Trigger;
use promoter::steps::promote::run_id;
use promoter_tests::harness::http::RawClient;
use promoter_tests::harness::image::{
    Image, ManifestFormat, Platform, Seeder, image, layer, single,
};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::seaweed::SeaweedFs;
use promoter_tests::harness::skopeo;
use serde_json::Value;

/// The exit code of state errors (as of usage errors): see `main.rs` and `commands.rs`.
const STATE_ERROR_EXIT: i32 = 2;
/// The S3 bucket every SeaweedFS here has.
const BUCKET: &str = "promoter-state";

// ---------------------------------------------------------------------------------------------
// Fixture: staging with N distinct small images, an empty production, a manifest
// ---------------------------------------------------------------------------------------------

/// A staging registry holding `images` (each its own digest in `staging/app`), an anonymous
/// production registry, and `m.yaml` promoting every image to `{production}/us/app` and
/// `{production}/eu/app` with the tag `v{NNN}`.
///
/// The images share no blob (one layer of 1 KiB of their own, and a config), except with
/// [`Layers::SharedBase`]: see [`shared_base_layer_mounts_race_manifest_puts`] for why.
struct Fixture {
    staging: TestRegistry,
    production: TestRegistry,
    dir: tempfile::TempDir,
    images: Vec<Image>,
}

/// The production repositories of the fixture's manifest.
const REPOSITORIES: [&str; 2] = ["us/app", "eu/app"];

/// The layers of the fixture's images.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layers {
    /// One layer of its own per image.
    Own,
    /// The harness's `single`: a base layer shared by every image, then one of its own.
    SharedBase,
}

impl Fixture {
    fn new(count: usize, seed: &str) -> Self {
        Self::with_layers(count, seed, Layers::Own)
    }

    fn with_layers(count: usize, seed: &str, layers: Layers) -> Self {
        let staging = TestRegistry::start();
        let production = TestRegistry::start();
        let seeder = Seeder::new(&staging);
        let images: Vec<Image> = (0..count)
            .map(|i| {
                let seed = format!("{seed}-{i:03}");
                match layers {
                    Layers::Own => image(
                        ManifestFormat::Oci,
                        Platform::linux("amd64"),
                        vec![layer(&seed, 1024)],
                        &seed,
                    ),
                    Layers::SharedBase => single(ManifestFormat::Oci, &seed),
                }
            })
            .collect();
        for image in &images {
            seeder.push_image("staging/app", image, None);
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut manifest = format!(
            "registries:\n- name: {s}/staging\n  src: true\n- name: {p}/us\n- name: {p}/eu\nimages:\n- name: app\n  dmap:\n",
            s = staging.host(),
            p = production.host(),
        );
        for (i, image) in images.iter().enumerate() {
            manifest.push_str(&format!("    \"{}\": [\"{}\"]\n", image.digest, tag(i)));
        }
        std::fs::write(dir.path().join("m.yaml"), manifest).expect("write the manifest");
        std::fs::create_dir(dir.path().join("docker")).expect("Docker config folder");
        std::fs::write(dir.path().join("docker/config.json"), "{\"auths\":{}}")
            .expect("write the Docker config");
        Fixture {
            staging,
            production,
            dir,
            images,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Production holds exactly the plan: in both repositories, exactly the planned tags, each
    /// naming its digest, with staging's exact manifest bytes and media type, and every blob
    /// with the bytes built for it. A few manifests are also read with skopeo, independently.
    fn assert_production_is_the_plan(&self) {
        let production = RawClient::for_registry(&self.production);
        let staging = RawClient::for_registry(&self.staging);
        let expected: BTreeSet<String> = (0..self.images.len()).map(tag).collect();
        for repo in REPOSITORIES {
            let listed: BTreeSet<String> = tags(&production, repo).into_iter().collect();
            assert_eq!(listed, expected, "{repo}: exactly the planned tags");
            for (i, image) in self.images.iter().enumerate() {
                let staged = staging.get_manifest("staging/app", &image.digest);
                assert_eq!(staged.status, 200, "staging/app@{}", image.digest);
                for reference in [tag(i), image.digest.clone()] {
                    let got = production.get_manifest(repo, &reference);
                    assert_eq!(got.status, 200, "{repo}:{reference}");
                    assert_eq!(got.body, staged.body, "{repo}:{reference}: staging's bytes");
                    assert_eq!(got.body, image.manifest, "{repo}:{reference}: built bytes");
                    assert_eq!(
                        got.header("content-type"),
                        Some(image.media_type),
                        "{repo}:{reference}: media type"
                    );
                }
                let blobs = std::iter::once((&image.config_digest, &image.config))
                    .chain(image.layers.iter().map(|l| (&l.digest, &l.bytes)));
                for (digest, bytes) in blobs {
                    let got = production.get_blob(repo, digest);
                    assert_eq!(got.status, 200, "{repo} blob {digest}");
                    assert_eq!(&got.body, bytes, "{repo} blob {digest}: bytes");
                }
            }
            for i in [0, self.images.len() - 1] {
                let read = skopeo::inspect_raw(&self.production, repo, &tag(i), None);
                assert_eq!(read, self.images[i].manifest, "skopeo {repo}:{}", tag(i));
            }
        }
    }
}

/// The tag of image `i`.
fn tag(i: usize) -> String {
    format!("v{i:03}")
}

/// The tags of `repo` (none when the repository does not exist yet).
fn tags(client: &RawClient, repo: &str) -> Vec<String> {
    let response = client.send("GET", &format!("/v2/{repo}/tags/list"), repo, &[], None);
    if response.status == 404 {
        return Vec::new();
    }
    assert_eq!(response.status, 200, "list the tags of {repo}");
    let json: Value = serde_json::from_slice(&response.body).expect("a tag listing is JSON");
    json["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Where state lives, and running the binary
// ---------------------------------------------------------------------------------------------

/// State in a local folder or in S3 on SeaweedFS.
enum State {
    Local(PathBuf),
    S3 {
        server: Box<SeaweedFs>,
        url: String,
        access_key: String,
        secret_key: String,
    },
}

impl State {
    /// State at `url` (`s3://BUCKET/PREFIX`) on `server`, signed with these keys.
    fn s3(server: SeaweedFs, url: &str, access_key: &str, secret_key: &str) -> Self {
        State::S3 {
            server: Box::new(server),
            url: url.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
        }
    }

    fn url(&self) -> String {
        match self {
            State::Local(path) => path.display().to_string(),
            State::S3 { url, .. } => url.clone(),
        }
    }

    /// Environment for the binary: the S3 endpoint and credentials, the AWS way.
    fn apply(&self, command: &mut Command, dir: &Path) {
        if let State::S3 {
            server,
            access_key,
            secret_key,
            ..
        } = self
        {
            command
                .env("AWS_ENDPOINT_URL_S3", server.endpoint())
                .env("AWS_ACCESS_KEY_ID", access_key)
                .env("AWS_SECRET_ACCESS_KEY", secret_key)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    dir.join("no-aws-credentials"),
                )
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
    }
}

/// `promoter ARGS --state URL` in `dir`, with an empty Docker config, `RUST_LOG=info`, and
/// nothing of the test's own AWS or promoter environment.
fn promoter(dir: &Path, state: &State, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promoter"));
    command.args(args).arg("--state").arg(state.url());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("AWS_") || key_text.starts_with("PROMOTER_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    state.apply(&mut command, dir);
    command
}

/// A process whose stdout and stderr go to `NAME.out` / `NAME.err` in the test folder.
struct Running {
    child: Child,
    name: String,
    out: PathBuf,
    err: PathBuf,
}

/// What a process left.
struct Finished {
    name: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}): {}\nstderr: {}",
                self.name, self.stdout, self.stderr
            )
        })
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{}: exit status\nstdout: {}\nstderr: {}",
            self.name,
            self.stdout,
            self.stderr
        );
    }
}

fn spawn(mut command: Command, dir: &Path, name: &str) -> Running {
    let out = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    let child = command
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start the promoter binary");
    Running {
        child,
        name: name.to_owned(),
        out,
        err,
    }
}

impl Running {
    fn finished(self, status: ExitStatus) -> Finished {
        Finished {
            name: self.name,
            status,
            stdout: std::fs::read_to_string(&self.out).expect("read stdout"),
            stderr: std::fs::read_to_string(&self.err).expect("read stderr"),
        }
    }

    fn wait(mut self) -> Finished {
        let status = self.child.wait().expect("wait for the promoter");
        self.finished(status)
    }

    /// SIGKILL.
    fn kill(mut self) -> Finished {
        self.child.kill().expect("SIGKILL the promoter");
        let status = self.child.wait().expect("reap the promoter");
        self.finished(status)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the promoter")
    }
}

fn run_to_end(command: Command, dir: &Path, name: &str) -> Finished {
    spawn(command, dir, name).wait()
}

/// `promoter runs show RUN --output json`: `{"run": RunRecord, "units": [UnitRecord]}`.
fn runs_show(fixture_dir: &Path, state: &State, run: &str) -> Value {
    let shown = output(promoter(
        fixture_dir,
        state,
        &["runs", "show", run, "--output", "json"],
    ));
    assert_eq!(
        shown.status.code(),
        Some(0),
        "runs show: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    serde_json::from_slice(&shown.stdout).expect("runs show prints JSON")
}

fn output(mut command: Command) -> Output {
    command.output().expect("run the promoter binary")
}

/// The run id of `promoter promote --revision REVISION`.
fn cli_run_id(revision: &str) -> String {
    run_id(&Trigger {
        kind: promoter::state::records::TriggerKind::Cli,
        revision: revision.to_owned(),
        repository: None,
        parent: None,
    })
}

/// Unit records by id.
fn units_by_id(shown: &Value) -> BTreeMap<String, Value> {
    shown["units"]
        .as_array()
        .expect("runs show lists units")
        .iter()
        .map(|u| (u["id"].as_str().expect("a unit id").to_owned(), u.clone()))
        .collect()
}

fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("a count, not {value}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Crash and resume
// ---------------------------------------------------------------------------------------------

/// Images promoted by the crash test.
const CRASH_IMAGES: usize = 50;
/// Units done (cumulative) at which each run is killed.
const KILL_AT: [usize; 5] = [1, 10, 20, 35, 45];
/// Requests per second per registry host: slow enough that each kill point is observed
/// before the next units finish (about 7 units a second).
const CRASH_RATE: &str = "150";

/// How far a run got, while it runs: units recorded done in the local folder; for S3,
/// the planned tags present in both production repositories (tags are written last in a unit).
fn progress(state: &State, run: &str, production: &RawClient) -> usize {
    match state {
        State::Local(root) => {
            let Ok(entries) = std::fs::read_dir(root.join("runs").join(run).join("units")) else {
                return 0;
            };
            // Not the `.NAME.tmp` files a record is written to before its rename.
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"))
                })
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .filter(|record| record["status"] == "done")
                .count()
        }
        State::S3 { .. } => REPOSITORIES
            .iter()
            .map(|repo| tags(production, repo).len())
            .min()
            .unwrap_or(0),
    }
}

fn crash_and_resume(fixture: &Fixture, state: &State) {
    let dir = fixture.path();
    let revision = "crash-and-resume";
    let run = cli_run_id(revision);
    let args = [
        "promote",
        "m.yaml",
        "--output",
        "json",
        "--revision",
        revision,
        "--parallel-units",
        "4",
        "--max-requests-per-second",
        CRASH_RATE,
    ];
    let production = RawClient::for_registry(&fixture.production);
    // Unit records seen done after a kill: they must never change again.
    let mut done_records: BTreeMap<String, Value> = BTreeMap::new();
    // Units recorded `running` when their worker was killed: how many times.
    let mut killed_mid_unit: BTreeMap<String, u64> = BTreeMap::new();
    let mut previous_killed_mid_unit = false;
    for (attempt, &k) in KILL_AT.iter().enumerate() {
        let name = format!("killed-{attempt}");
        let mut child = spawn(promoter(dir, state, &args), dir, &name);
        let started = Instant::now();
        loop {
            if let Some(status) = child.exited() {
                let finished = child.finished(status);
                panic!(
                    "{name} exited before {k} units were done: {}\nstderr: {}",
                    finished.status, finished.stderr
                );
            }
            if progress(state, &run, &production) >= k {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name}: {k} units not done within 60s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let killed = child.kill();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&killed.status),
            Some(9),
            "{name} died of SIGKILL"
        );
        assert!(killed.stdout.is_empty(), "{name}: killed before any output");
        // The run is started once, by the first process; the others resume it.
        assert_eq!(
            killed.stderr.contains("run started"),
            attempt == 0,
            "{name}: `run started` only in the first process: {}",
            killed.stderr
        );
        if previous_killed_mid_unit {
            assert!(
                killed.stderr.contains("took over an expired lease"),
                "{name}: the leases of the killed worker are taken over at once: {}",
                killed.stderr
            );
        }

        let shown = runs_show(dir, state, &run);
        assert_eq!(shown["run"]["status"], "running", "{name}: {shown}");
        assert_eq!(count(&shown["run"]["units"]), CRASH_IMAGES as u64);
        let units = units_by_id(&shown);
        let done = units.values().filter(|u| u["status"] == "done").count();
        // In S3 progress is tags in production: a unit's record is written just after them.
        let lag = if matches!(state, State::Local(_)) {
            0
        } else {
            4
        };
        assert!(done + lag >= k, "{name}: {done} units done, killed at {k}");
        previous_killed_mid_unit = false;
        for (id, record) in units {
            match record["status"].as_str() {
                Some("done") => {
                    if let Some(before) = done_records.get(&id) {
                        assert_eq!(&record, before, "{name}: the done record of {id} changed");
                    } else {
                        done_records.insert(id, record);
                    }
                }
                Some("running") => {
                    previous_killed_mid_unit = true;
                    let kills = killed_mid_unit.entry(id.clone()).or_default();
                    *kills += 1;
                    assert_eq!(
                        count(&record["attempts"]),
                        *kills,
                        "{name}: unit {id}: each attempt is recorded: {record}"
                    );
                }
                other => panic!("{name}: unit {id} is {other:?}: {record}"),
            }
        }
    }
    assert!(
        !killed_mid_unit.is_empty(),
        "at least one kill lands while a unit is being copied"
    );

    // The last rerun finishes the run.
    let last = run_to_end(promoter(dir, state, &args), dir, "final");
    last.assert_exit(0);
    let report = last.json();
    let summary = &report["summary"];
    assert_eq!(
        summary["run"]["id"],
        run.as_str(),
        "the same run throughout"
    );
    assert_eq!(summary["run"]["status"], "complete");
    assert_eq!(count(&summary["units"]), CRASH_IMAGES as u64);
    assert_eq!(count(&summary["failed"]), 0);
    assert_eq!(count(&summary["done_by_other_worker"]), 0);
    let earlier = count(&summary["done_earlier"]);
    assert!(
        earlier >= done_records.len() as u64,
        "every unit done before the last kill is done earlier: {summary}"
    );
    assert_eq!(
        count(&summary["copied"]) + count(&summary["present"]) + earlier,
        CRASH_IMAGES as u64,
        "{summary}"
    );
    assert!(
        !last.stderr.contains("run started"),
        "the final rerun resumes: {}",
        last.stderr
    );

    let shown = runs_show(dir, state, &run);
    assert_eq!(shown["run"]["id"], run.as_str());
    assert_eq!(shown["run"]["status"], "complete", "{shown}");
    assert_eq!(count(&shown["run"]["counts"]["done"]), CRASH_IMAGES as u64);
    assert_eq!(count(&shown["run"]["counts"]["failed"]), 0);
    assert_eq!(count(&shown["run"]["counts"]["pending"]), 0);
    let units = units_by_id(&shown);
    assert_eq!(units.len(), CRASH_IMAGES, "one record per unit");
    let mut attempts = 0;
    for (id, record) in &units {
        assert_eq!(record["status"], "done", "unit {id}: {record}");
        assert!(record["error"].is_null(), "unit {id}: {record}");
        attempts += count(&record["attempts"]);
        if let Some(before) = done_records.get(id) {
            assert_eq!(
                record, before,
                "unit {id}: a done record is never rewritten"
            );
        }
        // One attempt per kill that caught the unit mid-copy, plus the one that finished it:
        // no unit is attempted again once done.
        let kills = killed_mid_unit.get(id).copied().unwrap_or(0);
        assert_eq!(
            count(&record["attempts"]),
            kills + 1,
            "unit {id}: killed mid-copy {kills} times: {record}"
        );
    }
    eprintln!(
        "{}: kills at {KILL_AT:?} done; {} units killed mid-copy; {attempts} attempts for \
         {CRASH_IMAGES} units; final rerun: {earlier} done earlier, {} copied, {} present",
        state.url(),
        killed_mid_unit.len(),
        summary["copied"],
        summary["present"],
    );
    assert!(
        attempts > CRASH_IMAGES as u64,
        "{attempts} attempts for {CRASH_IMAGES} units: some were killed mid-copy and redone"
    );

    // One run in state, the one every process worked on.
    let list = output(promoter(dir, state, &["runs", "list", "--output", "json"]));
    assert_eq!(list.status.code(), Some(0));
    let runs: Value = serde_json::from_slice(&list.stdout).expect("runs list prints JSON");
    let ids: Vec<&str> = runs
        .as_array()
        .expect("a list of runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [run.as_str()], "one run across every rerun");

    fixture.assert_production_is_the_plan();
}

#[test]
fn killed_five_times_then_resumed_with_local_state() {
    let fixture = Fixture::new(CRASH_IMAGES, "crash-local");
    let state = State::Local(fixture.path().join("state"));
    crash_and_resume(&fixture, &state);
}

#[test]
fn killed_five_times_then_resumed_with_s3_state() {
    let fixture = Fixture::new(CRASH_IMAGES, "crash-s3");
    let server = SeaweedFs::start(&[BUCKET]);
    let state = State::s3(server, &format!("s3://{BUCKET}/crash"), "any", "any");
    crash_and_resume(&fixture, &state);
}

// ---------------------------------------------------------------------------------------------
// 2. Two workers at once
// ---------------------------------------------------------------------------------------------

/// The pid in a worker id (`host:pid:start-time`).
fn worker_pid(worker: &str) -> u32 {
    worker
        .rsplit(':')
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("worker `{worker}` is host:pid:start"))
}

/// Units of the two-worker test.
const UNITS: usize = 32;

#[test]
fn two_workers_at_once_copy_each_unit_exactly_once() {
    two_workers_at_once(false);
}

/// Two workers started together both copy units. Today the second one to reach the units
/// finds the first's leases on the 4 units it starts with, and each of its 4 slots sleeps
/// (`RunOptions::poll`, 500 ms) on a held unit, then moves to the next unit in plan order,
/// which the first worker (a unit takes ~0.1 s here) has long leased: it copies nothing
/// (in 9 of 10 runs here; the other, it got a few units).
#[test]
fn two_workers_at_once_both_copy_units() {
    two_workers_at_once(true);
}

/// Two `promoter promote` of the same manifest and state, started together, 4 units each at a
/// time: both succeed and each unit is copied by exactly one of them; with `require_split`,
/// each copies at least one.
fn two_workers_at_once(require_split: bool) {
    let fixture = Fixture::new(UNITS, "two-workers");
    let dir = fixture.path();
    let state = State::Local(dir.join("state"));
    let revision = "two-workers";
    let run = cli_run_id(revision);
    let args = [
        "promote",
        "m.yaml",
        "--output",
        "json",
        "--revision",
        revision,
        "--parallel-units",
        "4",
        "--max-requests-per-second",
        "300",
    ];
    let a = spawn(promoter(dir, &state, &args), dir, "worker-a");
    let b = spawn(promoter(dir, &state, &args), dir, "worker-b");
    let pids = [a.child.id(), b.child.id()];
    let (a, b) = (a.wait(), b.wait());
    a.assert_exit(0);
    b.assert_exit(0);

    // Per process: every unit accounted for; together: each unit copied by exactly one.
    let mut copied_by: BTreeMap<String, u32> = BTreeMap::new();
    for (finished, pid) in [(&a, pids[0]), (&b, pids[1])] {
        let report = finished.json();
        let s = &report["summary"];
        assert_eq!(
            s["run"]["id"],
            run.as_str(),
            "{}: the shared run",
            finished.name
        );
        assert_eq!(s["run"]["status"], "complete", "{}: {s}", finished.name);
        assert_eq!(count(&s["failed"]), 0, "{}: {s}", finished.name);
        assert_eq!(
            count(&s["copied"])
                + count(&s["present"])
                + count(&s["done_earlier"])
                + count(&s["done_by_other_worker"]),
            UNITS as u64,
            "{}: {s}",
            finished.name
        );
        for unit in report["units"].as_array().expect("units") {
            let id = unit["id"].as_str().expect("a unit id").to_owned();
            match unit["status"].as_str() {
                Some("copied" | "present") => {
                    if let Some(other) = copied_by.insert(id.clone(), pid) {
                        panic!("unit {id} copied by both {other} and {pid}");
                    }
                }
                Some("done-earlier" | "done-by-other-worker") => {}
                other => panic!("{}: unit {id} is {other:?}", finished.name),
            }
        }
    }
    assert_eq!(copied_by.len(), UNITS, "every unit copied by one worker");
    let (sa, sb) = (&a.json()["summary"], &b.json()["summary"]);
    assert_eq!(
        count(&sa["copied"]) + count(&sa["present"]) + count(&sb["copied"]) + count(&sb["present"]),
        UNITS as u64,
        "copied_A + present_A + copied_B + present_B = units"
    );
    assert_eq!(
        count(&sa["copied"]) + count(&sb["copied"]),
        UNITS as u64,
        "production was empty: every unit copied, none merely present"
    );

    // The state agrees: one record per unit, done by its first attempt, by that worker.
    let shown = runs_show(dir, &state, &run);
    assert_eq!(shown["run"]["status"], "complete");
    let units = units_by_id(&shown);
    assert_eq!(units.len(), UNITS);
    for (id, record) in &units {
        assert_eq!(record["status"], "done", "unit {id}: {record}");
        assert_eq!(count(&record["attempts"]), 1, "unit {id}: {record}");
        let worker = worker_pid(record["worker"].as_str().expect("a worker"));
        assert!(pids.contains(&worker), "unit {id}: worker {worker}");
        assert_eq!(
            Some(&worker),
            copied_by.get(id),
            "unit {id}: recorded worker"
        );
    }
    for pid in pids.into_iter().filter(|_| require_split) {
        assert!(
            units
                .values()
                .any(|r| r["worker"].as_str().is_some_and(|w| worker_pid(w) == pid)),
            "worker {pid} copied at least one unit: {:?}",
            units.values().map(|r| &r["worker"]).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        a.stderr.contains("run started") as u8 + b.stderr.contains("run started") as u8,
        1,
        "exactly one worker started the run"
    );
    fixture.assert_production_is_the_plan();
}

// ---------------------------------------------------------------------------------------------
// 3. Bad state
// ---------------------------------------------------------------------------------------------

/// A clear state error: exit code 2, no panic, the message naming `what`, nothing on stdout.
fn assert_state_error(finished: &Finished, what: &[&str]) {
    assert_reported_with_key(finished, what);
    assert!(
        finished.stdout.is_empty(),
        "{}: no summary: {}",
        finished.name,
        finished.stdout
    );
}

/// A unit record cut short while being written by something else.
const TRUNCATED_UNIT: &str = "{\"schema\":\"promoter.unit/v1\",\"id\":";

/// A run whose units are all done except one refused (its tag names another image in
/// production): the run is finished (`failed`), its unit records are read on a rerun.
#[test]
fn corrupt_local_records_are_named_and_nothing_is_redone() {
    let fixture = Fixture::new(3, "corrupt");
    let dir = fixture.path();
    // us/app:v002 already names another image: unit 2 fails, the others are done.
    Seeder::new(&fixture.production).push_image(
        "us/app",
        &single(ManifestFormat::Oci, "squatter"),
        Some(&tag(2)),
    );
    let state = State::Local(dir.join("state"));
    let revision = "corrupt-records";
    let run = cli_run_id(revision);
    let args = ["promote", "m.yaml", "--revision", revision];
    let first = run_named(dir, &state, &args, "first");
    first.assert_exit(1);
    let shown = runs_show(dir, &state, &run);
    assert_eq!(shown["run"]["status"], "failed", "{shown}");
    let units = units_by_id(&shown);
    let done = units
        .iter()
        .find(|(_, r)| r["status"] == "done")
        .map(|(id, _)| id.clone())
        .expect("a done unit");
    let other_done: Vec<(String, Value)> = units
        .iter()
        .filter(|(id, r)| r["status"] == "done" && **id != done)
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect();

    // A truncated unit record: the rerun names it and does not replace it.
    let key = format!("runs/{run}/units/{done}.json");
    let record_path = dir.join("state").join(&key);
    std::fs::write(&record_path, TRUNCATED_UNIT).expect("truncate a unit record");
    let rerun = run_named(dir, &state, &args, "rerun-truncated-unit");
    assert_state_error(&rerun, &[&key, "not a valid unit record"]);
    assert_eq!(
        std::fs::read_to_string(&record_path).expect("read the record"),
        TRUNCATED_UNIT,
        "the corrupt record is left for a human, not silently rewritten"
    );
    for (id, before) in &other_done {
        let path = dir
            .join("state")
            .join(format!("runs/{run}/units/{id}.json"));
        let after: Value =
            serde_json::from_slice(&std::fs::read(path).expect("read a unit record"))
                .expect("an intact record");
        assert_eq!(&after, before, "unit {id}: a done unit is not redone");
    }
    // `runs show` names the bad record and still shows the run and its other units.
    let show = run_named(dir, &state, &["runs", "show", &run], "show-truncated-unit");
    assert_reported_with_key(&show, &[&key, "not a valid unit record"]);
    for (id, _) in &other_done {
        assert!(show.stdout.contains(id.as_str()), "{id}: {}", show.stdout);
    }

    // A foreign run record: named, on promote, runs show and runs list.
    let run_key = format!("runs/{run}/run.json");
    let run_path = dir.join("state").join(&run_key);
    std::fs::write(&run_path, "[1,2,3]").expect("replace the run record");
    let rerun = run_named(dir, &state, &args, "rerun-foreign-run");
    assert_state_error(&rerun, &[&run_key, "not a valid run record"]);
    assert_eq!(
        std::fs::read_to_string(&run_path).expect("read the run record"),
        "[1,2,3]",
        "the foreign record is not replaced"
    );
    let show = run_named(dir, &state, &["runs", "show", &run], "show-foreign-run");
    assert_state_error(&show, &[&run_key, "not a valid run record"]);
    let list = run_named(dir, &state, &["runs", "list"], "list-foreign-run");
    assert_reported_with_key(&list, &[&run_key, "not a valid run record"]);
}

/// `runs list` and `runs show` name a record they cannot read (exit 2) and print the rest.
fn assert_reported_with_key(finished: &Finished, what: &[&str]) {
    finished.assert_exit(STATE_ERROR_EXIT);
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    for text in what {
        assert!(
            finished.stderr.contains(text),
            "{}: the error names `{text}`: {}",
            finished.name,
            finished.stderr
        );
    }
}

fn run_named(dir: &Path, state: &State, args: &[&str], name: &str) -> Finished {
    run_to_end(promoter(dir, state, args), dir, name)
}

/// The requirement as stated: a rerun of a *complete* run whose unit record was truncated
/// errors naming the record. Today a complete run's rerun reads only `run.json` and reports
/// every unit `done-earlier` (exit 0), so the corrupt record goes unnoticed until `runs show`.
#[test]
fn truncated_unit_record_of_a_complete_run_is_named_on_rerun() {
    let fixture = Fixture::new(2, "complete-corrupt");
    let dir = fixture.path();
    let state = State::Local(dir.join("state"));
    let revision = "complete-corrupt";
    let run = cli_run_id(revision);
    let args = ["promote", "m.yaml", "--revision", revision];
    run_named(dir, &state, &args, "first").assert_exit(0);
    let unit = units_by_id(&runs_show(dir, &state, &run))
        .into_keys()
        .next()
        .expect("a unit");
    let key = format!("runs/{run}/units/{unit}.json");
    std::fs::write(dir.join("state").join(&key), TRUNCATED_UNIT).expect("truncate");
    let rerun = run_named(dir, &state, &args, "rerun");
    assert_state_error(&rerun, &[&key, "not a valid unit record"]);
}

/// A missing bucket is named; refused credentials say so. Both before any registry is
/// contacted (the manifest's registries are closed ports: reaching them would fail units,
/// exit code 1).
#[test]
fn s3_missing_bucket_and_refused_credentials_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let manifest = format!(
        "registries:\n- name: 127.0.0.1:1/staging\n  src: true\n- name: 127.0.0.1:1/prod\nimages:\n- name: app\n  dmap:\n    \"sha256:{}\": [\"v1\"]\n",
        "a".repeat(64)
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).expect("write the manifest");
    std::fs::create_dir(dir.path().join("docker")).expect("Docker config folder");
    std::fs::write(dir.path().join("docker/config.json"), "{\"auths\":{}}")
        .expect("write the Docker config");
    let (key, secret) = ("promoter-test-key", "promoter-test-secret");
    let mut state = State::s3(
        SeaweedFs::with_credentials(&[BUCKET], key, secret),
        "s3://missing-bucket/x",
        key,
        secret,
    );

    let missing = run_named(dir.path(), &state, &["promote", "m.yaml"], "missing-bucket");
    assert_state_error(&missing, &["missing-bucket", "does not exist"]);
    let list = run_named(dir.path(), &state, &["runs", "list"], "list-missing-bucket");
    assert_state_error(&list, &["missing-bucket", "does not exist"]);

    if let State::S3 {
        url, secret_key, ..
    } = &mut state
    {
        *url = format!("s3://{BUCKET}/x");
        *secret_key = "not-the-secret".to_owned();
    }
    let denied = run_named(dir.path(), &state, &["promote", "m.yaml"], "wrong-secret");
    assert_state_error(&denied, &["refused access", &format!("s3://{BUCKET}/x")]);
    let list = run_named(dir.path(), &state, &["runs", "list"], "list-wrong-secret");
    assert_state_error(&list, &["refused access"]);
}

// ---------------------------------------------------------------------------------------------
// Found on the way: a copy-engine race (no state involved)
// ---------------------------------------------------------------------------------------------

/// 60 images sharing a base layer, promoted to 2 repositories of one registry with the default
/// 16 units at a time and no state: every unit succeeds, and the unit retries that absorb the
/// registry's race are rare. This first failed 3 to 5 units every run with `PUT
/// .../us/app/manifests/vNNN: 400 ... MANIFEST_BLOB_UNKNOWN` naming the base layer: each unit
/// mounted the base layer into the second repository again although it was there, and
/// distribution's filesystem storage rewrites the repository's link file in place (truncate,
/// write), so another unit's manifest PUT in that repository meanwhile found the layer unknown.
/// The engine now tracks every repository holding each blob and mounts nowhere twice; a PUT
/// still refused that way is retried with the unit.
#[test]
fn shared_base_layer_mounts_race_manifest_puts() {
    let fixture = Fixture::with_layers(60, "shared-base", Layers::SharedBase);
    let dir = fixture.path();
    let state = State::Local(dir.join("state"));
    let done = run_named(
        dir,
        &state,
        &["promote", "m.yaml", "--output", "json", "--no-state"],
        "shared-base",
    );
    let report = done.json();
    let failures: Vec<&Value> = report["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter(|u| u["status"] == "failed")
        .map(|u| &u["error"])
        .collect();
    assert!(failures.is_empty(), "failed units: {failures:#?}");
    let retries = done.stderr.matches("retrying unit").count();
    assert!(
        retries <= 2,
        "{retries} units retried for the blob-link race"
    );
    done.assert_exit(0);
    fixture.assert_production_is_the_plan();
}
